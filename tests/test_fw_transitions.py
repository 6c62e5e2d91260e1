"""firmware.app.TRANSITIONS, row by row, on the real App in a sim-board Device (fw_support.Rig):
every (state, event) row dispatches to its named handler with the event's arguments and has the
effect the flow promises; every pair NOT in the table is ignored (state and flash unchanged).
Random event sequences: test_fw_transitions_random.py. CPython only."""

import pytest

from firmware.app import App, TRANSITIONS
from fw_transitions_support import _flash_base  # noqa: F401 (an autouse fixture)
from fw_transitions_support import (CASE, EVENTS, KEY, STATES, ctx, fire, flash, last_rating, rate,
                                    rig_in, snapshot)
from protocol import auth, vocab


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
@row("busy", "context")
@row("not_rated", "context")
@row("error", "context")
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
@row("not_rated", "timeout")
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
