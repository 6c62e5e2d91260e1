"""Bitmap font read from the filesystem glyph by glyph (format: tools/build_font.py). Only the header
and the run table (~300 bytes for the full font) stay in RAM, plus a few recently used glyphs.

    font = Font("fonts/unifont16.bin"); font.width(0x5586) -> 16; font.glyph(0x5586) -> (16, bytes)
"""

import struct

_MAGIC = b"HFNT"


class FontError(Exception):
    pass


class Font:
    def __init__(self, path, cache=16):
        f = open(path, "rb")
        head = f.read(16)
        if len(head) != 16 or head[:4] != _MAGIC or head[4] != 1:
            f.close()
            raise FontError("%s is not a font file (version 1)" % path)
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

    def close(self):
        self._f.close()

    def _find(self, cp):
        """(width, file offset) of the glyph, or None when the font has none."""
        runs = self._runs
        lo, hi = 0, self._nruns - 1
        while lo <= hi:
            mid = (lo + hi) >> 1
            first, count, width, _, offset = struct.unpack_from("<IHBBI", runs, mid * 12)
            if cp < first:
                hi = mid - 1
            elif cp >= first + count:
                lo = mid + 1
            else:
                return width, offset + (cp - first) * self.height * (width >> 3)
        return None

    def width(self, cp):
        """Advance in pixels; a missing glyph takes the placeholder's width (wide for CJK)."""
        hit = self._find(cp)
        if hit is not None:
            return hit[0]
        return 16 if cp >= 0x1100 else 8

    def glyph(self, cp):
        """(width, bitmap rows MONO_HLSB) or None for a missing glyph."""
        g = self._cache.get(cp)
        if g is not None:
            if self._order[-1] != cp:   # least recently used goes first
                self._order.remove(cp)
                self._order.append(cp)
            return g
        hit = self._find(cp)
        if hit is None:
            return None
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
