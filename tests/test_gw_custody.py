"""Custody at the gateway (SPEC 3.11, gateway.custody): the store's generation, each device's
settled mark, the intake of a re-offered rating, when a SETTLE is due, its signature and
seq, the [custody] config and the broker's ACL for the settle topic."""

import os
import sqlite3
import tempfile

import pytest
from hypothesis import given, settings, strategies as st

from gateway import config as config_mod
from gateway import custody as custody_mod
from gateway import mosquitto_acl
from gateway.committer import GroupCommitter
from gateway.intake import Intake, commit
from gateway.registry import Registry
from gateway.rejects import Rejections
from gateway.store import Store
from gw_support import HALL, device_key, make_rating
from protocol import auth, codec, errors, schema, topics, vocab

STORED = (vocab.ACK_STORED, errors.R_OK)
DUPLICATE = (vocab.ACK_DUPLICATE, errors.R_OK)
REPLAY = (vocab.ACK_DEAD_LETTER, errors.R_REPLAY)


def rid(device, counter):
    return "%s:%d" % (device, counter)


# --- the settled mark -------------------------------------------------------------------------
def queued_by_scan(store, device):
    """The model: the lowest counter of `device` in the upload queue, by reading the table."""
    db = sqlite3.connect(store.path)
    try:
        keys = [k for (k,) in db.execute("SELECT key FROM outbox WHERE kind='rating'")]
    finally:
        db.close()
    counters = [int(k.rpartition(":")[2]) for k in keys if k.rpartition(":")[0] == device]
    return min(counters) if counters else store.hwm(device) + 1


DEVICES = ("d1", "d2", "d3")
_op = st.one_of(
    st.tuples(st.just("rate"), st.sampled_from(DEVICES), st.integers(1, 4)),
    st.tuples(st.just("reoffer"), st.sampled_from(DEVICES), st.integers(1, 30)),
    st.tuples(st.just("forget"), st.sampled_from(DEVICES), st.integers(1, 30)),
    st.tuples(st.just("upload"), st.integers(1, 8),
              st.lists(st.sampled_from(("accepted", "duplicate", "rejected", "retry")),
                       min_size=8, max_size=8)),
    st.tuples(st.just("reopen")))


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(_op, max_size=25))
def test_settled_is_the_lowest_queued_counter_or_the_mark_plus_one(ops):
    """Any sequence of commits, re-offers, uploads (accepted, duplicate, rejected upstream: a dead
    letter, retry), uploaded ratings the store forgets (as a salvage may) and restarts:
    settled(device) equals the model's, and it never goes back except when a re-offered copy
    below it was committed."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "outbox.db")
        store = Store(path)
        try:
            next_counter = dict((d, 1) for d in DEVICES)
            last = dict((d, store.settled(d)) for d in DEVICES)
            for op in ops:
                reoffered = set()
                if op[0] == "rate":
                    _, device, n = op
                    items = []
                    for _ in range(n):
                        items.append((make_rating(device, next_counter[device], sign=False), None))
                        next_counter[device] += 1
                    assert store.commit_ratings(items) == [STORED] * n
                elif op[0] == "forget":
                    _, device, counter = op
                    store._db.execute("DELETE FROM ids WHERE key=? AND key NOT IN"
                                      " (SELECT key FROM outbox)", (rid(device, counter),))
                elif op[0] == "reoffer":
                    _, device, counter = op
                    if counter >= next_counter[device]:
                        continue                  # a device re-offers only what it issued
                    result = store.commit_ratings([(make_rating(device, counter, sign=False),
                                                    None, None, True)])
                    if result == [STORED] and counter < last[device]:
                        reoffered.add(device)
                elif op[0] == "upload":
                    _, limit, outcomes = op
                    batch = store.upload_batch(limit)
                    store.settle([(item["item_id"], outcomes[i], "r")
                                  for i, item in enumerate(batch)])
                else:
                    store.close()
                    store = Store(path)
                for device in DEVICES:
                    now = store.settled(device)
                    assert now == queued_by_scan(store, device)
                    assert now >= last[device] or device in reoffered
                    last[device] = now
        finally:
            store.close()


def test_settled_without_a_queue_is_the_mark_plus_one_and_dead_letters_count_as_settled(tmp_path):
    store = Store(str(tmp_path / "outbox.db"))
    assert store.settled("d1") == 1
    store.commit_ratings([(make_rating("d1", c, sign=False), None) for c in (1, 2, 3)])
    assert store.settled("d1") == 1
    batch = store.upload_batch(10)
    store.settle([(item["item_id"], "rejected" if item["item_id"] == "d1:1" else "retry", "r")
                  for item in batch])
    assert store.settled("d1") == 2          # rejected upstream: a dead letter, settled
    store.settle([(rid("d1", 2), "accepted", None), (rid("d1", 3), "duplicate", None)])
    assert store.settled("d1") == 4
    assert store.commit_ratings([(make_rating("d1", 2, sign=False, text="x"), None)]) == [REPLAY]
    assert store.settled("d1") == 4          # a replay's dead letter never waits for the uplink
    store.close()


def test_the_mark_costs_no_scan_of_the_queue(tmp_path):
    """64 devices, 6,400 pending: reading every device's mark does not touch the file."""
    store = Store(str(tmp_path / "outbox.db"))
    items = [(make_rating("d%d" % (i % 64), i // 64 + 1, sign=False), None) for i in range(6400)]
    store.commit_ratings(items)
    statements = []
    store._db.set_trace_callback(statements.append)
    marks = [store.settled("d%d" % d) for d in range(64)]
    store._db.set_trace_callback(None)
    assert marks == [1] * 64 and statements == []
    store.close()


# --- the generation -----------------------------------------------------------------------------
def test_a_generation_is_made_with_the_store_and_kept(tmp_path):
    os.makedirs(tmp_path / "a")
    store = Store(str(tmp_path / "a" / "outbox.db"))
    generation = store.generation
    assert 0 < generation < 1 << 64
    store.close()
    again = Store(str(tmp_path / "a" / "outbox.db"))
    assert again.generation == generation
    again.close()
    os.makedirs(tmp_path / "b")
    other = Store(str(tmp_path / "b" / "outbox.db"))
    assert other.generation not in (0, generation)
    other.close()


def test_a_salvaged_store_has_a_new_generation(tmp_path):
    path = str(tmp_path / "outbox.db")
    store = Store(path)
    store.commit_ratings([(make_rating("d1", c, sign=False), None) for c in (1, 2)])
    generation = store.generation
    store.close()
    with open(path, "r+b") as f:          # the header's magic gone: SQLITE_NOTADB, set aside
        f.write(b"\x00" * 100)
    salvaged = Store(path)
    assert salvaged.moved_aside and salvaged.generation not in (0, generation)
    salvaged.close()


def test_a_store_that_came_back_short_has_a_new_generation(tmp_path):
    path = str(tmp_path / "outbox.db")
    store = Store(path)
    store.commit_ratings([(make_rating("d1", c, sign=False), None) for c in (1, 2)])
    generation = store.generation
    store.close()
    with open(path + "-acked", "wb") as f:     # more acknowledged than the file holds
        f.write(b"%020d\n" % 5)
    short = Store(path)
    assert short.alarms.get("store_short") and short.generation not in (0, generation)
    short.close()


# --- the intake of a re-offered copy -----------------------------------------------------------
class Rig:
    def __init__(self, tmp_path, custody=True):
        self.registry = Registry([{"id": d, "window": "A01", "key": device_key(d).hex()}
                                  for d in ("dev-a", "dev-b")])
        self.store = Store(str(tmp_path / "outbox.db"))
        self.committer = GroupCommitter(self.store)
        self.intake = Intake(HALL, self.registry, Rejections(), custody=custody,
                             generation=lambda: self.store.generation)  # as the app wires it
        self.acks = []

    def rs485(self, rating, reoffer=False):
        record = dict(rating, reoffer=1) if reoffer else dict(rating)
        self.acks.clear()
        commit(self.intake.from_record("rs485", rating["device"], record, self.acks.append),
               self.committer)
        return (self.acks[0]["result"], self.acks[0]["reason"])     # what the device is told

    def mqtt(self, rating, reoffer=False):
        obj = codec.to_obj(schema.RATING_FIELDS, rating)
        if reoffer:
            obj["reoffer"] = 1
        self.acks.clear()
        pending = self.intake.from_json("mqtt", rating["device"], codec.dumps(obj).encode(),
                                        self.acks.append)
        self.committer.commit_batch([pending])
        return (self.acks[0]["result"], self.acks[0]["reason"])

    def close(self):
        self.committer.close()
        self.store.close()


@pytest.fixture
def rig(tmp_path):
    made = []

    def make(**kw):
        where = tmp_path / str(len(made))
        os.makedirs(where)
        made.append(Rig(where, **kw))
        return made[-1]
    yield make
    for r in made:
        r.close()


@pytest.mark.parametrize("transport", ["rs485", "mqtt"])
def test_a_reoffered_copy_below_the_mark_is_committed_once_and_without_the_flag(rig, transport):
    r = rig()
    send = getattr(r, transport)
    for c in (1, 2, 3, 4):
        assert send(make_rating("dev-a", c)) == STORED
    r.store.settle([(i["item_id"], "accepted", None) for i in r.store.upload_batch(100)])
    # uploaded, then lost with a damaged page of `ids` (a salvage keeps the mark of 4)
    lost = make_rating("dev-a", 2)
    r.store._db.execute("DELETE FROM ids WHERE key='dev-a:2'")
    assert send(lost) == REPLAY                           # without the flag: 7.3 unchanged
    assert send(make_rating("dev-a", 3), reoffer=True) == DUPLICATE
    assert send(lost, reoffer=True) == STORED
    assert r.acks[0]["result"] == vocab.ACK_STORED
    # the ACK of a re-offered copy names the store's generation, under its MAC
    assert r.acks[0]["generation"] == r.store.generation != 0
    assert auth.verify_ack(device_key("dev-a"), "dev-a", r.acks[0], lost["mac"])
    assert not auth.verify_ack(device_key("dev-a"), "dev-a", dict(r.acks[0], generation=1), lost["mac"])
    assert send(lost, reoffer=True) == DUPLICATE           # a second copy: a duplicate, as ever
    assert r.store.stats["reoffered"] == 1
    assert r.store.hwm("dev-a") == 4                       # the mark never goes back
    records = [i["record"] for i in r.store.upload_batch(100) if i["item_id"] == "dev-a:2"]
    assert len(records) == 1 and "reoffer" not in records[0]


@pytest.mark.parametrize("transport", ["rs485", "mqtt"])
def test_a_forged_reoffer_is_still_rejected(rig, transport):
    r = rig()
    send = getattr(r, transport)
    assert send(make_rating("dev-a", 5)) == STORED
    forged = dict(make_rating("dev-a", 2), text="改过")    # a genuine MAC over other content
    assert send(forged, reoffer=True) == (vocab.ACK_REJECTED, errors.R_BAD_MAC)
    assert r.store.stats["reoffered"] == 0 and "dev-a:2" not in r.store.stored_ids()


def test_with_custody_off_the_flag_is_ignored(rig):
    r = rig(custody=False)
    assert r.rs485(make_rating("dev-a", 5)) == STORED
    assert r.rs485(make_rating("dev-a", 2), reoffer=True) == REPLAY
    assert r.acks[0]["generation"] == r.store.generation   # the device can still settle its copy
    assert r.rs485(make_rating("dev-a", 6), reoffer=True) == STORED
    assert r.store.stats["reoffered"] == 0
    assert all("reoffer" not in i["record"] for i in r.store.upload_batch(100))


@pytest.mark.parametrize("transport", ["rs485", "mqtt"])
def test_with_custody_on_every_answer_names_the_store_generation(rig, transport):
    """So that a device that took this store's generation can refuse a lost store's ACK."""
    on, off = rig(), rig(custody=False)
    rating = make_rating("dev-a", 1)
    for r, named in ((on, on.store.generation), (off, 0)):
        send = getattr(r, transport)
        assert send(rating) == STORED and r.acks[0]["generation"] == named
        assert send(rating) == DUPLICATE and r.acks[0]["generation"] == named
        assert send(make_rating("dev-a", 1, text="改过")) == (vocab.ACK_DEAD_LETTER, errors.R_REPLAY)
        assert r.acks[0]["generation"] == named                    # a dead letter releases too
        assert auth.verify_ack(device_key("dev-a"), "dev-a", r.acks[0],
                               make_rating("dev-a", 1, text="改过")["mac"])
    assert on.store.generation != 0


# --- the SETTLE record and when it is due --------------------------------------------------------
class Mono:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def custody(tmp_path):
    registry = Registry([{"id": "dev-a", "window": "A01", "transport": "rs485", "address": 1,
                          "key": device_key("dev-a").hex()}])
    store = Store(str(tmp_path / "outbox.db"))
    mono = Mono()
    c = custody_mod.Custody(store, registry, clock=lambda: 1_700_000_000.0, mono=mono)
    c.mono_clock = mono
    yield c
    store.close()


def test_a_settle_is_signed_for_the_device_with_a_rising_seq(custody):
    first = custody.record("dev-a")
    second = custody.record("dev-a", reoffer=True)
    assert auth.verify_settle(device_key("dev-a"), "dev-a", first)
    assert not auth.verify_settle(device_key("dev-b"), "dev-a", first)
    assert first["generation"] == custody.store.generation and first["settled"] == 1
    assert first["seq"] == 1_700_000_000_000 and second["seq"] == first["seq"] + 1   # same ms
    assert second["reoffer"] == 1 and "reoffer" not in first
    codec.decode(schema.SETTLE, codec.encode(schema.SETTLE, second))   # a valid record


def test_seq_stays_above_what_was_sent_before_a_restart_with_the_clock_set_back(tmp_path):
    registry = Registry([{"id": "dev-a", "key": device_key("dev-a").hex()}])
    store = Store(str(tmp_path / "outbox.db"))
    sent = custody_mod.Custody(store, registry, clock=lambda: 1_700_000_000.0).record("dev-a")
    later = custody_mod.Custody(store, registry, clock=lambda: 1_600_000_000.0).record("dev-a")
    assert later["seq"] > sent["seq"]
    store.close()


def _idle(custody=0, generation=0):
    return dict((k, v) for k, v in (("custody", custody), ("generation", generation)) if v)


def test_rs485_settle_when_due(custody):
    c, mono = custody, custody.mono_clock
    gen = c.store.generation
    assert c.rs485_settle("dev-a") is None              # never said it keeps custody (old firmware)
    c.idle("dev-a", _idle())
    assert c.rs485_settle("dev-a") is None
    c.idle("dev-a", _idle(custody=2))                    # holds copies, names no generation
    record, done = c.rs485_settle("dev-a")
    assert "device" not in record and auth.verify_settle(device_key("dev-a"), "dev-a", record)
    done()
    assert c.rs485_settle("dev-a") is None               # taken; the mark has not moved
    c.idle("dev-a", _idle(custody=2, generation=gen))
    c.store.commit_ratings([(make_rating("dev-a", 1, sign=False), None)])
    c.store.settle([("dev-a:1", "accepted", None)])      # the mark moved: within 60 s, nothing
    assert c.rs485_settle("dev-a") is None
    mono.now += 60
    record, done = c.rs485_settle("dev-a")
    assert record["settled"] == 2
    done()
    mono.now += 61
    assert c.rs485_settle("dev-a") is None               # not moved since: nothing to say
    c.idle("dev-a", _idle(custody=2, generation=12345))   # another store's generation
    assert c.rs485_settle("dev-a") is not None
    c.refused("dev-a")
    assert c.rs485_settle("dev-a") is None               # refused: not again for a while


def test_a_device_counting_past_the_store_is_asked_to_reoffer_once(custody):
    c = custody
    gen = c.store.generation
    c.idle("dev-a", _idle(custody=3, generation=gen))
    status = {"device": "dev-a", "counter": 9, "outbox": 0, "custody": 3}
    c.status("dev-a", status)
    record, done = c.rs485_settle("dev-a")
    assert record["reoffer"] == 1
    done()
    c.status("dev-a", status)                            # the same detection: asked once
    assert c.rs485_settle("dev-a") is None
    c.status("dev-a", dict(status, outbox=1, counter=10))  # its outbox not empty: not this
    assert c.rs485_settle("dev-a") is None


def test_custody_off_sends_nothing(custody):
    custody.enabled = False
    custody.idle("dev-a", _idle(custody=2))
    assert custody.rs485_settle("dev-a") is None
    assert custody.mqtt_due(["dev-a"], 1) == []


def test_mqtt_settles_at_connection_and_when_the_mark_moves_at_most_every_2_s(custody):
    c, mono = custody, custody.mono_clock
    assert [d for d, _ in c.mqtt_due(["dev-a"], 1)] == ["dev-a"]
    assert c.mqtt_due(["dev-a"], 1) == []
    c.store.commit_ratings([(make_rating("dev-a", 1, sign=False), None)])   # 1 still queued: 1
    assert c.mqtt_due(["dev-a"], 1) == []
    c.store.settle([("dev-a:1", "accepted", None)])
    assert c.mqtt_due(["dev-a"], 1) == []               # moved, but within 2 s
    mono.now += 2
    ((_, record),) = c.mqtt_due(["dev-a"], 1)
    assert record["settled"] == 2 and record["device"] == "dev-a"
    assert [d for d, _ in c.mqtt_due(["dev-a"], 2)] == ["dev-a"]   # reconnected: again


# --- config and the broker's ACL -------------------------------------------------------------------
def test_custody_config(tmp_path):
    base = {"gateway": {"hall": HALL, "data_dir": str(tmp_path)}}
    assert config_mod.from_dict(base).custody.enabled is True
    assert config_mod.from_dict(dict(base, custody={"enabled": False})).custody.enabled is False
    for bad in ({"enabled": "no"}, {"enable": True}, {"rs485_every_s": 0}):
        with pytest.raises(config_mod.ConfigError):
            config_mod.from_dict(dict(base, custody=bad))


def test_the_broker_lets_each_device_read_its_own_settle_topic_only():
    registry = Registry([{"id": d, "key": device_key(d).hex()} for d in ("w01", "w02")])
    acl = mosquitto_acl.acl_file(HALL, registry, "gateway")
    w01 = acl.split("user w01\n")[1].split("\n\n")[0]
    assert "topic read %s" % topics.device_topic(HALL, "w01", "settle") in w01
    assert "w02" not in w01 and "write %s" % topics.device_topic(HALL, "w01", "settle") not in w01
    assert "user gateway\ntopic readwrite hall/%s/#" % HALL in acl


def test_check_names_a_bad_custody_section(tmp_path):
    from gateway import config_check
    path = tmp_path / "gateway.toml"
    for bad, word in (('enabled = "yes"', "enabled"), ("every = 3", "every"),
                      ("rs485_every_s = -1", "rs485_every_s")):
        path.write_text('[gateway]\nhall = "%s"\ndata_dir = "%s"\n[custody]\n%s\n'
                        % (HALL, tmp_path / "data", bad))
        cfg, problems = config_check.problems(str(path), offline=True)
        assert cfg is None and len(problems) == 1 and "[custody]" in problems[0] and word in problems[0]
    path.write_text('[gateway]\nhall = "%s"\ndata_dir = "%s"\n[custody]\nenabled = false\n'
                    % (HALL, tmp_path / "data"))
    cfg, problems = config_check.problems(str(path), offline=True)
    assert problems == [] and cfg.custody.enabled is False


def test_a_reoffer_request_reaches_an_mqtt_device_once(custody):
    c = custody
    c.mqtt_due(["dev-a"], 1)
    status = {"device": "dev-a", "counter": 9, "outbox": 0, "custody": 3}
    c.status("dev-a", status)
    ((_, record),) = c.mqtt_due(["dev-a"], 1)
    assert record["reoffer"] == 1 and auth.verify_settle(device_key("dev-a"), "dev-a", record)
    c.status("dev-a", status)
    assert c.mqtt_due(["dev-a"], 1) == []


def test_a_device_removed_and_added_again_gets_its_settle_again(custody):
    assert len(custody.mqtt_due(["dev-a"], 1)) == 1
    assert custody.mqtt_due(["dev-a"], 1) == []
    custody.forget("dev-a")               # the registry removed it (its retained topic cleared)
    assert len(custody.mqtt_due(["dev-a"], 1)) == 1
