"""Custody behaviours no other test pinned, found by mutation testing (docs/mutation.md): the
device's runs of counters (firmware.custody_runs) and the gateway's custody (gateway.custody)."""

import sqlite3

import pytest

from firmware.custody_runs import add, runs_of
from gateway import custody as custody_mod
from gateway.custody import PendingCounters, _split, load_generation, reoffer_verdict
from gateway.registry import Registry
from gateway.store import Store
from gateway.store_file import SCHEMA
from gw_support import device_key, make_rating
from protocol import errors, vocab
from test_gw_custody import Mono

GENERATION = custody_mod.GENERATION


# --- the device's runs --------------------------------------------------------------------------
def test_a_counter_not_above_the_last_leaves_the_runs_as_they_are():
    runs = runs_of([1, 2, 3, 5, 6, 7])
    assert list(runs) == [1, 3, 5, 7]
    for c in (7, 6, 4, 2, 1):        # held already, or below the newest: callers rebuild instead
        add(runs, c)
    assert list(runs) == [1, 3, 5, 7]
    add(runs, 8)
    add(runs, 10)
    assert list(runs) == [1, 3, 5, 8, 10, 10]


def test_runs_hold_every_32_bit_counter():
    top = 0xFFFFFFFF                  # a RATING counter is a U32 (protocol.schema)
    runs = runs_of([0x80000000, 0x80000001, top])
    assert list(runs) == [0x80000000, 0x80000001, top, top]


# --- the store's generation ---------------------------------------------------------------------
def _meta(tmp_path, value=None):
    db = sqlite3.connect(str(tmp_path / "meta.db"), isolation_level=None)
    for statement in SCHEMA:
        db.execute(statement)
    if value is not None:
        db.execute("INSERT INTO meta VALUES (?,?)", (GENERATION, value))
    return db


@pytest.mark.parametrize("kept", ["1", str((1 << 64) - 1)])
def test_any_nonzero_64_bit_generation_is_kept(tmp_path, kept):
    assert load_generation(_meta(tmp_path, kept)) == int(kept)


@pytest.mark.parametrize("junk", ["0", "-5", str(1 << 64), str(2 << 64), "zwölf", ""])
def test_a_generation_that_is_not_one_is_made_anew_and_written(tmp_path, junk):
    db = _meta(tmp_path, junk)
    made = load_generation(db)
    assert 0 < made < 1 << 64 and str(made) != junk
    row = db.execute("SELECT value FROM meta WHERE name=?", (GENERATION,)).fetchone()
    assert row == (str(made),)


def test_a_renewed_generation_is_written(tmp_path):
    db = _meta(tmp_path, "77")
    made = load_generation(db, renew=True)
    assert made != 77 and custody_mod.meta_int(db, GENERATION) == made


# --- pending counters ---------------------------------------------------------------------------
def test_keys_that_are_not_a_device_and_counter_are_skipped_not_fatal():
    assert _split("dev-a:12") == ("dev-a", 12)
    assert _split("junk") == _split(":5") == _split("dev-a:x") == (None, None)
    pending = PendingCounters()
    pending.add(_split(k) for k in ("junk", ":5", "dev-a:x", "dev-a:7", "dev-b:3"))
    assert pending.lowest("dev-a") == 7 and pending.lowest("dev-b") == 3
    assert pending.lowest("") is None and pending.count("dev-a") == 1


def test_only_a_replay_of_an_unstored_copy_becomes_stored():
    replay = (vocab.ACK_DEAD_LETTER, errors.R_REPLAY)
    assert reoffer_verdict(replay, None) == (vocab.ACK_STORED, errors.R_OK)
    assert reoffer_verdict(replay, b"digest") == replay
    other = (vocab.ACK_DEAD_LETTER, errors.R_BAD_STATE)
    assert reoffer_verdict(other, None) == other


# --- when a SETTLE is due -----------------------------------------------------------------------
@pytest.fixture
def custody(tmp_path):
    registry = Registry([{"id": d, "window": "A0%d" % i, "transport": t, "address": i,
                          "key": device_key(d).hex()}
                         for i, (d, t) in enumerate((("dev-a", "rs485"), ("dev-m", "mqtt"),
                                                     ("dev-n", "mqtt")), 1)])
    store = Store(str(tmp_path / "outbox.db"))
    c = custody_mod.Custody(store, registry, clock=lambda: 1_700_000_000.0, mono=Mono())
    yield c
    store.close()


def _status(counter=0, **fields):
    out = {"device": "dev-a", "firmware": "1.0.0"}
    if counter:
        out["counter"] = counter
    out.update(fields)
    return out


def test_the_counts_start_at_zero_and_count_one_by_one(custody):
    c = custody
    gen = c.store.generation
    assert c.stats == {"settles_sent": 0, "settles_refused": 0, "reoffer_requests": 0}
    for n in (1, 2):
        c.idle("dev-a", {"custody": 1, "generation": gen + 1})
        record, done = c.rs485_settle("dev-a")
        done()
        assert c.stats["settles_sent"] == n
        c.idle("dev-a", {"custody": 1, "generation": gen + 1})
        c.mono.now += custody_mod.GENERATION_RESEND_S
        assert c.rs485_settle("dev-a") is not None
        c.refused("dev-a")
        assert c.stats["settles_refused"] == n
        c.mono.now += custody_mod.REFUSED_BACKOFF_S
    c.idle("dev-a", {"custody": 3, "generation": gen})
    for n, counter in ((1, 5), (2, 6)):
        c.status("dev-a", _status(counter, custody=3))
        assert c.stats["reoffer_requests"] == n


def test_an_idle_naming_only_a_generation_speaks_custody(custody):
    c = custody
    c.idle("dev-a", {"generation": 12345})          # no copies, another store's generation
    assert c.rs485_settle("dev-a") is not None
    c.idle("dev-a", {"generation": c.store.generation, "custody": 2})
    c.idle("dev-a", {"generation": c.store.generation})     # its copies settled: 0, left out
    c.store.commit_ratings([(make_rating("dev-a", 1, sign=False), None)])
    c.mono.now += 3600
    assert c.rs485_settle("dev-a") is None          # the mark moved, but it holds nothing


def test_a_status_from_firmware_without_custody_brings_no_settle(custody):
    c = custody
    c.status("dev-a", _status(4, outbox=0))
    c.mono.now += 3600
    assert c.rs485_settle("dev-a") is None
    c.idle("dev-a", {"custody": 2, "generation": c.store.generation})
    c.status("dev-a", _status(0))                   # custody 0, left out
    c.store.commit_ratings([(make_rating("dev-a", 1, sign=False), None)])
    c.mono.now += 3600
    assert c.rs485_settle("dev-a") is None
    c.idle("dev-a", {"custody": 2, "generation": 99})
    c.status("dev-a", _status(0))                   # holds none now, still under another store
    assert c.rs485_settle("dev-a") is not None


def test_a_reoffer_is_asked_only_past_the_mark_with_an_empty_outbox(custody):
    c = custody
    c.idle("dev-a", {"custody": 3, "generation": c.store.generation})
    c.status("dev-a", _status(0, custody=3))        # nothing stored yet, and no counter said
    assert c.stats["reoffer_requests"] == 0
    c.store.commit_ratings([(make_rating("dev-a", n, sign=False), None) for n in (1, 2, 3)])
    c.idle("dev-a", {"custody": 3, "generation": c.store.generation})
    c.status("dev-a", _status(3, custody=3))        # at the mark: nothing lost
    c.status("dev-a", _status(0, custody=3))        # no counter: says nothing
    assert c.stats["reoffer_requests"] == 0
    c.status("dev-a", _status(4, custody=3, outbox=1))
    assert c.stats["reoffer_requests"] == 0         # its outbox will bring 4
    c.status("dev-a", _status(4, custody=3))        # outbox 0, left out
    assert c.stats["reoffer_requests"] == 1


def test_the_backoffs_end_exactly_on_time(custody):
    c = custody
    c.idle("dev-a", {"custody": 1, "generation": 99})
    record, done = c.rs485_settle("dev-a")
    done()
    c.idle("dev-a", {"custody": 1, "generation": 99})       # still the old one
    c.mono.now += custody_mod.GENERATION_RESEND_S
    assert c.rs485_settle("dev-a") is not None
    c.refused("dev-a")
    c.mono.now += custody_mod.REFUSED_BACKOFF_S
    assert c.rs485_settle("dev-a") is not None


def test_a_device_answered_again_gets_one_settle_then_none(custody):
    c = custody
    c.answered_again("dev-a")                       # never said it keeps custody
    record, done = c.rs485_settle("dev-a")
    assert record["generation"] == c.store.generation
    done()
    c.mono.now += 3600
    assert c.rs485_settle("dev-a") is None
    c.answered_again("dev-a")                       # it holds this generation now: a lost ACK
    assert c.rs485_settle("dev-a") is None
    c.forget("dev-a")
    c.answered_again("dev-a")
    record, done = c.rs485_settle("dev-a")
    c.refused("dev-a")                              # firmware without custody
    c.mono.now += custody_mod.REFUSED_BACKOFF_S
    assert c.rs485_settle("dev-a") is None          # not again without a new reason


def test_forgetting_a_device_never_seen_is_harmless(custody):
    custody.forget("dev-zz")
    assert custody.record("dev-zz") is None         # not in the registry: no SETTLE for it


def test_each_mqtt_device_whose_mark_moved_is_published(custody):
    c = custody
    assert [d for d, _ in c.mqtt_due(["dev-m", "dev-n"], 1)] == ["dev-m", "dev-n"]
    c.store.commit_ratings([(make_rating("dev-n", 1, sign=False), None)])
    c.store.settle([("dev-n:1", "accepted", None)])      # the central API has it: 2 now
    c.mono.now += custody_mod.MQTT_EVERY_S
    assert [d for d, _ in c.mqtt_due(["dev-m", "dev-n"], 1)] == ["dev-n"]
