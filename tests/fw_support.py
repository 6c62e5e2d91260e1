"""The firmware's sim-board rig (one device driven through its real UI) and the rating flows
played on it: for the firmware tests, on CPython and on MicroPython alike. The fake flash is in
fw_flash_support, the touch-board taps in fw_touch_taps."""

from fw_flash_support import FakeFlash, PowerCut


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
                            "press_guard_ms": 500})
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
