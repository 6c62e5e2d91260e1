"""Dead letters: bounded per device and in all, pruned oldest first inside the group commit, and a
dead-letter verdict is always final (the device is released), however many junk rows came before."""

import os
import sqlite3
import tempfile
import time

from hypothesis import given, settings, strategies as st

from gateway.ledger import RawPayload
from gateway.store import Store
from protocol import errors, vocab
from gw_support import make_rating

DEAD = vocab.ACK_DEAD_LETTER
KNOWN = {"dev-a", "dev-b", "dev-c"}


def junk(device, n):
    return [(RawPayload('{"counter": %d, "level": 9' % i, device), None, errors.R_MALFORMED)
            for i in range(n)]


def open_store(path, alarms=None, **caps):
    s = Store(path, on_alarm=lambda n, d: (alarms if alarms is not None else []).append((n, d)),
              clock=lambda: 1700000000.0, **caps)
    return s


def counts_in_file(s):
    return dict(s._db.execute("SELECT device, COUNT(*) FROM dead_letters GROUP BY device"))


def test_a_flood_on_one_device_evicts_only_its_own_oldest_and_never_refuses(tmp_path):
    alarms = []
    s = open_store(str(tmp_path / "o.db"), alarms, dead_per_device=20, dead_unknown=5, dead_capacity=50)
    s.set_known_devices(KNOWN.__contains__)
    # dev-b's evidence first, then a flood of junk on dev-a's topic.
    assert s.commit_ratings([(make_rating("dev-b", 2), None)])[0][0] == vocab.ACK_STORED
    assert s.commit_ratings([(make_rating("dev-b", 1), None)]) == [(DEAD, errors.R_REPLAY)]
    for _ in range(10):
        results = s.commit_ratings(junk("dev-a", 30))
        assert results == [(DEAD, errors.R_MALFORMED)] * 30      # never ACK_RETRY
    # A genuine rule-breaking rating of another device and of the flooded one: released.
    assert s.commit_ratings([(make_rating("dev-b", 1, level=vocab.DISSATISFIED), None)]) == [
        (DEAD, errors.R_REPLAY)]
    forged = make_rating("dev-a", 1)
    forged["mac"] = bytes(16)
    assert s.commit_ratings([(forged, None, errors.R_BAD_MAC)]) == [(DEAD, errors.R_BAD_MAC)]
    assert counts_in_file(s) == {"dev-a": 20, "dev-b": 2}
    newest = s.dead_letters(limit=20, device="dev-a")
    assert newest[0]["reason"] == "bad_mac" and newest[0]["key"] == "dev-a:1"
    assert s.stats["dead_evicted"] == 300 + 1 - 20
    assert s.backlog()["dead_evicted"] == 281 and s.backlog()["dead_letters"] == 22
    # One alarm for dev-a in the interval, not one per evicted row; none for dev-b.
    evicted = [d for n, d in alarms if n == "dead_letters_evicted"]
    assert len(evicted) == 1 and "device dev-a" in evicted[0]
    s.close()


def test_at_the_default_caps_60k_junk_rows_commit_fast_and_stay_at_the_cap(tmp_path):
    s = open_store(str(tmp_path / "o.db"))
    t0 = time.perf_counter()
    for _ in range(120):                     # 61,440 rows in groups of 512, as the committer takes them
        assert s.commit_ratings(junk("dev-a", 512)) == [(DEAD, errors.R_MALFORMED)] * 512
    elapsed = time.perf_counter() - t0
    assert s.backlog()["dead_letters"] == 1000 and s.stats["dead_evicted"] == 61440 - 1000
    assert s.commit_ratings([(make_rating("dev-b", 3), None, errors.R_OUT_OF_RANGE)]) == [
        (DEAD, errors.R_OUT_OF_RANGE)]
    assert counts_in_file(s) == {"dev-a": 1000, "dev-b": 1}
    print("61,440 dead letters in 120 group commits: %.2f s (%.0f rows/s)" % (elapsed, 61440 / elapsed))
    assert elapsed < 30
    s.close()


def test_unregistered_devices_share_one_small_bucket(tmp_path):
    s = open_store(str(tmp_path / "o.db"), dead_per_device=10, dead_unknown=4, dead_capacity=100)
    s.set_known_devices(KNOWN.__contains__)
    s.commit_ratings(junk("dev-c", 3))
    for i in range(30):
        assert s.commit_ratings(junk("stranger-%d" % i, 1)) == [(DEAD, errors.R_MALFORMED)]
    strangers = [d["device"] for d in s.dead_letters(100) if d["device"].startswith("stranger")]
    assert strangers == ["stranger-29", "stranger-28", "stranger-27", "stranger-26"]
    assert counts_in_file(s)["dev-c"] == 3
    s.close()


def test_the_global_cap_takes_from_the_largest_bucket(tmp_path):
    s = open_store(str(tmp_path / "o.db"), dead_per_device=10, dead_unknown=10, dead_capacity=15)
    s.commit_ratings(junk("dev-a", 10) + junk("dev-b", 3))
    s.commit_ratings(junk("dev-c", 4))
    assert counts_in_file(s) == {"dev-a": 8, "dev-b": 3, "dev-c": 4}
    assert s.backlog()["dead_letters"] == 15 and s.backlog()["dead_evicted"] == 2
    s.close()


def test_upstream_rejections_count_against_the_caps(tmp_path):
    s = open_store(str(tmp_path / "o.db"), dead_per_device=3, dead_capacity=100)
    s.commit_ratings([(make_rating("dev-a", n), None) for n in range(1, 6)])
    s.settle([("dev-a:%d" % n, "rejected", "bad code") for n in range(1, 6)])
    assert [d["key"] for d in s.dead_letters(device="dev-a")] == ["dev-a:5", "dev-a:4", "dev-a:3"]
    assert s.backlog()["dead_letters"] == 3 and s.backlog()["dead_evicted"] == 2
    s.close()


def test_list_and_clear_by_device_and_page(tmp_path):
    path = str(tmp_path / "o.db")
    s = open_store(path)
    s.commit_ratings(junk("dev-a", 7) + junk("dev-b", 5) + junk("dev-a", 3))
    every = s.dead_letters(limit=1000)
    assert [d["id"] for d in every] == sorted((d["id"] for d in every), reverse=True)
    assert set(every[0]) == {"id", "kind", "key", "device", "reason_code", "reason", "payload", "created"}
    pages, before = [], None
    while True:
        page = s.dead_letters(limit=4, device="dev-a", before_id=before)
        if not page:
            break
        pages.append([d["id"] for d in page])
        before = page[-1]["id"]
    assert [len(p) for p in pages] == [4, 4, 2]
    assert sum(pages, []) == [d["id"] for d in every if d["device"] == "dev-a"]
    cut = pages[1][0]
    assert s.clear_dead_letters(device="dev-a", up_to_id=cut) == 6
    assert s.backlog()["dead_letters"] == 9
    assert s.clear_dead_letters(device="dev-b") == 5
    assert [d["device"] for d in s.dead_letters()] == ["dev-a"] * 4
    assert s.clear_dead_letters(device="nobody") == 0
    assert s.clear_dead_letters() == 4 and s.backlog()["dead_letters"] == 0 and s.dead_letters() == []
    s.close()


def test_caps_lowered_prune_at_open_and_the_evicted_total_survives(tmp_path):
    path = str(tmp_path / "o.db")
    s = open_store(path, dead_per_device=50)
    s.commit_ratings(junk("dev-a", 40) + junk("dev-b", 40))
    s.close()
    alarms = []
    s = open_store(path, alarms, dead_per_device=10)
    assert counts_in_file(s) == {"dev-a": 10, "dev-b": 10}
    assert s.backlog()["dead_evicted"] == 60
    assert [n for n, _ in alarms].count("dead_letters_evicted") == 2
    s.close()
    s = open_store(path, dead_per_device=10)
    assert s.backlog()["dead_evicted"] == 60 and s.backlog()["dead_letters"] == 20
    s.close()


def test_an_older_store_gains_the_device_index_in_place(tmp_path):
    path = str(tmp_path / "o.db")
    s = open_store(path)
    s.commit_ratings(junk("dev-a", 3))
    s._db.execute("DROP INDEX dead_letters_device")
    s.close()
    s = open_store(path)
    plan = " ".join(r[-1] for r in s._db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM dead_letters WHERE device=? ORDER BY id DESC", ("dev-a",)))
    assert "dead_letters_device" in plan
    assert s.backlog()["dead_letters"] == 3
    s.close()


OPS = st.lists(st.one_of(
    st.tuples(st.just("junk"), st.sampled_from(["dev-a", "dev-b", "dev-c", "x-1", "x-2"]),
              st.integers(1, 9)),
    st.tuples(st.just("clear"), st.sampled_from([None, "dev-a", "x-1"]), st.booleans()),
    st.tuples(st.just("reopen"), st.none(), st.none())), max_size=12)


@settings(max_examples=40, deadline=None)
@given(ops=OPS)
def test_memory_follows_the_file_and_every_bucket_keeps_its_newest(ops):
    caps = dict(dead_per_device=5, dead_unknown=3, dead_capacity=12)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "o.db")
        s = open_store(path, **caps)
        s.set_known_devices(KNOWN.__contains__)
        model = []    # (id, device) of every row ever kept, oldest first
        cleared = set()

        def ids_in_file():
            return [r[0] for r in s._db.execute("SELECT id FROM dead_letters ORDER BY id")]
        for op, device, arg in ops:
            if op == "junk":
                before = s._db.execute("SELECT COALESCE((SELECT seq FROM sqlite_sequence"
                                       " WHERE name='dead_letters'), 0)").fetchone()[0]
                assert s.commit_ratings(junk(device, arg)) == [(DEAD, errors.R_MALFORMED)] * arg
                model += [(before + 1 + i, device) for i in range(arg)]
            elif op == "clear":
                held = set(ids_in_file())
                s.clear_dead_letters(device=device, up_to_id=(model[len(model) // 2][0] if arg and model
                                                               else None))
                cleared |= held - set(ids_in_file())
            else:
                s.close()
                s = open_store(path, **caps)
                s.set_known_devices(KNOWN.__contains__)
            rows = s._db.execute("SELECT id, device FROM dead_letters ORDER BY id").fetchall()
            assert s.backlog()["dead_letters"] == len(rows) <= 12
            kept = set(rid for rid, _ in rows)
            for bucket in set(d if d in KNOWN else "?" for _, d in model):
                mine = [rid for rid, d in model if (d if d in KNOWN else "?") == bucket]
                held = [rid for rid in mine if rid in kept]
                evicted = [rid for rid in mine if rid not in kept and rid not in cleared]
                assert len(held) <= (5 if bucket != "?" else 3)
                if held and evicted:     # a bucket gives up its oldest rows, never a newer one
                    assert max(evicted) < min(held)
            assert sum(len(d) for d in s.ledger.buckets.rows.values()) == len(rows)
        s.close()


def test_a_dead_letter_and_its_pruning_commit_together(tmp_path, monkeypatch):
    """A failed commit leaves memory as it was: counts follow the file only after COMMIT."""
    s = open_store(str(tmp_path / "o.db"), dead_per_device=2)
    s.commit_ratings(junk("dev-a", 2))
    before = s._db.execute("SELECT id FROM dead_letters ORDER BY id").fetchall()

    real = s.ledger.prune_dead

    def failing(db, new):
        real(db, new)
        raise sqlite3.OperationalError("disk I/O error")
    monkeypatch.setattr(s.ledger, "prune_dead", failing)
    assert s.commit_ratings(junk("dev-a", 1)) == [(vocab.ACK_RETRY, errors.R_STORE_FULL)]
    monkeypatch.undo()
    assert s._db.execute("SELECT id FROM dead_letters ORDER BY id").fetchall() == before
    assert s.backlog()["dead_letters"] == 2 and s.backlog()["dead_evicted"] == 0
    assert s.commit_ratings(junk("dev-a", 1)) == [(DEAD, errors.R_MALFORMED)]
    assert s.backlog()["dead_evicted"] == 1 and len(s.ledger.buckets.rows["dev-a"]) == 2
    s.close()
