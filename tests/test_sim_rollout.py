"""hall-sim --rollout, reduced: two windows on the RS-485 bus and two on Wi-Fi/MQTT, the real
firmware and the real gateway, an accelerated hall, a small release (hall_simulator.rollout: a few
small files) and a short idle part. The report: the canary first, every device's version before
and after, a bus device and a Wi-Fi device whose power was cut mid-transfer both resumed, the
broken release rolled back by itself with its reason, nothing lost or doubled, and the press ->
committed p99 of the idle part and of the rollout measured, each on its own samples."""

import argparse
import asyncio

from hall_simulator import hall_run, report, rollout


def test_a_staged_rollout_across_a_running_hall_with_bus_and_wifi_windows(tmp_path, monkeypatch):
    monkeypatch.setattr(rollout, "WARMUP_S", 1.0)
    monkeypatch.setattr(rollout, "IDLE_SAMPLES", 20)
    monkeypatch.setattr(rollout, "DATA_BYTES", 256)
    options = argparse.Namespace(rs485=2, mqtt=2, touch=0, duration=40.0, speed=10.0, seed=7,
                                 chaos="none", baud=115200, report=str(tmp_path / "r.json"),
                                 screenshots=None, rollout=True)
    with open(str(tmp_path / "out.txt"), "w") as out:
        status, result = asyncio.run(hall_run.run_async(
            options, out=out, hall_kwargs={"workdir": str(tmp_path / "hall")}))
    ro = result["rollout"]
    assert "error" not in ro, ro
    assert ro["canary"] == "w01" and ro["canary_first"]
    assert ro["status"] == "done"
    assert sorted(ro["devices"]) == ["w01", "w02", "w03", "w04"]
    assert all(v["before"] == "1.0.0" and v["after"] == "1.1.0" and v["state"] == "confirmed"
               for v in ro["devices"].values()), ro["devices"]
    cuts = ro["power_cuts"]
    assert sorted(cuts) == ["w02", "w04"], cuts                     # one on the bus, one on Wi-Fi
    assert {c["transport"] for c in cuts.values()} == {"rs485", "mqtt"}
    assert all(c["resumed"] and 0 < c["acked_at_cut"] < ro["bytes"] for c in cuts.values()), cuts
    # the power went with half the release or more on flash, and the device came back with
    # exactly those bytes: the transfer went on from them
    assert all(c["boots"] == 1 and c["acked_at_cut"] * 2 >= ro["bytes"]
               and c["resumed_from"] == c["acked_at_cut"] for c in cuts.values()), cuts
    back = ro["rollback"]
    assert back["state"] == "rolled_back" and "boot_failed" in back["reason"], back
    assert back["version_after"] == "1.1.0" and ro["on_neither"] == []
    lat = ro["latency_p99_ms"]
    assert lat["idle_samples"] >= 20 and lat["rollout_samples"] > 0 and lat["ratio"] is not None
    assert result["lost"] == 0 and result["duplicates"] == 0
    assert ro["p99_ratio"] == lat["ratio"] and isinstance(ro["p99_ratio_ok"], bool)
    assert "p99_ratio" in (tmp_path / "out.txt").read_text()
    assert status == 0 and report.ok(result)
