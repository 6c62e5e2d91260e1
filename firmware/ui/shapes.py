"""touch icons drawn as shapes, from fill_rect alone (pixel-identical under framebuf and ui/fb.py):
check boxes, page arrows and dots, the thank-you tick, the QR button. No icon is a character, so
none reads as one. (The OLED's few icons are bitmaps in mono.py: less RAM than code.)"""


def thick_line(fb, x0, y0, x1, y1, t, c):
    """A line of t x t squares from (x0, y0) to (x1, y1)."""
    n = max(abs(x1 - x0), abs(y1 - y0), 1)
    for i in range(n + 1):
        fb.fill_rect(x0 + (x1 - x0) * i // n, y0 + (y1 - y0) * i // n, t, t, c)


def tick(fb, x, y, s, t, c):
    """A check mark in an s x s box at (x, y), strokes t thick."""
    thick_line(fb, x, y + s * 5 // 9, x + s * 3 // 8, y + s - t, t, c)
    thick_line(fb, x + s * 3 // 8, y + s - t, x + s - t, y + s // 8, t, c)


def checkbox(fb, x, y, s, c, bg, on):
    """An s x s box: hollow, or filled with the tick cut out when on. Keep s well under the
    font's 16 px, so the box never reads as the character 口."""
    fb.fill_rect(x, y, s, s, c if on else bg)
    fb.rect(x, y, s, s, c)
    if s > 12:
        fb.rect(x + 1, y + 1, s - 2, s - 2, c)
    if on:
        m = max(2, s // 5)
        tick(fb, x + m, y + m, s - 2 * m, max(1, s // 8), bg)


def side_triangle(fb, x, cy, w, left, c):
    """A filled triangle w columns wide, 2w - 1 tall, pointing left or right."""
    for i in range(w):
        half = i if left else w - 1 - i
        fb.fill_rect(x + i, cy - half, 1, 2 * half + 1, c)


def disc(fb, cx, cy, r, c):
    for dy in range(-r, r + 1):
        dx = int((r * r - dy * dy) ** 0.5)
        fb.fill_rect(cx - dx, cy + dy, 2 * dx + 1, 1, c)


def ring(fb, cx, cy, r, t, c, bg):
    disc(fb, cx, cy, r, c)
    disc(fb, cx, cy, r - t, bg)


def qr_icon(fb, x, y, s, c, bg):
    """A QR code's look in an s x s box: three finder squares and a few modules."""
    u = max(1, s // 7)
    for fx, fy in ((0, 0), (s - 3 * u, 0), (0, s - 3 * u)):
        fb.fill_rect(x + fx, y + fy, 3 * u, 3 * u, c)
        fb.fill_rect(x + fx + u // 2, y + fy + u // 2, 3 * u - 2 * (u // 2), 3 * u - 2 * (u // 2), bg)
        fb.fill_rect(x + fx + u, y + fy + u, u, u, c)
    for mx, my in ((4, 4), (5, 6), (6, 4), (4, 6), (6, 6), (5, 5)):
        fb.fill_rect(x + mx * s // 7, y + my * s // 7, u, u, c)
