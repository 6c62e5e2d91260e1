"""Bitmap font read from the filesystem glyph by glyph (format: tools/build_font.py). Only the header
and the run table stay in RAM, plus a few recently used glyphs.

    font = Font("fonts/unifont16.bin"); font.width(0x5586) -> 16; font.glyph(0x5586) -> (16, bytes)

A character the file lacks is looked up in the glyph supplement (firmware.glyphs: bitmaps the
gateway sent with the CONTEXT, SPEC.md 3.8); one neither has is drawn as a placeholder that reads as
no character: a dotted box holding the code point's last hex digits (never a box like 口).
`placeholders` counts the placeholders handed out, for tests and the screenshots.
"""

import struct

from firmware.glyphs import Glyphs

_MAGIC = b"HFNT"
_NIBBLE_BITS = b"\x00\x01\x01\x02\x01\x02\x02\x03\x01\x02\x02\x03\x02\x03\x03\x04"
# 3x5 pixel hex digits 0-F for the placeholder, five 3-bit rows each, top row in the high bits
_HEX = (0x7B6F, 0x2C97, 0x73E7, 0x73CF, 0x5BC9, 0x79CF, 0x79EF, 0x7249, 0x7BEF, 0x7BCF,
        0x2BED, 0x6BAE, 0x3923, 0x6B6E, 0x79E7, 0x79E4)


class FontError(Exception):
    pass


class Font:
    def __init__(self, path, cache=16, supplement=None):
        f = open(path, "rb")
        head = f.read(16)
        if len(head) != 16 or head[:4] != _MAGIC or head[4] not in (1, 2):
            f.close()
            raise FontError("%s is not a font file (version 1 or 2)" % path)
        self.height = head[5]
        self._nruns = struct.unpack_from("<H", head, 6)[0]
        self.glyph_count = struct.unpack_from("<I", head, 8)[0]
        self._runs = f.read(12 * self._nruns)
        if len(self._runs) != 12 * self._nruns:
            f.close()
            raise FontError("%s: run table truncated" % path)
        self._f = f
        self._cache_size = cache
        self._cache = {}
        self._order = []
        self.reads = 0   # glyphs read from the file (cache misses), for tests and benchmarks
        self.supplement = supplement if supplement is not None else Glyphs()
        self.placeholders = 0
        self.last_missing = 0

    def close(self):
        self._f.close()

    def _run(self, cp):
        """(first, count, width, flags, offset) of the run whose span holds cp, or None."""
        runs = self._runs
        lo, hi = 0, self._nruns - 1
        while lo <= hi:
            mid = (lo + hi) >> 1
            first, count, width, flags, offset = struct.unpack_from("<IHBBI", runs, mid * 12)
            if cp < first:
                hi = mid - 1
            elif cp >= first + count:
                lo = mid + 1
            else:
                return first, count, width, flags, offset
        return None

    def _find(self, cp):
        """(width, file offset) of the glyph, or None when the font has none."""
        run = self._run(cp)
        if run is None:
            return None
        first, count, width, flags, offset = run
        size = self.height * (width >> 3)
        if not flags:
            return width, offset + (cp - first) * size
        # sparse run: one read of the 256-code-point block's entry (tools/build_font.py)
        i = cp - first
        self._f.seek(offset + 42 * (i >> 8))
        entry = self._f.read(42)
        k = i & 255
        byte = entry[10 + (k >> 3)]
        if not byte & (0x80 >> (k & 7)):
            return None
        rank = (entry[0] | entry[1] << 8) + entry[2 + (k >> 5)]
        for j in range(10 + ((k >> 3) & ~3), 10 + (k >> 3)):
            rank += _bits(entry[j])
        rank += _bits(byte >> (8 - (k & 7)))
        return width, offset + 42 * ((count + 255) >> 8) + rank * size

    def width(self, cp):
        """Advance in pixels; a missing glyph takes the placeholder's width (wide for CJK). In a
        sparse run every code point is as wide as the run (no file read: this runs per character
        of every text measured)."""
        run = self._run(cp)
        if run is not None:
            return run[2]
        return self.supplement.width(cp) or (16 if cp >= 0x1100 else 8)

    def glyph(self, cp):
        """(width, bitmap rows MONO_HLSB): from the file, else the supplement, else a placeholder."""
        g = self._cache.get(cp)
        if g is not None:
            if self._order[-1] != cp:   # least recently used goes first
                self._order.remove(cp)
                self._order.append(cp)
            return g
        hit = self._find(cp)
        if hit is None:
            g = self.supplement.get(cp)
            if g is not None:
                return g
            self.placeholders += 1
            self.last_missing = cp
            return placeholder(cp, 16 if cp >= 0x1100 else 8)
        width, offset = hit
        self._f.seek(offset)
        data = self._f.read(self.height * (width >> 3))
        self.reads += 1
        g = (width, data)
        if self._cache_size:
            if len(self._order) >= self._cache_size:
                del self._cache[self._order.pop(0)]
            self._cache[cp] = g
            self._order.append(cp)
        return g

    def text_width(self, text):
        w = 0
        for ch in text:
            w += self.width(ord(ch))
        return w


def _bits(b):
    """Bits set in one byte."""
    return _NIBBLE_BITS[b & 15] + _NIBBLE_BITS[b >> 4]


def placeholder(cp, width):
    """A dotted box with the last hex digits of cp (4 when wide, 2 when narrow), rows MONO_HLSB."""
    nb = width >> 3
    rows = bytearray(16 * nb)
    edge = (1 << width) - 1

    def put(y, bits):
        for i in range(nb):
            rows[y * nb + i] |= (bits >> (8 * (nb - 1 - i))) & 0xFF

    for y in range(16):
        if y == 0 or y == 15:
            put(y, edge & (0xAAAA if nb == 2 else 0xAA))
        elif y & 1 == 0:
            put(y, (1 << (width - 1)) | 1)
    if nb == 2:   # (digit, left column, top row): two rows of two digits
        spots = ((cp >> 12, 3, 3), (cp >> 8, 8, 3), (cp >> 4, 3, 9), (cp, 8, 9))
    else:
        spots = ((cp >> 4, 2, 3), (cp, 2, 9))
    for digit, x, top in spots:
        glyph = _HEX[digit & 0xF]
        for r in range(5):
            put(top + r, ((glyph >> (3 * (4 - r))) & 7) << (width - 3 - x))
    return width, bytes(rows)
