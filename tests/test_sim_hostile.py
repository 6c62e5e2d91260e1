"""The hostile chaos kind: a rogue LAN client and bus node attack a whole running hall (real
broker, bus, gateway process, central API, firmware evaluators). Every attack must reach the
hall, and none may get through: no forged rating at the central API, no confirmed rating
destroyed, no change made without authority."""

import argparse
import asyncio
import io

from hall_simulator import chaos, citizens, hall_run, hostile


def test_a_hostile_campaign_reaches_the_hall_and_gets_nothing_through(tmp_path):
    events = [chaos.Event(6.0, "hostile", {"flood": 2000, "seed": 5, "limit_s": 20.0})]
    options = argparse.Namespace(rs485=2, mqtt=2, duration=120.0, speed=10.0, seed=31,
                                 chaos="standard", report=str(tmp_path / "report.json"),
                                 screenshots=None, touch=0)
    kwargs = {"workdir": str(tmp_path / "hall"), "mix": citizens.Mix(think_s=(1.0, 3.0)),
              "rating_timeout_s": 20, "chaos_events": events}
    out = io.StringIO()
    status, r = asyncio.run(hall_run.run_async(options, out=out, hall_kwargs=kwargs))
    text = out.getvalue()
    assert r["faults"] == {"hostile": 1}, text
    hits = r["attack_hits"]
    assert set(hits) == set(hostile.ATTACKS)
    assert all(hits[a] > 0 for a in hostile.ATTACKS), hits          # every attack reached the hall
    assert hits["mqtt_flood"] <= 2000 and hits["bus_rogue"] <= hostile.ROGUE_ANSWERS
    assert r["fault_hits"]["hostile"] == sum(hits.values())
    assert (r["forged_accepted"], r["ratings_destroyed"], r["unauthorised_changes"]) == (0, 0, 0), (
        r.get("forged_ids"), r.get("destroyed_ids"), r.get("unauthorised"))
    assert r["confirmed"] > 0 and r["lost"] == 0 and r["duplicates"] == 0, text
    assert status == 0 and "forged accepted 0  ratings destroyed 0  unauthorised changes 0" in text
