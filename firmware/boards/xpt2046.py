# mpy_check: compile-only
"""XPT2046 resistive touch controller on SPI. poll() -> (x, y) in screen pixels once per touch
(on the press, not while held), else None. Calibration: raw 12-bit readings at the screen edges."""

TYPE_CHECKING = False  # True only for the type checker (tools/typecheck): the bus types below
if TYPE_CHECKING:     # come from the MicroPython stubs; at run time the bus is passed in
    from machine import SPI, Pin


class XPT2046:
    def __init__(self, spi: "SPI", cs: "Pin", width=320, height=240, cal=(200, 3900, 200, 3900),
                 swap_xy=True, z_min=300, baud=2000000, bus_baud=None):
        self.spi, self.cs = spi, cs
        self.baud, self.bus_baud = baud, bus_baud   # XPT2046 reads at <= 2.5 MHz; the TFT is faster
        cs.init(cs.OUT, value=1)
        self.width, self.height = width, height
        self.cal = cal                # raw x min, x max, y min, y max
        self.swap_xy = swap_xy
        self.z_min = z_min
        self._tx = bytearray(3)
        self._rx = bytearray(3)
        self._down = False

    def _read(self, cmd):
        self._tx[0] = cmd
        self.cs(0)
        self.spi.write_readinto(self._tx, self._rx)
        self.cs(1)
        return ((self._rx[1] << 8) | self._rx[2]) >> 3

    def _scale(self, raw, lo, hi, size):
        v = (raw - lo) * size // (hi - lo)
        return min(size - 1, max(0, v))

    def poll(self):
        if self.bus_baud:
            self.spi.init(baudrate=self.baud)
        try:
            return self._poll()
        finally:
            if self.bus_baud:
                self.spi.init(baudrate=self.bus_baud)

    def _poll(self):
        z = self._read(0xB1) + 4095 - self._read(0xC1)
        if z < self.z_min or self._read(0xB1) < 50:
            self._down = False
            return None
        if self._down:
            return None
        rx, ry = self._read(0xD0), self._read(0x90)
        if self.swap_xy:
            rx, ry = ry, rx
        lo_x, hi_x, lo_y, hi_y = self.cal
        self._down = True
        return self._scale(rx, lo_x, hi_x, self.width), self._scale(ry, lo_y, hi_y, self.height)
