"""The firmware MQTT client notices a silent broker even while it keeps sending.

A half-open TCP connection (the access point rebooted, no RST came) swallows every byte we send.
A rating in flight is retransmitted every few seconds, so "time since we last sent" never reaches
half the keepalive: the silence of the broker must be judged from what we receive."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fw_mqtt_fake import Clock, FakeSocket  # noqa: E402

from firmware.mqtt_client import MqttClient  # noqa: E402


def _up_client():
    clock = Clock()
    socks = []

    def factory(host, port):
        socks.append(FakeSocket())
        return socks[-1]

    c = MqttClient(factory, "10.0.0.2", 1883, "hall-win07", clock, 30)
    c.step()
    socks[0].inbox.extend(b"\x20\x02\x00\x00")
    c.step()
    assert c.state == "up"
    return c, clock, socks


def test_silent_broker_dropped_while_a_publish_is_retransmitted():
    c, clock, socks = _up_client()
    c.publish("hall/h1/dev/win07/rating", b'{"counter":7}', 1)
    c.step()
    for _ in range(40):                   # 200 s of silence, a DUP resend every 5 s
        clock.ms += 5000
        c.step()
        if c.state != "up":
            break
    assert c.state == "down" and socks[0].closed
    assert clock.ms - 1000 <= 45000       # within 1.5 keepalives of the last byte received


def test_busy_broker_keeps_the_connection():
    c, clock, socks = _up_client()
    for _ in range(40):                   # the broker answers every ping
        clock.ms += 5000
        c.step()
        if socks[0].sent.endswith(b"\xc0\x00"):
            socks[0].inbox.extend(b"\xd0\x00")
    assert c.state == "up" and len(socks) == 1
