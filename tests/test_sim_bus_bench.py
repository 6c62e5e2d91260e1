"""The rs485 bench end to end at a small size: every press reaches the master exactly once."""

import json

import pytest

from hall_simulator.bench import rs485


@pytest.mark.parametrize("master", ["gateway", "link"])
def test_rs485_bench_commits_every_press_once(capsys, master):
    assert rs485.main(["--json", "--devices", "4", "--duration", "1.5", "--press-every", "0.5",
                       "--baud", "115200", "--master", master, "--devices-impl", "link"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["name"] == "rs485"
    f = result["figures"]["115200"]
    assert f["pressed"] > 0
    assert f["committed"] == f["pressed"] == f["press_to_committed_ms"]["count"]
    assert f["left_in_outboxes"] == 0 and f["master"]["ratings"] == f["pressed"]
    assert result["note"].startswith("master: " + master)
    assert f["press_to_committed_ms"]["p50"] <= f["press_to_committed_ms"]["p99"]
    # the wire limit comes from protocol.timing: 4 idle exchanges of a few bytes at 115,200 baud
    assert 4 * 2 * 1.75 < f["wire_limit_cycle_ms"] < 4 * 10
    assert result["ratio"] == f["efficiency"] > 0


def test_rs485_bench_with_the_real_firmware_evaluators(capsys):
    assert rs485.main(["--json", "--devices", "2", "--duration", "3", "--press-every", "0.8",
                       "--baud", "115200", "--devices-impl", "firmware"]) == 0
    result = json.loads(capsys.readouterr().out)
    f = result["figures"]["115200"]
    assert "firmware evaluators" in result["note"]
    assert f["pressed"] > 0                      # thank-you screens shown
    assert f["committed"] == f["pressed"] == f["press_to_committed_ms"]["count"]
    assert f["left_in_outboxes"] == 0 and f["master"]["rejected"] == 0
