"""The UI under real MicroPython 1.29 (wasm): every scene draws the same pixels as under CPython
(real framebuf there, the pure-Python fallback here), and the RAM it keeps is measured."""

import hashlib
import json

import pytest

from firmware.ui.font import Font
from tools import screenshots

RENDER_ALL = r'''
import json, hashlib, binascii
from firmware.boards.sim import make_board
from firmware.boards.sim_io import panel_board
from firmware.ui.font import Font
from firmware.ui.ui import Ui
font = Font("/repo/firmware/fonts/unifont16.bin")

def unbytes(v):   # {"$b": hex} back to bytes (JSON has no bytes)
    if isinstance(v, dict):
        if "$b" in v:
            return binascii.unhexlify(v["$b"])
        return {k: unbytes(x) for k, x in v.items()}
    if isinstance(v, list):
        return [unbytes(x) for x in v]
    return v

with open("/repo/scenes.json") as f:
    scenes = unbytes(json.load(f))
for profile, name, view, events in scenes:
    if profile == "touch480":
        board = panel_board({"fs_root": "/tmp/dev"})
    else:
        board = make_board({"profile": profile, "fs_root": "/tmp/dev"})
    font.supplement.add_all((view.get("context") or {}).get("glyphs") or ())
    ui = Ui(board, font)
    ui.render(view)
    for ev in events:
        ui.action(view, tuple(ev))
    print("%s-%s %s" % (profile, name, hashlib.sha256(bytes(board.display.buf)).digest().hex()))
'''

RAM = r'''
import gc, asyncio
async def alloc():
    await asyncio.sleep(0)   # the wasm port collects garbage only once control went back to JS
    gc.collect()
    return gc.mem_alloc()
base = await alloc()
from firmware.boards.sim import make_board
from firmware.ui.font import Font
from firmware.ui.ui import Ui
board = make_board({"profile": "%s", "fs_root": "/tmp/dev", "uart": object()})
ui = Ui(board, Font("/repo/firmware/fonts/unifont16.bin"))
ctx = {"case_id": 7, "window": "3", "staff_id": "A0123", "staff_name": "王喆",
       "matter_name": "居民身份证换领", "serials": ["SZ20241101000123"], "node": 3}
ui.render({"screen": "case", "context": ctx, "ask": %r, "levels": {}, "item_levels": {}, "qr": ""})
ui.render({"screen": "case", "context": ctx, "ask": %r, "levels": {}, "item_levels": {}, "qr": ""})
print("RAM", base, await alloc() - base)
'''


def cpython_hashes(scenes, tmp_path):
    font = Font(screenshots.FONT)
    out = {}
    for profile, name, view, events in scenes:
        board = screenshots.render(profile, view, [tuple(e) for e in events], font, str(tmp_path))
        out["%s-%s" % (profile, name)] = hashlib.sha256(bytes(board.display.buf)).hexdigest()
    return out


def _json(v):
    if isinstance(v, bytes):
        return {"$b": v.hex()}
    raise TypeError(v)


def _unbytes(v):
    if isinstance(v, dict):
        return bytes.fromhex(v["$b"]) if "$b" in v else {k: _unbytes(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_unbytes(x) for x in v]
    return v


def test_every_scene_is_pixel_identical_under_micropython(micropython, tmp_path):
    # JSON round trip: both runtimes draw exactly the same views (tuples become lists in both;
    # the glyph bitmaps and the QR matrix travel as hex)
    text = json.dumps(screenshots.scenes(), ensure_ascii=False, default=_json)
    scenes = _unbytes(json.loads(text))
    result = micropython(RENDER_ALL, files={"/repo/scenes.json": text.encode("utf-8")},
                         trees=("protocol", "firmware")).check()
    got = dict(line.split() for line in result.stdout.splitlines() if line.strip())
    want = cpython_hashes(scenes, tmp_path)
    assert len(want) == len(scenes) and got == want


@pytest.mark.parametrize("profile,ask", [("five_button", (1,)), ("touch", (1, 2, 4))])
def test_ram_kept_by_board_ui_and_case_screen(micropython, profile, ask):
    result = micropython(RAM % (profile, ask, ask), trees=("protocol", "firmware")).check()
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("RAM")][0]
    kept = int(line.split()[2])
    print(json.dumps({"profile": profile, "ui_heap_bytes": kept}))
    # imported as source (bytecode in RAM); frame buffer 1 KiB (five_button) / 37.5 KiB (touch);
    # both keep the glyph supplement's cache (firmware.glyphs, up to 1.6 KiB). touch (ESP32-S3
    # with PSRAM) also keeps the smooth words' index (1.5 KiB a size) and the layout modules of
    # two panel sizes and the large-text mode
    limit = 32 * 1024 if profile == "five_button" else 96 * 1024
    assert 0 < kept < limit
