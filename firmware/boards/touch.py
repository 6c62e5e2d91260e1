# mpy_check: compile-only
"""touch board: ESP32-S3 with PSRAM, a 320x240 SPI TFT (ILI9341 or ST7789) or a 480x320 one
(ST7796), XPT2046 or FT6x06 touch, Wi-Fi or RS-485. RAM: frame buffer 38,400 bytes at 320x240,
76,800 at 480x320 (4-bit palette indices), plus a band of 8 rows in RGB565.

Pins (cfg key: default)
  panel      : "ili9341", "st7789" or "st7796"  spi_id: 2   sck: 12   mosi: 11   miso: 13
  tft_cs     : 10     tft_dc: 9     tft_rst: 14     spi_baud: 40000000
  touch_chip : "xpt2046" or "ft6x06"
  touch_cs   : 15 (xpt2046, same SPI bus)    touch_cal: (200, 3900, 200, 3900)
  i2c_id 0, sda 8, scl 18 (ft6x06)
  uart_id 1, tx 17, rx 16, de 4, baud 9600   (esp32.py; not used with "wifi")
  audio      : I2S amplifier (boards/i2s.py), default pins BCLK 5, LRC 6, DIN 7
"""

import machine

from firmware.boards.esp32 import Esp32Board


class TouchBoard(Esp32Board):
    profile = "touch"
    AUDIO_PINS = {"sck": 5, "ws": 6, "sd": 7}

    def __init__(self, cfg):
        super().__init__(cfg)
        Pin = machine.Pin
        spi = machine.SPI(cfg.get("spi_id", 2), baudrate=cfg.get("spi_baud", 40000000),
                          sck=Pin(cfg.get("sck", 12)), mosi=Pin(cfg.get("mosi", 11)),
                          miso=Pin(cfg.get("miso", 13)))
        panel = cfg.get("panel", "ili9341")
        w, h = (480, 320) if panel == "st7796" else (320, 240)
        if panel == "st7796":
            from firmware.boards.st7796 import ST7796 as Panel
        elif panel == "st7789":
            from firmware.boards.st7789 import ST7789 as Panel
        else:
            from firmware.boards.ili9341 import ILI9341 as Panel
        self.display = Panel(spi, Pin(cfg.get("tft_cs", 10)), Pin(cfg.get("tft_dc", 9)),
                             Pin(cfg.get("tft_rst", 14)), w, h)
        if cfg.get("touch_chip", "xpt2046") == "ft6x06":
            from firmware.boards.ft6x06 import FT6x06
            i2c = machine.I2C(cfg.get("i2c_id", 0), sda=Pin(cfg.get("sda", 8)), scl=Pin(cfg.get("scl", 18)))
            self._touch = FT6x06(i2c, width=w, height=h)
        else:
            from firmware.boards.xpt2046 import XPT2046
            self._touch = XPT2046(spi, Pin(cfg.get("touch_cs", 15)), w, h,
                                  cal=tuple(cfg.get("touch_cal", (200, 3900, 200, 3900))),
                                  bus_baud=cfg.get("spi_baud", 40000000))

    def read_input(self):
        p = self._touch.poll()
        return [("touch", p[0], p[1])] if p else []


def make_board(cfg):
    return TouchBoard(cfg)
