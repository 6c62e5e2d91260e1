"""Full ratings on the touch board by taps at real screen positions, through the real UI of a
sim-board Rig: for CPython and MicroPython alike."""

from fw_support import Rig, check_rating


# --- touch board: taps at real screen positions through the real UI ----------------------------
# Geometry of firmware/ui/touch.py's case screen: blocks of a label (17 px) over five buttons,
# three blocks a page, a bottom bar with 上页 / 下页 / 提交; the tags screen's 返回 / 确定.
def level_button(block, level):
    """(x, y, w, h) of level `level`'s button in the `block`-th rating block of the page."""
    from firmware.ui import touch as L
    return (2 + (level - 1) * L.BTN_PITCH, L.BLOCK_Y + block * L.BLOCK_PITCH + 17, L.BTN_W, L.BTN_H)


def bar_button(name):
    from firmware.ui import touch as L
    x, w = {"prev": (2, 60), "next": (66, 60), "submit": (224, 94)}[name]
    return (x, L.BAR_Y + 1, w, L.BAR_H)


TAGS_BACK = (8, 204, 100, 32)
TAGS_CONFIRM = (212, 204, 100, 32)


class Taps:
    """A rater's finger on a touch Rig: tap(box) touches the box's centre and runs one loop turn,
    at a person's pace (PACE_MS apart, so the misuse guard stays quiet); face(box) reads the colour
    just inside the box's border off the frame buffer."""

    PACE_MS = 400

    def __init__(self, rig):
        from firmware.ui import colors
        self.rig = rig
        self.colors = colors
        self.taps = 0

    def tap(self, box):
        x, y, w, h = box
        self.rig.board.advance(self.PACE_MS)
        self.rig.board.touch(x + w // 2, y + h // 2)
        self.rig.dev.step()
        self.taps += 1

    def face(self, box):
        return self.rig.board.display.pixel(box[0] + 2, box[1] + 2)

    def chosen(self, box):
        return self.face(box) == self.colors.CHOSEN

    def plain(self, box):
        return self.face(box) == self.colors.FACE

    def chip(self, code):
        """(x, y, w, h) of the tag chip `code` as the tags screen drew it."""
        from firmware.ui import touch as L
        for x, y, w, h, act, label, chosen in L._tag_hits(self.rig.dev.ui, self.rig.dev.app.view()):
            if act == ("tag_pick", code):
                return (x, y, w, h)
        raise AssertionError("no chip for tag %r" % code)


def touch_taps_full_rating(rig):
    """Overall, business and service by tapping their buttons, then 提交."""
    t = Taps(rig)
    rig.context(31)
    rig.wait(1000)
    assert rig.state == "case"
    overall, business, service = level_button(0, 2), level_button(1, 1), level_button(2, 3)
    for box in (overall, business, service):
        assert t.plain(box)                              # every level looks alike before a tap
    t.tap(overall)
    t.tap(business)
    assert t.chosen(overall) and t.chosen(business) and t.plain(service)
    t.tap(bar_button("submit"))                          # service not given yet: refused
    assert rig.state == "case" and rig.ratings == []
    t.tap(level_button(2, 4))                            # a change of mind ...
    t.tap(service)                                       # ... only the last tap counts
    assert t.chosen(service) and t.plain(level_button(2, 4))
    t.tap(bar_button("submit"))
    assert rig.state == "thanks"
    (r,) = rig.ratings
    check_rating(r)
    assert (r["overall"], r["business"], r["service"], r["source"]) == (2, 1, 3, 1)
    assert "tags" not in r and "items" not in r
    t.tap(level_button(0, 5))                            # after the thank-you: ignored
    t.tap(bar_button("submit"))
    assert rig.state == "thanks" and len(rig.ratings) == 1
    return t.taps


def touch_taps_theme_with_tags(rig):
    """A theme of three matters: the indicators on page 1, the items on page 2, a bad item, then
    tag chips (required, toggled), 确定."""
    t = Taps(rig)
    items = [{"code": "T1", "name": "营业执照"}, {"code": "T2", "name": "税务登记"},
             {"code": "T3", "name": "社保登记"}]
    rig.context(32, items=items, matter_name="开办企业一件事")
    rig.wait(1000)
    t.tap(level_button(0, 1))
    t.tap(level_button(1, 2))
    t.tap(level_button(2, 1))
    t.tap(bar_button("next"))                            # page 2: T1 T2 T3
    assert rig.state == "case" and t.plain(level_button(0, 1))
    t.tap(level_button(0, 1))                            # T1 非常满意
    t.tap(level_button(1, 5))                            # T2 非常不满意: a bad rating
    t.tap(bar_button("prev"))                            # back on page 1: the choices are kept
    assert t.chosen(level_button(0, 1)) and t.chosen(level_button(1, 2)) and t.chosen(level_button(2, 1))
    t.tap(bar_button("next"))
    assert t.chosen(level_button(0, 1)) and t.chosen(level_button(1, 5)) and t.plain(level_button(2, 3))
    t.tap(bar_button("submit"))                          # T3 left out: items are optional
    assert rig.state == "tags" and rig.ratings == []
    assert [tag["code"] for tag in rig.dev.app.tags] == [601, 702]   # a bad item: business tags
    t.tap(TAGS_CONFIRM)                                  # nothing chosen: refused
    assert rig.state == "tags"
    c601, c702 = t.chip(601), t.chip(702)
    assert t.plain(c601) and t.plain(c702)
    t.tap(c601)
    t.tap(c702)
    assert t.chosen(c601) and t.chosen(c702)
    t.tap(c702)                                          # tapped again: unchosen
    assert t.chosen(c601) and t.plain(c702)
    t.tap(TAGS_CONFIRM)
    assert rig.state == "thanks"
    (r,) = rig.ratings
    check_rating(r)
    assert (r["overall"], r["business"], r["service"]) == (1, 2, 1)
    assert r["items"] == [{"code": "T1", "level": 1}, {"code": "T2", "level": 5}]
    assert r["tags"] == [601]
    return t.taps


def touch_taps_back_and_receipt(rig):
    """返回 from the tags screen keeps the levels; a receipt node shows only the service block."""
    t = Taps(rig)
    rig.context(33)
    rig.wait(1000)
    for block in range(3):
        t.tap(level_button(block, 4))
    t.tap(bar_button("submit"))
    assert rig.state == "tags"
    t.tap(t.chip(501))
    t.tap(TAGS_BACK)                                     # back to the case: the chips are dropped
    assert rig.state == "case" and t.chosen(level_button(0, 4))
    t.tap(level_button(0, 2))
    t.tap(level_button(1, 2))
    t.tap(level_button(2, 2))
    t.tap(bar_button("submit"))
    assert rig.state == "thanks"
    (r,) = rig.ratings
    assert (r["overall"], r["business"], r["service"]) == (2, 2, 2) and "tags" not in r
    rig.wait(4000)
    rig.context(34, node=1)                              # 收件成功: service alone
    rig.wait(1000)
    t.tap(level_button(1, 1))                            # no second block on this screen
    t.tap(level_button(0, 1))
    t.tap(bar_button("submit"))
    assert rig.state == "thanks"
    r = rig.ratings[-1]
    check_rating(r, 4)
    assert r["service"] == 1 and "overall" not in r and "business" not in r
    return t.taps


TOUCH_TAP_FLOWS = ["touch_taps_full_rating", "touch_taps_theme_with_tags",
                   "touch_taps_back_and_receipt"]


def run_touch_taps(name, font, base="/tmp"):
    rig = Rig("touch", font=font, base=base)
    taps = globals()[name](rig)
    return rig, taps
