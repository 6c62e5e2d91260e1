"""The rs485_master bench at a tiny size: found by name, every press committed once by the real
gateway master, the wire-limit baseline and the goals computed, not assumed."""

import json

import pytest

from hall_simulator import cli
from hall_simulator.bench import rs485_master
from protocol import timing


@pytest.mark.parametrize("devices_in", ["process", "thread"])
def test_found_by_name_and_commits_every_press_once(capsys, devices_in):
    assert "rs485_master" in cli.bench_names()
    assert cli.main(["bench", "rs485_master", "--json", "--devices", "3", "--duration", "1.5",
                     "--press-every", "0.5", "--baud", "115200", "--devices-in", devices_in]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["name"] == "rs485_master"
    f = result["figures"]["115200"]
    assert f["pressed"] > 0
    assert f["committed"] == f["pressed"] == f["press_to_committed_ms"]["count"]
    assert f["left_in_outboxes"] == 0 and f["master"]["rejected"] == 0
    assert f["master"]["seen_again"] == 0
    # the baseline is the computed wire limit, and efficiency is measured against it
    sizes = result["baseline"]["payload_bytes"]
    assert f["wire_limit_cycle_ms"] == round(
        timing.poll_cycle_us(3, 115200, 2000, sizes["poll"], sizes["idle"]) / 1000, 2)
    assert abs(f["efficiency"] - f["wire_limit_cycle_ms"] / f["idle_cycle_ms"]) < 0.01
    assert result["ratio"] == f["efficiency"]
    goals = f["goals"]
    assert set(goals) == {"p99_ms", "efficiency"}
    assert goals["p99_ms"]["measured"] == f["press_to_committed_ms"]["p99"]
    assert goals["p99_ms"]["met"] == (goals["p99_ms"]["measured"] <= 150)
    assert goals["efficiency"]["met"] == (f["efficiency"] >= 0.8)
    assert result["goals_met"] == (goals["p99_ms"]["met"] and goals["efficiency"]["met"])
    # the idle exchange in halves: the line is paced at the baud rate and the master keeps the
    # guard, so neither half can beat the wire
    ph = f["idle_phases"]
    assert ph["exchanges"] + ph["silent"] >= 3 * 5 and ph["exchanges"] > 0
    assert ph["request_to_reply_ms"]["p50"] >= 0.95 * ph["wire_request_to_reply_ms"]
    assert ph["reply_to_next_request_ms"]["p50"] >= 0.95 * ph["wire_reply_to_next_request_ms"]
    assert "SlaveLink" in result["note"] and "in a %s;" % devices_in in result["note"]


def test_goals_are_judged_against_the_measurement():
    fig = {"press_to_committed_ms": {"p99": 151.0}, "efficiency": 0.95}
    assert rs485_master.judge(115200, fig) == {
        "efficiency": {"goal": 0.8, "measured": 0.95, "met": True},
        "p99_ms": {"goal": 150.0, "measured": 151.0, "met": False}}
    assert rs485_master.judge(9600, {"press_to_committed_ms": {"p99": None}, "efficiency": 1})[
        "p99_ms"]["met"] is False                  # nothing committed: not met
    assert rs485_master.judge(19200, fig) == {}


def test_the_round_robin_floor_is_a_whole_cycle():
    # a press just after its device's poll waits for the next one: at 32 devices that is
    # above the 115,200 goal and the 9,600 goal alike
    for baud, goal in ((115200, 150), (9600, 1000)):
        floor = rs485_master.p99_floor_us(32, baud) / 1000
        poll, idle, _ = rs485_master._payload_sizes()
        cycle = timing.poll_cycle_us(32, baud, 2000, poll, idle) / 1000
        assert 0.99 * cycle < floor < 1.3 * cycle
        assert floor > goal
