"""firmware.app.TRANSITIONS, row by row, on the real App in a sim-board Device (fw_support.Rig):
every (state, event) row dispatches to its named handler with the event's arguments and has the
effect the flow promises; every pair NOT in the table is ignored (state and flash unchanged);
random event sequences keep the flow's promises (one rating per case, a thank-you only after the
rating is in the outbox). CPython only."""

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.app import App, TRANSITIONS
from fw_support import KEY_HEX, TAGS, Rig
from protocol import auth, codec, schema, vocab

STATES = sorted({state for state, _ in TRANSITIONS})
EVENTS = sorted({event for _, event in TRANSITIONS})
KEY = bytes.fromhex(KEY_HEX)
ITEMS = [{"code": "T1", "name": "营业执照变更"}, {"code": "T2", "name": "税务登记"}]
CASE = 11


# --- rigs in a given state ---------------------------------------------------------------------
_BASE = []


@pytest.fixture(scope="module", autouse=True)
def _flash_base():
    """One directory for every rig's flash in this module (each rig has its own under it)."""
    _BASE.append(tempfile.mkdtemp(prefix="fw-transitions-"))
    yield
    shutil.rmtree(_BASE.pop(), ignore_errors=True)


def new_rig(profile="five_button", capacity=10):
    return Rig(profile, base=_BASE[-1], capacity=capacity)


def open_case(rig, case_id=CASE, **extra):
    rig.context(case_id, **extra)
    rig.wait(1000)                                  # past the misuse guard (guard_ms 500)
    assert rig.state == "case"


def rate(rig, level):
    for name in rig.dev.app.ask:
        rig.act("rate", name, level)
    if rig.board.profile == "touch":
        rig.act("submit")


def fail_next_append(rig):
    outbox = rig.dev.outbox

    def append(counter, data):
        del outbox.append                           # the flash works again after this write
        raise OSError(5, "flash write failed")
    outbox.append = append


def _to_state(rig, state):
    if state == "no_case":
        rig.act("press")
    elif state in ("case", "tags", "busy", "thanks", "not_rated", "error"):
        open_case(rig, items=ITEMS)
        if state == "tags":
            rate(rig, vocab.DISSATISFIED)           # a bad level with tags on offer
        elif state == "busy":
            for _ in range(7):                      # more than MASH_PRESSES within a second
                rig.dev.app.input(("key", 0))
        elif state == "thanks":
            rate(rig, vocab.SATISFIED)
        elif state == "not_rated":
            rig.wait(30000)                         # the case's rating timeout (30 s)
        elif state == "error":
            fail_next_append(rig)
            rate(rig, vocab.SATISFIED)
    elif state == "storage_full":
        open_case(rig, 10)
        rate(rig, vocab.SATISFIED)                  # the outbox (capacity 1) is full now
        rig.context(CASE, items=ITEMS)
    assert rig.state == state, (rig.state, state)
    return rig


def rig_in(state, profile="five_button"):
    return _to_state(new_rig(profile, capacity=1 if state == "storage_full" else 10), state)


# --- what can be observed -----------------------------------------------------------------------
def flash(rig):
    """Every file under the device's flash root, with its bytes."""
    out = {}
    for top, _, files in os.walk(rig.root):
        for name in files:
            path = os.path.join(top, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, rig.root)] = f.read()
    return out


def snapshot(rig):
    app = rig.dev.app
    return (app.state, app.ctx, dict(app.levels), dict(app.item_levels), list(app.chosen),
            app.cursor, app.screen_until, app.expire_at, list(rig.dev.outbox.counters),
            list(app.recent), flash(rig))


def fire(rig, event, *args):
    """Fire `event` through App.fire; assert it ran the handler the table names, with args."""
    app = rig.dev.app
    name = TRANSITIONS[(app.state, event)]
    handler = getattr(app, name)
    calls = []

    def spy(*a):
        calls.append(a)
        return handler(*a)
    setattr(app, name, spy)
    try:
        assert app.fire(event, *args) is True
    finally:
        delattr(app, name)
    assert calls == [args]
    rig.dev.step()


def ctx(case_id, **extra):
    rec = {"case_id": case_id, "window": "07", "staff_id": "A0123", "staff_name": "王喆",
           "serials": ["SZ2024%05d" % case_id], "node": vocab.NODE_COMPLETION}
    rec.update(extra)
    return rec


def last_rating(rig):
    return rig.ratings[-1]


# --- the rows -------------------------------------------------------------------------------------
ROWS = {}


def row(state, event, profile="five_button"):
    def register(check):
        ROWS[(state, event)] = (profile, check)
        return check
    return register


@row("idle", "context")
def _(rig):
    fire(rig, "context", ctx(21))
    assert rig.state == "case" and rig.dev.app.ctx["case_id"] == 21 and rig.dev.app.expire_at


@row("idle", "press")
def _(rig):
    fire(rig, "press")
    assert rig.state == "no_case" and rig.dev.app.screen_until is not None


@row("no_case", "context")
def _(rig):
    fire(rig, "context", ctx(21))
    assert rig.state == "case" and rig.dev.app.ctx["case_id"] == 21


@row("no_case", "press")
def _(rig):
    rig.wait(1000)
    fire(rig, "press")                              # stays, and shows the screen afresh
    assert rig.state == "no_case"
    assert rig.dev.app.screen_until == rig.dev.uptime.now() + 4000


@row("no_case", "timeout")
def _(rig):
    fire(rig, "timeout")
    assert rig.state == "idle"


@row("case", "context", profile="touch")
def _(rig):
    rig.act("rate", "overall", 2)                   # a level chosen (touch), then a new case
    assert rig.dev.app.levels == {"overall": 2}
    fire(rig, "context", ctx(21))
    assert rig.state == "case" and rig.dev.app.ctx["case_id"] == 21 and rig.dev.app.levels == {}
    fire(rig, "context", ctx(21, staff_name="李四"))  # the same case again: kept, not reopened
    assert rig.dev.app.ctx["staff_name"] == "李四" and rig.ratings == []



@row("case", "clear")
def _(rig):
    fire(rig, "clear", {"case_id": CASE + 1})       # another case: nothing to withdraw
    assert rig.state == "case"
    fire(rig, "clear", {"case_id": CASE})
    assert rig.state == "idle" and rig.dev.app.ctx is None and rig.ratings == []


@row("case", "rate")
def _(rig):
    fire(rig, "rate", "overall", vocab.SATISFIED)   # five buttons: one press is the rating
    assert rig.state == "thanks"
    r = last_rating(rig)
    assert (r["case_id"], r["overall"], r["source"]) == (CASE, vocab.SATISFIED, vocab.SRC_PRESS)
    assert auth.verify(KEY, r) and rig.dev.app.recent[-1] == CASE


@row("case", "rate_item", profile="touch")
def _(rig):
    fire(rig, "rate_item", "T1", vocab.BASICALLY_SATISFIED)
    fire(rig, "rate_item", "T9", vocab.SATISFIED)   # not an item of this case
    assert rig.state == "case" and rig.dev.app.item_levels == {"T1": vocab.BASICALLY_SATISFIED}


@row("case", "submit", profile="touch")
def _(rig):
    rig.act("rate", "overall", vocab.SATISFIED)
    fire(rig, "submit")                             # business and service still unrated
    assert rig.state == "case" and rig.ratings == []
    rig.act("rate", "business", vocab.VERY_SATISFIED)
    rig.act("rate", "service", vocab.SATISFIED)
    fire(rig, "submit")
    assert rig.state == "thanks"
    r = last_rating(rig)
    assert (r["overall"], r["business"], r["service"]) == (2, 1, 2) and auth.verify(KEY, r)


@row("case", "expire")
def _(rig):
    fire(rig, "expire")
    assert rig.state == "not_rated"
    r = last_rating(rig)
    assert r["source"] == vocab.SRC_NOT_RATED and "overall" not in r and r["case_id"] == CASE


@row("tags", "context")
def _(rig):
    fire(rig, "context", ctx(21))
    assert rig.state == "case" and rig.dev.app.ctx["case_id"] == 21 and rig.ratings == []


@row("tags", "clear")
def _(rig):
    fire(rig, "clear", {"case_id": CASE})
    assert rig.state == "idle" and rig.ratings == []


@row("tags", "tag_move")
def _(rig):
    assert rig.dev.app.cursor == 0 and len(rig.dev.app.tags) == 2     # 701 and 702 for overall
    fire(rig, "tag_move", 1)
    assert rig.dev.app.cursor == 1
    fire(rig, "tag_move", 1)
    assert rig.dev.app.cursor == 0 and rig.state == "tags"


@row("tags", "tag_toggle")
def _(rig):
    fire(rig, "tag_toggle")
    assert rig.dev.app.chosen == [rig.dev.app.tags[0]["code"]]
    fire(rig, "tag_toggle")
    assert rig.dev.app.chosen == [] and rig.state == "tags"


@row("tags", "tag_pick")
def _(rig):
    fire(rig, "tag_pick", 701)
    fire(rig, "tag_pick", 501)                      # a service tag, not offered for overall
    assert rig.dev.app.chosen == [701] and rig.state == "tags"


@row("tags", "confirm")
def _(rig):
    fire(rig, "confirm")                            # the tag choice is required
    assert rig.state == "tags" and rig.ratings == []
    rig.act("tag_pick", 702)
    fire(rig, "confirm")
    assert rig.state == "thanks"
    r = last_rating(rig)
    assert (r["overall"], r["tags"]) == (vocab.DISSATISFIED, [702]) and auth.verify(KEY, r)


@row("tags", "back")
def _(rig):
    rig.act("tag_pick", 701)
    fire(rig, "back")
    assert rig.state == "case" and rig.dev.app.chosen == [] and rig.ratings == []


@row("tags", "expire")
def _(rig):
    rig.act("tag_pick", 701)
    fire(rig, "expire")                             # the real press counts, the unfinished tags not
    assert rig.state == "thanks"
    r = last_rating(rig)
    assert r["overall"] == vocab.DISSATISFIED and "tags" not in r
    assert r["source"] == vocab.SRC_PRESS


@row("busy", "context")
def _(rig):
    fire(rig, "context", ctx(21))
    assert rig.state == "case" and rig.dev.app.ctx["case_id"] == 21


@row("busy", "clear")
def _(rig):
    fire(rig, "clear", {"case_id": CASE})
    assert rig.state == "idle"


@row("busy", "timeout")
def _(rig):
    fire(rig, "timeout")
    assert rig.state == "case" and rig.dev.app.ctx["case_id"] == CASE


@row("busy", "expire")
def _(rig):
    fire(rig, "expire")
    assert rig.state == "not_rated" and last_rating(rig)["source"] == vocab.SRC_NOT_RATED


@row("storage_full", "context")
def _(rig):
    fire(rig, "context", ctx(21))                   # still no room: the new case waits too
    assert rig.state == "storage_full" and rig.dev.app.ctx["case_id"] == 21
    assert len(rig.ratings) == 1


@row("storage_full", "clear")
def _(rig):
    fire(rig, "clear", {"case_id": CASE})
    assert rig.state == "idle" and len(rig.ratings) == 1


@row("storage_full", "timeout")
def _(rig):
    fire(rig, "timeout")                            # still full: stay, look again later
    assert rig.state == "storage_full" and rig.dev.app.screen_until is not None
    assert rig.ack(rig.ratings[0]["counter"]) is True
    fire(rig, "timeout")
    assert rig.state == "case" and rig.dev.app.ctx["case_id"] == CASE


@row("storage_full", "expire")
def _(rig):
    before = flash(rig)
    fire(rig, "expire")                             # nothing can be stored: counted, not written
    assert rig.state == "idle" and rig.dev.app.health.errors.get("not_rated_lost") == 1
    assert flash(rig) == before


@row("thanks", "context")
def _(rig):
    before = flash(rig)
    fire(rig, "context", ctx(CASE))                 # the case just rated: one rating per case
    assert rig.state == "thanks" and flash(rig) == before
    fire(rig, "context", ctx(21))
    assert rig.state == "case" and rig.dev.app.ctx["case_id"] == 21


@row("thanks", "timeout")
def _(rig):
    fire(rig, "timeout")
    assert rig.state == "idle" and rig.dev.app.ctx is None


@row("not_rated", "context")
def _(rig):
    fire(rig, "context", ctx(21))
    assert rig.state == "case" and rig.dev.app.ctx["case_id"] == 21


@row("not_rated", "timeout")
def _(rig):
    fire(rig, "timeout")
    assert rig.state == "idle"


@row("error", "context")
def _(rig):
    fire(rig, "context", ctx(21))
    assert rig.state == "case" and rig.dev.app.ctx["case_id"] == 21


@row("error", "timeout")
def _(rig):
    assert rig.ratings == []                        # the failed write left nothing
    fire(rig, "timeout")                            # back to the open case, which can be rated
    assert rig.state == "case" and rig.dev.app.ctx["case_id"] == CASE
    rate(rig, vocab.SATISFIED)
    assert rig.state == "thanks" and last_rating(rig)["case_id"] == CASE


# --- the tests -----------------------------------------------------------------------------------
def test_every_row_has_a_check_and_every_handler_exists():
    assert set(ROWS) == set(TRANSITIONS)
    for name in set(TRANSITIONS.values()):
        assert callable(getattr(App, name, None)), name


@pytest.mark.parametrize("state,event", sorted(TRANSITIONS))
def test_row(state, event):
    profile, check = ROWS[(state, event)]
    check(rig_in(state, profile))


ARGS = {"context": (ctx(21),), "clear": ({"case_id": CASE},), "rate": ("overall", 2),
        "rate_item": ("T1", 2), "tag_move": (1,), "tag_pick": (701,)}
IGNORED = [(s, e) for s in STATES for e in EVENTS if (s, e) not in TRANSITIONS]


@pytest.mark.parametrize("profile", ["five_button", "touch"])
@pytest.mark.parametrize("state,event", IGNORED)
def test_pairs_not_in_the_table_are_ignored(state, event, profile):
    rig = rig_in(state, profile)
    app = rig.dev.app
    before = snapshot(rig)
    counted = app.health.errors.get("ignored_" + event[:8], 0)
    assert app.fire(event, *ARGS.get(event, ())) is False
    rig.dev.step()
    assert snapshot(rig) == before
    assert app.health.errors.get("ignored_" + event[:8], 0) == counted + 1


def test_the_ignored_pairs_are_most_of_the_grid():
    assert len(IGNORED) == len(STATES) * len(EVENTS) - len(TRANSITIONS) > len(TRANSITIONS)


# --- random sequences ---------------------------------------------------------------------------
CASE_IDS = st.integers(min_value=1, max_value=3)    # few, so cases come back after a rating
LEVELS = st.sampled_from(vocab.LEVELS)
STEPS = st.one_of(
    st.tuples(st.just("visit"), CASE_IDS, LEVELS),  # a case shown, then a rater's whole rating
    st.tuples(st.just("context"), CASE_IDS),
    st.tuples(st.just("rate"), st.just("overall"), LEVELS),
    st.just(("wait", 600)),
    st.tuples(st.just("clear"), CASE_IDS),
    st.tuples(st.just("rate"), st.sampled_from(("overall", "business", "service")), LEVELS),
    st.tuples(st.just("rate_item"), st.sampled_from(("T1", "T2", "T9")), LEVELS),
    st.tuples(st.just("tag_pick"), st.sampled_from([t["code"] for t in TAGS])),
    st.tuples(st.just("tag_move"), st.sampled_from((1, -1))),
    st.sampled_from([("submit",), ("confirm",), ("back",), ("tag_toggle",), ("press",),
                     ("ack",), ("flash_fail",)]),
    st.tuples(st.just("wait"), st.sampled_from((100, 600, 1000, 4500, 31000))),
)


def _events(steps):
    """The steps with each visit spelled out as the events it is made of."""
    for step in steps:
        if step[0] == "visit":
            level = step[2]
            yield ("context", step[1])
            yield ("wait", 600)
            for name in ("overall", "business", "service"):
                yield ("rate", name, level)
            yield ("submit",)
        else:
            yield step


def _step(rig, step, failing):
    app = rig.dev.app
    kind = step[0]
    if kind == "flash_fail":
        failing.append(True)                        # the next outbox write fails
    elif kind == "context":
        rig.dev.on_context(ctx(step[1], items=ITEMS))
    elif kind == "clear":
        rig.dev.on_clear({"case_id": step[1]})
    elif kind == "press":
        app.input(("key", 0))
    elif kind == "wait":
        rig.board.advance(step[1])
    elif kind == "ack":
        head = rig.dev.next_rating()
        if head is not None:
            rig.ack(head["counter"])
    else:
        app.fire(*step)
    rig.dev.step()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(("five_button", "touch")), st.integers(min_value=1, max_value=3),
       st.lists(STEPS, min_size=1, max_size=40))
def test_random_sequences_keep_the_promises(profile, capacity, steps):
    rig = new_rig(profile, capacity)
    app = rig.dev.app
    outbox = rig.dev.outbox
    appended = []                       # every rating written, decoded
    failing = []
    real_append = outbox.append

    def append(counter, data):
        if failing:
            failing.pop()
            raise OSError(5, "flash write failed")
        real_append(counter, data)
        appended.append(codec.decode(schema.RATING, data))
    outbox.append = append
    for step in _events(steps):
        state, case, n = app.state, app.ctx, len(appended)
        _step(rig, step, failing)
        assert app.state in STATES
        if app.state in ("thanks", "not_rated") and app.state != state:
            # a thank-you (or not-rated) screen only for a rating just written, of the open case
            assert len(appended) == n + 1, (state, step)
            assert appended[-1]["case_id"] == case["case_id"]
            want = vocab.SRC_PRESS if app.state == "thanks" else vocab.SRC_NOT_RATED
            assert appended[-1]["source"] == want
        else:
            assert len(appended) == n, (state, step, app.state)
        if app.state in ("case", "tags"):
            assert app.ctx is not None
        assert outbox.depth <= capacity
    cases = [r["case_id"] for r in appended]
    assert len(cases) == len(set(cases)), cases            # at most one rating per case
    counters = [r["counter"] for r in appended]
    assert counters == sorted(set(counters))               # never a counter twice
    for r in appended:
        assert auth.verify(KEY, r)
