"""Smooth type for the touch board's fixed words: glyphs pre-rendered at build time with 2-bit
coverage (tools/build_ui_words.py has the file format), blitted through a four-colour palette of
blends between the ink and the known background (colors.blends). RAM: the header and the index
(8 bytes a glyph, ~1.3 KiB a size); the bitmaps are read from flash glyph by glyph.

    w = Words("/fonts/words_24.bin"); w.covers("非常满意") -> True; w.width("满意") -> 48
    w.draw(fb, x, y, "满意", ink, bg)      # y: the line's top; w.line_h pixels tall
"""

import struct

try:
    import framebuf  # pyright: ignore[reportMissingImports] (absent on CPython: fb below)
except ImportError:
    from firmware.ui import fb as framebuf

from firmware.ui.colors import blends


class Words:
    def __init__(self, path):
        f = open(path, "rb")
        head = f.read(16)
        if len(head) != 16 or head[:4] != b"HWRD" or head[4] != 1:
            f.close()
            raise ValueError("not a words file")
        self.px, self.line_h, self.ascent = head[5], head[6], head[7]
        self._n, biggest = struct.unpack_from("<HH", head, 8)
        self._index = f.read(8 * self._n)
        self._f = f
        self._buf = bytearray(biggest)
        self._pals = {}

    def _find(self, cp):
        idx = self._index
        lo, hi = 0, self._n - 1
        while lo <= hi:
            mid = (lo + hi) >> 1
            c = idx[mid * 8] | (idx[mid * 8 + 1] << 8)
            if cp < c:
                hi = mid - 1
            elif cp > c:
                lo = mid + 1
            else:
                return mid * 8
        return -1

    def covers(self, text):
        for ch in text:
            if self._find(ord(ch)) < 0:
                return False
        return True

    def width(self, text):
        idx, w = self._index, 0
        for ch in text:
            i = self._find(ord(ch))
            if i >= 0:
                w += idx[i + 2]
        return w

    def fit(self, text, w):
        """How many leading characters of text fit in w pixels."""
        idx, used, n = self._index, 0, 0
        for ch in text:
            i = self._find(ord(ch))
            used += idx[i + 2] if i >= 0 else 0
            if used > w:
                break
            n += 1
        return n

    def _palette(self, ink, bg):
        key = (ink, bg)
        p = self._pals.get(key)
        if p is None:
            b1, b2 = blends(ink, bg)
            skip = 0
            while skip in (b1, b2, ink):
                skip += 1
            pal = framebuf.FrameBuffer(bytearray(2), 4, 1, framebuf.GS4_HMSB)
            for i, c in enumerate((skip, b1, b2, ink)):
                pal.pixel(i, 0, c)
            p = self._pals[key] = (pal, skip)
        return p

    def draw(self, fb, x, y, text, ink, bg):
        """Draw text with its line top at y; returns the pen's x after it. Characters the file
        lacks are skipped (callers check covers() first)."""
        pal, skip = self._palette(ink, bg)
        idx, f, buf = self._index, self._f, self._buf
        for ch in text:
            i = self._find(ord(ch))
            if i < 0:
                continue
            off = struct.unpack_from("<I", idx, i + 4)[0]
            f.seek(off)
            f.readinto(memoryview(buf)[:4])
            w, h, left, top = buf[0], buf[1], buf[2], buf[3]
            if left > 127:
                left -= 256
            if w and h:
                n = h * ((w + 3) >> 2)
                f.readinto(memoryview(buf)[:n])
                g = framebuf.FrameBuffer(buf, w, h, framebuf.GS2_HMSB)
                fb.blit(g, x + left, y + top, skip, pal)
            x += idx[i + 2]
        return x
