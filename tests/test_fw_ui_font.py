"""The font file: structure, glyphs against the Unifont source, lookup by seek, placeholders."""

import hashlib
import os
import struct
from pathlib import Path

import pytest

from firmware.glyphs import Glyphs
from firmware.ui.font import Font, FontError, placeholder
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
    assert blob[:4] == b"HFNT" and blob[4] == 2 and blob[5] == 16
    runs = runs_of(blob)
    total = struct.unpack_from("<I", blob, 8)[0]
    pos = 16 + 12 * len(runs)
    prev_end = -1
    covered = set()
    for first, count, width, flags, offset in runs:
        assert first >= prev_end and count > 0 and width in (8, 16) and flags in (0, 1)
        assert offset == pos            # runs packed in order
        if flags:                       # sparse: block index, then its glyphs
            before = 0
            for b in range((count + 255) // 256):
                entry = blob[pos + 42 * b:pos + 42 * b + 42]
                assert struct.unpack_from("<H", entry)[0] == before
                in_block = 0
                for k in range(256):
                    if k % 32 == 0:
                        assert entry[2 + k // 32] == in_block
                    if entry[10 + (k >> 3)] & (0x80 >> (k & 7)):
                        assert k < count - 256 * b
                        covered.add(first + 256 * b + k)
                        in_block += 1
                before += in_block
            pos += 42 * ((count + 255) // 256) + before * 32
        else:
            covered.update(range(first, first + count))
            pos += count * 16 * width // 8
        prev_end = first + count
    assert pos == len(blob)
    assert len(covered) == total
    for lo, hi in ((0x20, 0x7E), (0x3000, 0x303E), (0xFF01, 0xFF5E)):
        assert set(range(lo, hi + 1)) <= covered
    hanzi = build_font.gb2312_hanzi() | set(ord(c) for c in build_font.NAME_EXTRA)
    assert len(build_font.gb2312_hanzi()) == 6763
    assert set(cp for cp in covered if 0x4E00 <= cp <= 0x9FFF) == hanzi


def test_every_word_the_firmware_itself_shows_is_in_the_font():
    """Words no gateway supplements (built-in screen words, tag defaults) must be in the file."""
    font = Font(str(FONT))
    root = FONT.parent.parent
    for path in sorted(root.rglob("*.py")):
        for ch in path.read_text(encoding="utf-8"):
            if 0x3000 <= ord(ch) <= 0x9FFF or 0xFF00 <= ord(ch) <= 0xFFEF:
                if ch in "䶮":      # the rare-name example in comments (Extension A): supplemented
                    continue
                assert font._find(ord(ch)) is not None, (path.name, ch)


def test_sparse_lookup_finds_exactly_the_base_set_against_the_full_font(tmp_path):
    full = tmp_path / "full.bin"
    build_font.main(["--set", "full", "--out", str(full)])
    old, new = Font(str(full), cache=0), Font(str(FONT), cache=0)
    wanted = build_font.base_set()
    for cp in range(0x4E00, 0xA000, 3):
        if wanted(cp):
            assert new.glyph(cp) == old.glyph(cp), hex(cp)
        else:
            assert new._find(cp) is None and new.width(cp) == 16, hex(cp)
    assert new.placeholders == 0


def test_every_cjk_char_of_the_test_names_has_a_non_empty_glyph():
    font = Font(str(FONT))
    for ch in NAMES:
        g = font.glyph(ord(ch))
        assert g is not None, ch
        assert g[0] == 16 and any(g[1]), ch


def test_glyphs_equal_the_unifont_source():
    want = {}
    sample = set(ord(c) for c in NAMES + "Az09~") | {0x3000, 0xFF01, 0x9F44, 0x4E00}
    for line in HEX.read_text().splitlines():
        cp, bits = line.split(":")
        if int(cp, 16) in sample:
            want[int(cp, 16)] = bytes.fromhex(bits)
    font = Font(str(FONT))
    for cp, bits in want.items():
        width, data = font.glyph(cp)
        assert data == bits and width == len(bits) // 2, hex(cp)


def test_missing_glyph_is_a_counted_placeholder_of_the_right_width():
    font = Font(str(FONT))
    w, bits = font.glyph(0x3134B)                    # unassigned in plane 3: no font has it
    assert w == 16 and font.width(0x3134B) == 16 and font.placeholders == 1
    assert font.last_missing == 0x3134B
    assert font.glyph(0x0007)[0] == 8 and font.width(0x0007) == 8 and font.placeholders == 2
    assert font.text_width("A王\U0003134B") == 8 + 16 + 16


def rows(width, bits):
    nb = width // 8
    return [format(int.from_bytes(bits[y * nb:(y + 1) * nb], "big"), "0%db" % width) for y in range(16)]


def test_placeholder_is_a_dotted_box_with_the_code_points_last_hex_digits():
    pic = rows(*placeholder(0x3134B, 16))
    assert pic[0] == "1010101010101010" and pic[15] == pic[0]         # dotted, not a solid 口
    assert all(r[0] == r[15] == ("1" if y % 2 == 0 else "0") for y, r in enumerate(pic[1:15], 1))
    digit = {"1": ["010", "110", "010", "010", "111"], "3": ["111", "001", "111", "001", "111"],
             "4": ["101", "101", "111", "001", "001"], "B": ["110", "101", "110", "101", "110"]}
    for ch, x, top in (("1", 3, 3), ("3", 8, 3), ("4", 3, 9), ("B", 8, 9)):
        assert [pic[top + r][x:x + 3] for r in range(5)] == digit[ch], ch
    narrow = rows(*placeholder(0x7F, 8))
    assert narrow[0] == "10101010"
    assert [narrow[3 + r][2:5] for r in range(5)] == ["111", "001", "001", "001", "001"]    # 7
    assert [narrow[9 + r][2:5] for r in range(5)] == ["111", "100", "111", "100", "100"]    # F
    # never the same bitmap as a real character of the font: 口 and 回 differ from it
    font = Font(str(FONT))
    for ch in "口回□■":
        assert font.glyph(ord(ch))[1] != placeholder(ord(ch), 16)[1]


def test_supplement_glyphs_are_drawn_before_the_placeholder():
    font = Font(str(FONT))
    bits = bytes(range(32))
    assert font.supplement.add_all([{"cp": 0x2020C, "width": 16, "bits": bits},
                                    {"cp": 0x2020D, "width": 16, "bits": bits[:31]}]) == 1
    w, data = font.glyph(0x2020C)
    assert (w, bytes(data)) == (16, bits) and font.placeholders == 0
    font.glyph(0x2020D)                              # refused (bitmap too short): a placeholder
    assert font.placeholders == 1 and font.supplement.rejected == 1


def test_the_supplement_keeps_the_most_recently_used_glyphs():
    sup = Glyphs(size=2)
    a, b, c = ({"cp": cp, "width": 16, "bits": bytes([cp & 0xFF]) * 32} for cp in (0x20000, 0x20001, 0x20002))
    assert sup.add(a) and sup.add(b) and len(sup) == 2
    assert sup.get(0x20000)[0] == 16                 # a is now the most recently used
    sup.add(c)                                       # b gives its slot up
    assert sup.get(0x20001) is None and sup.width(0x20001) == 0
    assert bytes(sup.get(0x20000)[1]) == a["bits"] and bytes(sup.get(0x20002)[1]) == c["bits"]
    sup.add(dict(a, bits=bytes(32)))                 # the same code point again: replaced in place
    assert len(sup) == 2 and bytes(sup.get(0x20000)[1]) == bytes(32)
    narrow = {"cp": 0x41, "width": 8, "bits": bytes(range(16))}
    assert sup.add(narrow) and sup.get(0x41) == (8, bytes(range(16))) and sup.width(0x41) == 8


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
    assert font.glyph(0x5588)[1] == placeholder(0x5588, 16)[1]
    assert font.glyph(0x41)[1] == bytes.fromhex("0000000018242442427E424242420000")


def test_committed_font_is_what_the_tool_builds(tmp_path):
    out = tmp_path / "u.bin"
    build_font.main(["--out", str(out)])
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(FONT.read_bytes()).digest()
