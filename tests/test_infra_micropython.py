"""The MicroPython runner and mpy_check run real MicroPython 1.29 and report failures."""

import json
import subprocess
import sys

from tools import mpy_check
from tools.mpy_runner import MP_ROOT, REPO_ROOT


def test_runs_script_under_micropython_1_29(micropython):
    result = micropython("import sys\nprint(sys.implementation.name, sys.implementation.version[:2])")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "micropython (1, 29)\n"


def test_exception_gives_nonzero_exit_and_traceback(micropython):
    result = micropython("def f():\n    raise ValueError('坏 王喆')\nf()")
    assert result.returncode == 1
    assert "ValueError: 坏 王喆" in result.stderr
    assert "line 2" in result.stderr


def test_system_exit_code_passes_through(micropython):
    assert micropython("import sys\nprint('x', end='')\nsys.exit(7)") == (7, "x", "")


def test_files_text_and_binary_and_top_level_await(micropython, tmp_path):
    script = (
        "import asyncio, os\n"
        "async def twice(x):\n"
        "    await asyncio.sleep_ms(1)\n"
        "    return x * 2\n"
        "print(await twice(21))\n"
        "print(open('/data/raw.bin', 'rb').read())\n"
        "import helper\n"
        "print(helper.NAME)\n"
    )
    files = {"/data/raw.bin": b"\x00\xff\x10", "/lib/helper.py": "NAME = '李堃'\n"}
    result = micropython(script, files=files, trees=()).check()
    assert result.stdout.splitlines() == ["42", "b'\\x00\\xff\\x10'", "李堃"]


def test_trees_import_like_on_cpython(micropython, tmp_path):
    pkg = tmp_path / "demo_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "core.py").write_text("import json\nTABLE = json.load(open(__file__.rsplit('/', 1)[0] + '/table.json'))\n")
    (pkg / "table.json").write_text('{"level": 5}')
    from tools.mpy_runner import run_micropython

    result = run_micropython("import demo_pkg.core as c\nprint(c.TABLE['level'], c.__file__)",
                             trees=["demo_pkg"], repo_root=tmp_path).check()
    assert result.stdout == f"5 {MP_ROOT}/demo_pkg/core.py\n"


def _write_tree(root):
    pkg = root / "pkg"
    (pkg / "boards").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text("VALUE = 1\n")
    (pkg / "broken.py").write_text("def f(:\n    pass\n")
    (pkg / "raises.py").write_text("raise RuntimeError('needs something')\n")
    (pkg / "boards" / "esp32_demo.py").write_text("# mpy_check: compile-only\nimport machine\n")
    return root


def test_mpy_check_reports_compile_import_and_compile_only(tmp_path):
    report = mpy_check.check(_write_tree(tmp_path), trees=("pkg",))
    assert set(report["failed"]) == {"pkg/broken.py", "pkg/raises.py"}
    assert report["failed"]["pkg/broken.py"].startswith("mpy-cross:")
    assert "RuntimeError: needs something" in report["failed"]["pkg/raises.py"]
    assert report["compiled"] == 4  # __init__, good, raises, boards/esp32_demo
    assert report["imported"] == 2  # pkg, pkg.good
    assert report["compile_only"] == 1
    assert "v1.29.0" in report["mpy_cross"] and "v1.29.0" in report["micropython"]
    assert report["bundle_bytes"] > 0


def test_mpy_check_cli_prints_one_json_object_and_fails(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "mpy_check.py"), "--json", "--root", str(_write_tree(tmp_path)),
         "--tree", "pkg"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["failed"].keys() == {"pkg/broken.py", "pkg/raises.py"}


def test_repo_protocol_and_firmware_compile_and_import():
    report = mpy_check.check()
    assert report["failed"] == {}
    assert report["compiled"] > 0
