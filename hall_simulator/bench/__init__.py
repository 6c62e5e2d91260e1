"""Benchmarks: `hall-sim bench NAME --json` or `python -m hall_simulator.bench.NAME --json`.

Each module has main(argv) -> exit status and prints, with --json, one JSON object:
{"name": ..., "figures": {...}, "ratio": measured against a baseline from the same run}.
"""

import json
import math


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, int(math.ceil(p / 100.0 * len(ordered))))
    return ordered[rank - 1]


def emit(result, as_json):
    """Print a result: one JSON line with --json, else a readable listing."""
    if as_json:
        print(json.dumps(result, ensure_ascii=False, sort_keys=True))
        return
    print("%s  ratio=%s" % (result["name"], result.get("ratio")))
    for key, value in sorted(result["figures"].items()):
        print("  %s: %s" % (key, json.dumps(value, ensure_ascii=False, sort_keys=True)))
