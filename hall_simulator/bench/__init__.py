"""Benchmarks: `hall-sim bench NAME --json` or `python -m hall_simulator.bench.NAME --json`.

Each module has main(argv) -> exit status and prints, with --json, one JSON object:
{"name": ..., "figures": {...}, "ratio": measured against a baseline from the same run}.
"""

import functools
import json
import logging
import math


def quiet_gateway(level):
    """Decorator: the gateway's loggers at `level` while the benchmark runs, as they were after
    (the suite runs benchmarks in its own process; a level left behind would hide later tests' logs)."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            logger = logging.getLogger("gateway")
            before = logger.level
            logger.setLevel(level)
            try:
                return fn(*args, **kwargs)
            finally:
                logger.setLevel(before)
        return run
    return wrap


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
