"""five_button layouts: 128x64 mono OLED, four 16-px rows. The five levels are printed on the keys
(K1 非常满意 ... K5 非常不满意), so the case screen shows the case and the prompt, never a level.

case:  row 0 matter name | row 1 serial (batch: 共N件 + first serial) | row 2 staff ID and name |
       row 3 the prompt, lit bar ("请评价", receipt: "请评价服务态度")
tags:  row 0 title + n/m | rows 1-2 tags, a box each (filled = chosen), the cursor row lit |
       row 3 what each key does, under the key: ▲ ▼ 选 返 确
"""

from firmware.ui.ui import ask_fields, serial_text

W = 128
ROW = 16
KEY_HINTS = ("▲", "▼", "选", "返", "确")
TAG_ROWS = 2
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
        ui.line(0, 32, W, view.get("device") or "", 1, None, True)
    elif screen == "error":
        ui.line(0, 0, W, ui.word(view, "error"), 0, 1, True)
        ui.centered(ui.wrap(view.get("message") or "", W)[:3], ROW, 64, 1)
    else:
        ui.centered(ui.wrap(ui.word(view, screen), W), 0, 64, 1)


def _case(ui, view):
    ctx = view.get("context") or {}
    ui.line(0, 0, W, ctx.get("matter_name") or "", 1)
    ui.line(0, ROW, W, serial_text(ui, view, ctx), 1)
    staff = ((ctx.get("staff_id") or "") + " " + (ctx.get("staff_name") or "")).strip()
    ui.line(0, 2 * ROW, W, staff, 1)
    prompt = "prompt_receipt" if ask_fields(view) == ["service"] else "prompt"
    ui.line(0, 3 * ROW, W, ui.word(view, prompt), 0, 1, True)


def _tags(ui, view):
    tags = view.get("tags") or []
    cursor = view.get("cursor") or 0
    chosen = view.get("chosen") or []
    count = "%d/%d" % (cursor + 1, len(tags)) if tags else ""
    cw = ui.font.text_width(count)
    ui.line(0, 0, W - cw - 2, ui.word(view, "tags_title"), 1)
    ui.text(W - cw, 0, count, 1)
    top = cursor - cursor % TAG_ROWS
    for i in range(top, min(top + TAG_ROWS, len(tags))):
        y = ROW * (1 + i - top)
        tag = tags[i]
        fg, bg = (0, 1) if i == cursor else (1, 0)
        ui.fb.fill_rect(0, y, W, ROW, bg)
        ui.fb.rect(2, y + 3, 10, 10, fg)
        if tag.get("code") in chosen:
            ui.fb.fill_rect(4, y + 5, 6, 6, fg)
        ui.line(16, y, W - 16, tag.get("label") or "", fg, bg)
    for k in range(5):
        hint = KEY_HINTS[k]
        x = k * W // 5 + (W // 5 - ui.font.text_width(hint)) // 2
        ui.text(x, 3 * ROW, hint, 1)


def _idle(ui, view):
    window = view.get("window")
    if window:
        ui.line(0, 0, W, ui.word_with(view, "window", window), 1, None, True)
    ui.line(0, 20, W, view.get("staff_name") or "", 1, None, True)
    ui.line(0, 3 * ROW, W, view.get("idle_text") or ui.word(view, "idle"), 1, None, True)


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
