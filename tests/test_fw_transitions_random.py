"""Random event sequences on the real App in a sim-board Device (fw_support.Rig) keep the flow's
promises: one rating per case, a thank-you only after the rating is in the outbox, counters never
repeated, every rating signed. CPython only."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fw_support import TAGS
from fw_transitions_support import _flash_base  # noqa: F401 (an autouse fixture)
from fw_transitions_support import ITEMS, KEY, STATES, ctx, new_rig
from protocol import auth, codec, schema, vocab


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
