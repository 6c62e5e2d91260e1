"""Run Python code under real MicroPython 1.29 (the WebAssembly port, on Node).

Repo folders listed in ``trees`` are copied whole into the virtual file system
under ``MP_ROOT``, which is put first on ``sys.path``, so ``import protocol.codec``
works inside MicroPython exactly as it does on CPython.

    from tools.mpy_runner import run_micropython
    result = run_micropython("import protocol.codec; print('ok')")
    assert result.returncode == 0, result.stderr

The script may use top-level ``await`` (the wasm port has no ``asyncio.run``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNNER_DIR = REPO_ROOT / "tools" / "micropython"
RUNNER_SCRIPT = RUNNER_DIR / "run.mjs"
PACKAGE_ENTRY = (
    RUNNER_DIR / "node_modules" / "@micropython" / "micropython-webassembly-pyscript" / "micropython.mjs"
)
# Where copied repo trees live inside MicroPython's virtual file system.
MP_ROOT = "/repo"
MIN_NODE_MAJOR = 18
# Never shipped to the device, so never copied into the virtual FS.
SKIPPED_DIRS = {"__pycache__", "node_modules", ".pytest_cache", ".hypothesis"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


class MicroPythonUnavailable(RuntimeError):
    """Node or the MicroPython npm package is missing; scripts/setup installs both."""


class MicroPythonTimeout(TimeoutError):
    def __init__(self, timeout: float, stdout: str, stderr: str):
        super().__init__(f"MicroPython run exceeded {timeout} s\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")
        self.stdout = stdout
        self.stderr = stderr


class MpResult(NamedTuple):
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> "MpResult":
        """Return self, or raise with the full output if the script failed."""
        if self.returncode != 0:
            raise AssertionError(
                f"MicroPython exited {self.returncode}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
            )
        return self


def find_node() -> str:
    node = os.environ.get("HALL_NODE") or shutil.which("node") or shutil.which("nodejs")
    if not node:
        raise MicroPythonUnavailable("Node.js not found; run `sudo bash scripts/setup`.")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    if major < MIN_NODE_MAJOR:
        raise MicroPythonUnavailable(f"Node.js {version} is too old (need >= {MIN_NODE_MAJOR}).")
    return node


def ensure_available() -> str:
    """Return the node executable, or raise MicroPythonUnavailable with the fix."""
    if not PACKAGE_ENTRY.is_file():
        raise MicroPythonUnavailable(
            f"MicroPython WebAssembly package missing ({PACKAGE_ENTRY}); run `sudo bash scripts/setup`."
        )
    return find_node()


def tree_files(tree: str | os.PathLike, repo_root: Path = REPO_ROOT) -> dict[str, bytes]:
    """All shippable files of a repo folder, keyed by their path inside MicroPython."""
    base = Path(repo_root)
    top = base / tree
    if not top.is_dir():
        raise FileNotFoundError(f"tree {tree!r} is not a folder under {base}")
    found = {}
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(base)
        if not path.is_file() or SKIPPED_DIRS.intersection(rel.parts) or path.suffix in SKIPPED_SUFFIXES:
            continue
        found[f"{MP_ROOT}/{rel.as_posix()}"] = path.read_bytes()
    return found


def _encode(content: bytes | str) -> str | dict:
    if isinstance(content, str):
        return content
    return {"b64": base64.b64encode(content).decode("ascii")}


def run_micropython(
    script: str,
    files: Mapping[str, bytes | str] | None = None,
    trees: Iterable[str] = ("protocol",),
    heapsize: int | None = None,
    timeout: float = 120,
    repo_root: Path = REPO_ROOT,
) -> MpResult:
    """Run ``script`` in a fresh MicroPython instance and return its exit status and output.

    ``files`` maps absolute virtual-FS paths to contents (written after the trees,
    so they may override tree files). ``heapsize`` is the initial GC heap; the wasm
    build grows its heap on demand, so it is not a hard cap.
    """
    node = ensure_available()
    all_files: dict[str, bytes | str] = {}
    for tree in trees:
        all_files.update(tree_files(tree, repo_root))
    all_files.update(files or {})
    job = {
        "files": {path: _encode(content) for path, content in all_files.items()},
        "sys_path": [MP_ROOT],
        "script": script,
    }
    if heapsize:
        job["heapsize"] = int(heapsize)
    try:
        proc = subprocess.run(
            [node, str(RUNNER_SCRIPT)],
            input=json.dumps(job).encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            cwd=RUNNER_DIR,
        )
    except subprocess.TimeoutExpired as exc:
        raise MicroPythonTimeout(timeout, _text(exc.stdout), _text(exc.stderr)) from None
    return MpResult(proc.returncode, _text(proc.stdout), _text(proc.stderr))


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")
