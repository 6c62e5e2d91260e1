"""What a key or a touch means on each screen (views.py), the no-hint rule, scrolling."""

import pytest

from firmware.boards.sim import make_board
from firmware.ui import colors, touch as touch_layout
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
    hits = touch_layout._hits(ui, view)[0]
    rates = [h for h in hits if h[4][0] == "rate"]
    assert [h[4] for h in rates] == [("rate", ind, n) for ind in ("overall", "business", "service")
                                    for n in range(1, 6)]
    for h in rates:
        assert ui.action(view, ("touch",) + centre(h)) == h[4]
    assert ui.action(view, ("touch", 300, 226)) == ("submit",)
    assert ui.action(view, ("touch", 300, 5)) is None            # the header means nothing
    # no hint: the five buttons of a row are the same size and use the same colours
    fb = board.display
    for row in range(3):
        five = rates[row * 5:row * 5 + 5]
        assert len({h[2:4] for h in five}) == 1
        palettes = []
        for x, y, w, h in (r[:4] for r in five):
            palettes.append(sorted({fb.pixel(xx, yy) for xx in range(x, x + w) for yy in range(y, y + h)}))
            assert fb.pixel(x, y) == colors.EDGE and fb.pixel(x + 2, y + 2) == colors.FACE
        assert all(p == palettes[0] for p in palettes)
        assert palettes[0] == sorted([colors.FG, colors.FACE, colors.EDGE])


def test_touch_theme_items_and_pages(font, tmp_path):
    board, ui = make("touch", font, tmp_path)
    view = case_view((1,), matter_name="我要开餐馆", items=screenshots.THEME_ITEMS)
    ui.render(view)
    assert ui.action(view, ("touch", 2 + 64 * 2 + 30, 52 + 54 + 30)) == ("rate_item", "T1", 3)
    shows = board.display.shows
    assert ui.action(view, ("touch", 96, 226)) is None              # next page: redrawn by the UI
    assert board.display.shows == shows + 1
    assert ui.action(view, ("touch", 2 + 30, 52 + 30)) == ("rate_item", "T3", 1)
    assert ui.action(view, ("touch", 96, 226)) is None              # no third page
    assert ui.action(view, ("touch", 30, 226)) is None              # back to page 1
    assert ui.action(view, ("touch", 2 + 30, 52 + 30)) == ("rate", "overall", 1)
    other = case_view((1,), case_id=8, items=screenshots.THEME_ITEMS)
    ui.action(view, ("touch", 96, 226))
    ui.render(other)                                                 # a new case starts on page 1
    assert ui.action(other, ("touch", 2 + 30, 52 + 30)) == ("rate", "overall", 1)


def test_touch_tags(font, tmp_path):
    board, ui = make("touch", font, tmp_path)
    view = dict(TAGS_VIEW, chosen=[502])
    ui.render(view)
    hits = touch_layout._tag_hits(ui, view)
    picks = [h[4] for h in hits if h[4][0] == "tag_pick"]
    assert picks == [("tag_pick", t["code"]) for t in screenshots.TAGS]
    for h in hits:
        assert ui.action(view, ("touch",) + centre(h)) == h[4]
    assert ui.action(view, ("touch", 58, 220)) == ("back",)
    assert ui.action(view, ("touch", 262, 220)) == ("confirm",)
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
