"""touch screens other than case and tags (touch.py has the layout's sizes, Geo):

idle:       a band with the hall's name (CONFIG text "hall", if set), the window number large,
            the welcome (or the CONFIG idle_text), the staff member on duty.
thanks:     a ticked ring and the thanks; not_rated, no_case, storage_full, busy: their words large.
provisioning: the words and the device id for the installer.
error:      设备维护中, 请联系工作人员 and a short code for the technician, never a file name.
qr (扫码评价, from the case screen): the QR code with its quiet zone, the hint, 返回.
"""

from firmware.ui import colors as C
from firmware.ui import shapes
from firmware.ui.say import say, say_h, say_lines
from firmware.ui.ui import error_code


def draw_other(ui, view, g):
    screen = view["screen"]
    if screen == "idle":
        _idle(ui, view, g)
    elif screen == "thanks":
        r = g.h // 7
        cy = g.h // 2 - r
        shapes.ring(ui.fb, g.w // 2, cy, r, max(3, r // 6), C.CHOSEN, C.BG)
        s = r
        shapes.tick(ui.fb, g.w // 2 - s // 2, cy - s // 2, s, max(3, r // 6), C.CHOSEN)
        say_lines(ui, _lines(ui, view, "thanks"), cy + r + g.pad, g.h - g.pad, g.big_px, C.FG, C.BG)
    elif screen == "provisioning":
        y = say_lines(ui, [ui.word(view, "provisioning")], 0, g.h * 2 // 3, g.big_px, C.FG, C.BG)
        ui.line(0, y + g.pad, g.w, view.get("device") or "", C.MUTED, None, True)
    elif screen == "error":
        ui.fb.fill_rect(0, 0, g.w, g.h // 2, C.BAR)
        say_lines(ui, [ui.word(view, "error")], 0, g.h // 2, g.big_px, C.ON_DARK, C.BAR)
        y = say_lines(ui, _lines(ui, view, "maint_hint"), g.h // 2, g.h - 40, g.small_px, C.FG, C.BG)
        code = ui.word_with(view, "code", error_code(view.get("message")))
        ui.line(0, g.h - g.pad - 16, g.w, code, C.MUTED, None, True)
    else:
        say_lines(ui, _lines(ui, view, screen), 0, g.h, g.big_px, C.FG, C.BG)


def _lines(ui, view, key):
    return ui.word(view, key).split("\n")


def _idle(ui, view, g):
    fb = ui.fb
    hall = ui.word(view, "hall")
    fb.fill_rect(0, 0, g.w, g.title_h, C.BAR)
    if hall:
        say(ui, g.pad, (g.title_h - say_h(ui, 24)) // 2, g.w - 2 * g.pad, hall, 24, C.ON_DARK,
               C.BAR)   # CONFIG text: smooth when covered, else the bitmap font unscaled
    lines = []
    if view.get("window"):
        lines.append(ui.word_with(view, "window", view["window"]))
    welcome = view.get("idle_text") or ui.word(view, "idle")
    bottom = g.h - g.pad - 24
    y = say_lines(ui, lines, g.title_h, g.h * 3 // 5, 48, C.FG, C.BG) if lines else g.h // 3
    say_lines(ui, welcome.split("\n"), y, bottom, g.big_px, C.FG, C.BG)
    name = view.get("staff_name")
    if name:
        fb.hline(g.pad * 4, bottom - g.pad, g.w - g.pad * 8, C.EDGE)
        ui.line(0, bottom + 4, g.w, ui.word(view, "on_duty") + " " + name, C.MUTED, None, True)


def qr_hits(ui, view, g):
    bw = g.left_w - 2 * g.pad
    return [(g.pad, g.h - g.pad - g.btn_h, bw, g.btn_h, ("qr_close",), "back", False)]


def qr_screen(ui, view, g):
    from firmware.ui import qr
    from firmware.ui.touch import button
    fb = ui.fb
    modules = (view.get("context") or {}).get("qr_modules")
    fb.fill_rect(0, 0, g.left_w, g.h, C.BAR)
    y = g.pad
    say(ui, g.pad, y, g.left_w - 2 * g.pad, ui.word(view, "qr"), g.small_px, C.ON_DARK, C.BAR)
    y += say_h(ui, g.small_px) + g.pad
    for ln in _lines(ui, view, "scan"):
        say(ui, g.pad, y, g.left_w - 2 * g.pad, ln, g.small_px, C.ON_DARK, C.BAR, False)
        y += say_h(ui, g.small_px)
    for x, by, w, h, act, word, chosen in qr_hits(ui, view, g):
        button(ui, x, by, w, h, ui.word(view, word), g.small_px, False)
    box = min(g.w - g.left_w, g.h) - 2 * g.pad
    unit = qr.fit(modules, box)
    side = (qr.side(modules) + 2 * qr.QUIET) * unit
    qr.draw(fb, g.left_w + (g.w - g.left_w - side) // 2, (g.h - side) // 2, modules, unit, C.FG,
            C.FACE)
