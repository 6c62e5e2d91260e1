"""Full rating flows on the sim board: scripted presses through the real UI (five buttons) or
the UI's actions (touch), under CPython and under real MicroPython 1.29."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fw_support  # noqa: E402

FONT = str(Path(__file__).resolve().parent.parent / "firmware" / "fonts" / "unifont16.bin")


@pytest.mark.parametrize("name", fw_support.FLOWS)
def test_five_button_flow(name, tmp_path):
    rig = fw_support.run_flow(name, "five_button", font=FONT, base=str(tmp_path))
    assert rig.board.display.shows > 0                   # every flow went through the real screens


@pytest.mark.parametrize("name", fw_support.FLOWS)
def test_touch_flow(name, tmp_path):
    fw_support.run_flow(name, "touch", font=None, base=str(tmp_path))


MP_SCRIPT = """
import sys
sys.path.insert(0, "/repo/tests")
import fw_support
for profile, font in (("five_button", "/repo/firmware/fonts/unifont16.bin"), ("touch", None)):
    for name in fw_support.FLOWS:
        try:
            fw_support.run_flow(name, profile, font=font)
            print("PASS", profile, name)
        except Exception as e:
            sys.print_exception(e)
            print("FAIL", profile, name, repr(e))
"""


def test_all_flows_under_micropython(micropython):
    r = micropython(MP_SCRIPT, trees=("protocol", "firmware", "tests"), timeout=300).check()
    assert "FAIL" not in r.stdout, r.stdout
    assert r.stdout.count("PASS") == 2 * len(fw_support.FLOWS), r.stdout
