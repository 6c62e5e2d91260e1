import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from hall_simulator import bench, cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("windows, rs485, mqtt, expected", [
    (None, None, None, (6, 6)),
    (16, None, None, (8, 8)),
    (5, None, None, (3, 2)),
    (10, 7, None, (7, 3)),
    (10, None, 10, (0, 10)),
    (None, 3, None, (3, 0)),
    (None, 2, 5, (2, 5)),
    (7, 2, 5, (2, 5)),
])
def test_device_plan(windows, rs485, mqtt, expected):
    assert cli.plan_devices(windows, rs485, mqtt) == expected


@pytest.mark.parametrize("windows, rs485, mqtt", [(4, 5, None), (6, 2, 2), (0, None, None),
                                                 (None, 0, 0), (None, 248, 0)])
def test_impossible_plans_are_refused(windows, rs485, mqtt):
    with pytest.raises(ValueError):
        cli.plan_devices(windows, rs485, mqtt)


@pytest.mark.parametrize("text, mqtt, expected", [
    (None, 8, 4), (None, 1, 0), ("3", 8, 3), ("0", 8, 0), ("8", 8, 8), ("0.25", 8, 2),
    ("50%", 6, 3), ("100%", 5, 5), ("0.0", 4, 0)])
def test_touch_plan(text, mqtt, expected):
    assert cli.plan_touch(text, mqtt) == expected


@pytest.mark.parametrize("speed, baud", [(1, 9600), (0.5, 9600), (2, 19200), (3, 38400),
                                         (10, 115200), (40, 115200)])
def test_an_accelerated_hall_gets_a_faster_bus(speed, baud):
    assert cli.auto_baud(speed) == baud
    assert cli.parse_hall_args(["--speed", str(speed)]).baud == baud
    assert cli.parse_hall_args(["--speed", str(speed), "--baud", "9600"]).baud == 9600


@pytest.mark.parametrize("text", ["9", "-1", "1.5", "150%", "many"])
def test_impossible_touch_plans_are_refused(text):
    with pytest.raises(ValueError):
        cli.plan_touch(text, 8)


def test_hall_options_parse_with_defaults_and_checks(capsys):
    o = cli.parse_hall_args(["--chaos", "standard", "--windows", "16", "--duration", "120",
                             "--speed", "10", "--seed", "23", "--report", "r.json",
                             "--screenshots", "shots"])
    assert (o.chaos, o.windows, o.rs485, o.mqtt, o.touch) == ("standard", 16, 8, 8, 4)
    assert (o.duration, o.speed, o.seed, o.report, o.screenshots) == (120.0, 10.0, 23, "r.json", "shots")
    o = cli.parse_hall_args([])
    assert o.chaos == "none" and o.speed == 1.0 and isinstance(o.seed, int)
    assert cli.parse_hall_args(["--mqtt", "4", "--touch", "1"]).touch == 1
    for bad in (["--chaos", "wild"], ["--speed", "0"], ["--windows", "-1"],
                ["--windows", "4", "--rs485", "9"], ["--mqtt", "2", "--touch", "3"]):
        with pytest.raises(SystemExit):
            cli.parse_hall_args(bad)
    assert "--windows must equal" in capsys.readouterr().err


def test_hall_run_reports_not_wired_until_hall_module_exists(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "hall_simulator.hall_run", None)   # an import that fails
    status = cli.main(["--windows", "2", "--seed", "5"])
    assert status == 2
    assert "not wired yet" in capsys.readouterr().out
    seen = {}
    fake = types.SimpleNamespace(run=lambda options: seen.setdefault("o", options) and 0)
    monkeypatch.setitem(sys.modules, "hall_simulator.hall_run", fake)
    assert cli.main(["--rs485", "3", "--seed", "5"]) == 0
    assert seen["o"].rs485 == 3 and seen["o"].mqtt == 0


def test_bench_dispatches_to_the_named_module(monkeypatch, capsys):
    calls = []
    fake = types.SimpleNamespace(main=lambda argv: calls.append(argv) or 0)
    monkeypatch.setattr(cli, "bench_names", lambda: ["fake"])
    monkeypatch.setitem(sys.modules, "hall_simulator.bench.fake", fake)
    assert cli.main(["bench", "fake", "--json", "--devices", "4"]) == 0
    assert calls == [["--json", "--devices", "4"]]
    with pytest.raises(SystemExit):
        cli.main(["bench", "nope"])
    assert "no benchmark 'nope'" in capsys.readouterr().err


def test_percentile_and_emit(capsys):
    assert bench.percentile([5, 1, 3, 2, 4], 50) == 3
    assert bench.percentile(range(1, 101), 99) == 99
    assert bench.percentile([7], 99) == 7
    with pytest.raises(ValueError):
        bench.percentile([], 50)
    bench.emit({"name": "x", "figures": {"a": 1}, "ratio": 0.5}, True)
    assert json.loads(capsys.readouterr().out) == {"name": "x", "figures": {"a": 1}, "ratio": 0.5}


def test_entry_point_runs_as_a_program():
    out = subprocess.run([sys.executable, "-m", "hall_simulator.cli", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for option in ("--windows", "--rs485", "--mqtt", "--duration", "--speed", "--seed", "--chaos",
                   "--report", "--screenshots", "--touch", "--baud", "bench NAME"):
        assert option in out.stdout
