"""The case's QR code, drawn from the module matrix the gateway sends (CONTEXT qr_modules: byte 0
is N, the modules per side, 21..57; then N*N bits row-major, MSB first, 1 = dark). The device
never encodes a QR code itself. Drawn at a whole number of pixels per module, with the quiet zone
of four modules the standard asks for, dark on light."""

from protocol.supplement import qr_size as side   # N, or 0 for no valid matrix

QUIET = 4


def fit(modules, box):
    """Pixels per module for the largest code (quiet zone included) that fits box pixels; 0 when
    the matrix is invalid or even one pixel a module is too big."""
    n = side(modules)
    return box // (n + 2 * QUIET) if n else 0


def draw(fb, x, y, modules, unit, dark, light):
    """Draw at (x, y) with `unit` pixels a module; returns the side in pixels (0: nothing drawn).
    Each row's dark runs are one fill_rect each."""
    n = side(modules)
    if not n or unit < 1:
        return 0
    full = (n + 2 * QUIET) * unit
    fb.fill_rect(x, y, full, full, light)
    x0, y0 = x + QUIET * unit, y + QUIET * unit
    for r in range(n):
        run = -1
        for col in range(n + 1):
            bit = 0
            if col < n:
                i = r * n + col
                bit = (modules[1 + (i >> 3)] >> (7 - (i & 7))) & 1
            if bit and run < 0:
                run = col
            elif not bit and run >= 0:
                fb.fill_rect(x0 + run * unit, y0 + r * unit, (col - run) * unit, unit, dark)
                run = -1
    return full
