# mpy_check: compile-only
"""SPI TFT panels (ILI9341, ST7789) at 320x240 behind a 4-bit frame buffer of palette indices
(GS4_HMSB, 38,400 bytes; RGB565 would need 153,600). show() converts a band of rows at a time to
RGB565 with framebuf's own palette blit (C speed) into a 5,120-byte band buffer and sends it.
"""

import framebuf
import time
from micropython import const

from firmware.ui.colors import PALETTE565

TYPE_CHECKING = False  # True only for the type checker (tools/typecheck): the bus types below
if TYPE_CHECKING:     # come from the MicroPython stubs; at run time the bus is passed in
    from machine import SPI, Pin

_BAND = const(8)          # rows per transfer
_CASET = const(0x2A)
_PASET = const(0x2B)
_RAMWR = const(0x2C)


class Tft(framebuf.FrameBuffer):
    INIT: tuple = ()      # (command, data bytes, delay ms) per panel

    def __init__(self, spi: "SPI", cs: "Pin", dc: "Pin", rst: "Pin | None" = None, width=320,
                 height=240, madctl=None):
        self.spi, self.cs, self.dc = spi, cs, dc
        self.width, self.height = width, height
        self.buf = bytearray(width * height // 2)
        super().__init__(self.buf, width, height, framebuf.GS4_HMSB)
        self._band = bytearray(width * _BAND * 2)
        self._band_fb = framebuf.FrameBuffer(self._band, width, _BAND, framebuf.RGB565)
        pal = framebuf.FrameBuffer(bytearray(32), 16, 1, framebuf.RGB565)
        for i, c in enumerate(PALETTE565):
            pal.pixel(i, 0, ((c & 0xFF) << 8) | (c >> 8))   # the panel wants big-endian pixels
        self._pal = pal
        cs.init(cs.OUT, value=1)
        dc.init(dc.OUT, value=0)
        if rst is not None:
            rst.init(rst.OUT, value=0)
            time.sleep_ms(10)
            rst(1)
            time.sleep_ms(120)
        for cmd, data, delay in self.INIT:
            self.command(cmd, data)
            if delay:
                time.sleep_ms(delay)
        if madctl is not None:
            self.command(0x36, bytes((madctl,)))

    def command(self, cmd, data=None):
        self.cs(0)
        self.dc(0)
        self.spi.write(bytes((cmd,)))
        if data:
            self.dc(1)
            self.spi.write(data)
        self.cs(1)

    def show(self):
        w, h = self.width, self.height
        self.command(_CASET, bytes((0, 0, (w - 1) >> 8, (w - 1) & 0xFF)))
        self.command(_PASET, bytes((0, 0, (h - 1) >> 8, (h - 1) & 0xFF)))
        self.command(_RAMWR)
        mv = memoryview(self.buf)
        row_bytes = w // 2
        self.cs(0)
        self.dc(1)
        for y in range(0, h, _BAND):
            rows = min(_BAND, h - y)
            src = framebuf.FrameBuffer(mv[y * row_bytes:(y + rows) * row_bytes], w, rows,
                                       framebuf.GS4_HMSB)
            self._band_fb.blit(src, 0, 0, -1, self._pal)
            self.spi.write(memoryview(self._band)[:w * rows * 2])
        self.cs(1)
