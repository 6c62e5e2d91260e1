"""touch layouts: 320x240, 4-bit palette indices (ui/colors.py).

case:  header bar (matter name, serial or 共N件 + first serial, staff ID and name); then up to three
       rating blocks per page, each a label (indicator, or theme item name) over a row of five
       equal buttons 非常满意 ... 非常不满意 (same size and colours; only the rater's own choice is
       filled afterwards); a bottom bar with 上页/下页 when a theme needs more pages, 扫码评价 when the
       view has a rate-later link, and 提交.
tags:  title bar, tags as chips (filled = chosen), 返回 and 确定 at the bottom.
Paging the case screen is local to the UI: action() redraws and returns None.
"""

from firmware.ui import colors as C
from firmware.ui.ui import ask_fields, serial_text

W = 320
H = 240
HEADER = 50
BLOCK_Y = 52
BLOCK_PITCH = 54
BLOCKS_PER_PAGE = 3
BTN_W = 60
BTN_PITCH = 64
BTN_H = 34
BAR_Y = 214
BAR_H = 24
CHIP_H = 32
CHIP_PITCH = 40
TAGS_Y = 32
TAGS_BOTTOM = 200


def draw(ui, view):
    ui.fb.fill(C.BG)
    screen = view["screen"]
    if screen == "case":
        _case(ui, view)
    elif screen == "tags":
        _tags(ui, view)
    elif screen == "idle":
        lines = []
        if view.get("window"):
            lines.append(ui.word_with(view, "window", view["window"]))
        if view.get("staff_name"):
            lines.append(view["staff_name"])
        ui.centered(lines, 20, 160, C.FG, 2)
        ui.line(0, 190, W, view.get("idle_text") or ui.word(view, "idle"), C.MUTED, None, True)
    elif screen == "provisioning":
        ui.centered([ui.word(view, "provisioning")], 40, 140, C.FG, 2)
        ui.line(0, 160, W, view.get("device") or "", C.MUTED, None, True)
    elif screen == "error":
        ui.fb.fill_rect(0, 0, W, 40, C.BAR)
        ui.centered([ui.word(view, "error")], 4, 36, C.ON_DARK)
        ui.centered(ui.wrap(view.get("message") or "", W - 20), 50, H, C.FG)
    else:
        ui.centered(ui.wrap(ui.word(view, screen), W - 20, 2), 0, H, C.FG, 2)


# --- case ---------------------------------------------------------------------------------------
def _blocks(view):
    """[(label key or name, kind, key)]: kind "ind" rates an indicator, "item" a theme item."""
    blocks = []
    asked = ask_fields(view)
    for name in asked:
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
    page = ui.state.get("page", 0)
    return min(page, pages - 1)


def _hits(ui, view):
    """Buttons of the case screen as (x, y, w, h, action, label, chosen), the page's blocks, pages."""
    blocks = _blocks(view)
    pages = max(1, (len(blocks) + BLOCKS_PER_PAGE - 1) // BLOCKS_PER_PAGE)
    page = _page(ui, view, pages)
    levels = view.get("levels") or {}
    item_levels = view.get("item_levels") or {}
    hits = []
    shown = blocks[page * BLOCKS_PER_PAGE:(page + 1) * BLOCKS_PER_PAGE]
    for b, (kind, key) in enumerate(shown):
        y = BLOCK_Y + b * BLOCK_PITCH + 17
        if kind == "ind":
            have = levels.get(key)
        else:
            have = item_levels.get(key.get("code"))
        for i in range(5):
            level = i + 1
            act = ("rate", key, level) if kind == "ind" else ("rate_item", key.get("code"), level)
            hits.append((2 + i * BTN_PITCH, y, BTN_W, BTN_H, act, "level%d" % level, have == level))
    if pages > 1:
        hits.append((2, BAR_Y + 1, 60, BAR_H, ("page", -1), "prev", False))
        hits.append((66, BAR_Y + 1, 60, BAR_H, ("page", 1), "next", False))
    hits.append((224, BAR_Y + 1, 94, BAR_H, ("submit",), "submit", False))
    return hits, shown, page, pages


def _button(ui, view, x, y, w, h, word, chosen, enabled=True):
    face, ink = (C.CHOSEN, C.ON_DARK) if chosen else (C.FACE, C.FG if enabled else C.MUTED)
    ui.fb.fill_rect(x, y, w, h, face)
    ui.fb.rect(x, y, w, h, C.CHOSEN if chosen else C.EDGE)
    text = ui.word(view, word)
    lines = [text]
    if ui.font.text_width(text) > w - 4:
        half = len(text) // 2
        lines = [text[:half], text[half:]]
    lh = ui.font.height
    ty = y + (h - lh * len(lines)) // 2
    for ln in lines:
        tw = ui.font.text_width(ln)
        ui.text(x + (w - tw) // 2, ty, ln, ink, w)
        ty += lh


def _case(ui, view):
    ctx = view.get("context") or {}
    fb = ui.fb
    fb.fill_rect(0, 0, W, HEADER, C.BAR)
    ui.line(6, 1, W - 12, ctx.get("matter_name") or "", C.ON_DARK, C.BAR)
    ui.line(6, 17, W - 12, ui.word(view, "serial") + " " + serial_text(ui, view, ctx), C.ON_DARK, C.BAR)
    staff = ui.word(view, "staff") + " " + (ctx.get("staff_id") or "") + "  " + (ctx.get("staff_name") or "")
    ui.line(6, 33, W - 12, staff, C.ON_DARK, C.BAR)
    hits, shown, page, pages = _hits(ui, view)
    only_service = ask_fields(view) == ["service"]
    for b, (kind, key) in enumerate(shown):
        y = BLOCK_Y + b * BLOCK_PITCH
        if kind == "ind":
            label = ui.word(view, "prompt_receipt" if only_service else "ind_" + key)
        else:
            label = key.get("name") or key.get("code") or ""
        ui.line(4, y, W - 8, label, C.FG, C.BG)
    for x, y, w, h, act, word, chosen in hits:
        _button(ui, view, x, y, w, h, word, chosen)
    if pages > 1:
        ui.text(130, BAR_Y + 5, "%d/%d" % (page + 1, pages), C.MUTED)
    if view.get("qr"):
        ui.text(166 if pages > 1 else 100, BAR_Y + 5, ui.word(view, "qr"), C.FG)


# --- tags ---------------------------------------------------------------------------------------
def _tag_hits(ui, view):
    hits = []
    x, y = 8, TAGS_Y
    chosen = view.get("chosen") or []
    for tag in view.get("tags") or []:
        w = ui.font.text_width(tag.get("label") or "") + 20
        if x + w > W - 8 and x > 8:
            x, y = 8, y + CHIP_PITCH
        if y + CHIP_H > TAGS_BOTTOM:
            break   # more tags than the screen holds (CONFIG allows 16 short ones)
        hits.append((x, y, w, CHIP_H, ("tag_pick", tag.get("code")), tag.get("label") or "",
                     tag.get("code") in chosen))
        x += w + 8
    hits.append((8, 204, 100, 32, ("back",), None, False))
    hits.append((212, 204, 100, 32, ("confirm",), None, False))
    return hits


def _tags(ui, view):
    ui.fb.fill_rect(0, 0, W, 24, C.BAR)
    ui.line(6, 4, W - 12, ui.word(view, "tags_title"), C.ON_DARK, C.BAR)
    for x, y, w, h, act, label, chosen in _tag_hits(ui, view):
        if label is None:
            word = "back" if act[0] == "back" else "confirm"
            _button(ui, view, x, y, w, h, word, False, word == "back" or bool(view.get("chosen")))
            continue
        face, ink = (C.CHOSEN, C.ON_DARK) if chosen else (C.FACE, C.FG)
        ui.fb.fill_rect(x, y, w, h, face)
        ui.fb.rect(x, y, w, h, C.CHOSEN if chosen else C.EDGE)
        ui.text(x + 10, y + (h - ui.font.height) // 2, label, ink, w - 10)


# --- input --------------------------------------------------------------------------------------
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
        hits, shown, page, pages = _hits(ui, view)
        act = _hit(hits, x, y)
        if act is not None and act[0] == "page":
            new = page + act[1]
            if 0 <= new < pages:
                ui.state["page"] = new
                ui.render(view)
            return None
        return act
    if screen == "tags":
        return _hit(_tag_hits(ui, view), x, y)
    return None
