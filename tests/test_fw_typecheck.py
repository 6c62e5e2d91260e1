"""The firmware and the protocol type-check with pyright (tools/typecheck/check.py):

- micropython view: every file of firmware/ and protocol/ (but the build script firmware/manifest.py)
  against the ESP32 MicroPython 1.29 stubs, which replace CPython's standard library
  (time.ticks_ms exists, time.perf_counter does not);
- cpython view: protocol/, firmware/ui/ and the sim board's host side against CPython 3.11.

A missing pyright or missing stubs fail the tests (scripts/setup installs both); nothing is skipped.
"""

from collections import Counter
from textwrap import dedent

import pytest

from tools.typecheck.check import run_views


@pytest.fixture(scope="module")
def repo_results():
    return run_views()


def _report(result):
    return "\n".join(str(d) for d in result.diagnostics)


def test_firmware_and_protocol_typecheck_against_micropython_stubs(repo_results):
    res = repo_results["micropython"]
    print("micropython view: %d files, %d errors, %.1f s" % (res.files_analyzed, len(res.errors),
                                                              res.seconds))
    print(_report(res))
    assert res.files_analyzed >= 40, "the micropython view must cover firmware/ and protocol/"
    per_file = Counter(d.path for d in res.errors)
    assert not per_file, "type errors (per file): %r\n%s" % (dict(per_file), _report(res))


def test_host_side_typechecks_against_cpython(repo_results):
    res = repo_results["cpython"]
    print("cpython view: %d files, %d errors, %.1f s" % (res.files_analyzed, len(res.errors),
                                                         res.seconds))
    assert res.files_analyzed >= 15, "the cpython view must cover protocol/ and firmware/ui/"
    assert not res.errors, _report(res)


# Probe files, checked with the same two configs: each view must accept its own runtime's API and
# reject the other's, and both must reject a plain type error. This shows the checker can fail and
# that the MicroPython stubs really replace CPython's standard library in the micropython view.
PROBES = {
    "mp_api.py": """\
        import time
        import framebuf
        import machine
        from micropython import const

        _N = const(3)
        t = time.ticks_diff(time.ticks_ms(), 0)
        machine.Pin(2, machine.Pin.OUT).value(1)
        fb = framebuf.FrameBuffer(bytearray(8), 8, 8, framebuf.MONO_VLSB)
        """,
    "cpython_api.py": """\
        import json
        import time

        t = time.perf_counter()
        s = json.dumps({}, ensure_ascii=False)
        """,
    "wrong.py": """\
        from protocol import codec

        codec.encode(1)
        n: int = "one"
        """,
}


@pytest.fixture(scope="module")
def probe_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("typecheck_probes")
    files = []
    for name, text in PROBES.items():
        (root / name).write_text(dedent(text), encoding="utf-8")
        files.append(root / name)
    return run_views(files=files)


def _error_lines(result, name):
    return sorted(d.line for d in result.errors if d.path.endswith("/" + name))


def test_micropython_view_accepts_micropython_api_and_rejects_cpython_only_calls(probe_results):
    res = probe_results["micropython"]
    print(_report(res))
    assert _error_lines(res, "mp_api.py") == []
    assert _error_lines(res, "cpython_api.py") == [4, 5]   # perf_counter, ensure_ascii
    assert _error_lines(res, "wrong.py") == [3, 4]         # missing argument, str into int


def test_cpython_view_rejects_micropython_only_modules(probe_results):
    res = probe_results["cpython"]
    print(_report(res))
    assert _error_lines(res, "cpython_api.py") == []
    # framebuf, machine, micropython do not exist; time has no ticks_ms / ticks_diff.
    assert _error_lines(res, "mp_api.py") == [2, 3, 4, 7, 7]
    assert _error_lines(res, "wrong.py") == [3, 4]
