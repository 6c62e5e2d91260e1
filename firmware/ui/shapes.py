"""Icons drawn as shapes, from fill_rect alone (pixel-identical under framebuf and ui/fb.py): key
legends, check boxes, arrows, the thank-you tick. No icon is a character, so none reads as one."""


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


def triangle(fb, cx, y, h, up, c):
    """A filled triangle h rows tall, 2h - 1 wide, apex up or down, centred on cx."""
    for i in range(h):
        half = i if up else h - 1 - i
        fb.fill_rect(cx - half, y + i, 2 * half + 1, 1, c)


def side_triangle(fb, x, cy, w, left, c):
    """A filled triangle w columns wide, 2w - 1 tall, pointing left or right."""
    for i in range(w):
        half = i if left else w - 1 - i
        fb.fill_rect(x + i, cy - half, 1, 2 * half + 1, c)


def back_arrow(fb, x, y, s, c):
    """A U-turn arrow (back) in an s x s box."""
    t = max(1, s // 8)
    r = s // 2
    side_triangle(fb, x, y + r // 2 + t // 2, r // 2 + 1, True, c)
    fb.fill_rect(x + r // 2, y + r // 2, s - r // 2 - t, t, c)
    fb.fill_rect(x + s - t - 1, y + r // 2, t, r, c)
    fb.fill_rect(x + r // 2, y + r // 2 + r - t, s - r // 2 - 1, t, c)


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
        fb.fill_rect(x + mx * u * s // (7 * u), y + my * u * s // (7 * u), u, u, c)
