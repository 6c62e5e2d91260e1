"""A power cut at every flash write step of an over-the-air update (offer, manifest, chunks,
local copies, the switch, the trial boot's count, the confirmation), then a reboot: the device
always boots a whole release, old or new, never neither; served again it resumes and ends on the
new release, confirmed, and the rating waiting in its outbox is untouched. Under CPython (three
ways a cut can tear a write) and real MicroPython 1.29 (tests/fw_ota_support.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fw_ota_support  # noqa: E402


def _every_cut(tmp_path, torn):
    steps, problems = fw_ota_support.update_to_the_end(str(tmp_path / "clean"), 0, torn)
    assert problems == [] and steps > 60, (steps, problems)
    found = []
    for k in range(1, steps + 2):
        found += ["cut at %d: %s" % (k, p)
                  for p in fw_ota_support.update_to_the_end(str(tmp_path / ("c%d" % k)), k, torn)[1]]
    return found


@pytest.mark.parametrize("torn", [0.0, 0.5, 1.0])
def test_every_cut_boots_old_or_new_and_the_update_resumes(torn, tmp_path):
    assert _every_cut(tmp_path, torn) == []


MP_SCRIPT = """
import sys
sys.path.insert(0, "/repo/tests")
import fw_ota_support
steps, problems = fw_ota_support.update_to_the_end("/tmp/clean", 0, 0.5)
assert problems == [], problems
bad = 0
for k in range(1, steps + 2):
    for p in fw_ota_support.update_to_the_end("/tmp/c%d" % k, k, 0.5)[1]:
        print("PROBLEM cut at %d: %s" % (k, p))
        bad += 1
print("CUTS", steps, bad)
"""


def test_every_cut_under_micropython(micropython):
    r = micropython(MP_SCRIPT, trees=("protocol", "firmware", "tests"), timeout=300).check()
    assert "PROBLEM" not in r.stdout, r.stdout
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("CUTS ")][-1]
    assert int(line.split()[1]) > 60 and line.split()[2] == "0", r.stdout
