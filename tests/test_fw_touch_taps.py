"""Full ratings on the touch board driven by taps at real screen positions (the layout of
firmware/ui/touch.py) through the real UI, on the sim board, under CPython and real MicroPython."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fw_touch_taps  # noqa: E402

FONT = str(Path(__file__).resolve().parent.parent / "firmware" / "fonts" / "unifont16.bin")


@pytest.mark.parametrize("name", fw_touch_taps.TOUCH_TAP_FLOWS)
def test_touch_taps(name, tmp_path):
    rig, taps = fw_touch_taps.run_touch_taps(name, FONT, base=str(tmp_path))
    assert taps >= 8 and rig.board.display.shows > taps // 2


MP_SCRIPT = """
import sys
sys.path.insert(0, "/repo/tests")
import fw_touch_taps
for name in fw_touch_taps.TOUCH_TAP_FLOWS:
    try:
        rig, taps = fw_touch_taps.run_touch_taps(name, "/repo/firmware/fonts/unifont16.bin")
        print("PASS", name, taps)
    except Exception as e:
        sys.print_exception(e)
        print("FAIL", name, repr(e))
"""


def test_touch_taps_under_micropython(micropython):
    files = {"/repo/tests/" + name: (Path(__file__).parent / name).read_bytes()
             for name in ("fw_flash_support.py", "fw_support.py", "fw_touch_taps.py")}
    r = micropython(MP_SCRIPT, files=files, trees=("protocol", "firmware"), timeout=300).check()
    assert "FAIL" not in r.stdout, r.stdout
    assert r.stdout.count("PASS") == len(fw_touch_taps.TOUCH_TAP_FLOWS), r.stdout
