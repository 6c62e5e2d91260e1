"""Type-check firmware/ and protocol/ with pyright, in two views (configs beside this file):

  micropython  every file of firmware/ and protocol/ (but firmware/manifest.py) against the ESP32
               MicroPython 1.29 stubs, which replace CPython's standard library: `time` has ticks_ms
               and no perf_counter, `json.dumps` has no ensure_ascii, `machine`, `framebuf`,
               `micropython` exist. The stubs live in .venv/micropython-stubs (scripts/setup).
  cpython      what also runs on CPython 3.11: protocol/ (the gateway imports it), firmware/ui/ with
               its framebuf stand-in, and the sim board's host side (sim.py, sim_io.py, png.py).

    .venv/bin/python tools/typecheck/check.py                 # both views, exit 1 on any error
    .venv/bin/python tools/typecheck/check.py --view cpython  # one view
    .venv/bin/python tools/typecheck/check.py --view micropython some/file.py   # given files only

Both views run at the same time (one node process each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
CONFIGS = {"micropython": HERE / "micropython.json", "cpython": HERE / "cpython.json"}
STUBS_DIR = REPO_ROOT / ".venv" / "micropython-stubs"
# Files whose presence shows the stubs are installed as a typeshed (stdlib/) plus the port modules.
STUBS_MARKERS = ("machine.pyi", "framebuf.pyi", "time.pyi", "stdlib/VERSIONS", "stdlib/builtins.pyi")
TIMEOUT_S = 300


class CheckerUnavailable(RuntimeError):
    """pyright or the MicroPython stubs are missing or broken: a setup problem, not a type error."""


@dataclass
class Diagnostic:
    path: str          # relative to the repo when inside it
    line: int          # 1-based
    column: int        # 1-based
    severity: str      # error / warning / information
    rule: str
    message: str

    def __str__(self):
        rule = " [%s]" % self.rule if self.rule else ""
        return "%s:%d:%d: %s: %s%s" % (self.path, self.line, self.column, self.severity,
                                       self.message, rule)


@dataclass
class ViewResult:
    view: str
    returncode: int
    seconds: float
    files_analyzed: int
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def check_stubs() -> None:
    missing = [m for m in STUBS_MARKERS if not (STUBS_DIR / m).is_file()]
    if missing:
        raise CheckerUnavailable(
            "MicroPython stubs missing in %s (%s); run scripts/setup" % (STUBS_DIR, ", ".join(missing)))


def _command(view: str, files) -> list[str]:
    return [sys.executable, "-m", "pyright", "-p", str(CONFIGS[view]),
            "--pythonpath", sys.executable, "--outputjson", *[str(f) for f in files]]


def _relative(path: str) -> str:
    p = Path(path)
    try:
        return str(p.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def _parse(view: str, proc_out: str, proc_err: str, returncode: int, seconds: float) -> ViewResult:
    # pyright: 0 clean, 1 errors reported; anything else (or no JSON) is a broken run.
    if returncode not in (0, 1):
        raise CheckerUnavailable("pyright (%s) exited %d: %s%s" % (view, returncode, proc_out[-2000:],
                                                                   proc_err[-2000:]))
    try:
        report = json.loads(proc_out)
    except ValueError:
        raise CheckerUnavailable("pyright (%s) printed no JSON: %s%s" % (view, proc_out[-2000:],
                                                                        proc_err[-2000:])) from None
    diags = []
    for d in report.get("generalDiagnostics", []):
        start = d.get("range", {}).get("start", {"line": -1, "character": -1})
        diags.append(Diagnostic(_relative(d.get("file", "?")), start["line"] + 1,
                                start["character"] + 1, d.get("severity", "error"),
                                d.get("rule", ""), d.get("message", "")))
    return ViewResult(view, returncode, seconds, report.get("summary", {}).get("filesAnalyzed", 0),
                      diags)


def run_views(views=("micropython", "cpython"), files=()) -> dict[str, ViewResult]:
    """Run the given views concurrently; `files` (optional) replaces each config's include list."""
    if "micropython" in views:
        check_stubs()
    env = dict(os.environ, PYRIGHT_PYTHON_IGNORE_WARNINGS="1")  # no PyPI "newer version" lookup
    started = {}
    for view in views:
        proc = subprocess.Popen(_command(view, files), cwd=REPO_ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started[view] = (proc, time.monotonic())
    results = {}
    try:
        for view, (proc, t0) in started.items():
            out, err = proc.communicate(timeout=TIMEOUT_S)
            results[view] = _parse(view, out, err, proc.returncode, time.monotonic() - t0)
    finally:
        for proc, _ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--view", choices=sorted(CONFIGS), action="append",
                    help="view to run (repeatable; default: both)")
    ap.add_argument("files", nargs="*", help="check these files instead of the configs' lists")
    args = ap.parse_args(argv)
    views = tuple(args.view or ("micropython", "cpython"))
    try:
        results = run_views(views, args.files)
    except CheckerUnavailable as exc:
        print("typecheck: %s" % exc, file=sys.stderr)
        return 2
    failed = False
    for view, res in results.items():
        for d in res.diagnostics:
            print("[%s] %s" % (view, d))
        print("%s: %d files, %d errors, %.1f s" % (view, res.files_analyzed, len(res.errors),
                                                   res.seconds))
        failed = failed or bool(res.errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
