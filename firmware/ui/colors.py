"""Colours of the screens. Mono (five_button): 0 = dark, 1 = lit. Touch: a 4-bit frame buffer
(GS4_HMSB) holds palette indices; the display driver and the sim's PNG writer turn them into colour
with PALETTE. Level buttons all use the same face colours, so no colour hints at a level."""

BG = 0        # page background
FG = 1        # text
BAR = 2       # header bar
FACE = 3      # button face
EDGE = 4      # button border
CHOSEN = 5    # the rater's own choice (after the press)
ON_DARK = 6   # text on BAR / CHOSEN
MUTED = 7     # secondary text

# RGB888 per index; unused indices are black.
PALETTE = (
    (0xFF, 0xFF, 0xFF), (0x10, 0x10, 0x10), (0x1F, 0x4E, 0x8C), (0xE8, 0xEC, 0xF2),
    (0x7A, 0x86, 0x99), (0x2B, 0x6C, 0xC4), (0xFF, 0xFF, 0xFF), (0x60, 0x60, 0x60),
) + ((0, 0, 0),) * 8


def rgb565(rgb):
    r, g, b = rgb
    return ((r & 0xF8) << 8) | ((g & 0xFC) << 3) | (b >> 3)


PALETTE565 = tuple(rgb565(c) for c in PALETTE)
