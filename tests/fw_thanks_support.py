"""The thank-you is a promise: scenarios on the sim board, for CPython and MicroPython alike.

Each scenario records what the device showed at the instant its rating went to the outbox (the
flow's state and the last screen drawn): the thank-you may only follow a successful append.
"""

from fw_flash_support import FakeFlash
from fw_support import Rig


class FailingFlash(FakeFlash):
    """FakeFlash whose writes fail with `errno` while `failing` is set (a worn or full flash)."""

    def __init__(self, errno=5):
        FakeFlash.__init__(self)
        self.errno = errno
        self.failing = False

    def step(self, what):
        if self.failing and what == "write":
            raise OSError(self.errno)
        FakeFlash.step(self, what)


class Watch:
    """Hooks on one rig: every screen drawn, and the state and screen at each outbox append."""

    def __init__(self, rig):
        self.rig = rig
        self.drawn = []
        self.at_append = []      # (state, last screen drawn) when append was called
        self.appended = 0        # appends that returned
        dev = rig.dev
        real_append = dev.outbox.append

        def append(counter, data):
            self.at_append.append((dev.app.state, self.drawn[-1] if self.drawn else None))
            real_append(counter, data)
            self.appended += 1
        dev.outbox.append = append
        if dev.ui is not None:
            real_render = dev.ui.render

            def render(view):
                self.drawn.append(view["screen"])
                real_render(view)
            dev.ui.render = render

    def screen(self):
        """What the screen shows now (the flow's view when no UI draws it)."""
        if self.drawn:
            return self.drawn[-1]
        return self.rig.dev.app.view()["screen"]


def counted(rig, name):
    for c in rig.dev.status()["errors"]:
        if c["name"] == name:
            return c["count"]
    return 0


def _rate(rig, level=2):
    rig.wait(1000)
    rig.press_level(level)


def thanks_only_after_the_append(profile, font=None, base="/tmp"):
    rig = Rig(profile, font=font, base=base)
    watch = Watch(rig)
    rig.context(51)
    _rate(rig)
    assert len(watch.at_append) == 1 and watch.appended == 1
    state, shown = watch.at_append[0]
    assert state != "thanks" and shown != "thanks", (state, shown)
    assert "thanks" not in watch.drawn[:-1]
    assert rig.state == "thanks" and len(rig.ratings) == 1
    if rig.dev.ui is not None:
        assert watch.drawn[-1] == "thanks"            # drawn, after the append returned


def flash_error_after_the_case_opened(profile, font=None, base="/tmp"):
    flash = FailingFlash(errno=28)                     # ENOSPC: the flash filled
    rig = Rig(profile, font=font, base=base, fs=flash)
    watch = Watch(rig)
    rig.context(52)
    assert rig.state == "case"
    flash.failing = True
    _rate(rig)
    assert len(watch.at_append) == 1 and watch.appended == 0
    assert rig.state == "error" and watch.screen() == "error" and "thanks" not in watch.drawn
    assert counted(rig, "flash_error") == 1 and rig.ratings == []
    flash.failing = False                              # the flash recovers: the case comes back
    rig.wait(2000)
    assert rig.state == "case"
    rig.press_level(3)
    assert rig.state == "thanks"
    assert [(r["case_id"], r["overall" if "overall" in r else "service"]) for r in rig.ratings] == [(52, 3)]


def outbox_full_after_the_case_opened(profile, font=None, base="/tmp"):
    rig = Rig(profile, font=font, base=base)
    watch = Watch(rig)
    rig.context(53)
    assert rig.state == "case"
    outbox = rig.dev.outbox
    room = outbox.capacity
    outbox.capacity = outbox.depth                     # filled meanwhile
    _rate(rig)
    assert len(watch.at_append) == 1 and watch.appended == 0
    assert rig.state == "storage_full" and watch.screen() == "storage_full"
    assert "thanks" not in watch.drawn and rig.ratings == []
    assert counted(rig, "outbox_full") == 1
    outbox.capacity = room
    rig.wait(2000)
    assert rig.state == "case"
    rig.press_level(1)
    assert rig.state == "thanks" and [r["case_id"] for r in rig.ratings] == [53]


def theme_item_guard(base="/tmp"):
    """A theme item pressed at once (a press carried over from before the case) is ignored like
    any level: pressed twice, within the guard and after it, it counts once, with the later level."""
    rig = Rig("touch", base=base)
    items = [{"code": "T1", "name": "营业执照"}, {"code": "T2", "name": "税务登记"}]
    rig.context(54, items=items, matter_name="开办企业一件事")
    rig.act("rate_item", "T1", 5)                      # within press_guard_ms of the case appearing
    rig.act("rate_item", "T2", 4)
    assert rig.dev.app.item_levels == {} and counted(rig, "guard") == 2
    rig.wait(1000)
    rig.act("rate_item", "T1", 1)
    for name in rig.dev.app.ask:
        rig.act("rate", name, 2)
    rig.act("submit")
    assert rig.state == "thanks"                       # no bad item: no tag choice
    (r,) = rig.ratings
    assert r["items"] == [{"code": "T1", "level": 1}]


SCENARIOS = (thanks_only_after_the_append, flash_error_after_the_case_opened,
             outbox_full_after_the_case_opened)
