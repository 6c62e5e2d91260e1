"""The mutation tier (tools/mutation.py, slow: not run here) must not rot unnoticed: every module it
mutates and every test it selects exists, each selection collects tests under the deselection it
runs with, and the results page speaks of every module. A renamed test file or module fails here,
in the quick suite, rather than at the next mutation run."""

import subprocess
import sys
from pathlib import Path

import pytest

from tools.mutation import load_config

REPO = Path(__file__).resolve().parent.parent
CONFIG = load_config()
MODULES = sorted(CONFIG["modules"])


@pytest.mark.parametrize("module", MODULES)
def test_each_mutated_module_and_its_tests_exist_and_collect(module):
    spec = CONFIG["modules"][module]
    assert (REPO / module).is_file(), module
    missing = [t for t in spec["tests"] if not (REPO / t).is_file()]
    assert not missing, "%s selects missing tests: %s" % (module, missing)
    deselect = spec.get("deselect", CONFIG["defaults"]["deselect"])
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "-m", "not slow", "-k", "not (%s)" % deselect] + spec["tests"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    collected = [ln for ln in run.stdout.splitlines() if "::" in ln]
    assert collected, "%s: its selection collects no test" % module


def test_the_results_page_names_every_mutated_module():
    page = (REPO / "docs" / "mutation.md").read_text(encoding="utf-8")
    assert [m for m in MODULES if m not in page] == []
