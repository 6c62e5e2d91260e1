"""Every screen on both sim boards against the reviewed reference PNGs, pixel for pixel."""

import struct
import zlib
from pathlib import Path

import pytest

from firmware.ui.font import Font
from tools import screenshots

REF = Path(__file__).parent / "screenshots" / "ref"


def png_pixels(path):
    """(width, height, raw scanlines) of a PNG written by firmware/boards/png.py (RGB8, filter 0)."""
    data = Path(path).read_bytes()
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


@pytest.fixture(scope="module")
def font():
    f = Font(screenshots.FONT)
    yield f
    f.close()


SCENES = screenshots.scenes()


def test_every_screen_and_both_boards_are_covered():
    names = {(p, v["screen"]) for p, _, v, _ in SCENES}
    from firmware.views import SCREENS
    for profile in ("five_button", "touch"):
        for screen in SCREENS:
            assert (profile, screen) in names
    assert sorted(p.name for p in REF.glob("*.png")) == sorted("%s-%s.png" % (p, n) for p, n, _, _ in SCENES)


@pytest.mark.parametrize("profile,name,view,events", SCENES, ids=["%s-%s" % (s[0], s[1]) for s in SCENES])
def test_screen_matches_reference(profile, name, view, events, font, tmp_path):
    board = screenshots.render(profile, view, events, font, str(tmp_path / "fs"))
    out = tmp_path / "shot.png"
    board.save_png(str(out))
    got = png_pixels(out)
    want = png_pixels(REF / ("%s-%s.png" % (profile, name)))
    assert got[:2] == want[:2]
    if got[2] != want[2]:
        bad = tmp_path / ("%s-%s.png" % (profile, name))
        out.rename(bad)
        pytest.fail("%s-%s differs from the reference; new image: %s" % (profile, name, bad))


def test_reference_differs_when_the_screen_differs(font, tmp_path):
    # the comparison can fail: a changed staff name changes the pixels
    profile, name, view, events = next(s for s in SCENES if s[:2] == ("five_button", "case"))
    view = dict(view, context=dict(view["context"], staff_name="李堃"))
    board = screenshots.render(profile, view, events, font, str(tmp_path / "fs"))
    board.save_png(str(tmp_path / "x.png"))
    assert png_pixels(tmp_path / "x.png")[2] != png_pixels(REF / "five_button-case.png")[2]


def test_screenshots_command_writes_every_png(tmp_path):
    screenshots.main(["--out", str(tmp_path), "--only", "thanks"])
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["five_button-thanks.png", "touch-thanks.png"]
    w, h, raw = png_pixels(tmp_path / "touch-thanks.png")
    assert (w, h) == (640, 480) and len(raw) == h * (1 + 3 * w)
