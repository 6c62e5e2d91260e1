# mpy_check: compile-only
"""SH1106 128x64 OLED on I2C: like the SSD1306 but page addressing only, RAM 132 columns wide
(the visible window starts at column 2)."""

from firmware.boards.ssd1306 import SSD1306

_COL_OFFSET = 2


class SH1106(SSD1306):
    def show(self):
        mv = memoryview(self.buf)
        w = self.width
        for page in range(self.pages):
            self.cmd(0xB0 | page)
            self.cmd(_COL_OFFSET & 0x0F)
            self.cmd(0x10 | (_COL_OFFSET >> 4))
            self.data(mv[page * w:(page + 1) * w])
