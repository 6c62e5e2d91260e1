"""A small pure-Python stand-in for MicroPython's `framebuf`, used only where `import framebuf`
fails (CPython tests, screenshots). It implements the formats and methods the UI and the boards
use, with MicroPython's semantics (blit: the palette maps the source colour first, then the key is
compared with the mapped colour), so a screen drawn here is pixel-identical to the same screen drawn by framebuf.

Import it as: try: import framebuf / except ImportError: from firmware.ui import fb as framebuf
"""

MONO_VLSB = 0
RGB565 = 1
GS4_HMSB = 2
MONO_HLSB = 3
MONO_HMSB = 4
GS2_HMSB = 5


def _size(width, height, fmt):
    if fmt == MONO_VLSB:
        return width * ((height + 7) // 8)
    if fmt == MONO_HLSB or fmt == MONO_HMSB:
        return ((width + 7) // 8) * height
    if fmt == GS4_HMSB:
        return ((width + 1) // 2) * height
    if fmt == GS2_HMSB:
        return ((width + 3) // 4) * height
    if fmt == RGB565:
        return width * height * 2
    raise ValueError("format %r not supported by the fallback framebuf" % fmt)


class FrameBuffer:
    def __init__(self, buf, width, height, fmt, stride=None):
        if len(buf) < _size(width, height, fmt):
            raise ValueError("buffer too small")
        self._buf = buf
        self._w = width
        self._h = height
        self._fmt = fmt

    # --- one pixel -------------------------------------------------------------------------------
    def _get(self, x, y):
        fmt, b = self._fmt, self._buf
        if fmt == MONO_VLSB:
            return (b[(y >> 3) * self._w + x] >> (y & 7)) & 1
        if fmt == MONO_HLSB:
            return (b[y * ((self._w + 7) >> 3) + (x >> 3)] >> (7 - (x & 7))) & 1
        if fmt == MONO_HMSB:
            return (b[y * ((self._w + 7) >> 3) + (x >> 3)] >> (x & 7)) & 1
        if fmt == GS4_HMSB:
            v = b[y * ((self._w + 1) >> 1) + (x >> 1)]
            return v & 0x0F if x & 1 else v >> 4
        if fmt == GS2_HMSB:
            return (b[y * ((self._w + 3) >> 2) + (x >> 2)] >> ((x & 3) << 1)) & 3
        i = (y * self._w + x) * 2
        return b[i] | (b[i + 1] << 8)

    def _set(self, x, y, c):
        fmt, b = self._fmt, self._buf
        if fmt == MONO_VLSB:
            i, m = (y >> 3) * self._w + x, 1 << (y & 7)
        elif fmt == MONO_HLSB:
            i, m = y * ((self._w + 7) >> 3) + (x >> 3), 0x80 >> (x & 7)
        elif fmt == MONO_HMSB:
            i, m = y * ((self._w + 7) >> 3) + (x >> 3), 1 << (x & 7)
        elif fmt == GS4_HMSB:
            i = y * ((self._w + 1) >> 1) + (x >> 1)
            if x & 1:
                b[i] = (b[i] & 0xF0) | (c & 0x0F)
            else:
                b[i] = (b[i] & 0x0F) | ((c & 0x0F) << 4)
            return
        elif fmt == GS2_HMSB:
            i, sh = y * ((self._w + 3) >> 2) + (x >> 2), (x & 3) << 1
            b[i] = (b[i] & ~(3 << sh) & 0xFF) | ((c & 3) << sh)
            return
        else:
            i = (y * self._w + x) * 2
            b[i] = c & 0xFF
            b[i + 1] = (c >> 8) & 0xFF
            return
        if c & 1:
            b[i] |= m
        else:
            b[i] &= ~m & 0xFF

    def pixel(self, x, y, c=None):
        if not (0 <= x < self._w and 0 <= y < self._h):
            return None if c is None else None
        if c is None:
            return self._get(x, y)
        self._set(x, y, c)

    # --- areas -----------------------------------------------------------------------------------
    def fill(self, c):
        fmt = self._fmt
        if fmt == GS4_HMSB:
            v = ((c & 15) << 4) | (c & 15)
        elif fmt == RGB565:
            self.fill_rect(0, 0, self._w, self._h, c)
            return
        else:
            v = 0xFF if c & 1 else 0
        b = self._buf
        n = _size(self._w, self._h, fmt)
        b[0:n] = bytes([v]) * n

    def fill_rect(self, x, y, w, h, c):
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self._w), min(y + h, self._h)
        if x0 >= x1 or y0 >= y1:
            return
        if self._fmt == GS4_HMSB:
            self._fill_rect_gs4(x0, y0, x1, y1, c & 15)
            return
        s = self._set
        for yy in range(y0, y1):
            for xx in range(x0, x1):
                s(xx, yy, c)

    def _fill_rect_gs4(self, x0, y0, x1, y1, c):
        # Whole bytes in one slice per row; the odd edge nibbles one by one.
        stride = (self._w + 1) >> 1
        b, s = self._buf, self._set
        a = x0 + (x0 & 1)
        e = x1 - (x1 & 1)
        full = bytes([(c << 4) | c]) * max(0, (e - a) >> 1)
        for yy in range(y0, y1):
            if x0 & 1:
                s(x0, yy, c)
            if full:
                i = yy * stride + (a >> 1)
                b[i:i + len(full)] = full
            if x1 & 1 and x1 - 1 >= a:
                s(x1 - 1, yy, c)

    def hline(self, x, y, w, c):
        self.fill_rect(x, y, w, 1, c)

    def vline(self, x, y, h, c):
        self.fill_rect(x, y, 1, h, c)

    def rect(self, x, y, w, h, c, f=False):
        if f:
            self.fill_rect(x, y, w, h, c)
            return
        self.fill_rect(x, y, w, 1, c)
        self.fill_rect(x, y + h - 1, w, 1, c)
        self.fill_rect(x, y, 1, h, c)
        self.fill_rect(x + w - 1, y, 1, h, c)

    def blit(self, src, x, y, key=-1, palette=None):
        g, s = src._get, self._set
        pg = palette._get if palette is not None else None
        for sy in range(max(0, -y), min(src._h, self._h - y)):
            for sx in range(max(0, -x), min(src._w, self._w - x)):
                c = g(sx, sy)
                if pg:
                    c = pg(c, 0)
                if c != key:
                    s(x + sx, y + sy, c)
