"""MQTT bridge end to end: a real Mosquitto, the real bridge and store, a paho client posing as a device."""

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings, strategies as st

from gateway.config import MqttConfig
from gateway import fastcodec
from gateway.intake import ack_record
from gateway.mqtt_bridge import MqttBridge
from gateway.registry import Registry
from gateway.rejects import Rejections
from gateway.committer import GroupCommitter
from gateway.store import Store
from gw_support import HALL, FakeDevice, device_key, make_rating
from protocol import auth, codec, errors, mqtt_wire, schema, topics, vocab

WAIT = 10.0


@pytest.fixture
def gateway(mosquitto_broker, tmp_path):
    alarms = []
    registry = Registry([{"id": d, "window": w, "key": device_key(d).hex(), "board": "button5"}
                         for d, w in (("dev-a", "A01"), ("dev-b", "A02"))])
    store = Store(str(tmp_path / "outbox.db"), on_alarm=lambda n, d: alarms.append(n))
    committer = GroupCommitter(store)
    rejections = Rejections(alarm=lambda n, d: alarms.append(n))
    rated = []
    cfg = MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port, client_id="gw-test")
    bridge = MqttBridge(cfg, HALL, registry, committer, rejections, store=store,
                        enrich=lambda r: {"matter_name": "营业执照变更", "staff_name": "李堃"},
                        on_rating=lambda r, res, enrichment: rated.append((r["counter"], res)))
    bridge.start()
    assert bridge.connected.wait(WAIT)
    bridge.alarms, bridge.store, bridge.rejections_, bridge.rated = alarms, store, rejections, rated
    yield bridge
    bridge.stop()
    committer.close()
    store.close()


@pytest.fixture
def device(mosquitto_broker, gateway):
    d = FakeDevice(mosquitto_broker, "dev-a")
    yield d
    d.close()


def test_rating_is_acked_after_commit_and_duplicate_after(gateway, device):
    rating = make_rating("dev-a", 1)
    device.rate(rating)
    ack = device.ack()
    assert ack["counter"] == 1 and ack.get("result", 0) == vocab.ACK_STORED
    # Signed under dev-a's key (device.ack() only returns ACKs that verify) and no other key.
    # Bound to the rating it answers (SPEC 7.5): it verifies with that rating's MAC alone.
    assert auth.verify_ack(device_key("dev-a"), "dev-a", ack, rating["mac"]) and device.forged == []
    assert not auth.verify_ack(device_key("dev-b"), "dev-a", ack, rating["mac"])
    assert not auth.verify_ack(device_key("dev-a"), "dev-a", ack, make_rating("dev-a", 1, level=3)["mac"])
    (item,) = gateway.store.upload_batch(10)   # committed before the ACK went out
    assert item["record"]["rating_id"] == "dev-a:1"
    assert item["record"]["hall"] == HALL and item["record"]["matter_name"] == "营业执照变更"
    device.rate(rating)
    assert device.ack()["result"] == vocab.ACK_DUPLICATE
    assert gateway.store.backlog()["ratings"] == 1
    assert gateway.rated[0] == (1, (vocab.ACK_STORED, errors.R_OK))


def test_bad_inputs_are_rejected_counted_and_valid_ones_still_pass(gateway, device):
    rej = gateway.rejections_
    device.rate(make_rating("dev-a", 10))
    assert device.ack()["counter"] == 10
    # 1 not JSON at all: counted, kept, no ACK possible.
    device.publish("rating", b"\xff\xfe not json")
    # 2 decodes far enough to name its counter and a MAC but breaks a range: kept, answered
    # REJECTED (bound to the MAC it carried), which no device releases on.
    device.publish("rating", json.dumps({"device": "dev-a", "counter": 11, "source": 1, "overall": 9,
                                         "mac": "ab" * 16}))
    ack = device.ack()
    assert (ack["counter"], ack["result"], ack["reason"]) == (11, vocab.ACK_REJECTED, errors.R_OUT_OF_RANGE)
    # 3 bad MAC: REJECTED, not a releasing dead letter.
    forged = make_rating("dev-a", 12)
    forged["mac"] = bytes(16)
    device.rate(forged)
    ack = device.ack()
    assert (ack["counter"], ack["result"], ack["reason"]) == (12, vocab.ACK_REJECTED, errors.R_BAD_MAC)
    # 4 replay: a counter below the committed mark with new content.
    device.rate(make_rating("dev-a", 9, level=vocab.VERY_DISSATISFIED))
    ack = device.ack()
    assert (ack["counter"], ack["result"], ack["reason"]) == (9, vocab.ACK_DEAD_LETTER, errors.R_REPLAY)
    # 5 a rating of another device sent on dev-a's topic: REJECTED, wrong device.
    device.rate(make_rating("dev-b", 1))
    ack = device.ack()
    assert (ack["counter"], ack["result"], ack["reason"]) == (1, vocab.ACK_REJECTED, errors.R_WRONG_DEVICE)
    # 6 an unknown device's topic: counted and alarmed, nothing else.
    stranger = FakeDevice(_broker_of(gateway), "ghost")
    stranger.rate(make_rating("ghost", 1))
    # 7 a rating breaking a rule: 'not rated' with a level.
    device.rate(make_rating("dev-a", 13, source=vocab.SRC_NOT_RATED, overall=2))
    ack = device.ack()
    assert (ack["counter"], ack["result"], ack["reason"]) == (13, vocab.ACK_DEAD_LETTER, errors.R_BAD_STATE)
    # A valid rating after all that still goes through.
    device.rate(make_rating("dev-a", 14))
    assert device.ack()["result"] == vocab.ACK_STORED
    deadline = time.monotonic() + WAIT
    while rej.count("mqtt", errors.R_UNKNOWN_DEVICE) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    stranger.close()
    assert rej.count("mqtt", errors.R_MALFORMED) == 1
    assert rej.count("mqtt", errors.R_OUT_OF_RANGE) == 1
    assert rej.count("mqtt", errors.R_BAD_MAC) == 1
    assert rej.count("mqtt", errors.R_UNKNOWN_DEVICE) == 1
    assert rej.count("mqtt", errors.R_WRONG_DEVICE) == 1
    assert rej.count("mqtt", errors.R_BAD_STATE) == 1
    assert {"bad_mac", "replay", "unknown_device"} <= set(gateway.alarms)
    reasons = sorted(d["reason"] for d in gateway.store.dead_letters())
    assert reasons == sorted(["malformed", "out_of_range", "bad_mac", "replay", "wrong_device", "bad_state"])
    assert sorted(i["item_id"] for i in gateway.store.upload_batch(10)) == ["dev-a:10", "dev-a:14"]


def test_junk_rides_in_the_group_commit_with_the_ratings_around_it(gateway, device, monkeypatch):
    """An undecodable rating costs no transaction (fsync) of its own: it is dead-lettered in the
    group commit of whatever arrives with it, so a flood of junk cannot stall valid ratings."""
    groups = []
    real = gateway.store.commit_ratings
    guarded = []
    real_guarded = gateway.store._guarded

    def spy(items):
        groups.append([type(item[0]).__name__ for item in items])
        return real(items)

    def spy_guarded(work):   # every write transaction of the store goes through _guarded
        guarded.append(1)
        return real_guarded(work)
    monkeypatch.setattr(gateway.store, "commit_ratings", spy)
    monkeypatch.setattr(gateway.store, "_guarded", spy_guarded)
    for n in range(1, 4):
        device.publish("rating", json.dumps({"device": "dev-a", "counter": n, "overall": 9,
                                             "mac": "%032x" % n}))
    assert [device.ack()["result"] for _ in range(3)] == [vocab.ACK_REJECTED] * 3
    device.rate(make_rating("dev-a", 4))
    assert device.ack()["result"] == vocab.ACK_STORED
    dead = gateway.store.dead_letters()
    assert [(d["device"], d["reason"]) for d in dead] == [("dev-a", "out_of_range")] * 3
    assert json.loads(dead[0]["payload"])["counter"] == 3
    assert len(guarded) == len(groups)          # no write outside the group commits
    assert sorted(sum(groups, [])) == ["RawPayload"] * 3 + ["dict"]


def _sent_publishes(chunks):
    """(topic, payload, qos) of every PUBLISH in the bytes the bridge queued on the ingest link."""
    buf, out, pos = b"".join(chunks), [], 0
    while pos < len(buf):
        first, start, pos = mqtt_wire.parse_packet(buf, pos)
        topic, pid, at = mqtt_wire.publish_fields(first, buf, start, pos)
        out.append((topic, buf[at:pos], (first >> 1) & 3))
    return out


def test_a_group_is_committed_when_the_ingest_link_ends_it_then_every_rating_is_acked(tmp_path):
    """The bridge's batching on its own (no broker): ratings and junk join one group until the
    ingest connection has handled a whole read; then one transaction, then the ACKs (QoS 0)."""
    registry = Registry([{"id": "dev-a", "window": "A01", "key": device_key("dev-a").hex()}])
    store = Store(str(tmp_path / "outbox.db"))
    committer = GroupCommitter(store)
    bridge = MqttBridge(MqttConfig(host="127.0.0.1", port=1, client_id="gw-unit"), HALL, registry,
                        committer, Rejections())
    sent, commits = [], []
    bridge.ingest.send = sent.append
    real = store.commit_ratings
    store.commit_ratings = lambda items: commits.append(len(items)) or real(items)
    topic = topics.device_topic(HALL, "dev-a", "rating")
    try:
        for n in (1, 2):
            bridge._on_ingest(topic, codec.to_json(schema.RATING, make_rating("dev-a", n)))
        bridge._on_ingest(topic, b'{"device":"dev-a","counter":3,"overall":9,"mac":"%s"}' % (b"cd" * 16))
        bridge._on_ingest(topic, codec.to_json(schema.RATING, make_rating("dev-a", 4)))
        assert commits == [] and sent == [] and store.backlog()["ratings"] == 0
        bridge._on_group()                      # the read is handled: commit, then ACK
        assert commits == [4] and store.backlog()["ratings"] == 3
        published = _sent_publishes(sent)
        assert {(t, q) for t, _, q in published} == {(topics.device_topic(HALL, "dev-a", "ack"), 0)}
        acks = [codec.from_json(schema.ACK, payload) for _, payload, _ in published]
        assert [(a["counter"], a.get("result", vocab.ACK_STORED)) for a in acks] == [
            (1, vocab.ACK_STORED), (2, vocab.ACK_STORED), (3, vocab.ACK_REJECTED), (4, vocab.ACK_STORED)]
        macs = [make_rating("dev-a", 1)["mac"], make_rating("dev-a", 2)["mac"], b"\xcd" * 16,
                make_rating("dev-a", 4)["mac"]]
        assert all(auth.verify_ack(device_key("dev-a"), "dev-a", a, m) for a, m in zip(acks, macs))
        bridge._on_group()                      # nothing pending: no empty transaction
        assert commits == [4]
        bridge._on_ingest(topic, codec.to_json(schema.RATING, make_rating("dev-a", 5)))
        bridge._on_ingest_down()                # a lost connection commits what it has
        assert commits == [4, 1] and len(_sent_publishes(sent)) == 5
        status = topics.device_topic(HALL, "dev-a", "status")
        bridge._on_ingest(status, b"{}")        # not the ingest link's business: ignored
        assert bridge._pending == [] and bridge.rejections.total() == 1   # only the junk rating
    finally:
        committer.close()
        store.close()


@settings(max_examples=200, deadline=None)
@given(device=st.from_regex(r"[A-Za-z0-9._-]{1,24}", fullmatch=True), counter=st.integers(0, 2 ** 32 - 1),
       result=st.sampled_from(sorted(vocab.ACK_NAMES)),
       reason=st.integers(0, 255), key=st.binary(min_size=32, max_size=32), signed=st.booleans(),
       rating_mac=st.binary(min_size=16, max_size=16),
       generation=st.one_of(st.just(0), st.integers(1, 2 ** 64 - 1)))
def test_ack_json_is_what_codec_writes_and_its_mac_is_protocols(device, counter, result, reason, key, signed,
                                                                 rating_mac, generation):
    record = {"device": device, "counter": counter, "result": result, "reason": reason}
    covered = dict(record, generation=generation)
    if signed:
        record["mac"] = auth.ack_mac(key, device, covered, rating_mac).hex()
    record["generation"] = generation
    ack = ack_record(device, counter, (result, reason), key if signed else None, rating_mac, generation)
    assert fastcodec.ack_json(ack) == codec.dumps(record)


def test_rejections_count_exactly_from_many_threads():
    import sys
    import threading
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)          # switch threads as often as possible: races show up
    try:
        rej = Rejections(interval_s=3600.0)

        def work():
            for _ in range(5000):
                rej.reject("mqtt", errors.R_MALFORMED, "x")
                rej.snapshot()
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert rej.total() == 20000 and rej.snapshot() == {("mqtt", "malformed"): 20000}


def _broker_of(gateway):
    class B:
        host, port = gateway.cfg.host, gateway.cfg.port
    return B


def test_status_availability_and_retained_registry(gateway, device):
    status = {"device": "dev-a", "firmware": "1.2.0", "outbox": 3, "counter": 41,
              "errors": [{"name": "flash", "count": 2}]}
    device.publish("availability", "online")
    deadline = time.monotonic() + WAIT
    # status goes at QoS 0 and "connected" can come before the gateway's subscriptions: send it
    # until the gateway has heard it, as a device does every status interval
    while gateway.registry.get("dev-a").firmware != "1.2.0" and time.monotonic() < deadline:
        device.publish("status", codec.to_json(schema.STATUS, status))
        time.sleep(0.2)
    dev = gateway.registry.get("dev-a")
    assert dev.online and dev.outbox == 3 and dev.errors["device.flash"] == 2
    device.publish("availability", "offline")
    deadline = time.monotonic() + WAIT
    while gateway.registry.get("dev-a").online and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not gateway.registry.get("dev-a").online
    assert device.wait_for("state") == b"online"
    gateway.publish_devices()
    devices = json.loads(device.wait_for("devices", lambda p: b"1.2.0" in p))
    assert [d["id"] for d in devices] == ["dev-a", "dev-b"]
    assert all("key" not in d for d in devices)
    device.publish("status", b"{\"device\": 5}")
    deadline = time.monotonic() + WAIT
    while gateway.rejections_.total() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gateway.rejections_.count("mqtt", errors.R_MALFORMED) == 1


def test_context_is_retained_and_republished_after_broker_restart(mosquitto_broker, gateway):
    context = {"case_id": 5, "window": "A01", "staff_id": "1001", "staff_name": "王喆",
               "matter_name": "不动产登记", "serials": ["SN1", "SN2"], "node": vocab.NODE_COMPLETION}
    gateway.publish_context("dev-a", context)
    gateway.publish_config("dev-a", {"version": 3, "rating_timeout_s": 60})
    mosquitto_broker.restart()       # no persistence: the broker forgot every retained message
    deadline = time.monotonic() + WAIT
    while gateway.stats["connects"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gateway.connected.wait(WAIT)
    late = FakeDevice(mosquitto_broker, "dev-a")   # subscribes after the restart
    try:
        got = codec.from_json(schema.CONTEXT, late.wait_for("context"))
        assert got["staff_name"] == "王喆" and got["serials"] == ["SN1", "SN2"]
        assert codec.from_json(schema.CONFIG, late.wait_for("config"))["version"] == 3
        assert late.wait_for("state") == b"online"
        gateway.publish_context("dev-a", None)
        assert late.wait_for("context", lambda p: p == b"") == b""
    finally:
        late.close()


def test_last_will_says_offline_when_the_gateway_dies(mosquitto_broker, gateway, device):
    assert device.wait_for("state") == b"online"
    import socket
    gateway.client.socket().shutdown(socket.SHUT_RDWR)  # a crash: no DISCONNECT, the broker sends the will
    deadline = time.monotonic() + WAIT
    while ("state", b"offline") not in device.history and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ("state", b"offline") in device.history
    # paho reconnects by itself and says online again
    def states():
        return [p for k, p in device.history if k == "state"]
    def online_after_the_will():
        seen = states()
        last_offline = len(seen) - 1 - seen[::-1].index(b"offline")
        return b"online" in seen[last_offline + 1:]
    deadline = time.monotonic() + WAIT
    while not online_after_the_will() and time.monotonic() < deadline:
        time.sleep(0.01)
    # online again after the will (a reconnect may say it more than once: the state is retained)
    assert online_after_the_will() and states()[-1] == b"online"


def test_ratings_sent_while_the_gateway_is_away_wait_in_the_broker(mosquitto_broker, tmp_path):
    """The ingest connection's session is persistent: QoS 1 ratings published while the gateway is
    stopped are delivered when it comes back, committed once, and ACKed to the device."""
    registry = Registry([{"id": "dev-a", "window": "A01", "key": device_key("dev-a").hex()}])
    store = Store(str(tmp_path / "outbox.db"))
    committer = GroupCommitter(store)
    cfg = MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port, client_id="gw-away")

    def bridge():
        b = MqttBridge(cfg, HALL, registry, committer, Rejections(), store=store)
        b.start()
        assert b.connected.wait(WAIT)
        return b
    device = FakeDevice(mosquitto_broker, "dev-a")
    first = bridge()
    try:
        device.rate(make_rating("dev-a", 1))
        assert device.ack()["counter"] == 1
        first.stop()
        for n in (2, 3, 4):                      # nobody is there to read them but the broker
            device.rate(make_rating("dev-a", n))
        assert store.backlog()["ratings"] == 1
        second = bridge()
        try:
            assert sorted(device.ack()["counter"] for _ in range(3)) == [2, 3, 4]
            assert store.backlog()["ratings"] == 4 and store.stats["duplicates"] == 0
            assert second.ingest.stats["connects"] == 1 and second.ingest.stats["publishes"] == 3
        finally:
            second.stop()
    finally:
        device.close()
        committer.close()
        store.close()


def test_an_oversized_rating_is_kept_as_evidence_and_answered_rejected_and_the_next_one_passes(gateway, device):
    """A rating far past the intake's packet limit is never buffered whole; its first 2 KiB name
    its counter and MAC, so it is answered: ACK_REJECTED (never authenticated, so never released,
    SPEC 7.3), kept as a dead letter; the ratings after it still pass."""
    record = json.loads(codec.to_json(schema.RATING, make_rating("dev-a", 21)))
    record["note"] = "李堃𠀀" * 20000                  # about 200 KB on the wire
    device.publish("rating", json.dumps(record, ensure_ascii=False))
    ack = device.ack()
    assert (ack["counter"], ack["result"], ack["reason"]) == (21, vocab.ACK_REJECTED, errors.R_OVERSIZE)
    device.rate(make_rating("dev-a", 22))
    assert device.ack()["result"] == vocab.ACK_STORED
    (dead,) = gateway.store.dead_letters()
    assert dead["reason"] == "oversize" and len(dead["payload"]) <= 2048
    assert gateway.ingest.stats["oversize"] == 1 and gateway.rejections_.count("mqtt", errors.R_OVERSIZE) == 1
    assert gateway.store.stored_ids() == ["dev-a:22"]


def test_a_session_kept_from_an_older_gateway_does_not_deliver_ratings_twice(mosquitto_broker, tmp_path):
    """A gateway before the ingest link subscribed paho's persistent session to the ratings; the
    bridge drops that subscription, so each rating arrives once, on the ingest link."""
    old = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gw-upgrade", clean_session=False)
    old.connect(mosquitto_broker.host, mosquitto_broker.port)
    old.loop_start()
    old.subscribe([(t, 1) for t in topics.gateway_subscriptions(HALL)])[1]
    time.sleep(0.2)
    old.disconnect()
    old.loop_stop()
    registry = Registry([{"id": "dev-a", "window": "A01", "key": device_key("dev-a").hex()}])
    store = Store(str(tmp_path / "outbox.db"))
    committer = GroupCommitter(store)
    bridge = MqttBridge(MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port,
                                   client_id="gw-upgrade"), HALL, registry, committer, Rejections(),
                        store=store)
    bridge.start()
    device = FakeDevice(mosquitto_broker, "dev-a")
    try:
        assert bridge.connected.wait(WAIT)
        time.sleep(0.2)                         # the UNSUBSCRIBE went before the first rating
        for n in (1, 2, 3):
            device.rate(make_rating("dev-a", n))
            assert device.ack()["counter"] == n
        time.sleep(0.3)                         # time for a second copy to arrive, if any came
        assert bridge.ingest.stats["publishes"] == 3 and bridge.stats["ignored"] == 0
        assert bridge.stats["messages"] == 0 and store.stats["duplicates"] == 0
    finally:
        device.close()
        bridge.stop()
        committer.close()
        store.close()


def test_a_clean_stop_says_offline_even_while_the_ingest_link_is_down(mosquitto_broker, tmp_path):
    store = Store(str(tmp_path / "outbox.db"))
    committer = GroupCommitter(store)
    bridge = MqttBridge(MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port,
                                   client_id="gw-half"), HALL, Registry([]), committer, Rejections(),
                        store=store)

    def refuse(addr, timeout):
        raise ConnectionRefusedError("ingest refused for the test")
    bridge.ingest.connect = refuse
    watcher = FakeDevice(mosquitto_broker, "watcher")
    try:
        bridge.start()
        deadline = time.monotonic() + WAIT
        while watcher.messages.get("state") != b"online" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watcher.messages.get("state") == b"online" and not bridge.connected.is_set()
        bridge.stop()
        deadline = time.monotonic() + WAIT
        while watcher.messages.get("state") != b"offline" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watcher.messages["state"] == b"offline"
    finally:
        watcher.close()
        committer.close()
        store.close()
