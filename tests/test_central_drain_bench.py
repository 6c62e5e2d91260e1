"""The drain benchmark in its reduced form: it runs, delivers every rating once, prints its JSON.
(No timing is asserted: figures belong to the benchmark run, not to tests.)"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_drain_bench_reduced(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hall_simulator.bench.drain", "--json",
                          "--ratings", "3000", "--batch", "250", "--workdir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["name"] == "drain"
    figures = result["figures"]
    assert figures["ratings"] == 3000 and figures["requests"] >= 12
    assert figures["ratings_per_s"] > 0 and figures["baseline_ratings_per_s"] > 0
    assert result["ratio"] > 0 and figures["peak_rss_mb"] > 0
    assert figures["concurrency"] == 2 and figures["baseline_s"] > 0
    assert set(figures["cpu_us_per_rating"]) == {"gateway", "central", "baseline_client",
                                                 "baseline_central"}
    assert all(v > 0 for v in figures["cpu_us_per_rating"].values())
    assert {"fill_3000", "drain_left_0", "drain_left_1500"} <= set(figures["rss_mb_at"])
    assert not (tmp_path / "bodies.bin").exists()     # the baseline's scratch file is removed
    import sqlite3
    rows = sqlite3.connect(tmp_path / "central.db").execute(
        "SELECT COUNT(*), COUNT(DISTINCT rating_id) FROM ratings").fetchone()
    assert rows == (3000, 3000)
    rows = sqlite3.connect(tmp_path / "baseline.db").execute(
        "SELECT COUNT(*), COUNT(DISTINCT rating_id) FROM ratings").fetchone()
    assert rows == (3000, 3000)       # the baseline delivered the very same ratings
