# mpy_check: compile-only
"""ILI9341 320x240 (landscape) on SPI; see tft.py for the frame buffer."""

from firmware.boards.tft import Tft


class ILI9341(Tft):
    INIT = (
        (0x01, None, 120),              # software reset
        (0x11, None, 120),              # sleep out
        (0x3A, b"\x55", 0),             # 16 bits per pixel
        (0x36, b"\x28", 0),             # landscape, BGR order
        (0x29, None, 0),                # display on
    )
