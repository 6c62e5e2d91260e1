"""Build the evaluator's bitmap font file from GNU Unifont's .hex source (Debian package `unifont`,
/usr/share/unifont/unifont.hex). Deterministic: the same source gives the same bytes.

    python tools/build_font.py                       # -> firmware/fonts/unifont16.bin
    python tools/build_font.py --chars "王喆李堃" --out /tmp/small.bin   # a subset (tests)
    python tools/build_font.py --set full --out /tmp/full.bin   # every CJK ideograph (the old set)

The base set (SPEC.md 3.8): the screens' own scripts and punctuation, the 6,763 hanzi of GB 2312
(levels 1 and 2, enumerated from Python's gb2312 codec) and NAME_EXTRA, characters common in
personal names that GB 2312 lacks. Every other character of a name or matter reaches the device
as a glyph supplement from the gateway (gateway/glyphs.py), so the font need not carry the
20,992 ideographs of U+4E00-U+9FFF.

Licence of the glyphs: GNU Unifont, GPL-2+ with the GNU font embedding exception (upstream also
offers SIL OFL-1.1 since Unifont 13; Debian's copyright file lists GPL-2+). See firmware/fonts/README.

File format (all integers little-endian), read by firmware/ui/font.py and gateway/glyphs.py:
  header, 16 bytes:  b"HFNT" | version u8 (1 or 2) | height u8 (=16) | runs u16 | glyphs u32 | 4 reserved
  run table, runs x 12 bytes, sorted by first code point, non-overlapping:
      first u32 | count u16 | width u8 (8 or 16 px) | flags u8 | offset u32
  glyph data: each glyph is height rows of width/8 bytes, row-major, most significant bit = leftmost
      pixel (framebuf MONO_HLSB, the same bit order as the .hex source)
A dense run (flags 0) holds `count` consecutive code points of one width, its glyph 0 at `offset`:
a glyph is found with a binary search in the (small, RAM-resident) run table and read with one
seek: offset + (cp - first) * height * width / 8.
A sparse run (flags 1, version 2) spans `count` code points of which only some have a glyph. At
`offset` is its block index, one 42-byte entry per 256 code points of the span: the number of
glyphs in the blocks before (u16), for each 32-code-point group of the block the glyphs in the
block before that group (8 x u8), then a 32-byte bitmap of the block's code points (bit 7 of byte
0 = the block's first); the glyphs follow the index in code point order. One read of the block's
entry says whether cp has a glyph and which: the counts before it plus the bits set before it in
its group (at most 31 bits to count).
Code points absent from the file have no glyph: the UI draws a placeholder.
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
# Characters common in personal names (and in this hall's tests and simulator) that GB 2312 lacks.
NAME_EXTRA = ("偲喆垚堃堉妘姞婳崟弢彧愔慜敩旸旻昇暐暻曌朣棨楙橦沄洺浛浵淏淯渼溦炘烜焜燊燏燚犇玙玥珅"
              "珺琤瑀瑄瑆瑒瑢瑨璘璟璠璿瓘甦畇畯皞盺睍祎祐祾禛禤秾竑簃翀翯翾芃虓衎袆褀訢谞贇赟赪跶邠锜"
              "镕闿韡頔頠頫飏鹍龑")
BASE_RANGES = RANGES[:6] + RANGES[7:]          # RANGES without U+4E00-U+9FFF
SPARSE_RANGES = ((0x4E00, 0x9FFF),)            # encoded sparse when that is smaller
HEIGHT = 16
MAGIC = b"HFNT"
VERSION = 2
BLOCK = 256
GROUP = 32


def gb2312_hanzi():
    """The 6,763 hanzi of GB 2312 (rows 16-87), from the codec: no list copied from anywhere."""
    out = set()
    for hi in range(0xB0, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                out.add(ord(bytes((hi, lo)).decode("gb2312")))
            except UnicodeDecodeError:
                pass
    return out


def base_set():
    """The device's characters: a predicate on code points."""
    hanzi = gb2312_hanzi() | set(ord(c) for c in NAME_EXTRA)

    def wanted(cp):
        if cp in hanzi:
            return True
        for lo, hi in BASE_RANGES:
            if lo <= cp <= hi:
                return True
        return False
    return wanted


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


def _sparse_groups(glyphs):
    """{(lo, hi): [cp, ...]} of the sparse ranges worth encoding sparse (more than 8 dense runs)."""
    out = {}
    for lo, hi in SPARSE_RANGES:
        cps = sorted(cp for cp in glyphs if lo <= cp <= hi and glyphs[cp][0] == 16)
        if cps and len(make_runs(dict((cp, glyphs[cp]) for cp in cps))) > 8 \
                and cps[-1] - cps[0] < 0x10000:
            out[(lo, hi)] = cps
    return out


def build(glyphs):
    sparse = _sparse_groups(glyphs)
    in_sparse = set()
    for cps in sparse.values():
        in_sparse.update(cps)
    dense = dict((cp, g) for cp, g in glyphs.items() if cp not in in_sparse)
    rows = [(first, count, width, 0, None) for first, count, width in make_runs(dense)]
    rows += [(cps[0], cps[-1] - cps[0] + 1, 16, 1, cps) for cps in sparse.values()]
    rows.sort()
    offset = 16 + 12 * len(rows)
    table = bytearray()
    data = bytearray()
    for first, count, width, flags, cps in rows:
        table += struct.pack("<IHBBI", first, count, width, flags, offset + len(data))
        if not flags:
            for cp in range(first, first + count):
                data += glyphs[cp][1]
            continue
        have = set(cps)
        before = 0
        for start in range(first, first + count, BLOCK):
            bits = bytearray(BLOCK // 8)
            groups = bytearray(BLOCK // GROUP)
            n = 0
            for i in range(BLOCK):
                if i % GROUP == 0:
                    groups[i // GROUP] = n
                if start + i in have:
                    bits[i >> 3] |= 0x80 >> (i & 7)
                    n += 1
            data += struct.pack("<H", before) + groups + bits
            before += n
        for cp in cps:
            data += glyphs[cp][1]
    version = 2 if sparse else 1
    header = MAGIC + struct.pack("<BBHI4x", version, HEIGHT, len(rows), len(glyphs))
    return bytes(header + table + data)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hex", default=DEFAULT_HEX, help="Unifont .hex source (default %(default)s)")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--chars", help="build only these characters (plus ASCII): a test subset")
    p.add_argument("--set", choices=("base", "full"), default="base",
                   help="base: GB 2312 and NAME_EXTRA (default); full: all of U+4E00-U+9FFF")
    args = p.parse_args(argv)
    if not os.path.exists(args.hex):
        sys.exit("%s not found: apt-get install unifont" % args.hex)
    if args.chars:
        keep = set(ord(c) for c in args.chars) | set(range(0x20, 0x7F))
        wanted = keep.__contains__
    elif args.set == "base":
        wanted = base_set()
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
