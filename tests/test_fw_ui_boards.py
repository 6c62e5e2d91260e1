"""The real-board modules (five_button, touch at 320x240 and 480x320, their display and touch
drivers) under real MicroPython 1.29 with a fake `machine` module: bytes on the buses, debounced
keys, touch mapping."""

DRIVERS = r'''
import sys, framebuf

class Pin:
    IN = 0; OUT = 1; PULL_UP = 2
    levels = {}
    def __init__(self, n, mode=None, pull=None, value=None):
        self.n = n
        if value is not None: Pin.levels[n] = value
    def init(self, mode=None, value=None):
        if value is not None: Pin.levels[self.n] = value
    def value(self, v=None):
        if v is None: return Pin.levels.get(self.n, 1)
        Pin.levels[self.n] = v
    def __call__(self, v=None): return self.value(v)

class Bus:
    def __init__(self, *a, **k):
        self.log = []; self.mem = {}; self.reply = {}; self.inits = []
    def writeto(self, addr, data): self.log.append(("w", addr, bytes(data)))
    def writevto(self, addr, parts): self.log.append(("w", addr, b"".join(bytes(p) for p in parts)))
    def readfrom_mem_into(self, addr, reg, buf): buf[:] = self.mem.get(reg, bytes(len(buf)))
    def write(self, data): self.log.append(("spi", bytes(data)))
    def write_readinto(self, tx, rx):
        v = self.reply.get(tx[0], 0) << 3
        rx[0], rx[1], rx[2] = 0, v >> 8, v & 0xFF
    def init(self, **k): self.inits.append(k.get("baudrate"))

class WDT:
    def __init__(self, timeout): self.fed = 0
    def feed(self): self.fed += 1

class machine:
    pass
machine.Pin = Pin; machine.I2C = Bus; machine.SPI = Bus; machine.UART = Bus; machine.WDT = WDT
machine.reset = lambda: print("RESET")
sys.modules["machine"] = machine

import time
now = [0]
time.ticks_ms = lambda: now[0]

# --- five_button: SSD1306 bytes, debounced keys, RS-485 DE ---
from firmware.boards import five_button
b = five_button.make_board({"fs_root": "/tmp/d"})
assert b.profile == "five_button" and b.display.width == 128
i2c = b.display.i2c
i2c.log.clear()
b.display.fill(0); b.display.pixel(0, 0, 1); b.display.pixel(127, 63, 1); b.display.show()
data = [e for e in i2c.log if e[2][0] == 0x40][0][2]
assert len(data) == 1025 and data[1] == 1 and data[1024] == 0x80
Pin.levels[32] = 0; now[0] = 5
assert b.read_input() == []                     # bounce: just changed
now[0] = 20
assert b.read_input() == []                     # not stable for 30 ms yet
now[0] = 40
assert b.read_input() == [("key", 0)]           # stable down: one press
now[0] = 200
assert b.read_input() == []                     # held: no repeat
Pin.levels[32] = 1; now[0] = 210; b.read_input(); now[0] = 260; b.read_input()
Pin.levels[32] = 0; Pin.levels[27] = 0; now[0] = 270; b.read_input(); now[0] = 310
assert b.read_input() == [("key", 0), ("key", 4)]
b.set_de(True); assert Pin.levels[4] == 1
b.set_de(False); assert Pin.levels[4] == 0
b.wdt_feed(); assert b._wdt.fed == 1
assert b.net is None and b.free_heap() > 0

# --- SH1106: three page commands then 128 bytes per page ---
from firmware.boards.sh1106 import SH1106
sh = SH1106(Bus())
sh.i2c.log.clear(); sh.fill(0); sh.pixel(0, 8, 1); sh.show()
pages = [e[2] for e in sh.i2c.log if e[2][0] == 0x40]
assert len(pages) == 8 and all(len(p) == 129 for p in pages) and pages[1][1] == 1
cmds = [e[2][1] for e in sh.i2c.log if e[2][0] == 0x80]
assert cmds[:3] == [0xB0, 0x02, 0x10]

# --- touch board: ILI9341 pixels in big-endian RGB565 via the palette, XPT2046 mapping ---
from firmware.boards import touch
from firmware.ui.colors import PALETTE565
t = touch.make_board({"fs_root": "/tmp/d"})
d = t.display
spi = d.spi
spi.log.clear()
d.fill(0); d.pixel(0, 0, 5); d.pixel(319, 239, 2); d.show()
pix = b"".join(e[1] for e in spi.log[spi.log.index(("spi", b"\x2c")) + 1:])
assert len(pix) == 320 * 240 * 2
def be(c): return bytes((c >> 8, c & 0xFF))
assert pix[0:2] == be(PALETTE565[5]) and pix[2:4] == be(PALETTE565[0]) and pix[-2:] == be(PALETTE565[2])
tp = t._touch
spi.reply = {0xB1: 2000, 0xC1: 1000, 0x90: 2050, 0xD0: 200}   # pressed; raw y->x 2050, x->y 200
assert t.read_input() == [("touch", 160, 0)]
assert t.read_input() == []                       # held: once per touch
spi.reply = {0xB1: 0, 0xC1: 4095}
assert t.read_input() == []
assert spi.inits[-1] == 40000000 and 2000000 in spi.inits   # slow for touch, fast again for the TFT

# --- ST7789 and FT6x06 ---
from firmware.boards import touch as touch_mod
t2 = touch_mod.make_board({"fs_root": "/tmp/d", "panel": "st7789", "touch_chip": "ft6x06"})
assert type(t2.display).__name__ == "ST7789"
ft = t2._touch
ft.i2c.mem[0x02] = bytes((1, 0x00, 100, 0x01, 0x04))   # portrait x=100, y=260
assert t2.read_input() == [("touch", 260, 139)]
assert t2.read_input() == []
ft.i2c.mem[0x02] = bytes(5)
assert t2.read_input() == []
# --- ST7796 at 480x320: the whole frame, the touch mapped to the bigger panel ---
t3 = touch_mod.make_board({"fs_root": "/tmp/d", "panel": "st7796"})
d3 = t3.display
assert type(d3).__name__ == "ST7796" and (d3.width, d3.height) == (480, 320) and len(d3.buf) == 76800
d3.spi.log.clear(); d3.fill(0); d3.pixel(479, 319, 2); d3.show()
assert ("spi", bytes((0, 0, 1, 0xDF))) in d3.spi.log                 # columns 0..479
pix = b"".join(e[1] for e in d3.spi.log[d3.spi.log.index(("spi", b"\x2c")) + 1:])
assert len(pix) == 480 * 320 * 2 and pix[-2:] == be(PALETTE565[2]) and pix[:2] == be(PALETTE565[0])
assert (t3._touch.width, t3._touch.height) == (480, 320)
print("DRIVERS OK")
'''


def test_board_modules_drive_their_buses(micropython):
    result = micropython(DRIVERS, trees=("firmware",)).check()
    assert "DRIVERS OK" in result.stdout
