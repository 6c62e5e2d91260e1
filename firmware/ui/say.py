"""Smooth type for the fixed words on touch panels (ui/words.py has the pre-rendered glyphs):
touch layouts only, so the five-button board never loads it. A word with a character the smooth
set lacks (a CONFIG text override) falls back to the bitmap font: unscaled below 32 px, else
scaled by px // 16.

    say(ui, x, y, w, "非常满意", 24, ink, bg)     # centred in w px, say_h(ui, 24) rows tall
"""

from firmware.ui.ui import ELLIPSIS


def words(ui, px):
    """The smooth type of size px, or None when its file is missing. The files sit beside the
    bitmap font (the Ui's words_dir: /fonts on a device), by default in firmware/fonts/."""
    if px not in ui._words:
        from firmware.ui.words import Words
        d = ui._words_dir
        if d is None:
            d = __file__.rsplit("/", 2)[0] + "/fonts"
        try:
            ui._words[px] = Words("%s/words_%d.bin" % (d, px))
        except (OSError, ValueError):
            ui._words[px] = None
    return ui._words[px]


def say_h(ui, px):
    """Height of a say() line of size px."""
    w = words(ui, px)
    return w.line_h if w is not None else ui.font.height * max(1, px // 16)


def say_w(ui, text, px):
    w = words(ui, px)
    if w is not None and w.covers(text):
        return w.width(text)
    return ui.font.text_width(text) * (px // 16 if px >= 32 else 1)


def say(ui, x, y, w, text, px, ink, bg, center=True):
    """A fixed word in smooth type of size px, in a slot of width w and say_h(px) rows,
    centred or left; ends in "…" when too wide. Bitmap fallback for uncovered characters."""
    sw = words(ui, px)
    if sw is not None and sw.covers(text):
        tw = sw.width(text)
        if tw > w:
            text = text[:sw.fit(text, w - sw.width(ELLIPSIS))] + ELLIPSIS
            tw = sw.width(text)
        sw.draw(ui.fb, x + ((w - tw) // 2 if center else 0), y, text, ink, bg)
        return tw
    scale = px // 16 if px >= 32 else 1
    h = say_h(ui, px)
    tw = ui.font.text_width(text) * scale
    if tw > w:
        return ui.clipped(x, y + (h - 16 * scale) // 2, w, text, ink, scale)
    ui.text(x + ((w - tw) // 2 if center else 0), y + (h - 16 * scale) // 2, text, ink, None,
            scale)
    return tw


def say_lines(ui, lines, y0, y1, px, ink, bg):
    """Lines of smooth words centred in the screen's width and between y0 and y1."""
    lh = say_h(ui, px) + px // 6
    y = y0 + max(0, (y1 - y0 - lh * len(lines)) // 2)
    for ln in lines:
        if y + lh > y1 + px // 6:
            break
        say(ui, 8, y, ui.width - 16, ln, px, ink, bg)
        y += lh
    return y
