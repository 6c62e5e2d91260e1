"""The host board: fakes of display, buttons/touch, clock, UART, watchdog and network, so the firmware
runs unchanged under CPython (tests, hall simulator) and under MicroPython (wasm tests).

    board = make_board({"profile": "five_button", "fs_root": "/tmp/dev1"})
    board.press(0); board.touch(40, 200); board.advance(1000); board.save_png("case.png")

cfg keys:
  profile    "five_button" (128x64 mono, MONO_VLSB) or "touch" (320x240, GS4_HMSB palette indices)
  fs_root    directory for the device's files (created if missing)
  uart       optional injected UART (write/read/any[/flush]); default sim_io.MemUart (in-memory
             pipe: .feed(bytes) for the device to read, .take_tx() for what it wrote)
  clock      optional clock: an object with ticks_ms() (and advance(ms) if the test wants
             board.advance), or a function returning ms; default: a SimClock starting at 0
  net        None (RS-485 board, default), "tcp" (SimNet: real TCP sockets, CPython only), or an
             injected object with connect(), isconnected(), socket_factory(host, port)
  free_heap  number reported by free_heap() on CPython (default 100000)
  audio      True (default): an amplifier, board.audio a SimAudio that records what is played;
             False: none (board.audio None), like a board built without one

Frame buffer RAM: five_button 1,024 bytes; touch 38,400 bytes (4 bits per pixel).
"""

import os

try:
    import framebuf  # pyright: ignore[reportMissingImports] (absent on CPython: fb below)
except ImportError:
    from firmware.ui import fb as framebuf

PROFILES = {
    "five_button": (128, 64, framebuf.MONO_VLSB),
    "touch": (320, 240, framebuf.GS4_HMSB),
}


class Reboot(BaseException):
    """board.reset() on the sim: the tests catch it and boot a fresh board on the same fs_root.
    A BaseException so the firmware's own `except Exception` handlers cannot swallow it."""


class PowerCut(BaseException):
    """The power went mid-write (the tests' fake flash, the simulator's cuttable file system):
    unwinds the firmware wherever it is. A BaseException for the same reason as Reboot."""


class SimClock:
    def __init__(self, start_ms=0):
        self.now = start_ms

    def ticks_ms(self):
        return self.now

    def advance(self, ms):
        self.now += ms


# The base is MicroPython's framebuf.FrameBuffer or its stand-in ui/fb.py (same API); a checker
# sees the union of the two and cannot subclass it, hence the ignore.
class SimDisplay(framebuf.FrameBuffer):  # pyright: ignore[reportGeneralTypeIssues]
    def __init__(self, width, height, fmt):
        if fmt == framebuf.MONO_VLSB:
            size = width * ((height + 7) // 8)
        else:
            size = (width + 1) // 2 * height
        self.buf = bytearray(size)
        super().__init__(self.buf, width, height, fmt)
        self.width = width
        self.height = height
        self.format = fmt
        self.shows = 0

    def show(self):
        self.shows += 1


class SimAudio:
    """The amplifier's stand-in (firmware/audio.py's sink): records every prompt started as
    (name, volume) in `played`, in order, and what was written. It takes audio as a real I2S
    buffer does: up to BUFFER_MS ahead of the board's clock, so a prompt lasts its real time."""
    BUFFER_MS = 250

    def __init__(self, ticks):
        self._ticks = ticks
        self.played = []
        self.samples = 0        # written in all
        self.peak = 0           # largest |sample| written since the last start
        self._rate = 8000
        self._until = 0         # the clock (ms) when what was written has been heard

    def start(self, name, rate, volume):
        self.played.append((name, volume))
        self._rate = rate
        self.peak = 0

    def ready(self):
        return self._until - self._ticks() < self.BUFFER_MS

    def write(self, samples):
        n = len(samples)
        self.samples += n
        for v in samples:
            if v > self.peak:
                self.peak = v
            elif -v > self.peak:
                self.peak = -v
        self._until = max(self._until, self._ticks()) + n * 1000 // self._rate

    def stop(self):
        pass


class SimBoard:
    def __init__(self, cfg):
        self.profile = cfg.get("profile", "five_button")
        if self.profile not in PROFILES:
            raise ValueError("unknown board profile %r" % self.profile)
        w, h, fmt = PROFILES[self.profile]
        self.display = SimDisplay(w, h, fmt)
        self.fs_root = cfg["fs_root"]
        _makedirs(self.fs_root)
        self.uart = cfg.get("uart")
        if self.uart is None:
            from firmware.boards.sim_io import MemUart
            self.uart = MemUart()
        clock = cfg.get("clock")
        if clock is None:
            clock = SimClock()
        self.clock = clock
        self._ticks = clock if callable(clock) else clock.ticks_ms
        net = cfg.get("net")
        if net == "tcp":
            from firmware.boards.sim_io import SimNet
            net = SimNet()
        self.net = net
        self._fake_heap = cfg.get("free_heap", 100000)
        self.audio = SimAudio(self.ticks_ms) if cfg.get("audio", True) else None
        self._events = []
        self.de = False
        self.de_log = []        # (ticks_ms, state) for every driver-enable transition
        self.wdt_feeds = 0
        self.resets = 0

    # --- the board interface ---------------------------------------------------------------------
    def read_input(self):
        events = self._events
        self._events = []
        return events

    def ticks_ms(self):
        return self._ticks()

    def set_de(self, on):
        on = bool(on)
        if on != self.de:
            self.de = on
            self.de_log.append((self.ticks_ms(), on))

    def wdt_feed(self):
        self.wdt_feeds += 1

    def reset(self):
        self.resets += 1
        raise Reboot()

    def free_heap(self):
        try:
            import gc
            # MicroPython only: CPython's gc has no mem_free (the AttributeError below).
            return gc.mem_free()  # pyright: ignore[reportAttributeAccessIssue]
        except (ImportError, AttributeError):
            return self._fake_heap

    # --- sim only --------------------------------------------------------------------------------
    def press(self, i):
        if not 0 <= i <= 4:
            raise ValueError("key %r" % i)
        self._events.append(("key", i))

    def touch(self, x, y):
        self._events.append(("touch", x, y))

    def advance(self, ms):
        self.clock.advance(ms)

    def framebuffer(self):
        return bytes(self.display.buf)

    def rgb_at(self, x, y):
        v = self.display.pixel(x, y)
        if self.profile == "five_button":
            return (0x9E, 0xE6, 0xFF) if v else (0x08, 0x0C, 0x14)   # lit OLED pixels on black
        from firmware.ui.colors import PALETTE
        return PALETTE[v]

    def save_png(self, path, scale=None):
        from firmware.boards.png import write_png
        if scale is None:
            scale = 3 if self.profile == "five_button" else 2
        write_png(path, self.display.width, self.display.height, self.rgb_at, scale)


def _makedirs(path):
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        p = "/".join(parts[:i])
        if not p:
            continue
        try:
            os.mkdir(p)
        except OSError:
            pass


def make_board(cfg):
    return SimBoard(cfg)
