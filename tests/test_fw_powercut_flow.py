"""A power cut at every flash write step of the whole rating flow (boot, CONFIG, rating, ACK,
for three cases in a row), then a reboot, the gateway draining the outbox and sending every case
again: no case is ever rated twice, and none is lost after its thank-you. Under CPython and real
MicroPython 1.29 (tests/fw_support.cut_rating_flow)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fw_support  # noqa: E402


@pytest.mark.parametrize("torn", [0.0, 0.5, 1.0])
def test_no_case_rated_twice_whatever_write_the_power_cut_hits(torn, tmp_path):
    steps, problems = fw_support.cut_rating_flow(str(tmp_path / "clean"), 0, torn)
    assert problems == [] and steps > 20
    found = []
    for k in range(1, steps + 1):
        found += ["cut at %d: %s" % (k, p)
                  for p in fw_support.cut_rating_flow(str(tmp_path / ("c%d" % k)), k, torn)[1]]
    assert found == []


MP_SCRIPT = """
import sys
sys.path.insert(0, "/repo/tests")
import fw_support
steps, problems = fw_support.cut_rating_flow("/tmp/clean", 0, 0.5)
assert problems == [], problems
bad = 0
for k in range(1, steps + 1):
    for p in fw_support.cut_rating_flow("/tmp/c%d" % k, k, 0.5)[1]:
        print("PROBLEM cut at %d: %s" % (k, p))
        bad += 1
print("CUTS", steps, bad)
"""


def test_no_case_rated_twice_under_micropython(micropython):
    r = micropython(MP_SCRIPT, trees=("protocol", "firmware", "tests"), timeout=300).check()
    assert "PROBLEM" not in r.stdout, r.stdout
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("CUTS ")][-1]
    assert int(line.split()[1]) > 20 and line.split()[2] == "0", r.stdout
