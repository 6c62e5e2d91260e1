"""Test doubles for the firmware tests, written to run on CPython and on MicroPython alike."""

from firmware.flashfs import Fs
from firmware.outbox import Outbox, OutboxFull


class PowerCut(Exception):
    pass


class _File:
    def __init__(self, flash, path, mode):
        self.flash = flash
        self.path = path
        self.writing = "r" not in mode
        self.pending = bytearray()
        self.pos = 0
        self.closed = False

    def write(self, data):
        self.flash.step("write")
        self.pending.extend(data)
        return len(data)

    def flush(self):
        self.flash.step("flush")
        self.flash.files[self.path].extend(self.pending)
        self.pending = bytearray()

    def close(self):
        if self.closed:
            return
        if self.writing and self.pending:
            self.flush()
        self.closed = True
        if self in self.flash.handles:
            self.flash.handles.remove(self)

    def seek(self, pos, whence=0):
        self.pos = pos if whence == 0 else len(self.flash.files[self.path]) + pos
        return self.pos

    def read(self, n=-1):
        self.flash.check()
        self.flash.reads += 1
        data = self.flash.files[self.path]
        end = len(data) if n < 0 else min(len(data), self.pos + n)
        out = bytes(data[self.pos:end])
        self.pos = end
        return out

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class FakeFlash(Fs):
    """A filesystem whose power can be cut at the k-th mutating step (open for writing, write,
    flush, close, rename, remove). At the cut, bytes written but not flushed survive only as a
    prefix of `torn` of their length (0 none, 1 all: the worst cases both), then every later
    call raises PowerCut. `reboot()` gives a fresh powered view of the same surviving files.
    `reads` counts read() calls on open files (how often the firmware reads the flash)."""

    def __init__(self, files=None, cut_at=0, torn=0.5):
        self.files = files if files is not None else {}
        self.cut_at = cut_at
        self.torn = torn
        self.steps = 0
        self.reads = 0
        self.dead = False
        self.handles = []

    def check(self):
        if self.dead:
            raise PowerCut()

    def step(self, what):
        self.check()
        self.steps += 1
        if self.cut_at and self.steps >= self.cut_at:
            for h in self.handles:
                keep = int(len(h.pending) * self.torn)
                self.files[h.path].extend(h.pending[:keep])
                h.pending = bytearray()
            self.dead = True
            raise PowerCut()

    def reboot(self, cut_at=0):
        return FakeFlash(self.files, cut_at, self.torn)

    # --- the firmware.flashfs.Fs interface ---------------------------------------------------
    def open(self, path, mode):
        if "r" in mode:
            self.check()
            if path not in self.files:
                raise OSError(2)
            return _File(self, path, mode)
        self.step("open")
        if "w" in mode or path not in self.files:
            self.files[path] = bytearray()  # truncation is immediate: the worst case
        f = _File(self, path, mode)
        self.handles.append(f)
        return f

    def rename(self, old, new):
        self.step("rename")
        self.files[new] = self.files.pop(old)

    def remove(self, path):
        self.step("remove")
        del self.files[path]

    def exists(self, path):
        self.check()
        return path in self.files

    def mkdir(self, path):
        pass



# --- the power-cut scenario, shared by the CPython and MicroPython tests ------------------------
def payload_for(counter):
    return ("R%d:" % counter).encode() * (1 + counter % 7)


class Journal:
    """What the citizen was told, as the scenario goes."""

    def __init__(self):
        self.attempted = set()   # append called
        self.promised = set()    # append returned: the thank-you was shown
        self.releasing = set()   # release called
        self.released = set()    # release returned
        self.highest = 0


def play(flash, ops, journal, capacity=4, compact_after=3):
    """Run ops ("a",) append / ("r", i) release the i-th live rating; PowerCut escapes."""
    ob = Outbox(flash, "/ob", capacity, compact_after).open()
    for op in ops:
        if op[0] == "a":
            c = ob.high + 1
            journal.attempted.add(c)
            try:
                ob.append(c, payload_for(c))
            except OutboxFull:
                continue
            journal.promised.add(c)
            journal.highest = max(journal.highest, c)
        elif ob.counters:
            c = ob.counters[op[1] % len(ob.counters)]
            if c != ob.counters[0]:
                assert not ob.release(c)   # only the head is ever released (nothing written)
                continue
            journal.releasing.add(c)
            ob.release(c)
            journal.released.add(c)
    return ob


def check_recovered(files, journal, capacity=4):
    """Reboot on the surviving files and check the promises. Returns the problems found."""
    problems = []
    ob = Outbox(FakeFlash(files), "/ob", capacity, 3).open()
    for c in journal.promised:
        if c not in journal.releasing and c not in ob.counters:
            problems.append("lost %d" % c)
    for c in ob.counters:
        if c not in journal.attempted:
            problems.append("phantom %d" % c)
        elif ob.get(c) != payload_for(c):
            problems.append("corrupt %d" % c)
        if c in journal.released:
            problems.append("released %d came back" % c)
    if ob.high < journal.highest:
        problems.append("counter went back %d < %d" % (ob.high, journal.highest))
    # the rebooted outbox keeps working
    ob2 = Outbox(FakeFlash(files), "/ob", capacity, 3).open()
    if not ob2.full():
        c = ob2.high + 1
        ob2.append(c, payload_for(c))
        ob3 = Outbox(FakeFlash(files), "/ob", capacity, 3).open()
        if c not in ob3.counters or ob3.get(c) != payload_for(c):
            problems.append("append after reboot lost")
    return problems


def cut_everywhere(ops, torn, capacity=4):
    """Cut the power at every step of `ops` in turn; returns (steps, problems)."""
    clean = FakeFlash(torn=torn)
    play(clean, ops, Journal(), capacity)
    steps = clean.steps
    problems = []
    for k in range(1, steps + 1):
        flash = FakeFlash(cut_at=k, torn=torn)
        journal = Journal()
        try:
            play(flash, ops, journal, capacity)
        except PowerCut:
            pass
        for p in check_recovered(flash.files, journal, capacity):
            problems.append("cut at %d: %s" % (k, p))
    return steps, problems


# --- power cut at every write step of the rating flow: is any case rated twice? -----------------
CUT_CASES = (31, 32, 33)


def _rate_and_settle(rig, case_id, gateway):
    """The gateway sends the case; the rater presses; the gateway takes and acknowledges whatever
    the outbox holds. Returns True when the rater saw the thank-you."""
    rig.context(case_id)
    rig.wait(1000)
    rig.press_level(2)
    thanked = rig.state == "thanks"
    drain(rig, gateway)
    rig.wait(5000)
    return thanked


def drain(rig, gateway):
    """Everything in the outbox reaches the gateway and is acknowledged. The gateway keeps one
    entry per rating id (a redelivered copy of the same rating is no duplicate)."""
    for r in rig.ratings:
        gateway[r["counter"]] = r["case_id"]
        rig.ack(r["counter"])


def cut_rating_flow(root, cut_at, torn):
    """Rate CUT_CASES one after another on a FakeFlash whose power fails at write step `cut_at`
    (0: never), reboot, let the gateway drain the outbox and send every case again (a retained
    or resent CONTEXT), and press again. Returns (write steps used, problems found)."""
    flash = FakeFlash(cut_at=cut_at, torn=torn)
    gateway = {}            # rating id (the device's counter) -> case id, as the gateway keeps them
    thanked = []
    try:
        rig = Rig("five_button", root=root, fs=flash)
        for cid in CUT_CASES:
            if _rate_and_settle(rig, cid, gateway):
                thanked.append(cid)
    except PowerCut:
        pass
    steps = flash.steps
    rig = Rig("five_button", root=root, fs=flash.reboot())
    drain(rig, gateway)
    for cid in CUT_CASES:
        _rate_and_settle(rig, cid, gateway)
    problems = []
    cases = list(gateway.values())
    for cid in CUT_CASES:
        n = cases.count(cid)
        if n > 1:
            problems.append("case %d rated %d times" % (cid, n))
        if n == 0:
            problems.append("case %d never rated" % cid)
    for cid in thanked:
        if cid not in cases:
            problems.append("case %d lost after its thank-you" % cid)
    return steps, problems


# --- full flows on the sim board, shared by the CPython and MicroPython tests -------------------
KEY_HEX = "5c" * 32
TAGS = [{"code": 501, "label": "态度不积极", "indicator": 4},
        {"code": 502, "label": "来回跑", "indicator": 4},
        {"code": 601, "label": "超时办结", "indicator": 2},
        {"code": 701, "label": "等待时间长", "indicator": 1},
        {"code": 702, "label": "其他原因", "indicator": 7}]
_rigs = [0]


class Rig:
    """One sim device. key(i) presses a button through the real UI; act(...) feeds a UI action
    straight to the flow (for screens whose layout is not drawn in this test)."""

    def __init__(self, profile="five_button", root=None, capacity=10, font=None, base="/tmp",
                 clock=None, net=None, extra=None, fs=None):
        from firmware.boards.sim import make_board
        from firmware.config import validate
        from firmware.device import Device
        if root is None:
            _rigs[0] += 1
            root = "%s/rig%d" % (base, _rigs[0])
        self.root = root
        self.board = make_board({"profile": profile, "fs_root": root, "clock": clock, "net": net})
        cfg = {"device": "win07", "key": KEY_HEX, "window": "07", "outbox_capacity": capacity,
               "board": {"profile": profile}}
        for k in extra or ():
            cfg[k] = extra[k]
        self.cfg = validate(cfg)
        self.font = font
        self.fs = fs
        self.dev = Device(self.board, self.cfg, fs=fs, font_path=font)
        self.dev.on_config({"version": 1, "tags": TAGS, "rating_timeout_s": 30, "thanks_s": 4,
                            "guard_ms": 500})
        self.dev.step()

    def reboot(self):
        from firmware.device import Device
        self.dev = Device(self.board, self.cfg, fs=self.fs, font_path=self.font)
        self.dev.step()

    @property
    def state(self):
        return self.dev.app.state

    @property
    def ratings(self):
        """Decoded ratings waiting in the outbox, oldest first."""
        from protocol import codec, schema
        ob = self.dev.outbox
        return [codec.decode(schema.RATING, ob.get(c)) for c in ob.counters]

    def context(self, case_id, **extra):
        ctx = {"case_id": case_id, "window": "07", "staff_id": "A0123", "staff_name": "王喆",
               "matter_code": "M-001", "matter_name": "企业投资项目备案（含变更）",
               "serials": ["SZ2024%05d" % case_id], "node": 3}
        for k in extra:
            ctx[k] = extra[k]
        self.dev.on_context(ctx)
        self.dev.step()
        return ctx

    def wait(self, ms):
        self.board.advance(ms)
        self.dev.step()

    def key(self, i):
        self.board.press(i)
        self.dev.step()

    def act(self, *action):
        self.dev.app.fire(*action)
        self.dev.step()

    def press_level(self, level):
        """The rater gives `level` to everything asked (touch: then submits)."""
        if self.dev.ui is not None and self.board.profile == "five_button":
            self.key(level - 1)
            return
        for name in self.dev.app.ask or ("overall",):
            self.act("rate", name, level)
        if self.board.profile == "touch":
            self.act("submit")

    def rating_mac(self, counter):
        """The MAC of rating `counter` as the device holds it (16 zero bytes once it is gone)."""
        from protocol import codec, schema
        raw = self.dev.outbox.get(counter)
        return codec.decode(schema.RATING, raw)["mac"] if raw is not None else bytes(16)

    def signed_ack(self, counter, result=0, **extra):
        """An ACK as the gateway sends it: signed under this device's key, bound to the MAC of the
        rating it answers (SPEC 7.5)."""
        from protocol import auth
        rec = {"device": "win07", "counter": counter, "result": result}
        for k in extra:
            rec[k] = extra[k]
        return auth.sign_ack(self.cfg["key_bytes"], "win07", rec, self.rating_mac(counter))

    def ack(self, counter, result=0):
        return self.dev.on_ack(self.signed_ack(counter, result))


def check_rating(rec, indicators=7):
    from protocol import auth, rating
    from protocol.auth import KEY_LEN
    from binascii import unhexlify
    key = unhexlify(KEY_HEX)
    assert len(key) == KEY_LEN
    assert auth.verify(key, rec), "MAC does not verify"
    rating.check(rec, indicators)


def flow_normal(rig):
    rig.context(11)
    assert rig.state == "case"
    rig.wait(1000)
    rig.press_level(2)
    assert rig.state == "thanks"
    (r,) = rig.ratings
    check_rating(r)
    assert r["overall"] == 2 and r["source"] == 1 and r["case_id"] == 11
    if rig.board.profile == "touch":
        assert r["business"] == r["service"] == 2        # the touch board asks all three
    else:
        assert "business" not in r and "service" not in r
    assert r["serials"] == ["SZ202400011"] and r["staff_id"] == "A0123" and r["window"] == "07"
    rig.wait(4000)
    assert rig.state == "idle"


def flow_bad_with_tags(rig):
    rig.context(12)
    rig.wait(1000)
    rig.press_level(5)
    assert rig.state == "tags" and rig.ratings == []    # nothing stored before the tag choice
    offered = [t["code"] for t in rig.dev.app.tags]
    if rig.board.profile == "touch":
        assert offered == [501, 502, 601, 701, 702]     # all three indicators were bad
    else:
        assert offered == [701, 702]                     # tags of the overall indicator only
    if rig.board.profile == "five_button" and rig.dev.ui is not None:
        rig.key(4)                                       # K5 confirm: refused, nothing chosen
        assert rig.state == "tags"
        rig.key(1)                                       # K2 down
        rig.key(2)                                       # K3 choose
        rig.key(4)                                       # K5 confirm
    else:
        rig.act("confirm")
        assert rig.state == "tags"
        rig.act("tag_pick", 702)
        rig.act("confirm")
    assert rig.state == "thanks"
    (r,) = rig.ratings
    check_rating(r)
    assert r["overall"] == 5 and r["tags"] == [702]


def flow_receipt(rig):
    rig.context(13, node=1)
    assert rig.dev.app.ask == ("service",)
    rig.wait(1000)
    rig.act("rate", "overall", 1)                        # not asked at a receipt: ignored
    assert rig.state == "case"
    if rig.board.profile == "five_button" and rig.dev.ui is not None:
        rig.key(0)
    else:
        rig.act("rate", "service", 1)
        rig.act("submit")
    assert rig.state == "thanks"
    (r,) = rig.ratings
    check_rating(r, 4)
    assert r["service"] == 1 and "overall" not in r and r["node"] == 1


def flow_batch(rig):
    serials = ["SZ2024%05d" % n for n in (21, 22, 23)]
    rig.context(14, serials=serials)
    rig.wait(1000)
    rig.press_level(1)
    (r,) = rig.ratings                                   # one rating for the whole batch
    check_rating(r)
    assert r["serials"] == serials


def flow_theme(rig):
    items = [{"code": "T1", "name": "营业执照"}, {"code": "T2", "name": "税务登记"}]
    rig.context(15, items=items, matter_name="开办企业一件事")
    rig.wait(1000)
    rig.act("rate", "overall", 2)
    if rig.board.profile == "touch":
        rig.act("rate", "business", 2)
        rig.act("submit")                                # service still missing: refused
        assert rig.state == "case"
        rig.act("rate", "service", 1)
        rig.act("rate_item", "T1", 1)
        rig.act("rate_item", "T2", 4)
        rig.act("rate_item", "T9", 1)                    # not an item of this theme: ignored
        rig.act("submit")
        assert rig.state == "tags"
        assert [t["code"] for t in rig.dev.app.tags] == [601, 702]   # a bad item: business tags
        rig.act("tag_pick", 601)
        rig.act("confirm")
    assert rig.state == "thanks"
    (r,) = rig.ratings
    check_rating(r)
    if rig.board.profile == "touch":
        assert r["items"] == [{"code": "T1", "level": 1}, {"code": "T2", "level": 4}]
        assert r["tags"] == [601] and r["service"] == 1
    else:
        assert r["overall"] == 2 and "items" not in r


def flow_timeout(rig):
    rig.context(16)
    rig.wait(29000)
    assert rig.state == "case"
    rig.wait(1000)
    assert rig.state == "not_rated"
    (r,) = rig.ratings
    check_rating(r)
    assert r["source"] == 2
    for name in ("overall", "business", "service", "tags", "items"):
        assert name not in r, name                       # never a fake level
    rig.wait(4000)
    assert rig.state == "idle"


def flow_no_case(rig):
    rig.key(0)
    assert rig.state == "no_case"
    rig.key(3)
    assert rig.state == "no_case" and rig.ratings == []
    rig.wait(4000)
    assert rig.state == "idle"


def flow_second_press(rig):
    ctx = rig.context(17)
    rig.wait(1000)
    rig.press_level(1)
    rig.press_level(5)                                   # after the thank-you: ignored
    rig.key(4)
    assert rig.state == "thanks" and len(rig.ratings) == 1
    rig.dev.on_context(ctx)                              # the same case again: still rated once
    rig.wait(5000)
    assert rig.state == "idle"
    rig.press_level(3)
    assert len(rig.ratings) == 1 and rig.ratings[0]["overall"] == 1


def flow_outbox_full(rig):
    for cid in (18, 19):
        rig.context(cid)
        rig.wait(1000)
        rig.press_level(1)
    rig.context(20)
    assert rig.state == "storage_full"
    rig.press_level(1)
    rig.key(0)
    assert len(rig.ratings) == 2 and rig.state == "storage_full"
    st = rig.dev.status()
    assert st["outbox"] == st["outbox_capacity"] == 2
    assert {"name": "outbox_full", "count": 1} in st["errors"]
    assert rig.ack(1)
    rig.wait(2000)
    assert rig.state == "case"                           # room again: the case comes back
    rig.press_level(3)
    assert [r["case_id"] for r in rig.ratings] == [19, 20]


def flow_misuse_guard(rig):
    rig.context(21)
    rig.press_level(1)                                   # at once: a carried-over press
    assert rig.state == "case" and rig.ratings == []
    for _ in range(7):
        rig.key(0)
    assert rig.state == "busy"
    rig.wait(3000)
    assert rig.state == "case"
    rig.wait(1000)
    rig.press_level(2)
    assert rig.state == "thanks" and [r["overall"] for r in rig.ratings] == [2]


def flow_clear(rig):
    rig.context(22)
    rig.dev.on_clear({"case_id": 99})                    # another case: no effect
    assert rig.state == "case"
    rig.dev.on_clear({"case_id": 22})
    rig.dev.step()
    assert rig.state == "idle"
    rig.key(0)
    assert rig.state == "no_case" and rig.ratings == []


def flow_reboot(rig):
    ctx = rig.context(23)
    rig.wait(1000)
    rig.press_level(1)
    rig.reboot()
    assert [r["counter"] for r in rig.ratings] == [1]
    rig.dev.on_context(ctx)                              # a retained context after the reboot
    assert rig.state == "idle"
    rig.context(24)
    rig.wait(1000)
    rig.press_level(2)
    assert [r["counter"] for r in rig.ratings] == [1, 2]


FLOOR = 1795000000   # a unix time, as provisioning writes it


def flow_counter_floor(rig):
    """A device provisioned anew (wiped flash) counts on above its floor, across reboots and
    when its outbox has been emptied by ACKs: no rating id it had before comes back."""
    rig.context(31)
    rig.wait(1000)
    rig.press_level(1)
    assert [r["counter"] for r in rig.ratings] == [FLOOR + 1]
    rig.ack(FLOOR + 1)
    assert rig.ratings == []
    rig.wait(4000)
    rig.reboot()
    rig.context(32)
    rig.wait(1000)
    rig.press_level(3)
    (r,) = rig.ratings
    assert r["counter"] == FLOOR + 2
    check_rating(r)


def flow_forged_ack(rig):
    """Only an ACK signed under the device's own key releases a rating (SPEC 7.5): anyone on the
    bus or the broker could otherwise erase ratings the citizen was thanked for."""
    from protocol import auth
    rig.context(41)
    rig.wait(1000)
    rig.press_level(2)
    (r,) = rig.ratings
    c = r["counter"]
    genuine = rig.signed_ack(c)
    mac = rig.rating_mac(c)
    other_key = auth.sign_ack(bytes(32), "win07", {"device": "win07", "counter": c}, mac)
    other_dev = auth.sign_ack(rig.cfg["key_bytes"], "win08", {"device": "win07", "counter": c}, mac)
    other_rating = auth.sign_ack(rig.cfg["key_bytes"], "win07", {"device": "win07", "counter": c},
                                 bytes(16))          # what the gateway signs for junk under c
    bent = dict(rig.signed_ack(c + 1))
    bent["counter"] = c                              # a genuine ACK for another counter, edited
    forged = [{"device": "win07", "counter": c, "result": 0}, {"counter": c},
              dict(genuine, mac=bytes(16)), dict(genuine, mac=genuine["mac"][:15]),
              other_key, other_dev, bent, other_rating,
              {"device": "win07", "counter": c, "result": 3}]   # an unsigned RETRY too
    for ack in forged:
        assert not rig.dev.on_ack(ack)
        assert [x["counter"] for x in rig.ratings] == [c]
    assert rig.dev.health.errors.get("ack_forged") == len(forged)
    assert not rig.dev.on_ack(rig.signed_ack(c, 3))   # a signed RETRY: kept, not counted forged
    assert not rig.dev.on_ack(rig.signed_ack(c, 4))   # a signed REJECTED: kept, counted as such
    assert rig.dev.health.errors.get("ack_forged") == len(forged)
    assert rig.dev.health.errors.get("ack_rejected") == 1
    bare = dict(genuine)
    del bare["device"]                               # RS-485 may leave the device out
    assert rig.dev.on_ack(bare) and rig.ratings == []
    assert not rig.dev.on_ack(genuine)               # replayed later: harmless, nothing to release
    assert {"name": "ack_forged", "count": len(forged)} in rig.dev.status()["errors"]


FLOWS = ["flow_normal", "flow_bad_with_tags", "flow_receipt", "flow_batch", "flow_theme",
         "flow_timeout", "flow_no_case", "flow_second_press", "flow_outbox_full",
         "flow_misuse_guard", "flow_clear", "flow_reboot", "flow_counter_floor", "flow_forged_ack"]


def run_flow(name, profile, font=None, base="/tmp"):
    capacity = 2 if name == "flow_outbox_full" else 10
    extra = {"counter_floor": FLOOR} if name == "flow_counter_floor" else None
    rig = Rig(profile, capacity=capacity, font=font, base=base, extra=extra)
    globals()[name](rig)
    return rig


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
