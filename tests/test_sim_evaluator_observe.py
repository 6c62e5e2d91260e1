"""The confirmation log records every rating the firmware stored and thanked for, even when the
flow has already left the thank-you screen by the time the simulator looks (a CONTEXT for the
next case handled in the same loop turn as the press)."""

from types import SimpleNamespace

from hall_simulator.clock import SimClock
from hall_simulator.evaluator import Evaluator, Spec
from protocol import vocab

KEY = "11" * 32


def _rating(counter):
    return {"device": "w03", "counter": counter, "case_id": 40 + counter, "serials": ["SZ%06d" % counter],
            "node": vocab.NODE_COMPLETION, "source": vocab.SRC_PRESS, "overall": 1,
            "staff_id": "A0303", "window": "03"}


def test_a_thanked_rating_is_confirmed_even_if_the_next_case_already_opened(tmp_path):
    logged = []
    ev = Evaluator(Spec("w03", KEY, "03", "rs485", str(tmp_path / "w03"), address=3), SimClock(),
                   logged.append)
    app = SimpleNamespace(last_rating=_rating(7), state="case")   # thanks, then the next CONTEXT
    ev._observe(app)
    assert [e["rating_id"] for e in logged] == ["w03:7"]
    ev._observe(app)                                               # the same rating: once only
    app.last_rating = _rating(8)
    app.state = "thanks"
    ev._observe(app)
    assert [e["rating_id"] for e in logged] == ["w03:7", "w03:8"]
    assert ev.stats["confirmed"] == 2
