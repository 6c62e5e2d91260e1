# mpy_check: compile-only
"""five_button board: ESP32 (4 MB flash, no PSRAM), 128x64 OLED on I2C, five active-low keys,
RS-485 (or Wi-Fi). RAM: frame buffer 1,024 bytes.

Pins (cfg key: default)
  keys      : (32, 33, 25, 26, 27)   K1..K5 left to right, to GND, internal pull-ups
  i2c_id    : 0        sda: 21    scl: 22    i2c_freq: 400000
  display   : "ssd1306" or "sh1106"            oled_addr: 0x3C
  uart_id 1, tx 17, rx 16, de 4, baud 9600     (esp32.py; not used with "wifi")
  audio     : I2S amplifier (boards/i2s.py), default pins BCLK 18, LRC 19, DIN 23
  debounce_ms: 30     a key counts once, when it has been stably down this long
"""

import machine

from firmware.boards.esp32 import Esp32Board


class Keys:
    """Polled, debounced keys: read() -> indices newly pressed since the last call."""

    def __init__(self, pins, debounce_ms, ticks):
        self._pins = [machine.Pin(p, machine.Pin.IN, machine.Pin.PULL_UP) for p in pins]
        self._debounce = debounce_ms
        self._ticks = ticks
        n = len(pins)
        self._raw = [1] * n        # last raw level (1 = up)
        self._since = [0] * n      # when the raw level last changed
        self._down = [False] * n   # debounced state

    def read(self):
        import time
        now = self._ticks()
        out = []
        for i, pin in enumerate(self._pins):
            v = pin.value()
            if v != self._raw[i]:
                self._raw[i] = v
                self._since[i] = now
                continue
            if time.ticks_diff(now, self._since[i]) < self._debounce:
                continue
            down = v == 0
            if down and not self._down[i]:
                out.append(i)
            self._down[i] = down
        return out


class FiveButtonBoard(Esp32Board):
    profile = "five_button"

    def __init__(self, cfg):
        super().__init__(cfg)
        i2c = machine.I2C(cfg.get("i2c_id", 0), sda=machine.Pin(cfg.get("sda", 21)),
                          scl=machine.Pin(cfg.get("scl", 22)), freq=cfg.get("i2c_freq", 400000))
        if cfg.get("display", "ssd1306") == "sh1106":
            from firmware.boards.sh1106 import SH1106 as Oled
        else:
            from firmware.boards.ssd1306 import SSD1306 as Oled
        self.display = Oled(i2c, cfg.get("oled_addr", 0x3C))
        self._keys = Keys(cfg.get("keys", (32, 33, 25, 26, 27)), cfg.get("debounce_ms", 30),
                          self.ticks_ms)

    def read_input(self):
        return [("key", i) for i in self._keys.read()]


def make_board(cfg):
    return FiveButtonBoard(cfg)
