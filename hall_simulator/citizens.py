"""Simulated citizens at a window: what each one does with the evaluator when the case comes up.

A citizen is decided up front from a seeded random.Random (so a run repeats), then acts by looking
at the screen, as a person would: `Visit.next_key(view)` says which of the five keys to press next
on the current screen, or None to press nothing (walked away, done, or waiting for the screen).

    mix = Mix()                                  # or Mix.preset("grumpy")
    plan = mix.decide(rng)
    visit = Visit(plan)
    key = visit.next_key(app.view())             # 0..4, or None

Behaviours (the issue's list): a mix of levels; think time before the first press; walk-aways
(no press at all: the device records "not rated at the window"); bad ratings with one or two tags
(the five-button tag screen: up, down, toggle, back, confirm); double taps (the same key twice,
~120 ms apart: the firmware must hold it as one rating).

Touch boards (firmware/ui/touch.py): `TouchVisit(plan).next_tap(ui, view)` gives the screen point
to tap, found the way a person finds it: on the buttons the screen shows (the layout's own hit
boxes). The citizen rates every asked indicator (overall, business, service: near the plan's
level), each theme item on its own (some left out: items are optional), pages through a theme,
taps 提交 (twice in a double tap), picks tag chips on the tags screen and taps 确定.
"""

import random

from protocol import vocab

# The five-button board's keys (firmware/ui/mono.py): on the case screen key i rates level i + 1;
# on the tag screen they are up, down, toggle, back, confirm.
KEY_UP, KEY_DOWN, KEY_TOGGLE, KEY_BACK, KEY_CONFIRM = 0, 1, 2, 3, 4
DOUBLE_TAP_S = 0.12
STEP_S = (0.4, 1.2)        # between presses on the tag screen
MAX_LEVEL_PRESSES = 4      # a citizen gives up after pressing a level this often without effect

# Level weights: most people are satisfied; bad ratings are a few per cent (rules Art. 10).
PRESETS = {
    "default": {"levels": (55, 25, 10, 6, 4), "walk_away": 0.08, "double_tap": 0.10,
                "two_tags": 0.3, "think_s": (1.5, 6.0)},
    "grumpy": {"levels": (10, 15, 15, 30, 30), "walk_away": 0.05, "double_tap": 0.15,
               "two_tags": 0.5, "think_s": (1.0, 4.0)},
    "quick": {"levels": (60, 25, 10, 3, 2), "walk_away": 0.02, "double_tap": 0.05,
              "two_tags": 0.2, "think_s": (0.8, 2.0)},
}


class Plan:
    """What one citizen will do. level 0 = walks away without rating. On a touch board `level` is
    the overall rating, `business` / `service` the other indicators and `items` the theme items'
    levels in screen order (0: left out)."""
    __slots__ = ("level", "think_s", "double_tap", "tag_count", "steps_s", "business", "service",
                 "items")

    def __init__(self, level, think_s, double_tap=False, tag_count=0, steps_s=(0.6,), business=None,
                 service=None, items=()):
        self.level = level
        self.think_s = think_s
        self.double_tap = double_tap
        self.tag_count = tag_count
        self.steps_s = steps_s
        self.business = level if business is None else business
        self.service = level if service is None else service
        self.items = tuple(items)

    @property
    def walks_away(self):
        return self.level == 0

    @property
    def bad(self):
        return vocab.is_bad(self.level)

    def __repr__(self):
        return "Plan(level=%d, think=%.1fs, double_tap=%s, tags=%d)" % (
            self.level, self.think_s, self.double_tap, self.tag_count)


class Mix:
    """The configurable mix of behaviours (fractions 0..1, level weights in LEVELS order)."""

    def __init__(self, levels=(55, 25, 10, 6, 4), walk_away=0.08, double_tap=0.10, two_tags=0.3,
                 think_s=(1.5, 6.0)):
        if len(levels) != len(vocab.LEVELS) or min(levels) < 0 or not sum(levels):
            raise ValueError("levels: five non-negative weights, not all zero")
        for name, p in (("walk_away", walk_away), ("double_tap", double_tap), ("two_tags", two_tags)):
            if not 0 <= p <= 1:
                raise ValueError("%s must be within 0..1" % name)
        if not 0 < think_s[0] <= think_s[1]:
            raise ValueError("think_s: (low, high) seconds, 0 < low <= high")
        self.levels = tuple(levels)
        self.walk_away = walk_away
        self.double_tap = double_tap
        self.two_tags = two_tags
        self.think_s = tuple(think_s)

    @classmethod
    def preset(cls, name):
        try:
            return cls(**PRESETS[name])
        except KeyError:
            raise ValueError("unknown citizen mix %r (known: %s)" % (name, ", ".join(PRESETS))) from None

    def decide(self, rng):
        think = rng.uniform(*self.think_s)
        if rng.random() < self.walk_away:
            return Plan(0, think)
        level = rng.choices(vocab.LEVELS, weights=self.levels)[0]
        tags = 0
        if vocab.is_bad(level):
            tags = 2 if rng.random() < self.two_tags else 1
        steps = tuple(rng.uniform(*STEP_S) for _ in range(8))
        double = rng.random() < self.double_tap
        # touch boards only (drawn last, so five-button citizens of a seed stay the same)
        business, service = _near(rng, level), _near(rng, level)
        items = tuple(0 if rng.random() < ITEM_SKIP else _near(rng, level) for _ in range(MAX_ITEMS))
        if tags == 0 and any(vocab.is_bad(x) for x in (business, service) + items):
            tags = 1
        return Plan(level, think, double, tags, steps, business, service, items)


ITEM_SKIP = 0.2            # share of theme items a touch-board citizen leaves out
MAX_ITEMS = 8


def _near(rng, level):
    """A level close to the overall one: opinions of one visit hang together."""
    return min(vocab.LEVELS[-1], max(vocab.LEVELS[0], level + rng.choice((-1, 0, 0, 0, 1))))


class Visit:
    """One citizen in front of one evaluator for one case: reacts to what the screen shows."""

    def __init__(self, plan):
        self.plan = plan
        self.level_presses = 0
        self.tag_presses = 0
        self.done = False
        self.gave_up = False

    def first_delay(self):
        return self.plan.think_s

    def next_delay(self):
        steps = self.plan.steps_s
        return steps[self.tag_presses % len(steps)]

    def next_key(self, view):
        """The key to press now on `view` (firmware views: view["screen"], ...), or None."""
        if self.done or self.plan.walks_away:
            return None
        screen = view.get("screen")
        if screen == "case":
            if self.level_presses >= MAX_LEVEL_PRESSES:
                self.done = self.gave_up = True
                return None
            self.level_presses += 1
            return self.plan.level - 1
        if screen == "tags":
            return self._tag_key(view)
        if screen in ("thanks", "not_rated", "idle", "no_case"):
            self.done = True
        return None   # busy, storage_full, error: wait and look again

    def double_tap_key(self, key):
        """The repeated press of a double tap, right after `key` (only the first level press)."""
        if self.plan.double_tap and self.level_presses == 1 and key == self.plan.level - 1:
            return key
        return None

    def _tag_key(self, view):
        self.tag_presses += 1
        if self.tag_presses > 20:
            self.done = self.gave_up = True
            return None
        tags = view.get("tags") or ()
        chosen = list(view.get("chosen") or ())
        cursor = view.get("cursor", 0)
        want = min(self.plan.tag_count or 1, len(tags))
        if len(chosen) >= want:
            return KEY_CONFIRM
        if tags and tags[cursor]["code"] not in chosen:
            return KEY_TOGGLE
        return KEY_DOWN


def citizen_rng(seed, window, n):
    """The random source of the n-th citizen at a window: independent of every other window."""
    return random.Random("%s/%s/%d" % (seed, window, n))


class TouchVisit:
    """One citizen at a touch board for one case: next_tap(ui, view) -> (x, y) or None."""

    MAX_TAPS = 40

    def __init__(self, plan):
        self.plan = plan
        self.taps = 0
        self.submits = 0
        self.done = False
        self.gave_up = False
        self.last_submit = False     # the last tap was on 提交

    def first_delay(self):
        return self.plan.think_s

    def next_delay(self):
        steps = self.plan.steps_s
        return steps[self.taps % len(steps)]

    def want(self, kind, key):
        """The level the citizen gives a block: ("ind", name) or ("item", item dict)."""
        if kind == "ind":
            return {"overall": self.plan.level, "business": self.plan.business,
                    "service": self.plan.service}.get(key)
        return self.plan.items[key % len(self.plan.items)] if self.plan.items else self.plan.level

    def next_tap(self, ui, view):
        if self.done or self.plan.walks_away:
            return None
        if self.taps >= self.MAX_TAPS or self.submits > 4:
            self.done = self.gave_up = True
            return None
        screen = view.get("screen")
        self.last_submit = False
        if screen == "case":
            point = self._case_tap(ui, view)
        elif screen == "tags":
            point = self._tags_tap(ui, view)
        else:
            if screen in ("thanks", "not_rated", "idle", "no_case"):
                self.done = True
            return None            # busy, storage_full, error: wait and look again
        if point is not None:
            self.taps += 1
        return point

    def double_tap_point(self, point):
        """The repeated tap of a double tap: on the first 提交 only."""
        if self.plan.double_tap and self.last_submit and self.submits == 1:
            return point
        return None

    def _case_tap(self, ui, view):
        from firmware.ui import touch as layout
        hits, shown, page, pages = layout._hits(ui, view)
        items = [b[1] for b in layout._blocks(view) if b[0] == "item"]
        by_act = {}
        for x, y, w, h, act, label, chosen in hits:
            by_act[act] = (x + w // 2, y + h // 2, chosen)
        for kind, key in shown:
            if kind == "ind":
                level = self.want("ind", key)
                act = ("rate", key, level)
            else:
                level = self.want("item", items.index(key))
                act = ("rate_item", key.get("code"), level)
            if level and act in by_act and not by_act[act][2]:
                return by_act[act][:2]
        if page + 1 < pages:
            return by_act[("page", 1)][:2]
        self.submits += 1
        self.last_submit = True
        return by_act[("submit",)][:2]

    def _tags_tap(self, ui, view):
        from firmware.ui import touch as layout
        chips, confirm = [], None
        for x, y, w, h, act, label, chosen in layout._tag_hits(ui, view):
            if act[0] == "tag_pick" and not chosen:
                chips.append((x + w // 2, y + h // 2))
            elif act[0] == "confirm":
                confirm = (x + w // 2, y + h // 2)
        want = max(1, self.plan.tag_count)
        if len(view.get("chosen") or ()) < want and chips:
            return chips[(self.taps * 7) % len(chips)]
        return confirm
