"""Pre-render the touch board's fixed UI words as smooth, anti-aliased type (firmware/ui/words.py
reads it).

The device has no outline-font rasteriser; it blits these bitmaps. The character set is every
character of the built-in screen words (firmware/ui/ui.py) plus printable ASCII (an English window
overrides the words in CONFIG texts) and "…". Each size is one file, firmware/fonts/words_<px>.bin
(the flash tool puts it in /fonts beside the bitmap font, on the filesystem, outside the ROMFS
image of the code):

    header 16 bytes  b"HWRD", version 1, px, line height, ascent, count (u16 LE), the largest
                     glyph's bytes (u16 LE), 4 reserved
    index            count x 8 bytes, sorted by code point: cp u16, advance u8, 0, offset u32
    glyph at offset  width u8, height u8, left i8, top u8 (ink box from the line's top, at the
                     pen position), then height rows of ceil(width / 4) bytes: 2-bit coverage
                     (0 none .. 3 full), four pixels a byte, the leftmost in the low bits
                     (framebuf.GS2_HMSB, so the device blits a row-aligned glyph as is)

Coverage comes from FreeType (Pillow) at the target size, rounded to four levels.

    python tools/build_ui_words.py                    # writes firmware/fonts/words_{24,32,48}.bin
    python tools/build_ui_words.py --check            # exit 1 when a committed file differs
"""

import argparse
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"   # Debian fonts-wqy-microhei (sans)
SIZES = (24, 32, 48)
OUT_DIR = os.path.join(ROOT, "firmware", "fonts")   # beside the bitmap font: /fonts on a device
MAGIC = b"HWRD"


def charset():
    from firmware.ui.ui import builtin_words
    chars = set(chr(c) for c in range(0x20, 0x7F))
    chars.add("\u2026")
    for word in builtin_words():
        chars.update(word)
    chars.discard("\n")
    return sorted(chars)


def render(font_path, px, chars):
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.truetype(font_path, px)
    ascent, descent = font.getmetrics()
    index, blobs = [], []
    for ch in chars:
        adv = int(round(font.getlength(ch)))
        box = font.getbbox(ch, anchor="ls")   # ink box relative to (pen x, baseline)
        w, h = max(0, box[2] - box[0]), max(0, box[3] - box[1])
        img = Image.new("L", (max(w, 1), max(h, 1)), 0)
        if w and h:
            ImageDraw.Draw(img).text((-box[0], -box[1]), ch, font=font, fill=255, anchor="ls")
        rows = bytearray()
        stride = (w + 3) // 4
        px_at = img.load()
        for y in range(h):
            row = bytearray(stride)
            for x in range(w):
                q = (px_at[x, y] * 3 + 127) // 255
                row[x >> 2] |= q << ((x & 3) * 2)
            rows += row
        top = max(0, ascent + box[1])
        blobs.append(struct.pack("<BBbB", w, h, box[0], top) + bytes(rows))
        index.append((ord(ch), min(adv, 255)))
    biggest = max(len(b) for b in blobs)
    head = MAGIC + struct.pack("<BBBBHH4x", 1, px, ascent + descent, ascent, len(chars), biggest)
    off = len(head) + 8 * len(chars)
    table = bytearray()
    for (cp, adv), blob in zip(index, blobs):
        table += struct.pack("<HBxI", cp, adv, off)
        off += len(blob)
    return head + bytes(table) + b"".join(blobs)


def path_for(px, out_dir=OUT_DIR):
    return os.path.join(out_dir, "words_%d.bin" % px)


def main(argv=None):
    p = argparse.ArgumentParser(description="Pre-render the touch board's smooth UI words.")
    p.add_argument("--font", default=FONT)
    p.add_argument("--out", default=OUT_DIR)
    p.add_argument("--check", action="store_true", help="compare with the files, write nothing")
    args = p.parse_args(argv)
    chars = charset()
    bad = 0
    for px in SIZES:
        data = render(args.font, px, chars)
        path = path_for(px, args.out)
        if args.check:
            with open(path, "rb") as f:
                same = f.read() == data
            print("%s %s" % ("ok" if same else "DIFFERS", path))
            bad += not same
        else:
            with open(path, "wb") as f:
                f.write(data)
            print("%s: %d glyphs, %d bytes" % (path, len(chars), len(data)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
