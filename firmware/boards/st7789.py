# mpy_check: compile-only
"""ST7789 320x240 (landscape) on SPI; see tft.py for the frame buffer."""

from firmware.boards.tft import Tft


class ST7789(Tft):
    INIT = (
        (0x01, None, 150),              # software reset
        (0x11, None, 120),              # sleep out
        (0x3A, b"\x55", 0),             # 16 bits per pixel
        (0x36, b"\x60", 0),             # landscape
        (0x21, None, 0),                # inversion on (IPS panels)
        (0x13, None, 0),                # normal mode
        (0x29, None, 0),                # display on
    )
