"""The firmware's MQTT client byte for byte against a scripted broker (fake socket): CONNECT /
CONNACK, SUBSCRIBE / SUBACK, QoS 1 PUBLISH / PUBACK with a DUP resend after a lost PUBACK,
incoming PUBLISH, keepalive, reconnect. On CPython and on real MicroPython 1.29."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import fw_mqtt_fake  # noqa: E402


def test_scripted_broker_cpython():
    assert fw_mqtt_fake.scenario() == fw_mqtt_fake.CHECKS


MP_SCRIPT = """
import sys
sys.path.insert(0, "/repo/tests")
import fw_mqtt_fake
print("CHECKS", fw_mqtt_fake.scenario())
"""


def test_scripted_broker_micropython(micropython):
    files = {"/repo/tests/fw_mqtt_fake.py": (Path(__file__).parent / "fw_mqtt_fake.py").read_bytes()}
    r = micropython(MP_SCRIPT, files=files, trees=("protocol", "firmware")).check()
    assert "CHECKS %d" % fw_mqtt_fake.CHECKS in r.stdout, r.stdout + r.stderr


def test_a_drop_from_a_callback_ends_the_read_of_the_old_buffer():
    """on_message may drop the connection (the transport does on a protocol breach): the rest of
    that read belongs to the closed socket and must not be delivered, nor bring the state up."""
    got = []
    sock = fw_mqtt_fake.FakeSocket()
    now = [0]
    client = fw_mqtt_fake.MqttClient(lambda host, port: sock, "broker", 1883, "dev-1",
                                     clock=lambda: now[0], on_message=lambda t, p, r: (got.append(p), client.drop()))
    client.step()                                   # CONNECT goes out
    sock.inbox.extend(b"\x20\x02\x00\x00")          # CONNACK
    client.step()
    assert client.connected
    one = b"\x30\x05\x00\x01t" + b"p1"
    two = b"\x30\x05\x00\x01t" + b"p2"
    sock.inbox.extend(one + two + b"\x20\x02\x00\x00")   # and a stray CONNACK after them
    client.step()
    assert got == [b"p1"] and not client.connected and client.sock is None and client.rx == bytearray()
