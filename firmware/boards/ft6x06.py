# mpy_check: compile-only
"""FT6206/FT6336 capacitive touch controller on I2C. poll() -> (x, y) in screen pixels once per
touch (on the press), else None. rotate: the panel is portrait 240x320; landscape swaps axes."""

TYPE_CHECKING = False  # True only for the type checker (tools/typecheck): the bus types below
if TYPE_CHECKING:     # come from the MicroPython stubs; at run time the bus is passed in
    from machine import I2C

_ADDR = 0x38


class FT6x06:
    def __init__(self, i2c: "I2C", addr=_ADDR, width=320, height=240, rotate=True):
        self.i2c, self.addr = i2c, addr
        self.width, self.height = width, height
        self.rotate = rotate
        self._buf = bytearray(5)
        self._down = False

    def poll(self):
        self.i2c.readfrom_mem_into(self.addr, 0x02, self._buf)   # TD_STATUS, P1_XH, P1_XL, P1_YH, P1_YL
        b = self._buf
        if not (b[0] & 0x0F):
            self._down = False
            return None
        if self._down:
            return None
        self._down = True
        x = ((b[1] & 0x0F) << 8) | b[2]
        y = ((b[3] & 0x0F) << 8) | b[4]
        if self.rotate:
            x, y = y, self.height - 1 - x
        return min(self.width - 1, max(0, x)), min(self.height - 1, max(0, y))
