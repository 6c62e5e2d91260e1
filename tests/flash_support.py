"""Helpers for the flash tool's tests: one real bundle per session, virtual devices, CLI runs."""

import io
import os
import tempfile

from hall_simulator.device import PtyServer
from tools.flashkit import bundle as bundle_mod
from tools.flashkit.cli import REPO, main

_BUNDLE = {}


def bundle_dir():
    """A bundle built once per test session by the real build (mpy-cross)."""
    if "dir" not in _BUNDLE:
        out = os.path.join(tempfile.mkdtemp(prefix="flash-bundle-"), "bundle")
        b = bundle_mod.build(REPO, version="test-1")
        b.save(out)
        _BUNDLE["dir"] = out
    return _BUNDLE["dir"]


def run(*argv):
    """(exit code, everything printed) of `flash.py argv...` run in-process."""
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue()


def virtual_device(tmp_path, name="dev", uid=b"\x24\x0a\xc4\x12\x34\x56", **kw):
    return PtyServer(str(tmp_path / name), uid=uid, **kw)


def provision_args(port, registry, window="7", board="five_button", extra=()):
    return ["provision", "--port", port, "--bundle", bundle_dir(), "--board", board, "--transport", "rs485",
            "--window", window, "--registry", registry, "--timeout", "1.5", "--no-reset"] + list(extra)
