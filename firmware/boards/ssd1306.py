# mpy_check: compile-only
"""SSD1306 128x64 OLED on I2C: a MONO_VLSB frame buffer (1,024 bytes) pushed whole by show()."""

import framebuf
from micropython import const

TYPE_CHECKING = False  # True only for the type checker (tools/typecheck): the bus types below
if TYPE_CHECKING:     # come from the MicroPython stubs; at run time the bus is passed in
    from machine import I2C

_ADDR = const(0x3C)
_INIT = (0xAE, 0xD5, 0x80, 0xA8, 0x3F, 0xD3, 0x00, 0x40, 0x8D, 0x14, 0x20, 0x00, 0xA1, 0xC8,
         0xDA, 0x12, 0x81, 0xCF, 0xD9, 0xF1, 0xDB, 0x40, 0xA4, 0xA6, 0xAF)


class SSD1306(framebuf.FrameBuffer):
    def __init__(self, i2c: "I2C", addr=_ADDR, width=128, height=64):
        self.i2c = i2c
        self.addr = addr
        self.width = width
        self.height = height
        self.pages = height // 8
        self.buf = bytearray(width * self.pages)
        super().__init__(self.buf, width, height, framebuf.MONO_VLSB)
        self._cmd_buf = bytearray(2)
        for c in _INIT:
            self.cmd(c)

    def cmd(self, c):
        self._cmd_buf[0] = 0x80
        self._cmd_buf[1] = c
        self.i2c.writeto(self.addr, self._cmd_buf)

    def data(self, chunk):
        self.i2c.writevto(self.addr, (b"\x40", chunk))

    def show(self):
        for c in (0x21, 0, self.width - 1, 0x22, 0, self.pages - 1):
            self.cmd(c)
        self.data(self.buf)
