# mpy_check: compile-only
"""ST7796S 480x320 (landscape) on SPI, the common 3.5" panel; see tft.py for the frame buffer
(76,800 bytes at 4 bits a pixel, PSRAM on the touch board's ESP32-S3)."""

from firmware.boards.tft import Tft


class ST7796(Tft):
    INIT = (
        (0x01, None, 150),              # software reset
        (0x11, None, 120),              # sleep out
        (0xF0, b"\xC3", 0),             # command set control: unlock part 1
        (0xF0, b"\x96", 0),             # unlock part 2
        (0x3A, b"\x55", 0),             # 16 bits per pixel
        (0x36, b"\x28", 0),             # landscape, BGR order
        (0xF0, b"\x3C", 0),             # lock again
        (0xF0, b"\x69", 0),
        (0x29, None, 0),                # display on
    )
