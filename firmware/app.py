"""The rating flow: which screen is up, what a press means there, and when a rating is recorded.

The flow is the table TRANSITIONS below: (state, event) -> handler. A handler returns the next
state, or None to stay. An event with no entry for the current state is ignored (and counted):
that is how "presses after the thank-you are ignored" and "no case → presses say so" are written.
Rules (rules.md Art. 14-20, views.py for the screens):
- five buttons rate one indicator (overall; service alone at a receipt node); the touch board
  also rates business and service, as the context's indicators and its node allow (vocab), and
  each theme item; a batch is one rating carrying all its serials.
- 不满意 / 非常不满意 lead to a required tag choice when CONFIG offers tags for that indicator.
- the rating is appended to the flash outbox BEFORE the thank-you; a full outbox refuses it.
- the case's rating timeout records SRC_NOT_RATED without a level (or, if the rater had already
  chosen levels, those real presses without the unfinished tag choice).
- one rating per case: a CONTEXT for a case already rated is ignored; CLEAR withdraws a case.
- misuse guard: a level within press_guard_ms of the case appearing is ignored; more than
  MASH_PRESSES presses within a second show "busy" for BUSY_MS.
Events from the world: context, clear (transport); rate, rate_item, submit, tag_move,
tag_toggle, tag_pick, confirm, back (ui actions); press (input with no action on that screen);
expire (the case's rating timeout); timeout (a transient screen's time is up).
"""

from protocol import auth, codec, schema, vocab
from firmware import views
from firmware.rating_config import apply_config
from firmware.outbox import OutboxFull

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_MASH_PRESSES = const(6)
_BUSY_MS = const(3000)
_MAX_TAGS = const(8)
_RECENT_CASES = const(16)
LEVEL_FIELDS = ("overall", "business", "service")   # protocol.rating's, without loading it
_BIT = {"overall": vocab.IND_OVERALL, "business": vocab.IND_BUSINESS, "service": vocab.IND_SERVICE}

_OPEN = ("case", "tags", "busy", "storage_full")  # states in which a case is waiting for a rating

TRANSITIONS = {
    ("idle", "context"): "_open_case",
    ("idle", "press"): "_no_case",
    ("no_case", "context"): "_open_case",
    ("no_case", "press"): "_no_case",
    ("no_case", "timeout"): "_to_idle",
    ("case", "context"): "_open_case",
    ("case", "clear"): "_withdraw",
    ("case", "rate"): "_rate",
    ("case", "rate_item"): "_rate_item",
    ("case", "submit"): "_submit",
    ("case", "expire"): "_expire",
    ("tags", "context"): "_open_case",
    ("tags", "clear"): "_withdraw",
    ("tags", "tag_move"): "_tag_move",
    ("tags", "tag_toggle"): "_tag_toggle",
    ("tags", "tag_pick"): "_tag_pick",
    ("tags", "confirm"): "_confirm",
    ("tags", "back"): "_back",
    ("tags", "expire"): "_expire",
    ("busy", "context"): "_open_case",
    ("busy", "clear"): "_withdraw",
    ("busy", "timeout"): "_resume",
    ("busy", "expire"): "_expire",
    ("storage_full", "context"): "_open_case",
    ("storage_full", "clear"): "_withdraw",
    ("storage_full", "timeout"): "_retry_storage",
    ("storage_full", "expire"): "_expire_full",
    ("thanks", "context"): "_open_case",
    ("thanks", "timeout"): "_to_idle",
    ("not_rated", "context"): "_open_case",
    ("not_rated", "timeout"): "_to_idle",
    ("error", "context"): "_open_case",
    ("error", "timeout"): "_resume",
}

# How long a transient screen stays, in ms (None: until an event moves on).
_STORAGE_RETRY_MS = const(2000)


class App:
    def __init__(self, profile, device, key, outbox, health, clock, rating_cfg, store=None,
                 window="", counter_floor=0):
        self.profile = profile          # "five_button" | "touch"
        self.device = device
        self.key = key
        self.outbox = outbox
        self.health = health
        self.clock = clock              # health.Uptime: .now() ms since boot, wrap-safe
        self.cfg = rating_cfg           # rating_config.rating_config(): tags, texts, timeouts
        self.store = store
        self.window = window
        # counters are issued above this floor: a re-provisioned device whose flash was wiped
        # never reuses a rating id (device:counter) it had before (SPEC 7.2)
        self.counter_floor = counter_floor
        self.state = "idle"
        self.ctx = None
        self.ask = ()                   # names of the indicators asked ("overall", ...)
        self.levels = {}
        self.item_levels = {}
        self.tags = []
        self.cursor = 0
        self.chosen = []
        self.case_since = 0
        self.expire_at = None           # the open case's rating timeout
        self.screen_until = None        # a transient screen's end
        self.presses = []               # recent press times (misuse guard)
        self.staff_name = ""
        self.time_offset = 0            # unix seconds minus uptime seconds (0: unknown)
        self.recent = self._recent_cases()
        self.dirty = True               # the screen needs a redraw
        self.last_rating = None         # the last record stored (tests, simulator)
        self.say = None                 # voice prompt a transition asks for (the device plays it)

    # --- dispatch -----------------------------------------------------------------------------
    def fire(self, event, *args):
        name = TRANSITIONS.get((self.state, event))
        if name is None:
            self.health.count("ignored_" + event[:8])
            return False
        nxt = getattr(self, name)(*args)
        if nxt is not None:
            self.enter(nxt)
        self.dirty = True
        return True

    def enter(self, state):
        self.state = state
        hold = None
        if state in ("thanks", "not_rated", "no_case"):
            hold = self.cfg["thanks_s"] * 1000
        elif state == "busy":
            hold = _BUSY_MS
        elif state in ("storage_full", "error"):
            hold = _STORAGE_RETRY_MS
        self.screen_until = None if hold is None else self.clock.now() + hold

    def tick(self):
        """Fire the timers that are due. Call often (every main-loop turn)."""
        now = self.clock.now()
        if self.screen_until is not None and now >= self.screen_until:
            self.screen_until = None
            self.fire("timeout")
        if self.expire_at is not None and now >= self.expire_at and self.state in _OPEN:
            self.fire("expire")

    def input(self, event, ui=None):
        """A raw board event: misuse guard, then the UI's meaning of it on the current view."""
        now = self.clock.now()
        self.presses = [t for t in self.presses if now - t < 1000]
        self.presses.append(now)
        if self.state in ("case", "tags") and len(self.presses) > _MASH_PRESSES:
            self.health.count("mashing")
            self.enter("busy")
            self.dirty = True
            return
        action = ui.action(self.view(), event) if ui is not None else None
        if action is None:
            self.fire("press")
        else:
            self.fire(action[0], *action[1:])

    # --- from the transport -------------------------------------------------------------------
    def on_context(self, record):
        self._learn_time(record.get("time", 0))
        return self.fire("context", record)

    def on_clear(self, record):
        return self.fire("clear", record)

    def on_config(self, record):
        self.cfg = apply_config(self.cfg, record)
        self.dirty = True

    def on_time(self, unix_s):
        self._learn_time(unix_s)

    def _learn_time(self, unix_s):
        if unix_s:
            self.time_offset = unix_s - self.clock.now() // 1000

    def _case(self):
        """The open case's CONTEXT: the handlers and screens of a case only run with one."""
        ctx = self.ctx
        if ctx is None:
            raise RuntimeError("no case open in state %s" % self.state)
        return ctx

    def case_id(self):
        return self.ctx["case_id"] if self.ctx is not None and self.state in _OPEN else 0

    # --- handlers -----------------------------------------------------------------------------
    def _open_case(self, ctx):
        cid = ctx["case_id"]
        if cid in self.recent:
            self.health.count("repeat_case")   # one rating per case
            return None
        if self.ctx is not None and self.ctx["case_id"] == cid and self.state in _OPEN:
            self.ctx = ctx                     # the same case again (a retransmission)
            return None
        self.ctx = ctx
        self.staff_name = ctx.get("staff_name", "")
        self.ask = self._ask(ctx)
        self.levels = {}
        self.item_levels = {}
        self.chosen = []
        self.cursor = 0
        now = self.clock.now()
        self.case_since = now
        self.expire_at = now + self.cfg["rating_timeout_s"] * 1000
        if self.outbox.full():
            self.health.count("outbox_full")
            return "storage_full"
        self.say = "greet"
        return "case"

    def _ask(self, ctx):
        allowed = vocab.NODE_INDICATORS.get(ctx.get("node"), vocab.IND_OVERALL)
        bits = (ctx.get("indicators") or allowed) & allowed or allowed
        names = [n for n in LEVEL_FIELDS if bits & _BIT[n]]
        if self.profile == "five_button":
            return tuple(names[:1])            # overall, or service alone at a receipt
        return tuple(names)

    def _no_case(self):
        return "no_case"

    def _to_idle(self):
        self.ctx = None
        self.expire_at = None
        return "idle"

    def _withdraw(self, record):
        if self.ctx is None or record.get("case_id") != self.ctx["case_id"]:
            return None
        return self._to_idle()

    def _rate(self, indicator, level):
        if self.clock.now() - self.case_since < self.cfg["press_guard_ms"]:
            self.health.count("guard")         # a press carried over from before the case
            return None
        if indicator not in self.ask or level not in vocab.LEVELS:
            return None
        self.levels[indicator] = level
        if self.profile == "five_button":
            return self._finish()
        return None

    def _rate_item(self, code, level):
        if self.clock.now() - self.case_since < self.cfg["press_guard_ms"]:
            self.health.count("guard")
            return None
        codes = [it["code"] for it in self._case().get("items", ())]
        if code in codes and level in vocab.LEVELS:
            self.item_levels[code] = level
        return None

    def _submit(self):
        for name in self.ask:
            if name not in self.levels:
                return None                    # every asked indicator first
        return self._finish()

    def _finish(self):
        bad = 0
        for name in self.levels:
            if vocab.is_bad(self.levels[name]):
                bad |= _BIT[name]
        for code in self.item_levels:
            if vocab.is_bad(self.item_levels[code]):
                bad |= vocab.IND_BUSINESS      # a theme item is a matter: business tags
        self.tags = [t for t in self.cfg["tags"] if t.get("indicator", 0) & bad] if bad else []
        if self.tags:
            self.cursor = 0
            self.chosen = []
            self.say = "reason"
            return "tags"
        return self._save(vocab.SRC_PRESS)

    def _tag_move(self, step):
        self.cursor = (self.cursor + step) % len(self.tags)

    def _tag_toggle(self):
        self._tag_pick(self.tags[self.cursor]["code"])

    def _tag_pick(self, code):
        if code in self.chosen:
            self.chosen.remove(code)
        elif len(self.chosen) < _MAX_TAGS and code in [t["code"] for t in self.tags]:
            self.chosen.append(code)

    def _confirm(self):
        if not self.chosen:
            return None                        # the tag choice is required
        return self._save(vocab.SRC_PRESS)

    def _back(self):
        self.chosen = []
        return "case"

    def _resume(self):
        return "case" if self.ctx is not None else "idle"

    def _retry_storage(self):
        if self.outbox.full():
            self.enter("storage_full")         # stay, and look again later
            return None
        return "case"

    def _expire(self):
        self.chosen = []                       # an unfinished tag choice is not recorded
        if self.levels or self.item_levels:
            return self._save(vocab.SRC_PRESS)  # the rater's real presses still count
        return self._save(vocab.SRC_NOT_RATED)

    def _expire_full(self):
        self.health.count("not_rated_lost")    # nothing can be stored: reported in STATUS
        return self._to_idle()

    # --- the record ---------------------------------------------------------------------------
    def rating(self, source, counter):
        ctx = self._case()
        now = self.clock.now()
        r = {"device": self.device, "counter": counter, "case_id": ctx["case_id"],
             "serials": list(ctx.get("serials", ())), "node": ctx.get("node", 0), "source": source,
             "staff_id": ctx.get("staff_id", ""), "window": ctx.get("window") or self.window,
             "device_time": self.time_offset + now // 1000 if self.time_offset else 0,
             "uptime_ms": now}
        if self.cfg.get("version"):            # the tag list this rater was offered (SPEC 3.6)
            r["tags_version"] = self.cfg["version"]
        if source == vocab.SRC_PRESS:
            for name in self.levels:
                r[name] = self.levels[name]
            if self.chosen:
                r["tags"] = list(self.chosen)
            items = [{"code": c, "level": self.item_levels[c]} for c in self.item_levels]
            if items:
                r["items"] = items
        return r

    def _save(self, source):
        counter = max(self.outbox.high, self.counter_floor) + 1
        record = auth.sign(self.key, self.rating(source, counter))
        try:
            self.outbox.append(counter, codec.encode(schema.RATING, record))
        except OutboxFull:
            self.health.count("outbox_full")
            return "storage_full"
        except OSError:
            self.health.count("flash_error")
            return "error"
        self.last_rating = record
        self._remember(self._case()["case_id"])
        self.ctx = None
        self.expire_at = None
        if source != vocab.SRC_PRESS:
            return "not_rated"
        self.say = "thanks"
        return "thanks"

    def _recent_cases(self):
        """At boot: the cases rated lately. A rating reaches the outbox before the store's list
        is saved, so a power cut between the two leaves the case only in the outbox; the newest
        outbox ratings are merged in and the list saved again before any ACK can release them
        (else a resent CONTEXT would open a second rating for the case)."""
        store = self.store
        recent = list(store.get("recent_cases", [])) if store is not None else []
        missing = False
        for raw in self.outbox.newest(_RECENT_CASES):
            cid = codec.decode(schema.RATING, raw)["case_id"]
            if cid not in recent:
                recent.append(cid)
                missing = True
        recent = recent[-_RECENT_CASES:]
        if missing and store is not None:
            store.set("recent_cases", recent)
            try:
                store.save()
            except OSError:
                self.health.count("flash_error")
        return recent

    def _remember(self, case_id):
        self.recent.append(case_id)
        if len(self.recent) > _RECENT_CASES:
            self.recent.pop(0)
        if self.store is not None:
            self.store.set("recent_cases", self.recent)
            try:
                self.store.save()
            except OSError:
                self.health.count("flash_error")

    # --- what the screen shows ----------------------------------------------------------------
    def view(self):
        s = self.state
        if s == "case":
            ctx = self._case()
            v = views.view("case", context=ctx, ask=tuple(_BIT[n] for n in self.ask),
                           levels=self.levels, item_levels=self.item_levels, qr=ctx.get("qr", ""),
                           left_s=self._left_s())
        elif s == "tags":
            v = views.view("tags", tags=self.tags, cursor=self.cursor, chosen=self.chosen)
        elif s == "idle":
            v = views.view("idle", staff_name=self.staff_name, idle_text=self.cfg["idle_text"])
        elif s == "error":
            v = views.view("error", message="flash")
        elif s == "provisioning":
            v = views.view("provisioning", device=self.device)
        else:
            v = views.view(s)
        v["window"] = self.window
        texts = {}
        for t in self.cfg["texts"]:
            texts[t["key"]] = t["text"]
        v["texts"] = texts
        if self.cfg.get("large_text") == schema.LARGE_TEXT_ON:
            v["large_text"] = 1
        return v

    def _left_s(self):
        """Whole seconds left to rate the open case (the touch screen counts them down)."""
        if self.expire_at is None:
            return None
        return max(0, (self.expire_at - self.clock.now() + 999) // 1000)
