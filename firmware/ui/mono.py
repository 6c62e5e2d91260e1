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

try:
    import framebuf  # pyright: ignore[reportMissingImports] (absent on CPython: fb below)
except ImportError:
    from firmware.ui import fb as framebuf

from firmware.ui.ui import ask_fields, error_code

W = 128
ROW = 16
PITCH = 20        # centred message lines
TAG_ROWS = 2
TAG_Y = 17
LEGEND_Y = 52
# tags screen: K1 up, K2 down, K3 choose, K4 back, K5 confirm (views.py)
TAG_KEYS = (("tag_move", -1), ("tag_move", 1), ("tag_toggle",), ("back",), ("confirm",))
# Icons, 12x10 MONO_HLSB (20 bytes each; bitmaps cost less RAM than drawing code): up, down,
# choose (a ticked box), back (a U-turn arrow), done (a tick), then the tag's 9 px check box
# empty and ticked (the tick cut out of a filled box).
_ICONS = (
    b"\x00\x00\x00\x00\x04\x00\x0e\x00\x1f\x00\x3f\x80\x7f\xc0\xff\xe0\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\xff\xe0\x7f\xc0\x3f\x80\x1f\x00\x0e\x00\x04\x00\x00\x00\x00\x00"
    b"\xff\xc0\xff\xc0\xfe\xc0\xfd\xc0\xfb\xc0\xdb\xc0\xe7\xc0\xf7\xc0\xff\xc0\xff\xc0"
    b"\x20\x00\x60\x00\xff\x00\x60\x80\x20\x40\x00\x40\x00\x40\x00\x80\x7f\x00\x00\x00"
    b"\x00\x00\x00\xc0\x01\xc0\x03\x80\x07\x00\xc6\x00\xee\x00\x7c\x00\x38\x00\x18\x00"
    b"\xff\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\xff\x80\x00\x00"
    b"\xff\x80\xff\x80\xfd\x80\xfb\x80\xd7\x80\xcf\x80\xef\x80\xff\x80\xff\x80\x00\x00")
UP, DOWN, CHOOSE, BACK, DONE, BOX, BOX_ON = range(7)


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
        ui.line(0, 24, W, ui.word(view, "maint_hint"), 1, None, True)
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
        _icon(ui, 2, y + 4, BOX_ON if tag.get("code") in chosen else BOX, fg)
        ui.line(16, y, W - 16, tag.get("label") or "", fg, bg)
    for k in (UP, DOWN, CHOOSE, BACK, DONE):   # K1..K5, each under its key (W / 5 a key)
        _icon(ui, k * W // 5 + W // 10 - 5, LEGEND_Y, k, 1)


def _icon(ui, x, y, i, c):
    """Icon i in colour c; its unset pixels leave the screen as it was."""
    src = framebuf.FrameBuffer(bytearray(_ICONS[i * 20:i * 20 + 20]), 12, 10, framebuf.MONO_HLSB)
    pal, key = ui._palette(c)
    ui.fb.blit(src, x, y, key, pal)


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
