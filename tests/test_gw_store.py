"""The durable outbox: group commit, dedupe, replay, bounds, corruption, and kill -9 at random instants."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings, strategies as st

from gateway.store import Store
from gateway.store_file import StoreError
from gateway.upload_queue import record_json
from protocol import codec, errors, vocab
from protocol import rating as rating_rules
from gw_support import make_rating

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORED = (vocab.ACK_STORED, errors.R_OK)
DUP = (vocab.ACK_DUPLICATE, errors.R_OK)


@pytest.fixture
def store(tmp_path):
    alarms = []
    s = Store(str(tmp_path / "outbox.db"), capacity=50, on_alarm=lambda n, d: alarms.append(n))
    s.alarm_log = alarms
    yield s
    s.close()


def test_group_commit_stores_each_once_and_survives_reopen(tmp_path):
    path = str(tmp_path / "o.db")
    s = Store(path)
    items = [(make_rating("dev-%d" % (i % 3), i + 1, hall="futian-1", gateway_time=1700000000), None)
             for i in range(30)]
    assert s.commit_ratings(items) == [STORED] * 30
    assert s.stats["commits"] == 1
    s.close()
    s = Store(path)
    assert s.backlog()["ratings"] == 30
    ids = sorted(item["item_id"] for item in s.upload_batch(100))
    assert ids == sorted(rating_rules.rating_id(r) for r, _ in items)
    s.close()


def test_upload_record_is_canonical_and_enriched(store):
    r = make_rating("dev-a", 3, hall="futian-1", gateway_time=1700000001)
    enrichment = {"matter_code": "440300-001", "matter_name": "居民身份证换领", "staff_name": "王喆",
                  "window": "B02", "applicant": {"name": "李堃"}}
    assert store.commit_ratings([(r, enrichment)]) == [STORED]
    (item,) = store.upload_batch(10)
    rec = item["record"]
    assert item["kind"] == "rating" and item["attempts"] == 0
    assert rec["rating_id"] == "dev-a:3" and rec["hall"] == "futian-1"
    assert rec["gateway_time"] == 1700000001
    assert rec["matter_name"] == "居民身份证换领" and rec["staff_name"] == "王喆"
    assert rec["window"] == "A01"            # the device's own window is kept
    assert "applicant" not in rec           # clear identity never reaches the store
    assert rec["mac"] == r["mac"].hex()
    assert json.loads(json.dumps(rec)) == rec


def test_duplicate_even_after_upload(store):
    r = make_rating("dev-a", 1)
    assert store.commit_ratings([(r, None), (r, None)]) == [STORED, DUP]
    store.settle([("dev-a:1", "accepted", None)])
    assert store.backlog()["ratings"] == 0
    assert store.commit_ratings([(r, None)]) == [DUP]
    assert store.backlog()["ratings"] == 0


def test_replay_below_high_water_mark_is_dead_letter_with_alarm(store):
    assert store.commit_ratings([(make_rating("dev-a", 5), None)]) == [STORED]
    assert store.hwm("dev-a") == 5
    result = store.commit_ratings([(make_rating("dev-a", 4), None)])
    assert result == [(vocab.ACK_DEAD_LETTER, errors.R_REPLAY)]
    # Same id, other content: also a replay, not a duplicate.
    forged = make_rating("dev-a", 5, level=vocab.VERY_DISSATISFIED)
    assert store.commit_ratings([(forged, None)]) == [(vocab.ACK_DEAD_LETTER, errors.R_REPLAY)]
    assert store.alarm_log.count("replay") == 2
    dead = store.dead_letters()
    assert [d["reason"] for d in dead] == ["replay", "replay"]
    assert json.loads(dead[0]["payload"])["counter"] == 5
    assert store.backlog()["dead_letters"] == 2
    assert store.backlog()["ratings"] == 1
    # The same inside one group commit: the batch sees its own earlier items.
    pair = [(make_rating("dev-b", 1), None), (make_rating("dev-b", 1, level=vocab.DISSATISFIED), None),
            (make_rating("dev-b", 3), None), (make_rating("dev-b", 2), None)]
    assert store.commit_ratings(pair) == [STORED, (vocab.ACK_DEAD_LETTER, errors.R_REPLAY), STORED,
                                          (vocab.ACK_DEAD_LETTER, errors.R_REPLAY)]
    assert store.hwm("dev-b") == 3


def test_bad_mac_kept_as_dead_letter_and_does_not_move_the_mark(store):
    r = make_rating("dev-a", 9)
    r["mac"] = bytes(16)
    assert store.commit_ratings([(r, None, errors.R_BAD_MAC)]) == [(vocab.ACK_DEAD_LETTER, errors.R_BAD_MAC)]
    assert store.hwm("dev-a") == 0
    assert store.commit_ratings([(make_rating("dev-a", 9), None)]) == [STORED]
    assert store.dead_letters()[0]["reason"] == "bad_mac"


def test_bad_ratings_drain_first_then_oldest(store):
    items = [(make_rating("d", 1), None), (make_rating("d", 2, level=vocab.DISSATISFIED), None),
             (make_rating("d", 3), None)]
    store.commit_ratings(items)
    store.commit_case({"case_key": "SN1#3", "serials": ["SN1"], "node": 3})
    store.commit_ratings([(make_rating("d", 4, level=vocab.VERY_DISSATISFIED), None)])
    order = [i["item_id"] for i in store.upload_batch(10)]
    assert order == ["d:2", "d:4", "d:1", "d:3", "SN1#3"]


def test_settle_outcomes(store):
    store.commit_ratings([(make_rating("d", n), None) for n in (1, 2, 3, 4)])
    store.settle([("d:1", "accepted", None), ("d:2", "duplicate", None),
                  ("d:3", "rejected", "unknown matter code"), ("d:4", "retry", "busy")])
    batch = store.upload_batch(10)
    assert [(i["item_id"], i["attempts"]) for i in batch] == [("d:4", 1)]
    dead = store.dead_letters()
    assert dead[0]["key"] == "d:3" and "unknown matter code" in dead[0]["reason"]
    assert json.loads(dead[0]["payload"])["rating_id"] == "d:3"
    assert dead[0]["device"] == "d"       # an upstream rejection is filed under its device
    backlog = store.backlog()
    assert 0 <= time.time() - backlog.pop("oldest_at") < 60     # d:4, committed just now
    assert backlog == {"ratings": 1, "cases": 0, "dead_letters": 1, "dead_evicted": 0,
                       "capacity": 50, "fill": 1 / 50}
    store.settle([("d:1", "accepted", None)])  # a repeated answer is harmless
    with pytest.raises(Exception):
        store.settle([("d:4", "maybe", None)])


def test_cases_dedupe_and_count(store):
    case = {"case_key": "SN9#4", "serials": ["SN9", "SN10"], "node": 4, "staff_name": "朱镕"}
    assert store.commit_case(case) == STORED
    assert store.commit_case(case) == DUP
    assert store.backlog()["cases"] == 1
    (item,) = store.upload_batch(5)
    assert item["kind"] == "case" and item["record"] == case


def test_closing_a_case_queues_its_callback_in_the_same_transaction(tmp_path):
    path = str(tmp_path / "o.db")
    alarms = []
    s = Store(path, callback_capacity=2, on_alarm=lambda n, d: alarms.append(n))
    for case_id in (7, 8, 9):
        s.state_put("case:%d" % case_id, {"case_id": case_id, "window": "A0%d" % case_id})
    s.state_put("window:A07", {"case_id": 7, "staff_name": "王䶮明"})
    assert s.close_cases([(7, {"event": "rated", "case_id": 7})]) == [7]
    assert s.close_cases([(7, {"event": "rated", "case_id": 7})]) == []     # closed once only
    s.close()
    s = Store(path, callback_capacity=2, on_alarm=lambda n, d: alarms.append(n))   # a restart
    assert [n for n, _ in s.state_items("case:")] == ["case:8", "case:9"]
    assert s.state_items("window:") == [("window:A07", {"case_id": 0, "staff_name": "王䶮明"})]
    ((cid, event, attempts, _),) = s.callbacks_due()
    assert event == {"event": "rated", "case_id": 7} and attempts == 0
    s.callbacks_settle([], failed=cid)
    assert s.callbacks_due()[0][2] == 1
    assert s.close_cases([(8, {"case_id": 8}), (9, {"case_id": 9})]) == [8, 9]   # 9's callback dropped, loudly
    assert alarms == ["callbacks_full"] and s.callbacks_pending() == 2
    s.callbacks_settle([cid])
    assert [e["case_id"] for _, e, _, _ in s.callbacks_due()] == [8] and s.callbacks_pending() == 1
    s.close()


def test_full_store_refuses_loudly_and_keeps_old_rows(store):
    first = [(make_rating("d", n), None) for n in range(1, 51)]
    assert store.commit_ratings(first) == [STORED] * 50
    assert "store_fill" in store.alarm_log
    refused = store.commit_ratings([(make_rating("d", 51), None)])
    assert refused == [(vocab.ACK_RETRY, errors.R_STORE_FULL)]
    assert store.commit_case({"case_key": "X#1"}) == (vocab.ACK_RETRY, errors.R_STORE_FULL)
    assert store.alarm_log.count("store_full") == 2
    assert store.backlog()["fill"] == 1.0
    assert store.hwm("d") == 50               # a refused rating does not move the mark
    assert {i["item_id"] for i in store.upload_batch(100)} == {"d:%d" % n for n in range(1, 51)}
    store.settle([("d:1", "accepted", None)])
    assert store.commit_ratings([(make_rating("d", 51), None)]) == [STORED]


def test_corrupt_file_is_set_aside_and_fresh_store_works(tmp_path):
    path = str(tmp_path / "o.db")
    with open(path, "wb") as f:
        f.write(b"this is not a database" * 500)
    alarms = []
    s = Store(path, on_alarm=lambda n, d: alarms.append(n))
    assert alarms == ["corrupt_store"]
    assert len(s.moved_aside) == 1 and os.path.exists(s.moved_aside[0])
    assert s.commit_ratings([(make_rating("d", 1), None)]) == [STORED]
    s.close()


def test_damaged_pages_salvage_what_can_be_read(tmp_path):
    path = str(tmp_path / "o.db")
    s = Store(path)
    s.commit_ratings([(make_rating("d", n, text="评价" * 60), None) for n in range(1, 400)])
    s._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    s.close()
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # smash pages in the middle, keep the header
        f.seek(size // 2)
        f.write(os.urandom(8192))
    alarms = []
    s = Store(path, on_alarm=lambda n, d: alarms.append(n))
    assert "corrupt_store" in alarms
    # Whatever was salvaged is intact and the store takes new data.
    for item in s.upload_batch(1000):
        assert item["record"]["rating_id"] == item["item_id"]
    assert s.commit_ratings([(make_rating("e", 1), None)]) == [STORED]
    s.close()


def test_wal_and_full_sync_are_in_force_or_the_store_refuses_to_open(tmp_path):
    s = Store(str(tmp_path / "o.db"))
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2    # FULL
    s.close()
    with pytest.raises(StoreError, match="journal_mode=memory"):     # SQLite keeps no WAL here
        Store(":memory:")


def test_an_unopenable_path_is_an_error_not_corruption(tmp_path):
    busy = tmp_path / "outbox.db"
    busy.mkdir()                      # cannot be opened as a database, and is not a damaged one
    with pytest.raises(sqlite3.OperationalError):
        Store(str(busy))
    assert busy.is_dir() and os.listdir(tmp_path) == ["outbox.db"]   # nothing renamed aside


def test_a_constraint_error_refuses_the_batch_but_keeps_the_file(store, monkeypatch):
    assert store.commit_ratings([(make_rating("d", 1), None)]) == [STORED]

    def broken(*group):
        raise sqlite3.IntegrityError("UNIQUE constraint failed")
    monkeypatch.setattr(store, "_commit_ratings", broken)
    assert store.commit_ratings([(make_rating("d", 2), None)]) == [(vocab.ACK_RETRY, errors.R_STORE_FULL)]
    assert store.moved_aside == [] and "corrupt_store" not in store.alarm_log
    assert "store_unwritable" in store.alarm_log
    monkeypatch.undo()
    assert [i["item_id"] for i in store.upload_batch(10)] == ["d:1"]
    assert store.commit_ratings([(make_rating("d", 2), None)]) == [STORED]


CHILD = r"""
import sys
sys.path.insert(0, %(root)r); sys.path.insert(0, %(root)r + "/tests")
from gateway.store import Store
from gateway.store_file import StoreError
from gw_support import make_rating
s = Store(%(path)r)
n = s.hwm("k") + 1
sys.stdout.write("ready\n"); sys.stdout.flush()
while True:
    batch = [(make_rating("k", c), None) for c in range(n, n + 7)]
    results = s.commit_ratings(batch)
    assert all(r[0] == 0 for r in results), results
    sys.stdout.write("".join("acked k:%%d\n" %% c for c in range(n, n + 7))); sys.stdout.flush()
    n += 7
"""


def test_kill_minus_nine_at_random_instants_loses_no_acked_rating(tmp_path):
    path = str(tmp_path / "kill.db")
    script = CHILD % {"root": ROOT, "path": path}
    rnd = random.Random(4)
    acked = set()
    kills = 0
    for _ in range(50):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        assert child.stdout.readline() == b"ready\n"
        time.sleep(rnd.uniform(0.0, 0.06))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        kills += 1
        complete = out.split(b"\n")[:-1]   # a line cut by the kill has no newline: not acked
        acked.update(line.split()[1].decode() for line in complete if line.startswith(b"acked "))
        s = Store(path)
        stored = s.stored_ids()
        assert len(stored) == len(set(stored))
        pending = [i["item_id"] for i in s.upload_batch(10 ** 6)]
        assert len(pending) == len(set(pending))
        missing = acked - set(pending)
        assert not missing, sorted(missing)[:5]
        s.close()
    assert kills == 50 and len(acked) > 100


_JSON_LEAF = st.one_of(st.integers(-2 ** 70, 2 ** 70), st.booleans(), st.none(),
                       st.text(alphabet=st.characters(), max_size=12),
                       st.sampled_from(["\ud800", "\u2028\x7f\x1f\n\"\\", "王喆 李堃 朱镕"]))


@settings(max_examples=300, deadline=None)
@given(record=st.dictionaries(st.text(max_size=8), st.recursive(
    _JSON_LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                        max_size=4), max_leaves=12)))
def test_stored_record_text_is_what_codec_dumps_writes(record):
    assert record_json(record) == codec.dumps(record)
