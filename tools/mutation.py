"""Mutation testing of the modules that carry the promises (slow tier, not the quick suite).

    .venv/bin/python tools/mutation.py [--module protocol/codec.py ...] [--json] [--keep DIR]
    .venv/bin/python tools/mutation.py --recheck DIR/protocol_codec [--json]

For each module in tools/mutation.toml: export the committed tree (git archive HEAD, so edits in
progress in the working tree do not leak in) to a scratch directory, run mutmut 3 there on that
one file with its own CPython-only test selection, one worker, at nice 10, and report killed /
survived / timeout / no-tests counts, the score (killed + timeout over mutants tested) and the
surviving mutants' names (see one with `mutmut show NAME` inside the kept directory).
--recheck takes a kept module directory and tries each mutant that survived or had no test
against the working tree's tests (mutmut apply, pytest with a 30 s per-test timeout so a looping
mutant counts as caught, restore); it refuses when the module changed since that run or its tests
fail unmutated. A quick way to see new tests kill old survivors without a full run.
Needs the `mutation` extra: pip install -e '.[test,mutation]'.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = Path(__file__).with_name("mutation.toml")
SOURCES = ["protocol", "firmware", "gateway"]   # copied as mutmut's sources; only one is mutated


def load_config(path=CONFIG):
    with open(path, "rb") as f:
        return tomllib.load(f)


def _toml_list(items):
    return "[" + ", ".join(json.dumps(str(i)) for i in items) + "]"


def export_tree(dest, rev="HEAD"):
    """The tree at `rev`, without the working tree's uncommitted edits."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    mp = REPO / "tools" / "micropython" / "node_modules"
    if mp.exists():
        (dest / "tools" / "micropython" / "node_modules").symlink_to(mp)


def write_setup(dest, module, tests, deselect):
    """pyproject.toml for the scratch tree: mutmut's scope and the pytest options it passes on."""
    tests = [t for t in tests if (dest / t).exists()]
    pytest_args = ["-p", "no:cacheprovider", "-q", "-m", "not slow"]
    if deselect:
        pytest_args += ["-k", "not (%s)" % deselect]
    text = "\n".join([
        "[tool.mutmut]",
        "source_paths = %s" % _toml_list(SOURCES),
        "only_mutate = %s" % _toml_list([module]),
        "also_copy = %s" % _toml_list(["hall_simulator", "tools"]),
        "pytest_add_cli_args_test_selection = %s" % _toml_list(tests),
        "pytest_add_cli_args = %s" % _toml_list(pytest_args),
        "use_git_change_detection = false",
        # a mutant stuck in a loop counts as caught; waiting 15x the tests' time for it (the
        # default) costs more than the rest of a module's mutants
        "timeout_multiplier = 3.0",
        "timeout_constant = 2.0",
        "",
        "[tool.pytest.ini_options]",
        'pythonpath = ["."]',
        'addopts = "-ra --strict-markers"',
        'markers = ["slow: long-running tier"]',
        "timeout = 300",
        "",
    ])
    (dest / "pyproject.toml").write_text(text)
    return tests


def run_module(module, spec, defaults, workdir, rev="HEAD"):
    dest = workdir / module.replace("/", "_").replace(".py", "")
    if dest.exists():
        shutil.rmtree(dest)
    export_tree(dest, rev)
    tests = write_setup(dest, module, spec["tests"], spec.get("deselect", defaults.get("deselect")))
    mutmut = [sys.executable, "-m", "mutmut"]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    t0 = time.monotonic()
    run = subprocess.run(["nice", "-n", "10"] + mutmut + ["run", "--max-children", "1"], cwd=dest,
                         env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    subprocess.run(mutmut + ["export-cicd-stats"], cwd=dest, env=env, capture_output=True, text=True)
    stats_path = dest / "mutants" / "mutmut-cicd-stats.json"
    if run.returncode != 0 or not stats_path.exists():
        return {"module": module, "error": (run.stdout + run.stderr)[-2000:], "dir": str(dest)}
    stats = json.loads(stats_path.read_text())
    results = subprocess.run(mutmut + ["results"], cwd=dest, env=env, capture_output=True, text=True)
    survivors = [ln.split(":")[0].strip() for ln in results.stdout.splitlines()
                 if ln.strip().endswith(": survived")]
    no_tests = [ln.split(":")[0].strip() for ln in results.stdout.splitlines()
                if ln.strip().endswith(": no tests")]
    tested = stats.get("total", 0) - stats.get("skipped", 0) - stats.get("no_tests", 0)
    caught = stats.get("killed", 0) + stats.get("timeout", 0)
    return {"module": module, "tests": tests, "seconds": round(seconds, 1),
            "total": stats.get("total", 0), "killed": stats.get("killed", 0),
            "timeout": stats.get("timeout", 0), "survived": stats.get("survived", 0),
            "no_tests": stats.get("no_tests", 0), "suspicious": stats.get("suspicious", 0),
            "skipped": stats.get("skipped", 0),
            "score": round(100.0 * caught / tested, 1) if tested else None,
            "survivors": survivors, "untested": no_tests, "dir": str(dest)}


def recheck(dest, env=None):
    """{mutant: "killed" | "survived"} for the survivors and untested mutants of a kept run,
    against the working tree's tests (copied in) for that module."""
    dest = Path(dest)
    cfg = tomllib.loads((dest / "pyproject.toml").read_text())["tool"]["mutmut"]
    module = cfg["only_mutate"][0]
    spec = load_config()["modules"][module]
    tests = [t for t in spec["tests"] if (REPO / t).exists()]
    tests.sort(key=lambda t: "test_mut_" not in t)   # the pinpoint tests first: -x stops sooner
    for src in (REPO / "tests").glob("*.py"):       # the tests and their helpers, as they are now
        shutil.copy(src, dest / "tests" / src.name)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    mutmut = [sys.executable, "-m", "mutmut"]
    results = subprocess.run(mutmut + ["results", "--all", "true"], cwd=dest, env=env,
                             capture_output=True, text=True).stdout
    names = [ln.split(":")[0].strip() for ln in results.splitlines()
             if ln.strip().endswith((": survived", ": no tests"))]
    pristine = (dest / module).read_bytes()
    if pristine != (REPO / module).read_bytes():
        raise SystemExit("%s changed since that run: run it again instead" % module)
    pytest = ["nice", "-n", "10", sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
              "-o", "timeout=30", "-m", "not slow", "-k",
              "not (%s)" % spec.get("deselect", load_config()["defaults"]["deselect"])] + tests
    base = subprocess.run(pytest, cwd=dest, env=env, capture_output=True, text=True)
    if base.returncode != 0:   # every mutant would look killed
        raise SystemExit("the tests fail on the unmutated module:\n" + base.stdout[-2000:])
    out = {}
    try:
        for name in names:
            subprocess.run(mutmut + ["apply", name], cwd=dest, env=env, check=True,
                           capture_output=True)
            run = subprocess.run(pytest, cwd=dest, env=env, capture_output=True, text=True)
            out[name] = "killed" if run.returncode in (1, 2) else (
                "survived" if run.returncode == 0 else "error %d" % run.returncode)
            (dest / module).write_bytes(pristine)
    finally:
        (dest / module).write_bytes(pristine)
    return module, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--module", action="append", help="a module path from tools/mutation.toml")
    ap.add_argument("--json", action="store_true", help="print the per-module results as JSON")
    ap.add_argument("--keep", help="scratch directory to keep (default: a temporary one, removed)")
    ap.add_argument("--rev", default="HEAD", help="git revision to test (default HEAD)")
    ap.add_argument("--recheck", help="a kept module directory: retry its survivors on today's tests")
    args = ap.parse_args(argv)
    if args.recheck:
        module, res = recheck(args.recheck)
        left = sorted(n for n, r in res.items() if r != "killed")
        print(json.dumps({"module": module, "rechecked": len(res), "still_alive": left}, indent=1,
                         ensure_ascii=False)
              if args.json else "%s: %d rechecked, %d still alive %s" % (module, len(res), len(left), left))
        return 0
    cfg = load_config()
    modules = args.module or list(cfg["modules"])
    unknown = [m for m in modules if m not in cfg["modules"]]
    if unknown:
        ap.error("not in tools/mutation.toml: %s" % ", ".join(unknown))
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mutation-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.rev], check=True,
                         capture_output=True, text=True).stdout.strip()
    out = {"rev": rev, "modules": []}
    try:
        for m in modules:
            r = run_module(m, cfg["modules"][m], cfg.get("defaults", {}), workdir, args.rev)
            out["modules"].append(r)
            if not args.json:
                print("%-28s %s" % (m, "error" if "error" in r else
                                    "%(score)s%% killed %(killed)d timeout %(timeout)d survived "
                                    "%(survived)d no-tests %(no_tests)d of %(total)d, %(seconds)ss" % r),
                      flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=1, ensure_ascii=False))
    return 1 if any("error" in r for r in out["modules"]) else 0


if __name__ == "__main__":
    sys.exit(main())
