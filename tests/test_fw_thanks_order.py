"""The thank-you follows the outbox append, never precedes or replaces it: a flash that fails or
fills after the case opened shows "error" / "storage_full" (counted), never "thanks"; and the
misuse guard holds for theme items too. Under CPython and real MicroPython 1.29."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fw_thanks_support as fts  # noqa: E402

FONT = str(Path(__file__).resolve().parent.parent / "firmware" / "fonts" / "unifont16.bin")


@pytest.mark.parametrize("scenario", fts.SCENARIOS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("profile", ["five_button", "touch"])
def test_thanks_is_shown_only_after_the_rating_is_in_the_outbox(scenario, profile, tmp_path):
    scenario(profile, font=FONT if profile == "five_button" else None, base=str(tmp_path))


def test_a_theme_item_pressed_within_the_guard_counts_once(tmp_path):
    fts.theme_item_guard(base=str(tmp_path))


MP_SCRIPT = """
import sys
sys.path.insert(0, "/repo/tests")
import fw_thanks_support as fts
for profile in ("five_button", "touch"):
    for scenario in fts.SCENARIOS:
        try:
            scenario(profile)
            print("PASS", profile, scenario.__name__)
        except Exception as e:
            sys.print_exception(e)
            print("FAIL", profile, scenario.__name__, repr(e))
try:
    fts.theme_item_guard()
    print("PASS touch theme_item_guard")
except Exception as e:
    sys.print_exception(e)
    print("FAIL touch theme_item_guard", repr(e))
"""


def test_thanks_order_under_micropython(micropython):
    r = micropython(MP_SCRIPT, trees=("protocol", "firmware", "tests"), timeout=300).check()
    assert "FAIL" not in r.stdout, r.stdout
    assert r.stdout.count("PASS") == 2 * len(fts.SCENARIOS) + 1, r.stdout
