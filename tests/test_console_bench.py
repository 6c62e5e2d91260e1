"""`hall-sim bench console` runs (reduced: 4 windows, one day) and reports its figures in the
shape the README reads; no timing is asserted (benchmarks measure that)."""

import json

from hall_simulator import cli


def test_the_console_benchmark_reports_every_route_and_page(capsys):
    assert cli.main(["bench", "console", "--json", "--windows", "4", "--per-day", "10",
                     "--days", "1", "--requests", "3"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    figures = result["figures"]
    assert result["name"] == "console" and result["ratio"] > 0
    assert figures["ratings"] == 40 and figures["windows"] == 4
    routes = {"healthz", "status", "metrics", "summary_window_today", "summary_hour_today",
              "summary_staff_today", "bad_today", "summary_window_week", "summary_day_week",
              "summary_staff_week", "summary_matter_week", "bad_week"}
    assert routes <= set(figures["median_ms"]) and set(figures["median_ms"]) == set(figures["p95_ms"])
    assert set(figures["page_ms"]) == {"hall", "ratings_today", "ratings_week", "metrics"}
    assert figures["rss_mb"] > 0 and isinstance(figures["goal_met"], bool)
