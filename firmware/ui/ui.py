"""Ui(board, font): draws a view (firmware/views.py) on board.display and turns raw input on that
view into one semantic action. The layouts live in mono.py (five_button, 128x64) and touch.py
(touch panels 320x240 and 480x320); only the board's own is imported, to save RAM.

    ui = Ui(board, Font(path)); ui.render(view); act = ui.action(view, ("key", 0)); ui.tick()

Two kinds of type: case text (names, matters, serials) in the 16-px bitmap font, and on touch
panels the fixed words in smooth pre-rendered type (ui/say.py, ui/words.py).

Long case text: a line that does not fit its slot ends in "…" and scrolls sideways one character
at a time (marquee), after a pause at the start and at the end; call ui.tick() from the main loop
(cheap when nothing scrolls). tick() also counts down the case screen's time left. A character
neither the font nor the glyph supplement has comes as the font's placeholder, never an error.
"""

try:
    import framebuf  # pyright: ignore[reportMissingImports] (absent on CPython: fb below)
except ImportError:
    from firmware.ui import fb as framebuf

# IND_* bit (protocol.vocab) -> the view's indicator field name
IND_FIELDS = {1: "overall", 2: "business", 4: "service"}

# Screen words; a view's "texts" (from CONFIG) override any of them by key. Packed as one key
# string and one text string (split by "|" on use) rather than a dict of 30 str objects: ~1 KiB
# less RAM on a device that loads .mpy files.
_TEXT_KEYS = ("prompt|prompt_receipt|idle|window|thanks|not_rated|no_case|storage_full|busy|"
              "provisioning|error|tags_title|serial|batch|staff|ind_overall|ind_business|"
              "ind_service|submit|back|confirm|prev|next|qr|level1|level2|level3|level4|level5|"
              "maint_hint|code|left|scan|hall|on_duty")
_TEXT_WORDS = ("请评价|请评价服务态度|欢迎光临|%s号窗口|谢谢您的评价|本次未评价|当前没有\n可评价的业务|"
               "存储已满\n暂停评价|操作过快\n请稍候|等待配置|设备维护中|请选择原因|流水号|共%d件|工号|"
               "总体评价|业务评价|服务评价|提交|返回|确定|上一项|下一项|扫码评价|"
               "非常满意|满意|基本满意|不满意|非常不满意|"
               "请联系工作人员|代码 %s|剩余 %d 秒|用手机扫码\n稍后评价||服务人员")
# error view message -> the code shown to the technician (citizens never see file names)
_ERROR_CODES = ("flash", "E01", "config", "E02", "font", "E03")


def builtin_text(key):
    """The built-in screen word for `key` (KeyError for an unknown key, as a dict would). Walks
    the packed strings without splitting them: the only allocation is the word returned."""
    keys = _TEXT_KEYS
    start = i = 0
    while start <= len(keys):
        end = keys.find("|", start)
        if end < 0:
            end = len(keys)
        if end - start == len(key) and keys.startswith(key, start):
            return _field(_TEXT_WORDS, i)
        start = end + 1
        i += 1
    raise KeyError(key)


def builtin_words():
    """Every built-in word (tools/build_ui_words.py renders their characters)."""
    return _TEXT_WORDS.split("|")


def error_code(message):
    codes = _ERROR_CODES
    for i in range(0, len(codes), 2):
        if codes[i] == message:
            return codes[i + 1]
    return "E00"


def _field(packed, i):
    start = 0
    for _ in range(i):
        start = packed.find("|", start) + 1
    end = packed.find("|", start)
    return packed[start:] if end < 0 else packed[start:end]


BREAK_AFTER = " ，。、：；！？,.:;!?"
ELLIPSIS = "\u2026"
SCROLL_STEP_MS = 400   # one character per step
SCROLL_HOLD = 3        # steps to rest at the start and at the end of a scrolling line
_TICKS_PERIOD = 1 << 30   # MicroPython's ticks_ms() wraps here on the ESP32


class Ui:
    def __init__(self, board, font, words_dir=None):
        # words_dir: the folder of the touch board's smooth words files (say.py)
        self.board = board
        self.font = font
        self.fb = board.display
        self.width = self.fb.width
        self.height = self.fb.height
        self.mono = board.profile == "five_button"
        if self.mono:
            from firmware.ui import mono as layout
        else:
            from firmware.ui import touch as layout
        self._layout = layout
        self._fmt = framebuf.MONO_HLSB if self.mono else framebuf.GS4_HMSB
        self._palettes = {}
        self._glyph_buf = bytearray(32)
        self._words = {}        # touch: px -> words.Words, or None when the file is missing (say.py)
        self._words_dir = words_dir
        self._scroll = []       # [x, y, w, text, fg, bg, pos, hold, rows] per overflowing line
        self._scroll_at = 0
        self.timer = None       # [rendered at, seconds left then, seconds shown, redraw(ui, s)]
        self.state = {}         # layout-local state (touch: page of the case screen, QR shown)
        self.view = None

    # --- the contract ----------------------------------------------------------------------------
    def render(self, view):
        self.view = view
        self._scroll = []
        self.timer = None
        self._scroll_at = self.board.ticks_ms()
        self._layout.draw(self, view)
        self.fb.show()

    def action(self, view, event):
        return self._layout.action(self, view, event)

    def tick(self):
        """Advance scrolling lines and the countdown; True when the screen was redrawn."""
        changed = self._tick_timer()
        if self._scroll:
            now = self.board.ticks_ms()
            if not 0 <= now - self._scroll_at < SCROLL_STEP_MS:   # < 0: ticks_ms() wrapped
                self._scroll_at = now
                changed = self._step_scroll() or changed
        if changed:
            self.fb.show()
        return changed

    def _tick_timer(self):
        t = self.timer
        if t is None:
            return False
        d = self.board.ticks_ms() - t[0]
        if d < 0:
            d += _TICKS_PERIOD
        left = max(0, t[1] - d // 1000)
        if left == t[2]:
            return False
        t[2] = left
        t[3](self, left)
        return True

    def _step_scroll(self):
        changed = False
        for slot in self._scroll:
            x, y, w, text, fg, bg, pos, hold, rows = slot
            if hold:
                slot[7] = hold - 1
                continue
            if self.font.text_width(text[pos:]) <= w:
                pos = 0
                slot[7] = SCROLL_HOLD
            else:
                pos += 1
                if self.font.text_width(text[pos:]) <= w:
                    slot[7] = SCROLL_HOLD
            slot[6] = pos
            self.fb.fill_rect(x, y + rows[0], w, rows[1], bg)
            self.clipped(x, y, w, text[pos:], fg)
            changed = True
        return changed

    # --- words -----------------------------------------------------------------------------------
    def word(self, view, key):
        texts = view.get("texts")
        if texts and key in texts:
            return texts[key]
        return builtin_text(key)

    def word_with(self, view, key, value):
        """word() with one value put in; an override whose placeholder does not fit the value
        (a CONFIG text "窗口" for "%s号窗口") falls back to the built-in word, never a crash."""
        try:
            return self.word(view, key) % value
        except (TypeError, ValueError):
            return builtin_text(key) % value

    # --- bitmap text -----------------------------------------------------------------------------
    def _palette(self, c):
        """(palette, key) to blit a glyph's set bits in colour c and leave the rest untouched.
        framebuf maps through the palette first and then compares with the key, so the glyph's
        background maps to a key colour that differs from c."""
        p = self._palettes.get(c)
        if p is None:
            key = (c ^ 1) & (1 if self._fmt == framebuf.MONO_HLSB else 15)
            pal = framebuf.FrameBuffer(bytearray(1), 2, 1, self._fmt)
            pal.pixel(0, 0, key)
            pal.pixel(1, 0, c)
            p = self._palettes[c] = (pal, key)
        return p

    def glyph(self, x, y, cp, c, scale=1):
        """Draw one character; returns its advance in pixels. font.glyph() always gives a
        bitmap (the supplement's, or a placeholder for a character nobody has)."""
        font = self.font
        g = font.glyph(cp)
        h = font.height
        w, data = g
        buf = self._glyph_buf
        buf[:len(data)] = data
        src = framebuf.FrameBuffer(buf, w, h, framebuf.MONO_HLSB)
        if scale == 1:
            pal, key = self._palette(c)
            self.fb.blit(src, x, y, key, pal)
        else:
            fill = self.fb.fill_rect
            for yy in range(h):
                for xx in range(w):
                    if src.pixel(xx, yy):
                        fill(x + xx * scale, y + yy * scale, scale, scale, c)
        return w * scale

    def text(self, x, y, text, c, limit=None, scale=1):
        """Draw text from (x, y), stopping before a character that would pass x + limit.
        Returns the number of characters drawn."""
        end = x + limit if limit is not None else self.width
        n = 0
        for ch in text:
            cp = ord(ch)
            if x + self.font.width(cp) * scale > end:
                break
            x += self.glyph(x, y, cp, c, scale)
            n += 1
        return n

    def clipped(self, x, y, w, text, fg, scale=1):
        """Text in w pixels; when it does not fit, as much as fits before a closing "…"."""
        tw = self.font.text_width(text) * scale
        if tw <= w:
            self.text(x, y, text, fg, w, scale)
            return tw
        ew = self.font.width(0x2026) * scale
        n = self.text(x, y, text, fg, w - ew, scale)
        x += self.font.text_width(text[:n]) * scale
        self.glyph(x, y, 0x2026, fg, scale)
        return x + ew

    def line(self, x, y, w, text, fg, bg=None, center=False, scroll=True, rows=(0, 16)):
        """One line in a slot of width w: centred or left; a line that does not fit ends in "…"
        and scrolls (see tick), or with scroll=False stays cut. rows: the band (first row,
        count) a scroll step clears, for a line whose ink is known to be shorter (ASCII)."""
        if bg is not None:
            self.fb.fill_rect(x, y, w, self.font.height, bg)
        tw = self.font.text_width(text)
        if tw <= w:
            self.text(x + ((w - tw) // 2 if center else 0), y, text, fg, w)
            return
        self.clipped(x, y, w, text, fg)
        if scroll:
            self._scroll.append([x, y, w, text, fg, 0 if bg is None else bg, 0, SCROLL_HOLD,
                                 rows])

    def wrap(self, text, w):
        """Split text into lines no wider than w pixels (CJK breaks anywhere; so does ASCII)."""
        lines = []
        start = 0
        used = 0
        for i in range(len(text)):
            ch = text[i]
            if ch == "\n":
                lines.append(text[start:i])
                start, used = i + 1, 0
                continue
            cw = self.font.width(ord(ch))
            if used + cw > w and i > start:
                cut = i
                for j in range(i - 1, start, -1):   # prefer a break after punctuation or a space
                    if text[j] in BREAK_AFTER:
                        cut = j + 1
                        break
                lines.append(text[start:cut])
                start = cut
                used = self.font.text_width(text[cut:i])
            used += cw
        lines.append(text[start:])
        return lines


def ask_fields(view):
    """The view's asked indicators (IND_* bits, or field names) as field names, in the view's order."""
    out = []
    for ind in view.get("ask") or ():
        name = IND_FIELDS.get(ind, ind) if isinstance(ind, int) else ind
        if name in ("overall", "business", "service"):
            out.append(name)
    return out


def serial_text(ui, view, ctx):
    serials = ctx.get("serials") or []
    if len(serials) > 1:
        return ui.word_with(view, "batch", len(serials)) + " " + serials[0]
    return serials[0] if serials else ""
