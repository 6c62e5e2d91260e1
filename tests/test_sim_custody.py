"""A blank replacement gateway loses nothing (protocol/SPEC.md 3.11, custody): the hall's gateway
dies with its SD card while the central API is down, a spare Pi with only the installed
configuration takes over, and every rating a citizen was told was recorded still reaches the
central API, offered again by the evaluators. With custody turned off the same scenario loses what
the dead store held, and the report says how many: the proof that the first test can fail.

The whole-hall runs are reduced: four windows (two on the bus, two on MQTT), 30 real seconds of
opening hours at x10, one gateway_replaced (the central API down about 3 s before the kill and
4 s after the spare listens)."""

import argparse
import asyncio
import io
import os
import sqlite3

import pytest

from hall_simulator import chaos, citizens, cli, hall, hall_run, report, spare_gateway

REPLACED = chaos.Event(6.0, "gateway_replaced", {"before_s": 3.0, "down_s": 1.0, "outage_s": 4.0})


def _run(tmp_path, custody):
    options = argparse.Namespace(rs485=2, mqtt=2, duration=300.0, speed=10.0, seed=41,
                                 chaos="standard", custody=custody, touch=0, screenshots=None,
                                 report=str(tmp_path / "report.json"))
    kwargs = {"workdir": str(tmp_path / "hall"), "mix": citizens.Mix(think_s=(1.0, 3.0)),
              "rating_timeout_s": 20,
              "chaos_events": [chaos.Event(REPLACED.at_s, REPLACED.kind, dict(REPLACED.params))]}
    out = io.StringIO()
    status, r = asyncio.run(hall_run.run_async(options, out=out, hall_kwargs=kwargs))
    return status, r, out.getvalue()


def _replaced_for_real(r, text):
    """The fault hit: the dead store held ratings for the central API, the spare started blank."""
    assert r["faults"] == {"gateway_replaced": 1}, text
    c = r["custody"]
    assert c["replacements"] == 1 and c["dead_store_pending"] > 0, text
    assert r["fault_hits"]["gateway_replaced"] == c["dead_store_pending"]
    assert not r["faults_unhit"] and r["gateway"]["kills"] == 1 and r["gateway"]["starts"] == 2
    assert "outbox.db" not in c["kept_files"] and "console-users.toml" in c["kept_files"]


def _store_with(path, rows):
    """A store file whose upload queue holds `rows` (kind, key): what a dead gateway left."""
    db = sqlite3.connect(str(path))
    db.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, kind TEXT, key TEXT)")
    db.executemany("INSERT INTO outbox (kind, key) VALUES (?,?)", rows)
    db.commit()
    db.close()

def test_a_blank_replacement_gateway_loses_nothing(tmp_path):
    status, r, text = _run(tmp_path, "on")
    _replaced_for_real(r, text)
    c = r["custody"]
    assert r["confirmed"] > 0 and r["lost"] == 0 and r["duplicates"] == 0, text
    assert c["recovered"] == c["dead_store_pending"] and c["not_recovered"] == 0, text
    # the spare's case ids lie above the dead store's: no evaluator refuses a case as rated before
    assert c["repeat_case"] == 0, text
    assert r["drained"] and status == 0 and "verdict: OK" in text, text


def test_with_custody_off_the_same_replacement_loses_what_the_dead_store_held(tmp_path,
                                                                             monkeypatch):
    # what is lost never comes: the drain need not wait its whole 90 s to show it
    monkeypatch.setattr(hall, "DRAIN_MAX_S", 25.0)
    status, r, text = _run(tmp_path, "off")
    _replaced_for_real(r, text)
    c = r["custody"]
    assert not c["enabled"] and "custody OFF" in text
    with open(tmp_path / "hall" / "gateway.toml", encoding="utf-8") as f:
        assert "[custody]\nenabled = false" in f.read()
    # lost: told "recorded" at the evaluator, never at the central API; each one in the dead store
    assert r["lost"] > 0 and "lost %d " % r["lost"] in text, text
    assert set(r["lost_ids"]) <= set(c["not_recovered_ids"]), (r["lost_ids"], c)
    assert c["not_recovered_confirmed"] == r["lost"]
    assert not report.ok(r) and status == 1 and "verdict: FAILED" in text


# --- the schedule, the options, the spare's data directory ----------------------------------------
def test_standard_chaos_replaces_the_gateway_apart_from_kills_and_outages():
    for seed in range(60):
        events = chaos.schedule("standard", 15.0 + seed * 10, seed, rs485=["w01", "w02"],
                                mqtt=["w03"], warmup_s=1.5)
        assert sum(e.kind == "gateway_replaced" for e in events) >= 1, seed
        spans = [(e.at_s, e.at_s + chaos.SPAN[e.kind](e.params), e.kind) for e in events
                 if e.kind in ("gateway_replaced", "gateway_kill", "uplink_outage")]
        for a in spans:
            for b in spans:
                if a is not b and "gateway_replaced" in (a[2], b[2]):
                    assert a[1] <= b[0] or b[1] <= a[0], (seed, a, b)


def test_one_fault_kind_alone_with_a_long_outage_fits_the_opening_hours():
    o = cli.parse_hall_args(["--chaos-kinds", "gateway_replaced", "--outage", "600", "--windows",
                             "32", "--speed", "5", "--duration", "1500", "--custody", "off"])
    assert o.chaos == "standard" and o.chaos_kinds == ["gateway_replaced"] and o.custody == "off"
    h = hall.Hall(o.rs485, o.mqtt, o.seed, speed=o.speed, duration_s=o.duration, chaos=o.chaos)
    events = hall_run.chaos_events(o, h)
    assert {e.kind for e in events} == {"gateway_replaced"}
    first = events[0]
    # 600 simulated seconds at x5: the gateway dies two thirds into the outage
    assert (first.params["before_s"], first.params["outage_s"]) == (80.0, 40.0)
    assert first.at_s + chaos.SPAN[first.kind](first.params) <= 300 - 15
    with pytest.raises(SystemExit):
        cli.parse_hall_args(["--chaos-kinds", "gateway_replaced", "--outage", "600", "--speed",
                             "5", "--duration", "300"])
    with pytest.raises(SystemExit):
        cli.parse_hall_args(["--chaos-kinds", "gateway_sneezed"])
    assert cli.parse_hall_args([]).custody == "on"


def test_the_spare_keeps_the_installed_configuration_and_nothing_of_the_store(tmp_path):
    data = tmp_path / "gateway"
    data.mkdir()
    config = ("console-users.toml", "console-initial-password", "http-credentials.toml",
              "registry.json", "live-config.json", "uplink-ca.pem")
    state = ("outbox.db", "outbox.db-wal", "outbox.db-shm", "outbox.db-acked", "history.sqlite",
             "alerts.sqlite", "releases.json", "rollout.json", "oled.png", "hall-gateway.pid")
    for name in config + state:
        (data / name).write_text(name)
    os.remove(data / "outbox.db")
    _store_with(data / "outbox.db", [("rating", "w02:7"), ("case", "c1"), ("rating", "w01:3")])
    kept = spare_gateway.replace_data_dir(str(data), str(tmp_path / "dead"))
    assert sorted(kept) == sorted(config) and sorted(os.listdir(data)) == sorted(config)
    assert spare_gateway.pending_ratings(str(tmp_path / "dead" / "outbox.db")) == ["w01:3", "w02:7"]
    assert spare_gateway.pending_ratings(str(data / "outbox.db")) == []


def test_a_replacement_never_runs_during_a_kill_or_an_outage(tmp_path):
    h = hall.Hall(1, 1, seed=1, workdir=str(tmp_path / "hall"))
    for busy in ("_killing", "_outage_end"):
        setattr(h, busy, True if busy == "_killing" else 1.0)
        with pytest.raises(chaos.Skipped):
            asyncio.run(spare_gateway.gateway_replaced(h, 1.0, 1.0, 1.0))
        setattr(h, busy, False if busy == "_killing" else None)


class _Gateway:
    """Stands in for GatewayProcess: starts and kills counted, no HTTP (its /status is away)."""
    http_url = "http://127.0.0.1:9"

    def __init__(self):
        self.running, self.kills, self.starts = True, 0, 0

    def kill(self):
        self.running = False
        self.kills += 1

    def start(self):
        self.running = True
        self.starts += 1

    async def wait_ready(self):
        await asyncio.sleep(0.1)


async def _post(session, url):
    import aiohttp
    try:
        async with session.post(url + "/v1/batches", data=b"{}") as resp:
            return resp.status
    except aiohttp.ClientError:
        return "cut"


async def _while(task, url):
    """POSTs to the central API while `task` runs: the answers of those that ended before it."""
    import aiohttp
    out = []
    async with aiohttp.ClientSession() as session:
        while not task.done():
            answer = await _post(session, url)
            if not task.done():
                out.append(answer)
            await asyncio.sleep(0.05)
        return out, await _post(session, url)


def test_the_hook_keeps_the_central_api_away_around_the_kill_and_counts_the_dead_stores_ratings(
        tmp_path):
    from hall_simulator.central_api import CentralServer
    from hall_simulator.central_store import CentralStore

    async def body():
        store = CentralStore(str(tmp_path / "central.db"))
        central = CentralServer(store, port=0)
        await central.start()
        h = hall.Hall(1, 1, seed=1, workdir=str(tmp_path / "hall"))
        h.central, h.store, h.gateway = central, store, _Gateway()
        data = tmp_path / "hall" / "gateway"
        data.mkdir(parents=True)
        (data / "console-users.toml").write_text("users")
        _store_with(data / "outbox.db", [("rating", "w01:4"), ("rating", "w02:9"), ("case", "c")])
        try:
            fault = asyncio.ensure_future(spare_gateway.gateway_replaced(
                h, before_s=0.3, down_s=0.3, outage_s=0.5, cap_s=0.5))
            during, after = await _while(fault, central.url)
            return h, await fault, during, after
        finally:
            await central.stop()
            store.close()

    h, hits, during, after = asyncio.run(body())
    assert hits == 2 and h.replaced[0]["pending"] == ["w01:4", "w02:9"]
    assert (h.gateway.kills, h.gateway.starts, h.gateway.running) == (1, 1, True)
    # away for the whole fault (every request cut), answering again once it is over
    assert len(during) >= 5 and set(during) == {"cut"} and after != "cut", (during, after)
    data = tmp_path / "hall" / "gateway"
    assert sorted(os.listdir(data)) == ["console-users.toml"]
    assert (tmp_path / "hall" / "gateway-dead-1" / "outbox.db").exists()
    assert h._outage_end is None and not h._killing
