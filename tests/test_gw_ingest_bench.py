"""The ingest benchmark in its reduced form: it runs three pairs (both orders) and the staged run,
stores every rating once in each gateway run, and prints one JSON object. (No timing is asserted.)"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ingest_bench_reduced():
    out = subprocess.run([sys.executable, "-m", "hall_simulator.bench.ingest", "--json",
                          "--count", "300", "--devices", "5", "--rounds", "3", "--stages"],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr     # a run that stores fewer or doubles any fails
    result = json.loads(out.stdout.strip().splitlines()[-1])
    figures = result["figures"]
    assert result["name"] == "ingest" and result["ratio"] > 0
    assert figures["gateway_stored"] == 300 and len(figures["pair_ratios"]) == 3
    assert figures["raw_cpu_us_per_msg"] > 0 and figures["gateway_cpu_us_per_rating"] > 0
    stages = figures["gateway_stage_cpu_us_per_rating"]
    assert set(stages) == {"decode", "check", "handle_rest", "commit", "ack_sign_and_publish",
                           "group_callbacks_rest", "mqtt_outside_callbacks"}
    assert stages["decode"] > 0 and stages["commit"] > 0 and stages["ack_sign_and_publish"] > 0
    assert stages["mqtt_outside_callbacks"] > 0                 # the ingest connection's own work
    assert abs(sum(stages.values()) - figures["gateway_staged_cpu_us"]) < 1.0   # the parts add up
