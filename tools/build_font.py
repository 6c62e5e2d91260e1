"""Build the evaluator's bitmap font file from GNU Unifont's .hex source (Debian package `unifont`,
/usr/share/unifont/unifont.hex). Deterministic: the same source gives the same bytes.

    python tools/build_font.py                       # -> firmware/fonts/unifont16.bin
    python tools/build_font.py --chars "王喆李堃" --out /tmp/small.bin   # a subset (tests)

Licence of the glyphs: GNU Unifont, GPL-2+ with the GNU font embedding exception (upstream also
offers SIL OFL-1.1 since Unifont 13; Debian's copyright file lists GPL-2+). See firmware/fonts/README.

File format (all integers little-endian), read by firmware/ui/font.py:
  header, 16 bytes:  b"HFNT" | version u8 (=1) | height u8 (=16) | runs u16 | glyphs u32 | 4 reserved
  run table, runs x 12 bytes, sorted by first code point, non-overlapping:
      first u32 | count u16 | width u8 (8 or 16 px) | 1 reserved | offset u32 (file offset of glyph 0)
  glyph data: each glyph is height rows of width/8 bytes, row-major, most significant bit = leftmost
      pixel (framebuf MONO_HLSB, the same bit order as the .hex source)
A run holds consecutive code points of one width, so a glyph is found with a binary search in the
(small, RAM-resident) run table and read with one seek: offset + (cp - first) * height * width / 8.
Code points absent from the file have no glyph: the UI draws a placeholder box.
"""

import argparse
import hashlib
import os
import struct
import sys

DEFAULT_HEX = "/usr/share/unifont/unifont.hex"
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "firmware", "fonts", "unifont16.bin")

# What the screens need: ASCII, Latin-1 punctuation, general punctuation, arrows, geometric shapes,
# CJK symbols and punctuation, CJK Unified Ideographs, half- and full-width forms.
RANGES = (
    (0x0020, 0x007E), (0x00A0, 0x00FF), (0x2010, 0x2027), (0x2190, 0x2193), (0x25A0, 0x25FF),
    (0x3000, 0x303F), (0x4E00, 0x9FFF), (0xFF00, 0xFFEF),
)
HEIGHT = 16
MAGIC = b"HFNT"
VERSION = 1


def read_hex(path, wanted):
    glyphs = {}
    with open(path, encoding="ascii") as f:
        for line in f:
            line = line.strip()
            if not line or ":" not in line:
                continue
            cp_text, bits = line.split(":", 1)
            cp = int(cp_text, 16)
            if not wanted(cp):
                continue
            if len(bits) == 32:
                width = 8
            elif len(bits) == 64:
                width = 16
            else:
                continue   # other heights (none in plane 0 of unifont.hex)
            glyphs[cp] = (width, bytes.fromhex(bits))
    return glyphs


def make_runs(glyphs):
    runs = []   # [first, count, width]
    for cp in sorted(glyphs):
        width = glyphs[cp][0]
        last = runs[-1] if runs else None
        if last and last[0] + last[1] == cp and last[2] == width and last[1] < 0xFFFF:
            last[1] += 1
        else:
            runs.append([cp, 1, width])
    return runs


def build(glyphs):
    runs = make_runs(glyphs)
    offset = 16 + 12 * len(runs)
    table = bytearray()
    data = bytearray()
    for first, count, width in runs:
        table += struct.pack("<IHBBI", first, count, width, 0, offset + len(data))
        for cp in range(first, first + count):
            data += glyphs[cp][1]
    header = MAGIC + struct.pack("<BBHI4x", VERSION, HEIGHT, len(runs), len(glyphs))
    return bytes(header + table + data)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hex", default=DEFAULT_HEX, help="Unifont .hex source (default %(default)s)")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--chars", help="build only these characters (plus ASCII): a test subset")
    args = p.parse_args(argv)
    if not os.path.exists(args.hex):
        sys.exit("%s not found: apt-get install unifont" % args.hex)
    if args.chars:
        keep = set(ord(c) for c in args.chars) | set(range(0x20, 0x7F))
        wanted = keep.__contains__
    else:
        def wanted(cp):
            for lo, hi in RANGES:
                if lo <= cp <= hi:
                    return True
            return False
    blob = build(read_hex(args.hex, wanted))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(blob)
    print("%s: %d bytes, sha256 %s" % (args.out, len(blob), hashlib.sha256(blob).hexdigest()))


if __name__ == "__main__":
    main()
