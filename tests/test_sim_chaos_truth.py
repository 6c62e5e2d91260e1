"""Chaos that tells the truth: faults of a kind never overlap (schedule and hooks), and each fault
reports how many operations it actually hit, so one that met nothing is not counted as tested.
The hooks run against the real reference central API on loopback and the real virtual bus."""

import asyncio
import random
import socket
import time

import aiohttp
from hypothesis import given, settings, strategies as st

from hall_simulator import chaos, hall, report
from hall_simulator.bus_runners import BusThread
from hall_simulator.central_api import CentralServer
from hall_simulator.central_store import CentralStore


# --- the schedule ---------------------------------------------------------------------------------
def _ids(prefix, n):
    return ["%s%02d" % (prefix, i + 1) for i in range(n)]


@settings(max_examples=300, deadline=None)
@given(level=st.sampled_from(["standard", "harsh", "hostile"]), seed=st.integers(0, 10 ** 6),
       duration=st.floats(20, 900), rs485=st.integers(0, 20), mqtt=st.integers(0, 20))
def test_no_fault_of_a_lasting_kind_starts_before_the_last_one_of_its_kind_is_over(
        level, seed, duration, rs485, mqtt):
    events = chaos.schedule(level, duration, seed, rs485=_ids("r", rs485), mqtt=_ids("m", mqtt))
    last = {}
    for e in events:
        span = chaos.SPAN.get(e.kind)
        if span is None:
            continue
        if e.kind in last:
            prev = last[e.kind]
            assert e.at_s >= prev.at_s + chaos.SPAN[e.kind](prev.params), (prev, e)
        last[e.kind] = e
    # every kind the devices allow is still played at least once
    if events:
        want = {k for k in chaos.KINDS if chaos.NEEDS.get(k) is None
                or (chaos.NEEDS[k] == "rs485" and rs485) or (chaos.NEEDS[k] == "mqtt" and mqtt)
                or (chaos.NEEDS[k] == "all" and rs485 + mqtt)}
        assert {e.kind for e in events} == want


def test_the_harsh_run_that_started_two_gateways_now_spaces_its_kills():
    """--chaos harsh --windows 32 --seed 777 (60 s): kills overlapped and a second gateway died on
    EADDRINUSE after kicking the first's ingest connection."""
    events = chaos.schedule("harsh", 60.0, 777, rs485=_ids("w", 16), mqtt=_ids("x", 16),
                            warmup_s=5.0)
    kills = [e for e in events if e.kind == "gateway_kill"]
    assert kills
    for a, b in zip(kills, kills[1:]):
        assert b.at_s >= a.at_s + a.params["down_s"] + chaos.KILL_START_S


def test_the_hostile_level_adds_campaigns_with_the_bigger_flood():
    standard = chaos.schedule("standard", 300, 3, rs485=["w01"], mqtt=["w02"])
    hostile = chaos.schedule("hostile", 300, 3, rs485=["w01"], mqtt=["w02"])
    assert sum(e.kind == "hostile" for e in standard) == 1
    campaigns = [e for e in hostile if e.kind == "hostile"]
    assert len(campaigns) > 1 and all(e.params["flood"] == 5000 for e in campaigns)
    assert all(e.params["flood"] <= 5000 and e.params["limit_s"] <= 60 for e in campaigns)


# --- the player counts hits -----------------------------------------------------------------------
def test_the_player_counts_hits_skips_and_kinds_that_hit_nothing():
    async def some(**params):
        return params["n"]

    async def detail(**params):
        return {"a": 2, "b": 0}

    async def busy(**params):
        raise chaos.Skipped("still running")

    events = [chaos.Event(0.0, "uplink_5xx", {"n": 2}), chaos.Event(0.01, "uplink_5xx", {"n": 1}),
              chaos.Event(0.02, "uplink_429", {"n": 0}), chaos.Event(0.03, "hostile", {}),
              chaos.Event(0.04, "gateway_kill", {})]
    c = chaos.Chaos(events, {"uplink_5xx": some, "uplink_429": some, "hostile": detail,
                             "gateway_kill": busy})
    asyncio.run(c.run())
    assert c.injected == {"uplink_5xx": 2, "uplink_429": 1, "hostile": 1}
    assert c.hits == {"uplink_5xx": 3, "uplink_429": 0, "hostile": 2}
    assert c.hit_detail == {"hostile": {"a": 2, "b": 0}}
    assert c.skipped == {"gateway_kill": 1} and c.unhit() == ["uplink_429"]
    assert [e["hits"] for e in c.log] == [2, 1, 0, 2]


# --- the hooks, against the real parts ------------------------------------------------------------
class _Gateway:
    """Stands in for GatewayProcess (a child process would take seconds per start): counts how
    many run at once."""

    def __init__(self):
        self.alive = 1
        self.most = 1
        self.starts = 0

    @property
    def running(self):
        return self.alive > 0

    def kill(self):
        self.alive = max(0, self.alive - 1)

    def start(self):
        self.alive += 1
        self.starts += 1
        self.most = max(self.most, self.alive)

    async def wait_ready(self):
        await asyncio.sleep(0.3)


async def _with_central(tmp_path, body):
    store = CentralStore(str(tmp_path / "central.db"))
    central = CentralServer(store, port=0)
    await central.start()
    h = hall.Hall(1, 1, seed=1, workdir=str(tmp_path / "hall"))
    h.central = central
    try:
        return await body(h, central)
    finally:
        await central.stop()
        store.close()


async def _post(url, n, gap_s=0.0, start_s=0.0):
    await asyncio.sleep(start_s)
    out = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            try:
                async with session.post(url + "/v1/batches", data=b"{}") as resp:
                    out.append(resp.status)
            except aiohttp.ClientError:
                out.append("cut")
            await asyncio.sleep(gap_s)
    return out


def test_gateway_kills_never_overlap_at_the_hook(tmp_path):
    async def body(h, central):
        h.gateway = _Gateway()
        kill = h.chaos_hooks()["gateway_kill"]
        results = await asyncio.gather(kill(down_s=0.2), kill(down_s=0.2), return_exceptions=True)
        return h.gateway, results

    gw, results = asyncio.run(_with_central(tmp_path, body))
    assert sorted(map(type, results), key=str) == sorted([int, chaos.Skipped], key=str)
    assert 1 in results and gw.starts == 1 and gw.most == 1


def test_a_central_incident_waits_for_a_request_and_counts_the_answers_it_altered(tmp_path):
    async def body(h, central):
        hooks = h.chaos_hooks()
        # the first request comes 1 s later than the old 0.3 s window: still hit, twice
        hits, statuses = await asyncio.gather(
            hooks["uplink_5xx"](count=2, status=503, window_s=0.3, cap_s=10),
            _post(central.url, 3, gap_s=0.05, start_s=1.0))
        # nobody asks: nothing hit after the cap, and the fault is disarmed
        idle = await hooks["uplink_429"](count=2, window_s=0.1, cap_s=0.5)
        after = await _post(central.url, 1)
        # a second incident of a kind while one is armed is skipped, not queued behind it
        slow = await asyncio.gather(hooks["uplink_slow"](count=1, delay_s=0.2, cap_s=5),
                                    hooks["uplink_slow"](count=1, delay_s=0.2, cap_s=5),
                                    _post(central.url, 2, start_s=0.2), return_exceptions=True)
        return hits, statuses, idle, after, slow, central.faults.state()

    hits, statuses, idle, after, slow, state = asyncio.run(_with_central(tmp_path, body))
    assert hits == 2 and statuses[:2] == [503, 503] and statuses[2] != 503
    assert idle == 0 and after[0] != 429 and state["throttle_next"] == 0
    assert slow[0] == 1 and isinstance(slow[1], chaos.Skipped) and state["delay_s"] == 0.0


def test_an_outage_lasts_until_a_connection_met_it(tmp_path):
    async def body(h, central):
        hooks = h.chaos_hooks()
        hits, during = await asyncio.gather(hooks["uplink_outage"](seconds=0.2, cap_s=10),
                                            _post(central.url, 1, start_s=0.8))
        after = await _post(central.url, 1)
        return hits, during, after

    hits, during, after = asyncio.run(_with_central(tmp_path, body))
    assert hits >= 1 and during == ["cut"] and after[0] != "cut"


def test_bus_noise_counts_the_bytes_it_corrupted(tmp_path):
    async def body(h, central):
        with BusThread(baud=115200, rng=random.Random(3)) as bus:
            h.bus = bus
            host, port = bus.url.split("//")[1].rsplit(":", 1)
            a = socket.create_connection((host, int(port)))
            b = socket.create_connection((host, int(port)))
            hooks = h.chaos_hooks()
            try:
                quiet = await hooks["bus_noise"](seconds=0.1, ber=0.01, drop_rate=0.0, cap_s=0.3)

                async def talk():
                    end = time.monotonic() + 1.0
                    while time.monotonic() < end:
                        a.sendall(bytes(100))
                        await asyncio.sleep(0.01)
                noisy, _ = await asyncio.gather(
                    hooks["bus_noise"](seconds=0.5, ber=0.01, drop_rate=0.001, cap_s=2), talk())
            finally:
                a.close()
                b.close()
            return quiet, noisy

    quiet, noisy = asyncio.run(_with_central(tmp_path, body))
    assert quiet == 0 and noisy > 0


# --- the report -----------------------------------------------------------------------------------
def _central(ratings, not_rated=None, dup=()):
    return {"ratings": ratings, "duplicate_ratings": dict.fromkeys(dup, "k"), "not_rated": set(),
            "not_rated_keys": not_rated or {}, "counters": {}, "cases_rated_twice": [],
            "work_orders": set(), "rejected": [], "cases": 0}


def _rating(key, source=1):
    return {"case_key": key, "source": source, "received_at": 1.0, "superseded": 0}


def test_forged_and_destroyed_ratings_are_told_apart_from_honest_ones():
    confirmations = [{"rating_id": "w01:1", "source": 1, "case_key": "S1#3", "device": "w01"},
                     {"rating_id": "w01:2", "source": 1, "case_key": "S2#3", "device": "w01"},
                     {"rating_id": "w02:5", "source": 1, "case_key": "S5#3", "device": "w02"},
                     {"rating_id": "w02:6", "source": 1, "case_key": "S6#3", "device": "w02"}]
    central = _central({"w01:1": _rating("S1#3"),            # honest
                        "w01:2": _rating("ROGUE#3"),         # a confirmed id, another case
                        "w01:3": _rating("S3#3"),            # issued (counter <= 3), thanks cut off
                        "w02:9": _rating("ROGUE#3"),         # a counter w02 never used
                        "rogue1:1": _rating("X#3"),          # no such device
                        "w03:0": _rating("D#3", source=3)},  # the central side's default
                       not_rated={"w02:8": "R#1"})
    issued_high = {"w01": 3, "w02": 6}
    assert report.forged(confirmations, central, issued_high) == ["rogue1:1", "w01:2", "w02:8", "w02:9"]
    acked = {"w01:1": 1.0, "w02:5": 2.0}            # w02:5 released, never at the central API
    assert report.destroyed(confirmations, central, acked) == ["w02:5"]   # w02:6 still on w02


def test_the_verdict_fails_on_forged_destroyed_or_unauthorised_and_flags_unhit_kinds():
    base = report.compute([{"rating_id": "w01:1", "source": 1, "case_key": "S1#3", "at": 1.0}],
                          _central({"w01:1": _rating("S1#3")}), {"uplink_429": 2, "bus_cut": 1},
                          {"fault_hits": {"uplink_429": 0, "bus_cut": 40}, "faults_unhit": ["uplink_429"],
                           "forged_accepted": 0, "ratings_destroyed": 0, "unauthorised_changes": 0,
                           "attack_hits": {"http_rekey": 1, "bus_rogue": 0}})
    assert report.ok(base)
    text = report.summary(base)
    assert "NOT EXERCISED (injected, hit nothing): uplink_429" in text
    assert "bus_cut 40" in text and "attacks that reached nothing: bus_rogue" in text
    for name in ("forged_accepted", "ratings_destroyed", "unauthorised_changes"):
        assert not report.ok(dict(base, **{name: 1}))
