"""Every screen of both boards (the touch board at 320x240 and 480x320) against the committed PNGs
in docs/screens/, pixel for pixel, drawn by the very code path tools/screenshots.py uses
(tests/test_fw_ui_micropython.py checks that real MicroPython draws the same frame buffers)."""

import struct
import zlib
from pathlib import Path

import pytest

from firmware.ui.font import Font
from firmware.views import SCREENS
from tools import screenshots

DOCS = Path(__file__).resolve().parent.parent / "docs" / "screens"
SCENES = screenshots.scenes()


def png_pixels(path_or_bytes):
    """(width, height, raw scanlines) of an RGB8 PNG without filters (what the tool writes)."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    return size[0], size[1], zlib.decompress(idat)


def shot(profile, view, events, tmp_path):
    font = Font(screenshots.FONT)
    try:
        board = screenshots.render(profile, view, events, font, str(tmp_path / "fs"))
    finally:
        font.close()
    return screenshots.rgb_rows(board, screenshots.SCALE[profile]), board


def test_every_screen_of_every_board_is_committed():
    names = {(p, v["screen"]) for p, _, v, _ in SCENES}
    for profile in screenshots.PROFILES:
        for screen in SCREENS:
            assert (profile, screen) in names
    assert sorted(p.name for p in DOCS.glob("*.png")) == sorted(
        "%s-%s.png" % (p, n) for p, n, _, _ in SCENES)


def test_the_cases_the_issue_asks_for_are_among_the_scenes():
    ctxs = [v.get("context") or {} for _, _, v, _ in SCENES]
    names = "".join(c.get("staff_name", "") for c in ctxs)
    assert "\u4dae" in names and "\U0002020c" in names                      # Ext A and Ext B
    assert any(len(c.get("matter_name", "")) == 40 for c in ctxs)
    assert any(any(ord(ch) > 0x7F for ch in c.get("staff_id", "")) for c in ctxs)
    english = [v for _, _, v, _ in SCENES if (v.get("texts") or {}).get("prompt") == "Please rate"]
    assert {v["screen"] for v in english} >= {"case", "tags", "idle", "thanks", "error"}
    assert {p for p, _, v, _ in SCENES if v.get("large_text")} == {"touch", "touch480"}
    # the rare names reach the screen as real glyphs (the gateway's supplement), not placeholders
    for profile, name, view, events in SCENES:
        if name in ("case_ext_a", "case_ext_b"):
            font = Font(screenshots.FONT)
            screenshots.render(profile, view, events, font, "/tmp/screens-fs")
            assert font.placeholders == 0, (profile, name)
            font.close()


@pytest.mark.parametrize("profile,name,view,events", SCENES, ids=["%s-%s" % s[:2] for s in SCENES])
def test_screen_matches_the_committed_png(profile, name, view, events, tmp_path):
    (w, h, raw), _ = shot(profile, view, events, tmp_path)
    want = png_pixels(DOCS / ("%s-%s.png" % (profile, name)))
    assert (w, h) == want[:2]
    if raw != want[2]:
        bad = tmp_path / ("%s-%s.png" % (profile, name))
        font = Font(screenshots.FONT)
        board = screenshots.render(profile, view, events, font, str(tmp_path / "fs2"))
        bad.write_bytes(screenshots.png_bytes(board, screenshots.SCALE[profile]))
        pytest.fail("%s-%s differs from docs/screens; new image: %s" % (profile, name, bad))


def test_the_comparison_sees_a_one_name_change(tmp_path):
    profile, name, view, events = next(s for s in SCENES if s[:2] == ("touch", "case"))
    view = dict(view, context=dict(view["context"], staff_name="李堃"))
    (w, h, raw), _ = shot(profile, view, events, tmp_path)
    assert raw != png_pixels(DOCS / "touch-case.png")[2]


def test_screenshots_command_writes_every_png(tmp_path):
    screenshots.main(["--out", str(tmp_path), "--only", "thanks_english"])
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "five_button-thanks_english.png", "touch-thanks_english.png", "touch480-thanks_english.png"]
    assert png_pixels(tmp_path / "touch480-thanks_english.png")[:2] == (960, 640)
    assert png_pixels(tmp_path / "five_button-thanks_english.png")[:2] == (384, 192)
    assert (tmp_path / "touch-thanks_english.png").read_bytes() == \
        (DOCS / "touch-thanks_english.png").read_bytes()                 # deterministic bytes
