"""The touch board's smooth words: the committed files are what tools/build_ui_words.py makes from
the outline font, cover every built-in word, and draw with partial coverage as blends."""

from firmware.boards.sim import make_board
from firmware.ui import colors
from firmware.ui.ui import builtin_words
from firmware.ui.words import Words
from tools import build_ui_words


def test_committed_files_are_what_the_tool_builds():
    assert build_ui_words.main(["--check"]) == 0


def test_every_built_in_word_is_covered_and_measured_like_the_outline_font():
    from PIL import ImageFont
    for px in build_ui_words.SIZES:
        w = Words(build_ui_words.path_for(px))
        outline = ImageFont.truetype(build_ui_words.FONT, px)
        for word in builtin_words():
            word = word.replace("\n", "")
            assert w.covers(word), (px, word)
            assert abs(w.width(word) - outline.getlength(word)) <= len(word), (px, word)
        assert not w.covers("\u4dae")                  # a name's character: the bitmap font's job
        assert w.fit("非常不满意", 3 * px) == 3


def test_drawn_words_use_the_blends_of_their_background(tmp_path):
    fb = make_board({"profile": "touch", "fs_root": str(tmp_path)}).display
    fb.fill(colors.FACE)
    w = Words(build_ui_words.path_for(24))
    end = w.draw(fb, 10, 10, "非常满意", colors.FG, colors.FACE)
    assert end == 10 + w.width("非常满意")
    used = {fb.pixel(x, y) for x in range(320) for y in range(240)}
    assert used == {colors.FACE, colors.FG} | set(colors.blends(colors.FG, colors.FACE))
