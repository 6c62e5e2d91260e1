"""Unit tests of the hall simulator's pure parts: citizens, the fault schedule, the report."""

import asyncio
import random
import sqlite3

import pytest

from hall_simulator import chaos, citizens, report
from hall_simulator.central_store import CentralStore
from protocol import vocab


# --- citizens -------------------------------------------------------------------------------------
def test_the_mix_is_repeatable_and_follows_its_weights():
    mix = citizens.Mix(levels=(50, 30, 10, 5, 5), walk_away=0.1, double_tap=0.2)
    a = [repr(mix.decide(citizens.citizen_rng(11, "03", n))) for n in range(50)]
    b = [repr(mix.decide(citizens.citizen_rng(11, "03", n))) for n in range(50)]
    assert a == b
    plans = [mix.decide(random.Random(i)) for i in range(4000)]
    walk = sum(p.walks_away for p in plans) / len(plans)
    assert 0.08 < walk < 0.12
    rated = [p for p in plans if not p.walks_away]
    share1 = sum(p.level == 1 for p in rated) / len(rated)
    assert 0.45 < share1 < 0.55
    assert all(p.tag_count in (1, 2) for p in rated if p.bad)
    touch_bad = lambda p: any(vocab.is_bad(x) for x in (p.business, p.service) + p.items)  # noqa: E731
    assert all(p.tag_count == 0 for p in rated if not p.bad and not touch_bad(p))
    assert 0.15 < sum(p.double_tap for p in rated) / len(rated) < 0.25


def test_bad_mix_values_are_refused():
    with pytest.raises(ValueError):
        citizens.Mix(levels=(1, 2, 3))
    with pytest.raises(ValueError):
        citizens.Mix(walk_away=1.5)
    with pytest.raises(ValueError):
        citizens.Mix.preset("nobody")


TAGS = [{"code": 501, "label": "态度不积极"}, {"code": 502, "label": "来回跑"},
        {"code": 702, "label": "其他原因"}]


def test_a_bad_rater_picks_tags_then_confirms():
    visit = citizens.Visit(citizens.Plan(5, 1.0, tag_count=2))
    assert visit.next_key({"screen": "case"}) == 4
    assert visit.next_key({"screen": "tags", "tags": TAGS, "cursor": 0, "chosen": []}) == \
        citizens.KEY_TOGGLE
    assert visit.next_key({"screen": "tags", "tags": TAGS, "cursor": 0, "chosen": [501]}) == \
        citizens.KEY_DOWN
    assert visit.next_key({"screen": "tags", "tags": TAGS, "cursor": 1, "chosen": [501]}) == \
        citizens.KEY_TOGGLE
    assert visit.next_key({"screen": "tags", "tags": TAGS, "cursor": 1, "chosen": [501, 502]}) == \
        citizens.KEY_CONFIRM
    assert visit.next_key({"screen": "thanks"}) is None and visit.done


def test_walk_away_presses_nothing_and_double_tap_repeats_once():
    away = citizens.Visit(citizens.Plan(0, 2.0))
    assert away.next_key({"screen": "case"}) is None
    tap = citizens.Visit(citizens.Plan(2, 1.0, double_tap=True))
    key = tap.next_key({"screen": "case"})
    assert key == 1 and tap.double_tap_key(key) == 1
    tap.next_key({"screen": "case"})              # the press did not take: presses again
    assert tap.double_tap_key(1) is None          # but double-taps only the first time


def test_a_citizen_gives_up_when_presses_do_nothing():
    visit = citizens.Visit(citizens.Plan(1, 1.0))
    keys = [visit.next_key({"screen": "case"}) for _ in range(10)]
    assert keys[:citizens.MAX_LEVEL_PRESSES] == [0] * citizens.MAX_LEVEL_PRESSES
    assert keys[citizens.MAX_LEVEL_PRESSES:] == [None] * (10 - citizens.MAX_LEVEL_PRESSES)
    assert visit.gave_up


# --- chaos schedule -------------------------------------------------------------------------------
def test_standard_chaos_has_every_kind_inside_the_window():
    events = chaos.schedule("standard", 120, 23, rs485=["w01", "w02"], mqtt=["w03"])
    kinds = {e.kind for e in events}
    assert kinds == set(chaos.KINDS)
    assert all(3.0 <= e.at_s <= 120 - 15 for e in events)
    assert [e.at_s for e in events] == sorted(e.at_s for e in events)
    again = chaos.schedule("standard", 120, 23, rs485=["w01", "w02"], mqtt=["w03"])
    assert [e.as_dict() for e in events] == [e.as_dict() for e in again]
    harsh = chaos.schedule("harsh", 120, 23, rs485=["w01", "w02"], mqtt=["w03"])
    assert len(harsh) > len(events)


def test_chaos_skips_kinds_without_their_devices_and_none_is_empty():
    events = chaos.schedule("standard", 60, 1, rs485=[], mqtt=["m1"])
    kinds = {e.kind for e in events}
    assert "bus_noise" not in kinds and "bus_cut" not in kinds and "wifi_drop" in kinds
    assert chaos.schedule("none", 60, 1, rs485=["a"]) == []
    with pytest.raises(ValueError):
        chaos.schedule("mild", 60, 1)


def test_chaos_plays_events_and_counts_only_what_was_injected():
    calls = []

    async def ok(**params):
        calls.append(params)

    async def broken(**params):
        raise RuntimeError("no broker")

    events = [chaos.Event(0.01, "uplink_5xx", {"count": 2}), chaos.Event(0.02, "broker_restart", {}),
              chaos.Event(0.03, "uplink_5xx", {"count": 1}), chaos.Event(0.04, "wifi_drop", {})]
    c = chaos.Chaos(events, {"uplink_5xx": ok, "broker_restart": broken})
    asyncio.run(c.run())
    assert c.injected == {"uplink_5xx": 2} and c.failed == {"broker_restart": 1}
    assert calls == [{"count": 2}, {"count": 1}]


# --- report ---------------------------------------------------------------------------------------
def _batch(items, n=[0]):
    n[0] += 1
    return {"batch_id": "b%d" % n[0], "gateway_id": "gw1", "profile": "gbt39046", "items": items}


def _press(store, device, counter, serial, level, now, node=3):
    from gateway import profiles
    record = {"rating_id": "%s:%d" % (device, counter), "device": device, "counter": counter,
              "serials": [serial], "node": node, "source": vocab.SRC_PRESS,
              "overall": level if node != 1 else None, "service": level if node == 1 else None,
              "gateway_time": int(now), "window": "01", "staff_id": "A01", "staff_name": "王喆",
              "tags": [501] if vocab.is_bad(level) else []}
    record = {k: v for k, v in record.items() if v not in (None, [])}
    data = profiles.get("gbt39046").map_record("rating", record)
    return {"id": record["rating_id"], "kind": "rating", "data": data}


def test_report_counts_lost_duplicates_retransmissions_and_latency(tmp_path):
    db = tmp_path / "central.db"
    store = CentralStore(db, clock=lambda: 1_700_000_000.0, wall_clock=lambda: 1000.5)
    store.receive_batch(_batch([_press(store, "w1", 1, "S1", 1, 1_700_000_000),
                                _press(store, "w1", 2, "S2", 5, 1_700_000_000)]))
    store.receive_batch(_batch([_press(store, "w1", 2, "S2", 5, 1_700_000_000)]))   # resent
    store.receive_batch(_batch([_press(store, "w2", 1, "S2", 2, 1_700_000_000)]))   # S2 again
    store.close()
    log = [
        {"rating_id": "w1:1", "device": "w1", "case_key": "S1#3", "source": 1, "at": 1000.0},
        {"rating_id": "w1:2", "device": "w1", "case_key": "S2#3", "source": 1, "at": 1000.3,
         "bad": True},
        {"rating_id": "w1:3", "device": "w1", "case_key": "S3#3", "source": 1, "at": 1000.4},
        {"rating_id": "w3:1", "device": "w3", "case_key": "S4#3", "source": 2, "at": 1000.4},
    ]
    r = report.compute(log, report.central_view(str(db)), faults={"gateway_kill": 2})
    assert r["confirmed"] == 3 and r["received"] == 2
    assert r["lost"] == 1 and r["lost_ids"] == ["w1:3"]
    assert r["duplicates"] == 1               # w2:1 rated case S2 a second time
    assert r["retransmissions"] == 1
    assert r["not_rated"] == 1
    assert r["work_orders"] == 1 and r["work_orders_expected"] == 1
    assert r["latency_ms"]["samples"] == 2 and r["latency_ms"]["p50"] == pytest.approx(200.0)
    assert r["latency_ms"]["p99"] == pytest.approx(500.0)
    assert r["faults"] == {"gateway_kill": 2}
    assert not report.ok(r)
    text = report.summary(r)
    assert "lost 1" in text and "FAILED" in text


def test_report_is_ok_when_everything_arrived_once(tmp_path):
    db = tmp_path / "central.db"
    store = CentralStore(db, clock=lambda: 1_700_000_000.0, wall_clock=lambda: 2000.0)
    store.receive_batch(_batch([_press(store, "w9", 1, "T1", 2, 1_700_000_000)]))
    store.close()
    log_path = tmp_path / "confirmed.jsonl"
    log = report.ConfirmationLog(log_path)
    log.write({"rating_id": "w9:1", "device": "w9", "case_key": "T1#3", "source": 1, "at": 1999.0,
               "staff_name": "李堃"})
    log.close()
    with open(log_path, "a") as f:
        f.write('{"torn')                        # the simulator itself died mid-line
    entries = report.read_log(log_path)
    assert entries[0]["staff_name"] == "李堃"
    r = report.compute(entries, report.central_view(str(db)))
    assert report.ok(r) and r["lost"] == 0 and r["duplicates"] == 0
    assert r["latency_ms"]["p50"] == pytest.approx(1000.0)


def test_percentile_nearest_rank():
    assert report.percentile([], 50) is None
    assert report.percentile([5], 99) == 5
    assert report.percentile(list(range(1, 101)), 50) == 50
    assert report.percentile(list(range(1, 101)), 99) == 99


def test_progress_line_says_what_is_where():
    line = report.progress_line(12.34, 45, 41, 40, 1, None, {"power_cut": 2, "wifi_drop": 1})
    assert line == "[ 12.3s/45s] confirmed 41  at central 40  in devices 1  in gateway ?  faults 3"
