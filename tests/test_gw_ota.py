"""Over-the-air updates, the gateway's side: releases from `flash.py build` bundles (gateway.ota),
the RS-485 master serving a rollout with ratings first (gateway.rs485_master + gateway.rollout),
and the operator-only routes (gateway.ota_api). Devices are protocol.link.SlaveLink fakes on a
loopback socket (tests/test_gw_rs485.py) with the update double of tests/ota_double.py."""

import hashlib
import os

import pytest

from gateway import ota, rollout
from hall_simulator.light_update import UpdateDouble
from protocol import ota as proto
from protocol import schema
from test_gw_rs485 import FakeDevices, rig  # noqa: F401 (the fixture)
from gw_support import make_rating
from tools.flashkit.bundle import Bundle

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
UPDATES = (schema.UPDATE_OFFER, schema.UPDATE_CHUNK, schema.UPDATE_COMMIT)


def bundle(tmp, version="1.1.0", size=1500, name="b"):
    files = {"firmware/app.py": os.urandom(size), "main.py": b"from firmware import main\n",
             "fonts/ming.bin": b"\x00" * 700}
    return Bundle(version, files, ["five_button"]).save(os.path.join(str(tmp), name))


# --- releases --------------------------------------------------------------------------------
def test_a_release_is_the_bundle_macd_under_the_halls_key(tmp_path):
    path = bundle(tmp_path)
    rel = ota.load(path, KEY)
    zipped = ota.load(Bundle(*_bundle_args(path)).save(str(tmp_path / "b.zip")), KEY)
    assert zipped.id == rel.id
    assert proto.verify_release(KEY, rel.manifest, rel.offer["mac"])
    assert not proto.verify_release(OTHER_KEY, rel.manifest, rel.offer["mac"])
    assert rel.id == hashlib.sha256(rel.manifest).hexdigest() and rel.version == "1.1.0"
    assert [len(d) for d in rel.data[1:]] == [f[2] for f in proto.parse_manifest(rel.manifest)["files"]]


def _bundle_args(path):
    from tools.flashkit.bundle import load
    b = load(path)
    return b.version, b.files, b.boards


def test_a_bundle_whose_file_does_not_match_its_manifest_is_refused(tmp_path):
    path = bundle(tmp_path)
    with open(os.path.join(path, "main.py"), "ab") as f:
        f.write(b"# changed after the build\n")
    with pytest.raises(ota.ReleaseError, match="main.py"):
        ota.load(path, KEY)
    releases = ota.Releases(None, str(tmp_path))
    with pytest.raises(ota.ReleaseError, match="release_key"):
        releases.add(bundle(tmp_path, name="c"))
    with pytest.raises(ota.ReleaseError):
        ota.release_key({"ota": {"release_key": "ab" * 16}})


# --- the bus --------------------------------------------------------------------------------
class UpdatingDevices(FakeDevices):
    """FakeDevices that also take updates (each through its UpdateDouble) and log every request."""

    def __init__(self, addresses, keys, **kw):
        self.doubles = dict((a, UpdateDouble("dev-%d" % a, keys.get(a, KEY))) for a in addresses)
        self.requests = []           # (address, type) in the order heard
        super().__init__(addresses, **kw)

    def _answer(self, address, link, req):
        self.requests.append((address, req.type))
        if req.error is None and req.type in UPDATES:
            return link.reply(req, schema.UPDATE_STATE, self.doubles[address].handle(req.type, req.record))
        if req.error is None and req.type == schema.POLL and not self.outbox[address] and \
                not req.record.get("want_status"):
            news = self.doubles[address].news()
            if news is not None:
                self.heard[address].append(req.type)
                return link.reply(req, schema.UPDATE_STATE, news)
        return super()._answer(address, link, req)


def updating_rig(rig, tmp_path, addresses, keys=None, canary=(1,), share=20.0):
    """A rollout of a small release on a short bus; `share` well above the default, so the tests
    of the flow take few rounds (the share's own test keeps the default)."""
    made = rig(addresses)
    made["fake"].close()
    fake = UpdatingDevices(addresses, keys or {})
    import serial
    made["master"].port.close()
    made["master"].port = serial.serial_for_url(fake.url, baudrate=115200, timeout=0.005)
    made["fake"] = fake
    releases = ota.Releases(KEY, str(tmp_path))
    rel = releases.add(bundle(tmp_path))
    cases = set()
    ro = rollout.Rollouts(str(tmp_path), releases, busy=lambda d: d in cases, firmware=lambda d: "1.0.0")
    made["master"].updates = ro
    made["master"].ota_share = share
    r = ro.start(rel.id, ["dev-%d" % a for a in addresses], ["dev-%d" % a for a in canary])
    made.update(rollouts=ro, release=rel, rollout=r, cases=cases)
    return made


def rounds_until(master, done, limit=2000):
    for n in range(limit):
        if done():
            return n
        master.round()
    raise AssertionError("not done after %d rounds: %s" % (limit, master.updates.snapshot()))


def test_ratings_first_a_chunk_only_after_an_empty_poll_and_one_per_device_per_round(rig, tmp_path):
    m = updating_rig(rig, tmp_path, [1, 2, 3], canary=(1, 2, 3))
    master, fake = m["master"], m["fake"]
    per_round = []
    pressed = {}
    for n in range(400):
        if n in (20, 45, 90):             # citizens rate at devices 1 and 2 during the transfer
            for a in (1, 2):
                c = len(pressed) + 1
                fake.outbox[a].append(make_rating("dev-%d" % a, c))
                pressed[("dev-%d" % a, c)] = n
        start = len(fake.requests)
        master.round()
        per_round.append(fake.requests[start:])
    committed = {}
    for n, heard in enumerate(per_round):
        for a in (1, 2, 3):
            mine = [t for (addr, t) in heard if addr == a]
            assert sum(t in UPDATES for t in mine) <= 1          # one update exchange a round
            if any(t in UPDATES for t in mine):                   # only after a POLL found nothing
                i = next(i for i, t in enumerate(mine) if t in UPDATES)
                assert mine[i - 1] == schema.POLL and schema.ACK not in mine
    for counter, _ in m["rated"]:
        committed.setdefault(counter, None)
    # every rating pressed during the transfer was committed by its device's next turn: the same
    # round an idle bus takes (its POLL comes first, a chunk never takes its place)
    assert sorted(committed) == sorted(c for _, c in pressed)
    for (device, counter), n in pressed.items():
        round_acked = next(i for i, heard in enumerate(per_round) if i >= n and
                           (int(device[4:]), schema.ACK) in heard)
        assert round_acked == n
    assert master.ota_stats["chunk_bytes"] > 0


def test_the_round_gives_updates_at_most_their_share_of_the_line(rig, tmp_path):
    from gateway.rs485_master import OTA_SHARE, MIN_CHUNK
    m = updating_rig(rig, tmp_path, [1, 2, 3, 4], canary=(1, 2, 3, 4), share=OTA_SHARE)
    master = m["master"]
    budget = max(master.ota_share * proto_cycle(master, 4),
                 master._update_fixed_s + MIN_CHUNK * master._byte_s)
    total = 0
    for _ in range(40):
        before = master.ota_stats["chunk_bytes"]
        master.round()
        sent = master.ota_stats["chunk_bytes"] - before
        assert sent * master._byte_s + master._update_fixed_s * bool(sent) <= budget + 1e-9
        total += sent
    assert total > 0


def proto_cycle(master, devices):
    from gateway.rs485_master import IDLE_POLL
    from protocol import timing
    return timing.poll_cycle_us(devices, 115200, poll_payload=IDLE_POLL[0], reply_payload=IDLE_POLL[1]) / 1e6


def test_a_transfer_resumes_after_a_dropped_link_and_the_rollout_completes(rig, tmp_path):
    m = updating_rig(rig, tmp_path, [1, 2])
    master, fake, ro, rel, r = m["master"], m["fake"], m["rollouts"], m["release"], m["rollout"]
    d1 = fake.doubles[1]
    rounds_until(master, lambda: sum(len(p) for p in d1.parts) > rel.total // 2)
    got = sum(len(p) for p in d1.parts)
    fake.alive[1] = False                          # power cut / cable pulled mid-transfer
    for _ in range(10):
        master.round()
    fake.alive[1] = True
    master.peer("dev-1").next_slow = 0
    rounds_until(master, lambda: r["devices"]["dev-1"]["state"] == "switching" or
                 r["devices"]["dev-1"]["state"] == "switched")
    chunks = [c for c in d1.log if c[0] == "chunk"]
    assert sum(c[3] for c in chunks) < rel.total + 2 * proto.CHUNK_MAX    # resumed, not restarted
    assert got > 0 and d1.files() == dict(zip(rel.names, rel.data[1:]))
    d1.boot()
    rounds_until(master, lambda: r["phase"] == "rest")
    rounds_until(master, lambda: fake.doubles[2].state == proto.ST_SWITCHED)
    fake.doubles[2].boot()
    rounds_until(master, lambda: r["status"] == "done")
    assert [(p["version_before"], p["version_after"]) for p in r["devices"].values()] == \
        [("1.0.0", "1.1.0")] * 2


def test_no_commit_while_a_case_is_open_at_the_window(rig, tmp_path):
    m = updating_rig(rig, tmp_path, [1])
    master, fake, r = m["master"], m["fake"], m["rollout"]
    m["cases"].add("dev-1")
    rounds_until(master, lambda: r["devices"]["dev-1"]["state"] == "verified")
    for _ in range(30):
        master.round()
    assert ("commit", 0, 0, 0) not in fake.doubles[1].log
    m["cases"].clear()
    rounds_until(master, lambda: fake.doubles[1].state == proto.ST_SWITCHED)


def test_a_device_refuses_a_release_macd_under_another_key_and_the_canary_pauses_it(rig, tmp_path):
    m = updating_rig(rig, tmp_path, [1, 2], keys={1: OTHER_KEY})
    master, fake, r = m["master"], m["fake"], m["rollout"]
    rounds_until(master, lambda: r["status"] == "paused")
    assert fake.doubles[1].state == proto.ST_REFUSED and fake.doubles[1].files() == {}
    assert r["devices"]["dev-1"]["state"] == "refused" and "bad_mac" in r["devices"]["dev-1"]["reason"]
    before = len(fake.requests)
    for _ in range(20):
        master.round()
    assert not [t for _, t in fake.requests[before:] if t in UPDATES]    # paused: no chunks
    assert fake.doubles[2].log == []


def test_a_release_that_fails_its_trial_rolls_back_and_pauses(rig, tmp_path):
    m = updating_rig(rig, tmp_path, [1, 2])
    master, fake, r = m["master"], m["fake"], m["rollout"]
    fake.doubles[1].boots_ok = False
    rounds_until(master, lambda: fake.doubles[1].state == proto.ST_SWITCHED)
    fake.doubles[1].boot()
    rounds_until(master, lambda: r["status"] == "paused", limit=400)
    p = r["devices"]["dev-1"]
    assert p["state"] == "rolled_back" and "boot_failed" in p["reason"]
    assert p["version_after"] == "1.0.0"


def test_cancel_stops_the_chunks(rig, tmp_path):
    m = updating_rig(rig, tmp_path, [1])
    master, fake, ro, r = m["master"], m["fake"], m["rollouts"], m["rollout"]
    rounds_until(master, lambda: len(fake.doubles[1].log) > 3)
    ro.cancel(r["id"])
    before = len(fake.requests)
    for _ in range(20):
        master.round()
    assert not [t for _, t in fake.requests[before:] if t in UPDATES]


# --- the operator's routes -------------------------------------------------------------------
@pytest.fixture
def live(mosquitto_broker, tmp_path):
    from gw_live import LiveGateway, gateway_config
    cfg = gateway_config(mosquitto_broker, tmp_path / "gw")
    cfg.raw["ota"] = {"release_key": KEY.hex()}
    with LiveGateway(cfg) as gw:
        gw.broker = mosquitto_broker
        yield gw


def test_the_update_routes_are_the_operators_and_refuse_bad_input_with_4xx(live, tmp_path):
    path = bundle(tmp_path)
    for role in ("queue", "viewer", "technician"):
        if live.token(role):
            for method, route, body in (("GET", "/api/v1/rollouts", None),
                                        ("POST", "/api/v1/releases", {"path": path}),
                                        ("POST", "/api/v1/rollouts", {"release": "x", "canary": []})):
                assert live.request(method, route, body, role=role)[0] == 403
    assert live.request("GET", "/api/v1/releases")[0] == 401
    assert live.request("POST", "/api/v1/rollouts/r1/pause")[0] == 401
    assert live.gw.rollouts.releases.all() == [] and live.gw.rollouts.snapshot() == []
    for body in ({"path": "/nonexistent/王䶮明"}, {"path": 5}, {}, [1], {"path": "𠈌" * 5000}):
        status, answer = live.request("POST", "/api/v1/releases", body, role="operator")
        assert 400 <= status < 500 and answer["error"], (body, status)
    status, rel = live.request("POST", "/api/v1/releases", {"path": path}, role="operator")
    assert status == 201 and rel["version"] == "1.1.0"
    for body in ({"release": rel["id"], "canary": ["nobody"]}, {"release": "0" * 64, "canary": ["dev-a"]},
                 {"release": rel["id"], "canary": []}, {"release": rel["id"], "canary": "dev-a"},
                 {"release": rel["id"], "canary": ["dev-a"], "devices": ["dev-b"]}):
        status, answer = live.request("POST", "/api/v1/rollouts", body, role="operator")
        assert 400 <= status < 500 and answer["error"], (body, status)
    status, r = live.request("POST", "/api/v1/rollouts", {"release": rel["id"], "canary": ["dev-a"]},
                             role="operator")
    assert status == 201 and r["status"] == "running" and len(r["devices"]) == 2
    assert live.request("POST", "/api/v1/rollouts", {"release": rel["id"], "canary": ["dev-a"]},
                        role="operator")[0] == 409
    assert live.request("POST", "/api/v1/rollouts/%s/resume" % r["id"], role="operator")[0] == 409
    assert live.request("POST", "/api/v1/rollouts/r99/pause", role="operator")[0] == 404
    assert live.request("POST", "/api/v1/rollouts/%s/pause" % r["id"], role="viewer")[0] == 403
    assert live.request("POST", "/api/v1/rollouts/%s/pause" % r["id"], role="operator")[1]["status"] == "paused"
    assert live.request("POST", "/api/v1/rollouts/%s/resume" % r["id"], role="operator")[1]["status"] == "running"
    assert live.request("POST", "/api/v1/rollouts/%s/cancel" % r["id"], role="operator")[1]["status"] == "cancelled"
    status, listed = live.request("GET", "/api/v1/rollouts", role="operator")
    assert status == 200 and listed["rollouts"][0]["counts"] == {"cancelled": 2}


# --- MQTT -------------------------------------------------------------------------------------
class MqttUpdating:
    """A device on the hall's Mosquitto taking an update through the double: it answers every
    request on its `update` topic with UPDATE_STATE on `update_state`; `drop` requests are lost."""

    def __init__(self, broker, device_id, key=KEY):
        import paho.mqtt.client as mqtt
        from gw_support import HALL
        from protocol import codec, topics
        self.double = UpdateDouble(device_id, key)
        self.drop = 0
        self.topic = topics.device_topic(HALL, device_id, "update_state")
        self.codec = codec
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev-" + device_id)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topics.device_topic(HALL, device_id, "update"), 1)

    def _on_message(self, client, userdata, message):
        msg_type, rec = proto.parse_update_json(message.payload)
        if self.drop and msg_type == schema.UPDATE_CHUNK and rec.get("file", 0) == 1 and \
                rec.get("offset", 0) >= 1536:
            self.drop -= 1                     # lost on the way, mid-transfer
            return
        self.publish(self.double.handle(msg_type, rec))

    def publish(self, state):
        self.client.publish(self.topic, self.codec.to_json(schema.UPDATE_STATE, state), qos=1)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def wait(predicate, seconds=20):
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_an_update_over_mqtt_survives_lost_chunks_and_confirms(live, tmp_path):
    gw = live.gw
    rel = gw.rollouts.releases.add(bundle(tmp_path, size=6000))
    devices = {d: MqttUpdating(live.broker, d) for d in ("dev-a", "dev-b")}
    try:
        a = devices["dev-a"]
        a.drop = 3                                # the link drops three chunks mid-transfer
        r = gw.rollouts.start(rel.id, ["dev-a", "dev-b"], ["dev-a"])
        wait(lambda: a.double.state == proto.ST_SWITCHED)
        assert a.drop == 0
        assert a.double.files() == dict(zip(rel.names, rel.data[1:]))
        assert devices["dev-b"].double.log == []  # canary first
        a.double.boot()
        a.publish(a.double.record())              # back online: it says so by itself
        b = devices["dev-b"]
        wait(lambda: b.double.state == proto.ST_SWITCHED)
        b.double.boot()
        b.publish(b.double.record())
        wait(lambda: r["status"] == "done")
        sent = sum(c[3] for c in a.double.log if c[0] == "chunk")
        assert sent < rel.total + 8 * proto.CHUNK_MAX          # resent what was lost, no restart
    finally:
        for d in devices.values():
            d.close()


def test_a_restarted_gateway_resumes_the_rollout(mosquitto_broker, tmp_path):
    """rollout.json and releases.json bring the rollout and its release back in a new gateway."""
    from gw_live import LiveGateway, gateway_config
    cfg = gateway_config(mosquitto_broker, tmp_path / "gw")
    cfg.raw["ota"] = {"release_key": KEY.hex()}
    with LiveGateway(cfg) as live:
        status, rel = live.request("POST", "/api/v1/releases", {"path": bundle(tmp_path)}, role="operator")
        status, r = live.request("POST", "/api/v1/rollouts", {"release": rel["id"], "canary": ["dev-b"]},
                                 role="operator")
        assert status == 201
        live.gw.rollouts.report("dev-b", "receiving", rel["id"], 1, 512)
        live.gw.rollouts.flush()
    with LiveGateway(cfg) as again:
        back = again.gw.rollouts.active()
        assert back["id"] == r["id"] and back["status"] == "running"
        assert back["devices"]["dev-b"]["acked"] == again.gw.rollouts.releases.get(rel["id"]).position(1, 512)
        step = again.gw.rollouts.next_step("dev-b", 256)
        assert step[0] == "chunk" and step[2:4] == (1, 512)


def test_no_update_route_answers_5xx_whatever_the_body(live, tmp_path):
    from hypothesis import HealthCheck, given, settings, strategies as st
    path = bundle(tmp_path)
    rel = live.request("POST", "/api/v1/releases", {"path": path}, role="operator")[1]
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                               lambda inner: st.lists(inner, max_size=4) |
                               st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
    bodies = st.one_of(
        json_values,
        st.fixed_dictionaries({"release": st.sampled_from([rel["id"], "", "王䶮明", "𠈌" * 70]),
                               "canary": st.lists(st.sampled_from(["dev-a", "dev-b", "x", ""]), max_size=3)},
                              optional={"devices": st.lists(st.sampled_from(["dev-a", "dev-b", "y"]),
                                                            max_size=3)}),
        st.fixed_dictionaries({"path": st.sampled_from([path, path + "/manifest.json", "", "/", "\u0000"])}))
    routes = st.sampled_from(["/api/v1/releases", "/api/v1/rollouts", "/api/v1/rollouts/r1/pause",
                              "/api/v1/rollouts/r1/resume", "/api/v1/rollouts/r1/cancel",
                              "/api/v1/rollouts/%E7%8E%8B/pause"])

    @settings(max_examples=80, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(route=routes, body=bodies)
    def one(route, body):
        status, answer = live.request("POST", route, body, role="operator")
        assert status < 500, (route, body, status, answer)
        if status >= 400:
            assert isinstance(answer, dict) and answer.get("error"), (route, status, answer)
    one()
    assert live.request("GET", "/api/v1/rollouts", role="operator")[0] == 200
