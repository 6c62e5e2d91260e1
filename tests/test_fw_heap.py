"""The firmware's resident heap after boot with a case on screen, as tools/mpy_check.py reports
it, measured under real MicroPython on the compiled modules."""

import tempfile
from pathlib import Path

from tools import fw_heap, mpy_check


def test_heap_resident_bytes_per_profile(micropython):
    root = mpy_check.REPO_ROOT
    ctx = mpy_check.CheckContext(root=root, sources=mpy_check.find_sources(root, ("protocol", "firmware")))
    with tempfile.TemporaryDirectory() as d:
        mpy_check.compile_sources(ctx, mpy_check.find_mpy_cross(), Path(d))
    got = fw_heap.measure(mpy_check.vfs_files(ctx, ("protocol", "firmware")), micropython)
    assert isinstance(got["five_button"], int) and isinstance(got["touch"], int), got
    assert got["five_button"] < got["touch"]             # the touch frame buffer alone is 37.5 KiB
    assert got["five_button"] <= 80 * 1024, got          # regression guard; the goal is 48 KiB
