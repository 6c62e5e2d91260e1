"""The whole virtual hall on the real code: broker, RS-485 bus, the gateway as a child process,
the central API, firmware evaluators with citizens, the queueing system; then the report."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from hall_support import central, run_hall  # noqa: E402

from hall_simulator import report  # noqa: E402


def test_a_small_hall_loses_nothing_and_doubles_nothing(tmp_path):
    shots = tmp_path / "shots"
    status, r, out = run_hall(tmp_path, rs485=2, mqtt=2, touch=1, duration=90, speed=10, seed=11,
                              screenshots=str(shots))
    assert r["drained"], out
    assert r["confirmed"] > 0 and r["lost"] == 0 and r["duplicates"] == 0, out
    assert status == 0 and "verdict: OK" in out
    assert r["received"] >= r["confirmed"]
    assert r["queue"]["settle_timeouts"] == 0 and r["queue"]["unknown_callbacks"] == 0
    for key in ("confirmed", "received", "lost", "duplicates", "retransmissions", "not_rated",
                "work_orders", "faults", "seed", "speed", "duration_s", "chaos", "devices", "options"):
        assert key in r, key
    assert r["options"]["seed"] == 11 and r["options"]["touch"] == 1
    assert r["latency_ms"]["press_to_ack"]["samples"] > 0
    assert r["work_orders"] == r["work_orders_expected"]
    on_disk = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert on_disk["confirmed"] == r["confirmed"] and on_disk["latency_ms"]["p50"] is not None
    # both transports carried ratings to the central API
    devices = {rid.split(":")[0] for (rid,) in central(tmp_path, "SELECT rating_id FROM ratings"
                                                                " WHERE source=1")}
    assert {"w01", "w02"} & devices and {"w03", "w04"} & devices
    # w04 is a touch board: its citizens tapped business and service too; the others rate overall
    assert r["devices"]["boards"] == {"five_button": 3, "touch": 1} and r["evaluators"]["taps"] > 0
    rows = central(tmp_path, "SELECT rating_id, overall, business, service FROM ratings"
                             " WHERE source=1 AND overall IS NOT NULL")
    touch = [row for row in rows if row[0].startswith("w04:")]
    assert touch and all(b and s for _, _, b, s in touch)
    assert all(b is None and s is None for rid, _, b, s in rows if not rid.startswith("w04:"))
    # --screenshots: every evaluator's screen and the gateway's OLED, as PNG files
    names = sorted(p.name for p in shots.iterdir())
    assert names == ["gateway-oled.png", "w01.png", "w02.png", "w03.png", "w04.png"]
    assert all((shots / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
    # the report recomputed after the fact from the files gives the same verdict
    again = report.compute(report.read_log(tmp_path / "hall" / "confirmed.jsonl"),
                           report.central_view(str(tmp_path / "hall" / "central.db")))
    assert again["confirmed"] == r["confirmed"] and again["lost"] == 0


def test_chaos_kills_and_cuts_yet_nothing_is_lost(tmp_path):
    status, r, out = run_hall(tmp_path, rs485=2, mqtt=2, duration=150, speed=10, seed=23,
                              chaos="standard")
    assert len(r["faults"]) >= 5, r["faults"]
    assert r["faults"].get("gateway_kill", 0) >= 1 and r["faults"].get("power_cut", 0) >= 1
    assert r["confirmed"] > 0 and r["lost"] == 0 and r["duplicates"] == 0, out
    # every window's case settled: by its callback, or (callback late after the gateway's
    # restart) by asking the gateway; none given up, no callback for a case nobody reported
    q = r["queue"]
    assert q["settle_timeouts"] == 0 and q["unknown_callbacks"] == 0, q
    assert q["settled_by_callback"] + q["settled_by_query"] == q["cases"] - r["case_kinds"].get(
        "failed_receipt", 0), q
