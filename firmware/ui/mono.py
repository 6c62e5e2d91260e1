"""five_button layouts: 128x64 mono OLED, the 16-px bitmap font, lines kept apart (CJK glyphs use
all 16 rows, so two lines 16 px apart touch). The five levels are printed on the keys
(K1 非常满意 ... K5 非常不满意), so the case screen shows the case and the prompt, never a level.

case:  y 0 matter name | y 15 serial (ASCII, whose ink is rows 2-13) | y 30 staff ID and name |
       y 48 the prompt on a lit bar ("请评价", receipt: "请评价服务态度"), a batch's 共N件 at its
       right end. Lines too long end in "…" and scroll.
tags:  title + n/m | two tag rows, each a drawn check box (ticked = chosen), the cursor row lit |
       the key legend as drawn icons, each under its key: ▲ up, ▼ down, ☑ choose, ↩ back, ✓ done
error: 设备维护中 on a lit bar, 请联系工作人员, and a code for the technician (never a file name).
"""

from firmware.ui import shapes
from firmware.ui.ui import ask_fields, error_code

W = 128
ROW = 16
PITCH = 20        # centred message lines
TAG_ROWS = 2
TAG_Y = 17
LEGEND_Y = 52
# tags screen: K1 up, K2 down, K3 choose, K4 back, K5 confirm (views.py)
TAG_KEYS = (("tag_move", -1), ("tag_move", 1), ("tag_toggle",), ("back",), ("confirm",))


def draw(ui, view):
    ui.fb.fill(0)
    screen = view["screen"]
    if screen == "case":
        _case(ui, view)
    elif screen == "tags":
        _tags(ui, view)
    elif screen == "idle":
        _idle(ui, view)
    elif screen == "provisioning":
        ui.line(0, 8, W, ui.word(view, "provisioning"), 1, None, True)
        ui.line(0, 36, W, view.get("device") or "", 1, None, True)
    elif screen == "error":
        ui.fb.fill_rect(0, 0, W, ROW, 1)
        ui.line(0, 0, W, ui.word(view, "error"), 0, 1, True)
        _centred(ui, ui.wrap(ui.word(view, "maint_hint"), W)[:1], 20, 44)
        ui.line(0, 48, W, ui.word_with(view, "code", error_code(view.get("message"))), 1, None,
                True)
    else:
        _centred(ui, ui.wrap(ui.word(view, screen), W)[:3], 0, 64)


def _centred(ui, lines, y0, y1):
    y = y0 + max(0, (y1 - y0 - PITCH * len(lines) + PITCH - ROW) // 2)
    for ln in lines:
        ui.line(0, y, W, ln, 1, None, True)
        y += PITCH


def _case(ui, view):
    ctx = view.get("context") or {}
    ui.line(0, 0, W, ctx.get("matter_name") or "", 1)
    serials = ctx.get("serials") or []
    serial = serials[0] if serials else ""
    ui.line(0, 15, W, serial, 1, None, False, _compact(serial), (2, 12))
    staff = ((ctx.get("staff_id") or "") + " " + (ctx.get("staff_name") or "")).strip()
    ui.line(0, 30, W, staff, 1)
    ui.fb.fill_rect(0, 48, W, ROW, 1)
    prompt = ui.word(view, "prompt_receipt" if ask_fields(view) == ["service"] else "prompt")
    batch = ui.word_with(view, "batch", len(serials)) if len(serials) > 1 else ""
    bw = ui.font.text_width(batch)
    if batch:
        ui.text(W - 2 - bw, 48, batch, 0)
    ui.line(2, 48, W - 4 - (bw + 4 if batch else 0), prompt, 0, 1)


def _compact(text):
    """True when the text's ink stays in Unifont's rows 2-13 (digits, most capitals and signs):
    its line may sit closer to its neighbours and scroll without touching them."""
    for ch in text:
        if ord(ch) > 0x7E or ch in "(),;Q[]_`gjpqy{|}":
            return False
    return True


def _tags(ui, view):
    tags = view.get("tags") or []
    cursor = view.get("cursor") or 0
    chosen = view.get("chosen") or []
    count = "%d/%d" % (cursor + 1, len(tags)) if tags else ""
    cw = ui.font.text_width(count)
    ui.line(0, 0, W - cw - 2, ui.word(view, "tags_title"), 1)
    ui.text(W - cw, 0, count, 1)
    top = cursor - cursor % TAG_ROWS
    fb = ui.fb
    for i in range(top, min(top + TAG_ROWS, len(tags))):
        y = TAG_Y + ROW * (i - top)
        tag = tags[i]
        fg, bg = (0, 1) if i == cursor else (1, 0)
        fb.fill_rect(0, y, W, ROW, bg)
        shapes.checkbox(fb, 2, y + 4, 9, fg, bg, tag.get("code") in chosen)
        ui.line(16, y, W - 16, tag.get("label") or "", fg, bg)
    _legend(fb)


def _legend(fb):
    """K1..K5 on the tags screen, each icon centred under its key (W / 5 = 25.6 px a key)."""
    y = LEGEND_Y
    cx = [k * W // 5 + W // 10 for k in range(5)]
    shapes.triangle(fb, cx[0], y + 2, 6, True, 1)
    shapes.triangle(fb, cx[1], y + 2, 6, False, 1)
    shapes.checkbox(fb, cx[2] - 5, y, 10, 1, 0, True)
    shapes.back_arrow(fb, cx[3] - 5, y, 10, 1)
    shapes.tick(fb, cx[4] - 5, y, 10, 2, 1)


def _idle(ui, view):
    window = view.get("window")
    if window:
        ui.line(0, 0, W, ui.word_with(view, "window", window), 1, None, True)
    ui.line(0, 24, W, view.get("staff_name") or "", 1, None, True)
    ui.line(0, 48, W, view.get("idle_text") or ui.word(view, "idle"), 1, None, True)


def action(ui, view, event):
    if event[0] != "key":
        return None
    k = event[1]
    if not 0 <= k <= 4:
        return None
    screen = view["screen"]
    if screen == "case":
        asked = ask_fields(view)
        if not asked:
            return None
        return ("rate", asked[0], k + 1)
    if screen == "tags":
        return TAG_KEYS[k]
    return None
