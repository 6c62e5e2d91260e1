"""touch layouts, landscape, for a 320x240 and a 480x320 panel (sizes from the display); 4-bit
palette indices (ui/colors.py). Fixed words in smooth type (ui/words.py), case text in the 16-px
bitmap font.

case:  a side panel (BAR) with the case: matter name (wrapped, "…" past its lines), 流水号 and the
       serial (or 共N件 + first serial), 工号 and the staff name, the time left to rate, then 扫码
       (when the context has a QR matrix) and 提交. Right of it one rating block a page: its
       title (indicator, or theme item name; ‹ › between pages) over five equal buttons stacked
       非常满意 ... 非常不满意, one line each (same size and colours; only the rater's own choice is
       filled afterwards). A press moves on to the next block; 提交 looks enabled once every
       asked indicator has a level.
qr:    扫码评价 (UI-local): the QR code at a whole number of pixels a module, and 返回.
tags:  title bar, tags as chips with a drawn check box (filled = chosen), 返回 and 确定.
Large-text mode (view "large_text", 适老化): bigger words on every button, fewer case lines.
Paging and the QR screen are local to the UI: action() redraws and returns None.
"""

from firmware.ui import colors as C
from firmware.ui import shapes
from firmware.ui.say import say, say_h
from firmware.ui.ui import ask_fields, serial_text


class Geo:
    """Sizes for the panel and the text mode."""

    def __init__(self, ui, view):
        w, h = ui.width, ui.height
        big = w >= 480
        large = bool(view.get("large_text"))
        self.w, self.h, self.large = w, h, large
        self.pad = 8 if big else 6
        self.pitch = 22 if big else 20              # case-text lines: 16 px and the spacing
        self.left_w = 200 if big else (136 if large else 144)
        self.label_px = (48 if large else 32) if big else (32 if large else 24)
        self.title_px = 32 if big else 24
        # the block's title and its page dots; large words on 480x320 take a little of it
        self.title_h = (46 if large else 52) if big else 40
        self.small_px = 32 if big else 24
        self.big_px = 48 if big else 32
        self.btn_h = 48 if big else 36              # 提交, 返回, 确定
        self.chip_h = 52 if big else 40
        self.bx = self.left_w + 6
        self.bw = w - self.left_w - 12
        self.by = self.title_h + 2
        self.bpitch = (h - self.title_h - 6) // 5


def button(ui, x, y, w, h, text, px, chosen, enabled=True):
    """A button: face, border, a smooth label on one line ("…" if it cannot fit)."""
    face, ink = (C.CHOSEN, C.ON_DARK) if chosen else (C.FACE, C.FG if enabled else C.MUTED)
    ui.fb.fill_rect(x, y, w, h, face)
    ui.fb.rect(x, y, w, h, C.CHOSEN if chosen else C.EDGE)
    lh = say_h(ui, px)
    say(ui, x + 4, y + (h - lh) // 2, w - 8, text, px, ink, face)


# --- case ---------------------------------------------------------------------------------------
def _blocks(view):
    """[(kind, key)]: kind "ind" rates an indicator (key: its name), "item" a theme item."""
    blocks = []
    for name in ask_fields(view):
        blocks.append(("ind", name))
    ctx = view.get("context") or {}
    for item in ctx.get("items") or ():
        blocks.append(("item", item))
    return blocks


def _page(ui, view, pages):
    ctx = view.get("context") or {}
    if ui.state.get("case") != ctx.get("case_id"):
        ui.state["case"] = ctx.get("case_id")
        ui.state["page"] = 0
        ui.state["qr"] = False
    return min(ui.state.get("page", 0), pages - 1)


def _has_qr(view):
    from firmware.ui.qr import side
    return side((view.get("context") or {}).get("qr_modules")) > 0


def _hits(ui, view):
    """Buttons of the case screen as (x, y, w, h, action, label, chosen), the page's blocks, the
    page, the pages."""
    g = Geo(ui, view)
    blocks = _blocks(view)
    pages = max(1, len(blocks))
    page = _page(ui, view, pages)
    shown = blocks[page:page + 1]
    levels = view.get("levels") or {}
    item_levels = view.get("item_levels") or {}
    hits = []
    for kind, key in shown:
        have = levels.get(key) if kind == "ind" else item_levels.get(key.get("code"))
        for i in range(5):
            level = i + 1
            act = ("rate", key, level) if kind == "ind" else ("rate_item", key.get("code"), level)
            hits.append((g.bx, g.by + i * g.bpitch, g.bw, g.bpitch - 4, act, "level%d" % level,
                         have == level))
    t = g.title_h
    if page > 0:
        hits.append((g.left_w + 2, 0, t // 2 + 6, t, ("page", -1), "prev", False))
    if page + 1 < pages:
        hits.append((g.w - t // 2 - 8, 0, t // 2 + 6, t, ("page", 1), "next", False))
    y = g.h - g.pad - g.btn_h
    iw = g.left_w - 2 * g.pad
    if _has_qr(view):   # a square QR icon button (扫码评价 is the next screen's title)
        hits.append((g.pad, y, g.btn_h, g.btn_h, ("qr",), "qr", False))
        hits.append((g.pad * 2 + g.btn_h, y, iw - g.btn_h - g.pad, g.btn_h, ("submit",), "submit",
                     False))
    else:
        hits.append((g.pad, y, iw, g.btn_h, ("submit",), "submit", False))
    return hits, shown, page, pages


def _complete(view):
    levels = view.get("levels") or {}
    for name in ask_fields(view):
        if not levels.get(name):
            return False
    return True


def block(ui, x, y, w, text, fg, bg, max_lines, pitch):
    """Case text wrapped into at most max_lines lines of pitch px. When text is left over, the
    last line holds all the rest: it ends in "…" and scrolls, so every character is shown in
    turn (Art. 14: the matter name is shown, not cut). Returns the y below the block."""
    lines = ui.wrap(text, w)
    for i in range(min(len(lines), max_lines)):
        if i == max_lines - 1 and i + 1 < len(lines):
            ui.line(x, y, w, "".join(lines[i:]), fg, bg)
        else:
            ui.text(x, y, lines[i], fg, w)
        y += pitch
    return y


def _left(ui, view, g):
    """The side panel: the case (Art. 14) and the time left."""
    ctx = view.get("context") or {}
    fb = ui.fb
    fb.fill_rect(0, 0, g.left_w, g.h, C.BAR)
    x, iw, p = g.pad, g.left_w - 2 * g.pad, g.pitch
    ink = C.ON_DARK
    lines = (2 if g.large else 4) if g.w >= 480 else (2 if g.large else 3)
    y = block(ui, x, g.pad, iw, ctx.get("matter_name") or "", ink, C.BAR, lines, p) + 4
    fb.hline(x, y - 3, iw, C.EDGE)
    if not g.large:
        ui.text(x, y + 1, ui.word(view, "serial"), ink)
        y += p
    ui.line(x, y + 1, iw, serial_text(ui, view, ctx), ink, C.BAR)
    y += p
    staff_id, name = ctx.get("staff_id") or "", ctx.get("staff_name") or ""
    if g.large:
        ui.line(x, y + 1, iw, (staff_id + " " + name).strip(), ink, C.BAR)
    else:
        ui.line(x, y + 1, iw, ui.word(view, "staff") + " " + staff_id, ink, C.BAR)
        ui.line(x, y + 1 + p, iw, name, ink, C.BAR)
    left = view.get("left_s")
    if left is not None:
        at = ui.board.ticks_ms()
        ui.timer = [at, left, left, _countdown]
        _countdown(ui, left)


def _countdown(ui, left):
    g = Geo(ui, ui.view)
    lh = say_h(ui, g.small_px)
    y = g.h - g.pad - g.btn_h - lh - g.pad
    ui.fb.fill_rect(g.pad, y, g.left_w - 2 * g.pad, lh, C.BAR)
    say(ui, g.pad, y, g.left_w - 2 * g.pad, ui.word_with(ui.view, "left", left), g.small_px,
           C.ON_DARK, C.BAR)


def _case(ui, view):
    _page(ui, view, 1)   # a new case: page 1, no QR screen
    if ui.state.get("qr") and _has_qr(view):
        from firmware.ui.touch_screens import qr_screen
        qr_screen(ui, view, Geo(ui, view))
        return
    g = Geo(ui, view)
    hits, shown, page, pages = _hits(ui, view)
    _left(ui, view, g)
    fb = ui.fb
    t = g.title_h
    tx, tw = g.left_w + 2, g.w - g.left_w - 4
    if pages > 1:   # room for ‹ and ›
        tx, tw = tx + t // 2 + 6, tw - t - 12
    th = say_h(ui, g.title_px)
    for kind, key in shown:
        if kind == "ind":
            label = "prompt_receipt" if ask_fields(view) == ["service"] else "ind_" + key
            say(ui, tx, 1, tw, ui.word(view, label), g.title_px, C.FG, C.BG)
        else:
            ui.line(tx, 1 + (th - 16) // 2, tw, key.get("name") or key.get("code") or "", C.FG,
                    C.BG, True)
    if pages > 1:   # a dot a page, the current one filled
        r = 3 if g.w < 480 else 4
        x0 = g.bx + (g.bw - (pages - 1) * 4 * r) // 2
        for i in range(pages):
            if i == page:
                shapes.disc(fb, x0 + i * 4 * r, t - r - 2, r, C.FG)
            else:
                shapes.ring(fb, x0 + i * 4 * r, t - r - 2, r, 1, C.MUTED, C.BG)
    for x, y, w, h, act, word, chosen in hits:
        if act[0] == "page":
            shapes.side_triangle(fb, x + (w - t // 4) // 2, y + h // 2, t // 4, act[1] < 0, C.FG)
        elif act[0] == "submit":
            button(ui, x, y, w, h, ui.word(view, word), g.small_px, False, _complete(view))
        elif act[0] == "qr":
            button(ui, x, y, w, h, "", g.small_px, False)
            shapes.qr_icon(fb, x + w // 5, y + h // 5, w - 2 * (w // 5), C.FG, C.FACE)
        else:
            button(ui, x, y, w, h, ui.word(view, word), g.label_px, chosen)


# --- tags ---------------------------------------------------------------------------------------
def _tag_hits(ui, view):
    g = Geo(ui, view)
    hits = []
    chosen = view.get("chosen") or []
    cols = 2
    cw = (g.w - g.pad * (cols + 1)) // cols
    bottom = g.h - g.pad * 2 - g.btn_h
    for i, tag in enumerate(view.get("tags") or []):
        x = g.pad + (i % cols) * (cw + g.pad)
        y = g.title_h + g.pad + (i // cols) * (g.chip_h + g.pad)
        if y + g.chip_h > bottom:
            break   # more tags than the screen holds (CONFIG allows 16 short ones)
        hits.append((x, y, cw, g.chip_h, ("tag_pick", tag.get("code")), tag.get("label") or "",
                     tag.get("code") in chosen))
    bw = (g.w - 3 * g.pad) // 2
    y = g.h - g.pad - g.btn_h
    hits.append((g.pad, y, bw, g.btn_h, ("back",), None, False))
    hits.append((g.w - g.pad - bw, y, bw, g.btn_h, ("confirm",), None, False))
    return hits


def _tags(ui, view):
    g = Geo(ui, view)
    ui.fb.fill_rect(0, 0, g.w, g.title_h, C.BAR)
    say(ui, g.pad, (g.title_h - say_h(ui, g.title_px)) // 2, g.w - 2 * g.pad,
           ui.word(view, "tags_title"), g.title_px, C.ON_DARK, C.BAR)
    for x, y, w, h, act, label, chosen in _tag_hits(ui, view):
        if label is None:
            word = "back" if act[0] == "back" else "confirm"
            button(ui, x, y, w, h, ui.word(view, word), g.small_px, False,
                   word == "back" or bool(view.get("chosen")))
            continue
        face, ink = (C.CHOSEN, C.ON_DARK) if chosen else (C.FACE, C.FG)
        ui.fb.fill_rect(x, y, w, h, face)
        ui.fb.rect(x, y, w, h, C.CHOSEN if chosen else C.EDGE)
        s = h // 2
        shapes.checkbox(ui.fb, x + g.pad, y + (h - s) // 2, s, ink, face, chosen)
        tx = x + 2 * g.pad + s
        ui.line(tx, y + (h - 16) // 2, w - (tx - x) - g.pad, label, ink, face, False, False)


# --- drawing and input --------------------------------------------------------------------------
def draw(ui, view):
    ui.fb.fill(C.BG)
    screen = view["screen"]
    if screen == "case":
        _case(ui, view)
    elif screen == "tags":
        _tags(ui, view)
    else:
        from firmware.ui.touch_screens import draw_other
        draw_other(ui, view, Geo(ui, view))


def _hit(hits, x, y):
    for h in hits:
        if h[0] <= x < h[0] + h[2] and h[1] <= y < h[1] + h[3]:
            return h[4]
    return None


def action(ui, view, event):
    if event[0] != "touch":
        return None
    x, y = event[1], event[2]
    screen = view["screen"]
    if screen == "case":
        _page(ui, view, 1)
        if ui.state.get("qr") and _has_qr(view):
            from firmware.ui.touch_screens import qr_hits
            if _hit(qr_hits(ui, view, Geo(ui, view)), x, y) is not None:
                ui.state["qr"] = False
                ui.render(view)
            return None
        hits, shown, page, pages = _hits(ui, view)
        act = _hit(hits, x, y)
        if act is None:
            return None
        if act[0] == "page" or act[0] == "qr":
            if act[0] == "qr":
                ui.state["qr"] = True
            else:
                ui.state["page"] = page + act[1]
            ui.render(view)
            return None
        if act[0] in ("rate", "rate_item") and page + 1 < pages:
            ui.state["page"] = page + 1     # on to the next block; the flow redraws
        return act
    if screen == "tags":
        return _hit(_tag_hits(ui, view), x, y)
    return None
