"""The ingest benchmark in its reduced form: it runs three pairs (both orders), stores
every rating once in each gateway run, and prints one JSON object. (No timing is asserted.)"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ingest_bench_reduced():
    out = subprocess.run([sys.executable, "-m", "hall_simulator.bench.ingest", "--json",
                          "--count", "300", "--devices", "5", "--rounds", "3"],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr     # a run that stores fewer or doubles any fails
    result = json.loads(out.stdout.strip().splitlines()[-1])
    figures = result["figures"]
    assert result["name"] == "ingest" and result["ratio"] > 0
    assert figures["gateway_stored"] == 300 and len(figures["pair_ratios"]) == 3
    assert figures["raw_cpu_us_per_msg"] > 0 and figures["gateway_cpu_us_per_rating"] > 0
