"""Colours of the screens. Mono (five_button): 0 = dark, 1 = lit. Touch: a 4-bit frame buffer
(GS4_HMSB) holds palette indices; the display driver and the sim's PNG writer turn them into colour
with PALETTE. Level buttons all use the same face colours, so no colour hints at a level.

Indices 8-15 are blends for the smooth words (ui/words.py, 2-bit coverage): one third and two
thirds of the ink over a known background, for the four ink/background pairs the screens use."""

BG = 0        # page background
FG = 1        # text
BAR = 2       # header bar, side panel
FACE = 3      # button face
EDGE = 4      # button border
CHOSEN = 5    # the rater's own choice (after the press)
ON_DARK = 6   # text on BAR / CHOSEN
MUTED = 7     # secondary text

_BASE = ((0xF3, 0xF5, 0xF8), (0x1A, 0x1F, 0x2B), (0x1F, 0x4E, 0x8C), (0xFF, 0xFF, 0xFF),
         (0xB4, 0xBE, 0xCC), (0x2B, 0x6C, 0xC4), (0xFF, 0xFF, 0xFF), (0x5F, 0x6B, 0x7A))
# (ink, background) -> index of the 1/3 blend; the 2/3 blend is the next index
_PAIRS = ((FG, BG, 8), (FG, FACE, 10), (ON_DARK, BAR, 12), (ON_DARK, CHOSEN, 14))


def _mix(a, b, t):
    return ((a[0] * t + b[0] * (3 - t) + 1) // 3, (a[1] * t + b[1] * (3 - t) + 1) // 3,
            (a[2] * t + b[2] * (3 - t) + 1) // 3)


def _palette():
    pal = list(_BASE) + [(0, 0, 0)] * 8
    for ink, bg, i in _PAIRS:
        pal[i] = _mix(_BASE[ink], _BASE[bg], 1)
        pal[i + 1] = _mix(_BASE[ink], _BASE[bg], 2)
    return tuple(pal)


PALETTE = _palette()


def blends(ink, bg):
    """(1/3, 2/3) blend indices of ink over bg; a pair without blends draws partial coverage as
    the background (1/3) and the ink (2/3): still legible, only less smooth."""
    for p in _PAIRS:
        if p[0] == ink and p[1] == bg:
            return p[2], p[2] + 1
    return bg, ink


def rgb565(rgb):
    r, g, b = rgb
    return ((r & 0xF8) << 8) | ((g & 0xFC) << 3) | (b >> 3)


PALETTE565 = tuple(rgb565(c) for c in PALETTE)
