"""Full ratings on the touch board by taps at real screen positions, through the real UI of a
sim-board Rig: for CPython and MicroPython alike."""

from fw_support import Rig, check_rating


# --- touch board: taps at real screen positions through the real UI ----------------------------
# firmware/ui/touch.py's case screen shows one rating block a page (five stacked buttons), with
# ‹ › in the title row and 提交 in the case panel; a press moves on to the next block. The
# buttons are found in the layout's own hit list (touch._hits, touch._tag_hits) and tapped at
# their centres; going to another block is real taps on ‹ and ›.
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

    def _hits(self):
        from firmware.ui import touch as L
        return L._hits(self.rig.dev.ui, self.rig.dev.app.view())

    def button(self, act):
        """(x, y, w, h) of the case screen's button for act (("submit",), ("page", 1) ...)."""
        for h in self._hits()[0]:
            if h[4] == act:
                return h[:4]
        raise AssertionError("no button %r on this page" % (act,))

    def level(self, block, level):
        """(x, y, w, h) of level's button in the block-th rating block, tapping ‹ / › to its page."""
        for _ in range(10):
            page = self._hits()[2]
            if page == block:
                for h in self._hits()[0]:
                    if h[4][0] in ("rate", "rate_item") and h[4][2] == level:
                        return h[:4]
            self.tap(self.button(("page", 1 if page < block else -1)))
        raise AssertionError("block %d not reached" % block)

    def page(self):
        return self._hits()[2]

    def face(self, box):
        return self.rig.board.display.pixel(box[0] + 2, box[1] + 2)

    def chosen(self, box):
        return self.face(box) == self.colors.CHOSEN

    def plain(self, box):
        return self.face(box) == self.colors.FACE

    def tag_button(self, act):
        from firmware.ui import touch as L
        for x, y, w, h, a, label, chosen in L._tag_hits(self.rig.dev.ui, self.rig.dev.app.view()):
            if a == act:
                return (x, y, w, h)
        raise AssertionError("no %r on the tags screen" % (act,))

    def chip(self, code):
        """(x, y, w, h) of the tag chip `code` as the tags screen drew it."""
        return self.tag_button(("tag_pick", code))


def touch_taps_full_rating(rig):
    """Overall, business and service by tapping their buttons, then 提交."""
    t = Taps(rig)
    rig.context(31)
    rig.wait(1000)
    assert rig.state == "case" and t.page() == 0
    for n in range(1, 6):
        assert t.plain(t.level(0, n))                    # every level looks alike before a tap
    t.tap(t.level(0, 2))
    assert t.page() == 1                                 # on to business
    t.tap(t.level(1, 1))
    assert t.page() == 2 and t.plain(t.level(2, 3))
    assert t.chosen(t.level(0, 2)) and t.chosen(t.level(1, 1))   # back with ‹: choices kept
    t.tap(t.button(("submit",)))                         # service not given yet: refused
    assert rig.state == "case" and rig.ratings == []
    t.tap(t.level(2, 4))                                 # a change of mind ...
    t.tap(t.level(2, 3))                                 # ... only the last tap counts
    service = t.level(2, 3)
    assert t.chosen(service) and t.plain(t.level(2, 4))
    submit = t.button(("submit",))
    t.tap(submit)
    assert rig.state == "thanks"
    (r,) = rig.ratings
    check_rating(r)
    assert (r["overall"], r["business"], r["service"], r["source"]) == (2, 1, 3, 1)
    assert "tags" not in r and "items" not in r
    t.tap(service)                                       # after the thank-you: ignored
    t.tap(submit)
    assert rig.state == "thanks" and len(rig.ratings) == 1
    return t.taps


def touch_taps_theme_with_tags(rig):
    """A theme of three matters: the indicators, then an item a page, a bad item, then tag chips
    (required, toggled), 确定."""
    t = Taps(rig)
    items = [{"code": "T1", "name": "营业执照"}, {"code": "T2", "name": "税务登记"},
             {"code": "T3", "name": "社保登记"}]
    rig.context(32, items=items, matter_name="开办企业一件事")
    rig.wait(1000)
    t.tap(t.level(0, 1))
    t.tap(t.level(1, 2))
    t.tap(t.level(2, 1))
    assert rig.state == "case" and t.page() == 3 and t.plain(t.level(3, 1))
    t.tap(t.level(3, 1))                                 # T1 非常满意
    t.tap(t.level(4, 5))                                 # T2 非常不满意: a bad rating
    assert t.chosen(t.level(0, 1)) and t.chosen(t.level(1, 2)) and t.chosen(t.level(2, 1))
    assert t.chosen(t.level(3, 1)) and t.chosen(t.level(4, 5)) and t.plain(t.level(5, 3))
    t.tap(t.button(("submit",)))                         # T3 left out: items are optional
    assert rig.state == "tags" and rig.ratings == []
    assert [tag["code"] for tag in rig.dev.app.tags] == [601, 702]   # a bad item: business tags
    t.tap(t.tag_button(("confirm",)))                    # nothing chosen: refused
    assert rig.state == "tags"
    c601, c702 = t.chip(601), t.chip(702)
    assert t.plain(c601) and t.plain(c702)
    t.tap(c601)
    t.tap(c702)
    assert t.chosen(c601) and t.chosen(c702)
    t.tap(c702)                                          # tapped again: unchosen
    assert t.chosen(c601) and t.plain(c702)
    t.tap(t.tag_button(("confirm",)))
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
        t.tap(t.level(block, 4))
    t.tap(t.button(("submit",)))
    assert rig.state == "tags"
    t.tap(t.chip(501))
    t.tap(t.tag_button(("back",)))                       # back to the case: the chips are dropped
    assert rig.state == "case" and t.chosen(t.level(0, 4))
    t.tap(t.level(0, 2))
    t.tap(t.level(1, 2))
    t.tap(t.level(2, 2))
    t.tap(t.button(("submit",)))
    assert rig.state == "thanks"
    (r,) = rig.ratings
    assert (r["overall"], r["business"], r["service"]) == (2, 2, 2) and "tags" not in r
    rig.wait(4000)
    rig.context(34, node=1)                              # 收件成功: service alone
    rig.wait(1000)
    hits, shown, page, pages = t._hits()
    assert pages == 1 and shown == [("ind", "service")]
    w = rig.board.display.width
    t.tap((w - 30, 0, 30, 30))                           # no › on this screen: nothing happens
    assert rig.state == "case" and len(rig.ratings) == 1
    t.tap(t.level(0, 1))
    t.tap(t.button(("submit",)))
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
