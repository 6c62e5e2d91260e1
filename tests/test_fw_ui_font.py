"""The font file: structure, glyphs against the Unifont source, lookup by seek, placeholders."""

import hashlib
import os
import struct
from pathlib import Path

import pytest

from firmware.ui.font import Font, FontError
from tools import build_font

FONT = Path(build_font.DEFAULT_OUT)
HEX = Path(build_font.DEFAULT_HEX)   # Debian unifont, installed by scripts/setup: no skip when absent
NAMES = "王喆李堃朱镕居民身份证换领深圳市企业职工基本养老保险参保缴费证明开具及个人权益记录查询打印" \
        "请评价服务态度谢谢您的评价非常满意不满意基本我要开餐馆营业执照食品经营许可选返确，。：（）"


def runs_of(blob):
    n = struct.unpack_from("<H", blob, 6)[0]
    return [struct.unpack_from("<IHBBI", blob, 16 + 12 * i) for i in range(n)]


def test_file_structure_is_consistent():
    blob = FONT.read_bytes()
    assert blob[:4] == b"HFNT" and blob[4] == 1 and blob[5] == 16
    runs = runs_of(blob)
    total = struct.unpack_from("<I", blob, 8)[0]
    pos = 16 + 12 * len(runs)
    prev_end = -1
    for first, count, width, _, offset in runs:
        assert first >= prev_end and count > 0 and width in (8, 16)
        assert offset == pos            # glyph data packed in run order
        pos += count * 16 * width // 8
        prev_end = first + count
    assert pos == len(blob)
    assert sum(r[1] for r in runs) == total
    covered = set()
    for first, count, _, _, _ in runs:
        covered.update(range(first, first + count))
    for lo, hi in ((0x20, 0x7E), (0x4E00, 0x9FFF), (0x3000, 0x303E), (0xFF01, 0xFF5E)):
        assert set(range(lo, hi + 1)) <= covered


def test_every_cjk_char_of_the_test_names_has_a_non_empty_glyph():
    font = Font(str(FONT))
    for ch in NAMES:
        g = font.glyph(ord(ch))
        assert g is not None, ch
        assert g[0] == 16 and any(g[1]), ch


def test_glyphs_equal_the_unifont_source():
    want = {}
    sample = set(ord(c) for c in NAMES + "Az09~") | {0x3000, 0xFF01, 0x9FA5, 0x4E00}
    for line in HEX.read_text().splitlines():
        cp, bits = line.split(":")
        if int(cp, 16) in sample:
            want[int(cp, 16)] = bytes.fromhex(bits)
    font = Font(str(FONT))
    for cp, bits in want.items():
        width, data = font.glyph(cp)
        assert data == bits and width == len(bits) // 2, hex(cp)


def test_missing_glyph_is_none_with_a_placeholder_width():
    font = Font(str(FONT))
    assert font.glyph(0x2A6A5) is None and font.width(0x2A6A5) == 16   # CJK Ext B: not in the file
    assert font.glyph(0x0007) is None and font.width(0x0007) == 8
    assert font.text_width("A王\U0002A6A5") == 8 + 16 + 16


def test_glyphs_are_read_one_at_a_time_with_a_small_lru_cache():
    font = Font(str(FONT), cache=2)
    a, b, c = ord("王"), ord("喆"), ord("李")
    font.glyph(a), font.glyph(b), font.glyph(a)     # a is now the most recently used
    assert font.reads == 2
    font.glyph(c)                                    # evicts b, not a
    font.glyph(a)
    assert font.reads == 3
    font.glyph(b)
    assert font.reads == 4
    assert len(font._cache) == 2


def test_not_a_font_file_is_refused(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"NOPE" + bytes(40))
    with pytest.raises(FontError):
        Font(str(bad))


def test_build_is_deterministic_and_readable(tmp_path):
    src = tmp_path / "mini.hex"
    src.write_text("0041:0000000018242442427E424242420000\n"
                   "0042:0000007C4242427C424242427C000000\n"
                   "5586:" + "11" * 32 + "\n"
                   "5587:" + "22" * 32 + "\n"
                   "5589:" + "33" * 32 + "\n")
    outs = []
    for i in range(2):
        out = tmp_path / ("f%d.bin" % i)
        build_font.main(["--hex", str(src), "--out", str(out)])
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    runs = runs_of(outs[0])
    assert [(r[0], r[1], r[2]) for r in runs] == [(0x41, 2, 8), (0x5586, 2, 16), (0x5589, 1, 16)]
    font = Font(str(tmp_path / "f0.bin"))
    assert font.glyph(0x5587) == (16, b"\x22" * 32)
    assert font.glyph(0x5588) is None
    assert font.glyph(0x41)[1] == bytes.fromhex("0000000018242442427E424242420000")


def test_committed_font_is_what_the_tool_builds(tmp_path):
    out = tmp_path / "u.bin"
    build_font.main(["--out", str(out)])
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(FONT.read_bytes()).digest()
