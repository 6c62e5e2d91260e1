"""A burst of update chunks on the device's MQTT link (firmware.mqtt_client, firmware.transport_mqtt,
fake broker socket): more bytes than one packet's buffer arriving at once are all handled without
dropping the connection, and the device keeps one UPDATE_STATE in flight, so its rating is
published at once whatever the update's traffic and the latest state follows the PUBACK."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fw_mqtt_fake import FakeSocket  # noqa: E402

from firmware.mqtt_client import MqttClient  # noqa: E402
from firmware.transport_mqtt import MqttTransport  # noqa: E402
from protocol import jsonform, mqtt_wire, schema, topics  # noqa: E402
from protocol import ota as proto_ota  # noqa: E402

HALL = "sz-futian"
CONNACK = b"\x20\x02\x00\x00"


def publish(topic, payload, pid):
    return mqtt_wire.publish_packet(topic, payload, 1, False, pid)


def sent_packets(sock):
    """[(kind, topic or None, packet id)] of what the device wrote."""
    data, pos, out = bytearray(sock.take()), 0, []
    while True:
        got = mqtt_wire.parse_packet(data, pos, 1 << 16)
        if got is None:
            return out
        first, start, pos = got
        if first & 0xF0 == mqtt_wire.PUBLISH:
            topic, pid, _ = mqtt_wire.publish_fields(first, data, start, pos)
            out.append(("publish", topic, pid))
        elif first & 0xF0 == mqtt_wire.PUBACK:
            out.append((mqtt_wire.PUBACK, None, mqtt_wire.packet_id(data, start, pos)))
        else:
            out.append((first & 0xF0, None, None))


def chunk(offset, size=768):
    return proto_ota.update_json(schema.UPDATE_CHUNK, {"release_id": b"\x11" * 32, "file": 1,
                                                      "offset": offset, "data": b"\x5a" * size})


def test_a_burst_longer_than_the_receive_buffer_is_handled_packet_by_packet():
    sock, got = FakeSocket(), []
    client = MqttClient(lambda host, port: sock, "broker", 1883, "dev-1", clock=lambda: 0,
                        on_message=lambda t, p, r: got.append(len(p)))
    client.step()
    sock.inbox.extend(CONNACK)
    client.step()
    assert client.connected
    sock.take()
    burst = b"".join(publish("hall/x/dev/d/update", chunk(i * 768), 100 + i) for i in range(16))
    assert len(burst) > 2 * 8192
    sock.inbox.extend(burst)
    for _ in range(10):
        client.step()
    assert len(got) == 16 and client.connected and client.stats["drops"] == 0
    assert [p for kind, _, p in sent_packets(sock) if kind == mqtt_wire.PUBACK] == list(range(100, 116))


class Net:
    def __init__(self, sock):
        self.sock = sock

    def isconnected(self):
        return True

    def connect(self):
        pass

    def socket_factory(self, host, port):
        return self.sock


class Health:
    def count(self, name):
        pass


class Device:
    """What the transport asks of firmware.device.Device: an update that answers every chunk
    with its state, and one rating waiting in the outbox once `rating` is set."""

    def __init__(self):
        self.cfg = {"device": "win07", "key_bytes": bytes(32)}
        self.health = Health()
        self.answers = 0
        self.rating = None

    def on_update(self, msg_type, record):
        self.answers += 1
        return {"device": "win07", "running": "1.0.0", "state": proto_ota.ST_RECEIVING,
                "release_id": record["release_id"], "file": 1, "offset": self.answers * 768}

    def head(self):
        return None if self.rating is None else (self.rating["counter"], b"", b"")

    def next_rating(self):
        return self.rating

    def update_news(self):
        return False

    def status_due(self):
        return False

    def on_online(self):
        pass


def test_one_update_state_in_flight_leaves_the_rating_its_slot_and_the_latest_state_follows():
    sock, dev = FakeSocket(), Device()
    t = MqttTransport(dev, Net(sock), HALL, {"host": "broker", "password": "x"}, lambda: 0)
    t.step()
    sock.inbox.extend(CONNACK)
    t.step()
    assert t.client.connected
    sock.take()
    update = topics.device_topic(HALL, "win07", "update")
    for i in range(12):                      # twelve chunks, no PUBACK for any state yet
        sock.inbox.extend(publish(update, chunk(i * 768), 200 + i))
        t.step()
    states = [p for kind, topic, p in sent_packets(sock) if kind == "publish" and
              topic.endswith("/update_state")]
    assert dev.answers == 12 and len(states) == 1
    dev.rating = {"device": "win07", "counter": 5, "source": 1, "mac": b"\x01" * 8}
    t.step()
    t.step()                                 # (what a turn queues goes out on the next)
    sent = sent_packets(sock)
    assert [topic for kind, topic, _ in sent if kind == "publish"] == \
        [topics.device_topic(HALL, "win07", "rating")]      # the rating goes at once
    sock.inbox.extend(mqtt_wire.puback_packet(states[0]))  # the state's PUBACK
    t.step()
    t.step()
    last = [p for kind, topic, p in sent_packets(sock) if kind == "publish" and
            topic.endswith("/update_state")]
    assert len(last) == 1
    payload = t.client.inflight[last[0]][1]
    assert jsonform.from_json(schema.UPDATE_STATE, payload)["offset"] == 12 * 768   # the latest
