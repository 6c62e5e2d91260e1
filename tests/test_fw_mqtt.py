"""Our MQTT client and the MQTT transport against a real Mosquitto (fixture), with paho-mqtt
playing the gateway."""

import json
import socket
import sys
import time
from pathlib import Path

import paho.mqtt.client as paho

sys.path.insert(0, str(Path(__file__).parent))
from fw_polling import now_ms, run_until  # noqa: E402
from fw_support import Rig, check_rating  # noqa: E402

from protocol import codec, schema, topics  # noqa: E402
from firmware.main import attach_transport  # noqa: E402
from firmware.mqtt_client import MqttClient  # noqa: E402
from firmware.transport_mqtt import rating_id_of  # noqa: E402

FONT = str(Path(__file__).resolve().parent.parent / "firmware" / "fonts" / "unifont16.bin")
HALL = "sz-futian"


def factory(host, port):
    return socket.create_connection((host, port), 2)


class Gateway:
    """A paho client standing in for the hall gateway."""

    def __init__(self, broker, device="win07", user=None):
        self.got = []
        self.avail = []
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="gw-test")
        if user is not None:
            self.c.username_pw_set(*user)
        self.c.on_message = self._msg
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(topics.device_topic(HALL, device, "rating"), 1)
        self.c.subscribe(topics.device_topic(HALL, device, "availability"), 1)
        self.c.subscribe(topics.device_topic(HALL, device, "status"), 0)
        self.status = []
        self.c.loop_start()
        time.sleep(0.2)

    def _msg(self, client, userdata, m):
        kind = m.topic.rsplit("/", 1)[1]
        text = m.payload.decode()
        if kind == "rating":
            self.got.append(text)
        elif kind == "availability":
            self.avail.append(text)
        else:
            self.status.append(json.loads(text))

    def send(self, kind, text, retain=False):
        self.c.publish(topics.device_topic(HALL, "win07", kind), text, 1, retain).wait_for_publish(5)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_client_connect_publish_subscribe_keepalive(mosquitto_broker):
    got = []
    c = MqttClient(factory, mosquitto_broker.host, mosquitto_broker.port, "t1", now_ms,
                   keepalive_s=1, on_message=lambda t, p, r: got.append((t, bytes(p))))
    c.subscribe("t/echo", 1)
    assert run_until(lambda: c.connected, [c.step])
    time.sleep(0.2)
    c.step()
    pid = c.publish("t/echo", "好差评 王喆", 1)
    assert pid and not c.is_acked(pid)
    assert run_until(lambda: c.is_acked(pid) and got, [c.step])
    assert got == [("t/echo", "好差评 王喆".encode())]
    # 3 s of silence with a 1 s keepalive: pings keep the session, the broker never drops us
    run_until(lambda: False, [c.step], timeout=3.0)
    assert c.stats["pings"] >= 3 and c.stats["drops"] == 0 and c.connected
    c.disconnect()


def test_last_will_says_offline_when_the_link_dies(mosquitto_broker, tmp_path):
    gw = Gateway(mosquitto_broker)
    rig = Rig("five_button", base=str(tmp_path), clock=now_ms, net="tcp",
              extra=mqtt_cfg(mosquitto_broker))
    attach_transport(rig.dev, rig.board, rig.cfg)
    assert run_until(lambda: gw.avail == ["online"], [rig.dev.step])
    rig.board.net.drop()                       # the access point vanishes: no DISCONNECT sent
    assert run_until(lambda: gw.avail[-1:] == ["offline"], [], timeout=5)
    assert run_until(lambda: gw.avail[-1:] == ["online"], [rig.dev.step], timeout=10)  # Wi-Fi back
    gw.close()


def mqtt_cfg(broker):
    return {"transport": "mqtt", "hall": HALL,
            "mqtt": {"host": broker.host, "port": broker.port, "keepalive": 5}}


def test_rating_survives_a_broker_restart_and_a_drop_mid_publish(mosquitto_broker, tmp_path):
    gw = Gateway(mosquitto_broker)
    rig = Rig("five_button", base=str(tmp_path), clock=now_ms, net="tcp", font=FONT,
              extra=mqtt_cfg(mosquitto_broker))
    tr = attach_transport(rig.dev, rig.board, rig.cfg)
    step = rig.dev.step
    assert run_until(lambda: tr.client.connected, [step])
    ctx = {"case_id": 41, "node": 3, "serials": ["SZ2024-0041"], "staff_name": "朱镕",
           "matter_name": "居住证签注"}
    gw.send("context", codec.to_json(schema.CONTEXT, ctx), retain=True)
    assert run_until(lambda: rig.state == "case", [step])
    time.sleep(0.6)                            # past the misuse guard
    rig.board.press(1)
    # the press is stored, then the link drops right after the publish went out
    orig_publish = tr.client.publish

    def publish_then_drop(*a, **k):
        pid = orig_publish(*a, **k)
        if a[0].endswith("/rating"):
            tr.client._flush()
            rig.board.net.drop()
        return pid
    tr.client.publish = publish_then_drop
    step()
    assert rig.dev.outbox.depth == 1 and rig.state == "thanks"
    tr.client.publish = orig_publish
    mosquitto_broker.restart()                 # and the broker restarts too (no persistence)
    gw.close()
    gw = Gateway(mosquitto_broker)
    assert run_until(lambda: gw.got, [step], timeout=20)
    ids = {rating_id_of(text) for text in gw.got}
    assert ids == {"win07:1"}                  # identified once by its id, however often it came
    rec = codec.from_json(schema.RATING, gw.got[-1])
    check_rating(rec)
    assert rec["overall"] == 2 and rec["case_id"] == 41
    # anyone else on the broker acknowledges: unsigned or wrongly signed, the rating stays (SPEC 7.5)
    gw.send("ack", codec.to_json(schema.ACK, {"device": "win07", "counter": 1, "result": 0}))
    gw.send("ack", codec.to_json(schema.ACK, dict(rig.signed_ack(1), mac=bytes(16))))
    assert run_until(lambda: rig.dev.health.errors.get("ack_forged") == 2, [step])
    assert rig.dev.outbox.depth == 1
    # the gateway acknowledges: the outbox lets it go, and nothing more is sent
    gw.send("ack", codec.to_json(schema.ACK, rig.signed_ack(1)))
    assert run_until(lambda: rig.dev.outbox.depth == 0, [step])
    n = len(gw.got)
    run_until(lambda: False, [step], timeout=1.0)
    assert len(gw.got) == n
    # a retained empty context withdraws a case; bad JSON is counted, not fatal
    gw.send("context", codec.to_json(schema.CONTEXT, dict(ctx, case_id=42)), retain=True)
    assert run_until(lambda: rig.state == "case", [step])
    gw.send("config", "{not json")
    gw.send("context", "", retain=True)
    assert run_until(lambda: rig.state == "idle", [step])
    assert rig.dev.health.errors.get("bad_message") == 1
    # CONFIG over MQTT: a short heartbeat interval brings a STATUS
    gw.send("config", codec.to_json(schema.CONFIG, {"version": 5, "status_interval_s": 1}))
    assert run_until(lambda: gw.status, [step], timeout=5)
    assert gw.status[0]["device"] == "win07" and gw.status[0].get("outbox", 0) == 0 and gw.status[0]["counter"] == 1
    gw.close()


def test_mqtt_password_is_the_gateway_formula_on_both_runtimes(micropython):
    import hashlib
    import hmac
    from binascii import unhexlify
    from protocol.auth import mqtt_password
    from fw_support import KEY_HEX
    key = unhexlify(KEY_HEX)
    # the formula the gateway's password files have always used: existing registries stay valid
    want = hmac.new(key, b"hall-mqtt-password/1", hashlib.sha256).hexdigest()[:32]
    assert mqtt_password(key) == want and len(want) == 32
    out = micropython("from protocol.auth import mqtt_password\nprint(mqtt_password(b'\\x5c' * 32))\n"
                      ).check().stdout.split()
    assert out == [want]


def test_device_logs_in_with_the_password_files_of_the_gateway(mosquitto_factory, tmp_path):
    """The broker runs with the files gateway/mosquitto_acl.py writes from the registry: the
    device's own key gets it in (and its rating out); the same id with another key does not."""
    from gateway.mosquitto_acl import write_files
    from gateway.registry import Registry
    from fw_support import KEY_HEX
    reg = Registry([{"id": "win07", "window": "07", "key": KEY_HEX, "transport": "mqtt"}])
    paths = write_files(str(tmp_path / "acl"), HALL, reg, "gateway", "gw-secret")
    broker = mosquitto_factory(allow_anonymous=False, extra_config="password_file %s\nacl_file %s\n"
                               % (paths["password_file"], paths["acl_file"]))
    gw = Gateway(broker, user=("gateway", "gw-secret"))
    rig = Rig("five_button", base=str(tmp_path), clock=now_ms, net="tcp", extra=mqtt_cfg(broker))
    tr = attach_transport(rig.dev, rig.board, rig.cfg)
    assert run_until(lambda: tr.client.connected and gw.avail == ["online"], [rig.dev.step])
    rig.context(51)
    time.sleep(0.6)                            # past the misuse guard
    rig.act("rate", "overall", 1)
    assert rig.state == "thanks"
    assert run_until(lambda: gw.got, [rig.dev.step])
    assert {rating_id_of(text) for text in gw.got} == {"win07:1"}
    tr.client.disconnect()
    # another device key under the same id: refused by the broker, never connected
    wrong = Rig("five_button", base=str(tmp_path), clock=now_ms, net="tcp",
                extra=dict(mqtt_cfg(broker), key="a5" * 32))
    tw = attach_transport(wrong.dev, wrong.board, wrong.cfg)
    assert run_until(lambda: tw.client.stats["refused"] >= 1, [wrong.dev.step])
    assert not tw.client.connected and tw.client.stats["connects"] == 0
    # an explicit mqtt.user / mqtt.password from the config is used as given
    explicit = Rig("five_button", base=str(tmp_path), clock=now_ms, net="tcp",
                   extra=dict(mqtt_cfg(broker), key="a5" * 32,
                              mqtt={"host": broker.host, "port": broker.port,
                                    "user": "gateway", "password": "gw-secret"}))
    te = attach_transport(explicit.dev, explicit.board, explicit.cfg)
    assert run_until(lambda: te.client.connected, [explicit.dev.step])
    te.client.disconnect()
    gw.close()
