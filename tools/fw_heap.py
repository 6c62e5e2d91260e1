"""Resident heap of the evaluator firmware under real MicroPython 1.29, for tools/mpy_check.py.

Boots the firmware (compiled .mpy, as shipped) on the sim board of each profile, puts a case on
the screen, collects garbage and reports the bytes still allocated beyond an empty interpreter:
    {"heap_resident_bytes": {"five_button": n, "touch": n}}
The sim board's frame buffer is the same size as the real one (five_button 1 KiB, touch 37.5 KiB).
"""

from __future__ import annotations

import json

RESULT_PREFIX = "FW_HEAP "
PROFILES = ("five_button", "touch")

# The wasm port frees garbage only once the script has yielded to the JS event loop (until then
# the JS stack pins it), hence the awaits before each measurement.
SCRIPT = """
import gc, json, asyncio
await asyncio.sleep_ms(1)
gc.collect()
_base = gc.mem_alloc()
from firmware.boards.sim import make_board
from firmware.config import validate
from firmware.device import Device
board = make_board({"profile": %(profile)r, "fs_root": "/tmp/heap"})
cfg = validate({"device": "win07", "key": "5c" * 32, "window": "07",
                "board": {"profile": %(profile)r}})
dev = Device(board, cfg, font_path="/repo/firmware/fonts/unifont16.bin")
dev.step()
dev.on_context({"case_id": 1, "node": 3, "window": "07", "staff_id": "A0123", "staff_name": "王喆",
                "matter_name": "企业投资项目备案（含变更）", "serials": ["SZ202400001"]})
dev.step()
board.advance(1000)
dev.step()
assert dev.app.state == "case", dev.app.state
await asyncio.sleep_ms(1)
gc.collect()
print(%(prefix)r + json.dumps({"bytes": gc.mem_alloc() - _base}))
"""


def measure(files, run_micropython) -> dict:
    out = {}
    for profile in PROFILES:
        script = SCRIPT % {"profile": profile, "prefix": RESULT_PREFIX}
        r = run_micropython(script, files=files, trees=())
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
        if r.returncode != 0 or not lines:
            out[profile] = "failed: " + (r.stderr.strip() or r.stdout.strip())[-300:]
            continue
        out[profile] = json.loads(lines[-1][len(RESULT_PREFIX):])["bytes"]
    return out


def heap_report(ctx) -> dict:
    """mpy_check REPORT_HOOK: measured on the compiled modules of this check."""
    from tools.mpy_check import vfs_files
    from tools.mpy_runner import run_micropython
    if not any(rel.startswith("firmware/") for rel in ctx.compiled):
        return {}
    return {"heap_resident_bytes": measure(vfs_files(ctx, ("protocol", "firmware")), run_micropython)}
