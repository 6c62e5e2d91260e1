"""What a key or a touch means on each screen (views.py), the no-hint rule, scrolling."""

import pytest

from firmware.boards.sim import make_board
from firmware.ui import colors, say, touch as touch_layout
from firmware.ui.font import Font
from firmware.ui.ui import Ui, SCROLL_HOLD, SCROLL_STEP_MS
from firmware.views import SCREENS
from tools import screenshots


@pytest.fixture(scope="module")
def font():
    return Font(screenshots.FONT)


def make(profile, font, tmp_path):
    board = make_board({"profile": profile, "fs_root": str(tmp_path / profile)})
    return board, Ui(board, font)


def case_view(ask, **ctx):
    return {"screen": "case", "context": screenshots._ctx(**ctx), "ask": ask, "levels": {},
            "item_levels": {}, "qr": ""}


TAGS_VIEW = {"screen": "tags", "tags": screenshots.TAGS, "cursor": 1, "chosen": []}


def test_five_button_keys(font, tmp_path):
    board, ui = make("five_button", font, tmp_path)
    view = case_view((1,))
    assert [ui.action(view, ("key", k)) for k in range(5)] == [("rate", "overall", n) for n in range(1, 6)]
    receipt = case_view((4,), node=1)
    assert ui.action(receipt, ("key", 4)) == ("rate", "service", 5)
    assert [ui.action(TAGS_VIEW, ("key", k)) for k in range(5)] == [
        ("tag_move", -1), ("tag_move", 1), ("tag_toggle",), ("back",), ("confirm",)]
    for screen in SCREENS:
        if screen not in ("case", "tags"):
            assert ui.action({"screen": screen}, ("key", 0)) is None
    assert ui.action(view, ("touch", 10, 10)) is None
    assert ui.action(view, ("key", 7)) is None
    assert ui.action(case_view(()), ("key", 0)) is None


def centre(hit):
    x, y, w, h = hit[:4]
    return x + w // 2, y + h // 2


def test_touch_levels_submit_and_no_hint(font, tmp_path):
    board, ui = make("touch", font, tmp_path)
    view = case_view((1, 2, 4))
    ui.render(view)
    fb = board.display
    for page, ind in enumerate(("overall", "business", "service")):
        hits, shown, at, pages = touch_layout._hits(ui, view)
        assert (at, pages, shown) == (page, 3, [("ind", ind)])
        rates = [h for h in hits if h[4][0] == "rate"]
        assert [h[4] for h in rates] == [("rate", ind, n) for n in range(1, 6)]
        # no hint: the five buttons are the same size, drawn in the same colours
        assert len({h[2:4] for h in rates}) == 1
        palettes = []
        for x, y, w, h in (r[:4] for r in rates):
            palettes.append(sorted({fb.pixel(xx, yy) for xx in range(x, x + w) for yy in range(y, y + h)}))
            assert fb.pixel(x, y) == colors.EDGE and fb.pixel(x + 2, y + 2) == colors.FACE
        assert all(p == palettes[0] for p in palettes)
        ink = {colors.FG, colors.FACE, colors.EDGE} | set(colors.blends(colors.FG, colors.FACE))
        assert set(palettes[0]) <= ink
        shows = fb.shows
        assert ui.action(view, ("touch",) + centre(rates[1])) == ("rate", ind, 2)
        if page < 2:                                   # a press moves on to the next indicator
            assert touch_layout._hits(ui, view)[2] == page + 1
        ui.render(view)
        assert fb.shows == shows + 1
    submit = [h for h in touch_layout._hits(ui, view)[0] if h[4] == ("submit",)][0]
    assert ui.action(view, ("touch",) + centre(submit)) == ("submit",)
    assert ui.action(view, ("touch", 5, 5)) is None            # the case panel means nothing


def test_touch_theme_items_and_pages(font, tmp_path):
    board, ui = make("touch", font, tmp_path)
    view = case_view((1,), matter_name="我要开餐馆", items=screenshots.THEME_ITEMS)
    ui.render(view)
    hits, shown, page, pages = touch_layout._hits(ui, view)
    assert (page, pages) == (0, 5) and not [h for h in hits if h[4] == ("page", -1)]
    nxt = [h for h in hits if h[4] == ("page", 1)][0]
    shows = board.display.shows
    assert ui.action(view, ("touch",) + centre(nxt)) is None           # redrawn by the UI
    assert board.display.shows == shows + 1
    hits, shown, page, pages = touch_layout._hits(ui, view)
    assert page == 1 and shown == [("item", screenshots.THEME_ITEMS[0])]
    assert ui.action(view, ("touch",) + centre(hits[2])) == ("rate_item", "T1", 3)
    prev = [h for h in touch_layout._hits(ui, view)[0] if h[4] == ("page", -1)][0]
    ui.action(view, ("touch",) + centre(prev))
    assert touch_layout._hits(ui, view)[2] == 1
    other = case_view((1,), case_id=8, items=screenshots.THEME_ITEMS)
    ui.render(other)                                                 # a new case starts on page 1
    assert touch_layout._hits(ui, other)[2] == 0


@pytest.mark.parametrize("size", [(320, 240), (480, 320)])
def test_touch_countdown_ticks_down_to_zero_in_its_own_area(font, tmp_path, size):
    from firmware.boards.sim_io import panel_board
    board = panel_board({"fs_root": str(tmp_path)}, *size)
    ui = Ui(board, font)
    ui.render(dict(case_view((1, 2, 4)), left_s=3))
    first = board.framebuffer()
    assert ui.tick() is False
    board.advance(1000)
    assert ui.tick() is True
    after = board.framebuffer()
    changed = [i for i in range(len(first)) if first[i] != after[i]]
    row = size[0] // 2
    g = touch_layout.Geo(ui, {})
    assert changed and all(i % row < g.left_w // 2 for i in changed)    # only the side panel
    board.advance(5000)
    ui.tick()
    ui.render(dict(case_view((1, 2, 4)), left_s=0))
    assert board.framebuffer() == ui.fb.buf and bytes(board.framebuffer()) == ui.board.framebuffer()
    assert ui.tick() is False                          # 0 stays 0


def test_touch_qr_screen_opens_and_closes_and_needs_a_valid_matrix(font, tmp_path):
    from gateway.cases import qr_modules
    board, ui = make("touch", font, tmp_path)
    link = "https://hp.example.gov.cn/r/7Q2F9KX3TB"
    ctx = screenshots._ctx(qr_modules=qr_modules(link))
    view = {"screen": "case", "context": ctx, "ask": (1,), "levels": {}, "item_levels": {}, "qr": link}
    ui.render(view)
    case = board.framebuffer()
    qr = [h for h in touch_layout._hits(ui, view)[0] if h[4] == ("qr",)][0]
    assert ui.action(view, ("touch",) + centre(qr)) is None
    shown = board.framebuffer()
    assert shown != case
    n = ctx["qr_modules"][0]
    dark = sum(1 for i in range(n * n) if ctx["qr_modules"][1 + (i >> 3)] >> (7 - (i & 7)) & 1)
    g = touch_layout.Geo(ui, view)
    inked = sum(1 for x in range(g.left_w, 320) for y in range(240) if board.display.pixel(x, y) == colors.FG)
    unit = (min(320 - g.left_w, 240) - 2 * g.pad) // (n + 8)
    assert unit >= 3 and inked == dark * unit * unit                  # every dark module, whole
    side = (n + 8) * unit
    x0 = g.left_w + (320 - g.left_w - side) // 2 + 4 * unit            # inside the quiet zone
    y0 = (240 - side) // 2 + 4 * unit
    for r in range(n):                                                  # each module where it belongs
        for c in range(n):
            bit = ctx["qr_modules"][1 + ((r * n + c) >> 3)] >> (7 - ((r * n + c) & 7)) & 1
            px = board.display.pixel(x0 + c * unit + unit // 2, y0 + r * unit + unit // 2)
            assert px == (colors.FG if bit else colors.FACE), (r, c)
    assert all(board.display.pixel(x0 - 1 - i, y0 + 3) == colors.FACE for i in range(4 * unit))
    back = (g.pad + 5, 240 - g.pad - 5)
    assert ui.action(view, ("touch",) + back) is None
    assert board.framebuffer() == case
    bad = dict(view, context=dict(ctx, qr_modules=b"\x15" + bytes(10)))   # too short for 21x21
    ui.render(bad)
    assert not [h for h in touch_layout._hits(ui, bad)[0] if h[4] == ("qr",)]


def test_large_text_makes_the_level_words_bigger(font, tmp_path):
    board, ui = make("touch", font, tmp_path)
    for large, px in ((0, 24), (1, 32)):
        view = dict(case_view((1,)), large_text=large)
        assert touch_layout.Geo(ui, view).label_px == px
        assert say.say_w(ui, "非常不满意", px) <= touch_layout.Geo(ui, view).bw - 8   # one line, no "…"
    tags = {"screen": "tags", "tags": screenshots.TAGS, "chosen": [], "large_text": 1}
    assert [h[4] for h in touch_layout._tag_hits(ui, tags) if h[4][0] == "tag_pick"] == [
        ("tag_pick", t["code"]) for t in screenshots.TAGS]          # every tag still reachable
    from firmware.ui.ui import builtin_words
    for px in (24, 32, 48):                            # every built-in word is smooth at every size
        assert all(say.words(ui, px).covers(w.replace("\n", "")) for w in builtin_words())


def test_oled_case_lines_keep_apart_and_the_error_names_no_file(font, tmp_path):
    board, ui = make("five_button", font, tmp_path)
    ui.render(case_view((1,), staff_name="王喆"))
    fb = board.display
    lit = lambda y: any(fb.pixel(x, y) for x in range(128))   # noqa: E731
    assert not lit(46) and not lit(47) and lit(45) and fb.pixel(127, 48) and fb.pixel(127, 63)
    ui.render({"screen": "error", "message": "config"})
    err = board.framebuffer()
    ui.render({"screen": "error", "message": "config", "texts": {"error": "config.json"}})
    assert board.framebuffer() != err                   # the words are the ones drawn ...
    from firmware.ui.ui import builtin_text, error_code
    assert error_code("config") == "E02" and error_code("/data/config.json") == "E00"
    for key in ("error", "maint_hint", "code"):         # ... and none of them is English
        assert all(ord(ch) > 0x7F or ch in " %s" for ch in builtin_text(key))


def test_oled_tag_boxes_are_drawn_and_smaller_than_a_character(font, tmp_path):
    board, ui = make("five_button", font, tmp_path)
    ui.render({"screen": "tags", "tags": screenshots.TAGS, "cursor": 1, "chosen": [501]})
    fb = board.display
    box = [(x, y) for x in range(0, 14) for y in range(17, 33) if fb.pixel(x, y)]
    xs, ys = {p[0] for p in box}, {p[1] for p in box}
    assert max(xs) - min(xs) + 1 <= 10 and max(ys) - min(ys) + 1 <= 10   # 9 px, not a 16 px 口


def test_touch_tags(font, tmp_path):
    board, ui = make("touch", font, tmp_path)
    view = dict(TAGS_VIEW, chosen=[502])
    ui.render(view)
    hits = touch_layout._tag_hits(ui, view)
    picks = [h[4] for h in hits if h[4][0] == "tag_pick"]
    assert picks == [("tag_pick", t["code"]) for t in screenshots.TAGS]
    for h in hits:
        assert ui.action(view, ("touch",) + centre(h)) == h[4]
    assert ui.action(view, ("touch", 60, 216)) == ("back",)
    assert ui.action(view, ("touch", 262, 216)) == ("confirm",)
    assert ui.action(view, ("touch", 160, 10)) is None
    assert ui.action(view, ("key", 2)) is None
    # chosen chip is filled, the others are not
    chip = {h[4][1]: h for h in hits if h[4][0] == "tag_pick"}
    assert board.display.pixel(chip[502][0] + 2, chip[502][1] + 2) == colors.CHOSEN
    assert board.display.pixel(chip[501][0] + 2, chip[501][1] + 2) == colors.FACE


def test_long_line_scrolls_and_returns(font, tmp_path):
    board, ui = make("five_button", font, tmp_path)
    view = case_view((1,), matter_name=screenshots.LONG_MATTER)
    ui.render(view)
    first = board.framebuffer()
    assert ui.tick() is False                       # too early
    frames = []
    for _ in range(SCROLL_HOLD):
        board.advance(SCROLL_STEP_MS)
        assert ui.tick() is False                   # resting at the start: no redraw
        frames.append(board.framebuffer())
    assert all(f == first for f in frames)
    board.advance(SCROLL_STEP_MS)
    shows = board.display.shows
    assert ui.tick() is True
    assert board.display.shows == shows + 1
    assert board.framebuffer() != first
    # only the matter row moved
    assert board.framebuffer()[128 * 2:] == first[128 * 2:]
    back = False
    for _ in range(80):
        board.advance(SCROLL_STEP_MS)
        ui.tick()
        if board.framebuffer() == first:
            back = True
            break
    assert back
    short = case_view((1,))
    ui.render(short)
    board.advance(SCROLL_STEP_MS * 5)
    assert ui.tick() is False                       # nothing overflows: nothing to do


def test_texts_override_and_missing_glyph_never_crashes(font, tmp_path):
    board, ui = make("five_button", font, tmp_path)
    ui.render({"screen": "thanks"})
    default = board.framebuffer()
    ui.render({"screen": "thanks", "texts": {"thanks": "多谢"}})
    assert board.framebuffer() != default
    ui.render({"screen": "error", "message": "\x00\U0001F600\U0002A6A5\uFFFF"})
    assert any(board.framebuffer())


@pytest.mark.parametrize("profile", ["five_button", "touch"])
def test_text_override_without_its_placeholder_falls_back(profile, font, tmp_path):
    # CONFIG texts may override "window" and "batch"; one without "%s"/"%d" (or with a stray "%")
    # must not crash every render of the idle and case screens.
    board, ui = make(profile, font, tmp_path)
    idle = {"screen": "idle", "window": "3", "staff_name": "李堃"}
    ui.render(idle)
    default = board.framebuffer()
    for bad in ("窗口", "100%", "%d号窗口"):
        ui.render(dict(idle, texts={"window": bad}))
        assert board.framebuffer() == default
    case = case_view((1,), serials=["S1", "S2"])
    ui.render(case)
    default = board.framebuffer()
    ui.render(dict(case, texts={"batch": "批量"}))
    assert board.framebuffer() == default
    ui.render(dict(idle, texts={"window": "第%s窗口"}))
    assert board.framebuffer() != default


def test_scrolling_survives_the_ticks_wrap(font, tmp_path):
    # MicroPython's ticks_ms() wraps (2**30 on the ESP32): a line must keep scrolling after it
    now = [2 ** 30 - 100]
    board = make_board({"profile": "five_button", "fs_root": str(tmp_path / "w"), "clock": lambda: now[0]})
    ui = Ui(board, font)
    ui.render(case_view((1,), matter_name=screenshots.LONG_MATTER))
    first = board.framebuffer()
    moved = False
    for _ in range(SCROLL_HOLD + 3):
        now[0] = (now[0] + SCROLL_STEP_MS) % 2 ** 30
        ui.tick()
        moved = moved or board.framebuffer() != first
    assert moved


def test_touch_long_matter_shows_every_character_in_turn(font, tmp_path):
    # Art. 14: the matter name is shown; past its lines the last one scrolls through the rest
    board, ui = make("touch", font, tmp_path)
    ui.render(case_view((1,), matter_name=screenshots.LONG_MATTER))
    g = touch_layout.Geo(ui, {})
    iw = g.left_w - 2 * g.pad
    slot = [s for s in ui._scroll if s[1] == g.pad + 2 * g.pitch][0]
    assert "".join(ui.wrap(screenshots.LONG_MATTER, iw)[:2]) + slot[3] == screenshots.LONG_MATTER
    first = board.framebuffer()
    for _ in range(SCROLL_HOLD + 1):
        board.advance(SCROLL_STEP_MS)
        ui.tick()
    assert board.framebuffer() != first


def test_the_flow_gives_the_time_left_and_the_large_text_mode(tmp_path):
    # through the real Device: CONFIG rating_timeout_s 30 (fw_support), then large_text on
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import fw_support
    rig = fw_support.Rig("touch", font=screenshots.FONT, base=str(tmp_path))
    rig.context(51)
    assert rig.dev.app.view()["left_s"] == 30 and "large_text" not in rig.dev.app.view()
    panel = rig.board.framebuffer()
    rig.wait(10500)                                    # the UI counts down on its own
    assert rig.dev.app.view()["left_s"] == 20 and rig.board.framebuffer() != panel
    rig.dev.on_config({"version": 2, "large_text": 2})
    rig.context(52)
    assert rig.dev.app.view()["large_text"] == 1
    assert touch_layout.Geo(rig.dev.ui, rig.dev.app.view()).label_px == 32
