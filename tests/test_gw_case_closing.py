"""Closing a rated case inside its rating's group commit, from data (gateway.case_state): the store
asks its case_closer before the transaction, with no lock held, and applies each closing only where
the case is still open, freeing a window only while it still shows that case."""

import os
import sqlite3
import tempfile
import threading

from hypothesis import given, settings, strategies as st

from gateway.store import Store
from gw_support import make_rating
from protocol import errors, vocab

STORED = (vocab.ACK_STORED, errors.R_OK)


class Closer:
    """What gateway.cases hands the store: (case_id, callback) for each rating's case_id."""

    def __init__(self, check=None):
        self.check = check
        self.asked = []

    def closings(self, ratings):
        if self.check is not None:
            self.check()
        self.asked.append([r["counter"] for r in ratings])
        return [(r["case_id"], {"event": "rated", "case_id": r["case_id"]}) if r["case_id"] else None
                for r in ratings]


def test_the_case_closer_is_asked_outside_any_transaction_and_lock(tmp_path):
    path = str(tmp_path / "o.db")
    store = Store(path)
    seen = []

    def check():
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")     # fails at once while the store writes
            other.execute("ROLLBACK")
            seen.append("no transaction")
        finally:
            other.close()
        reader = threading.Thread(target=store.backlog)    # blocks while the store's lock is held
        reader.start()
        reader.join(5)
        if not reader.is_alive():
            seen.append("no lock")
    store.case_closer = Closer(check)
    store.state_put("case:5", {"case_id": 5, "window": "A01", "status": "open"})
    assert store.commit_ratings([(make_rating("dev-a", 1, case_id=5), None)]) == [STORED]
    assert seen == ["no transaction", "no lock"] and store.case_closer.asked == [[1]]
    assert store.state_items("case:") == [] and store.closed_in_commit(5)
    assert not store.closed_in_commit(5)                  # once
    assert [e for _, e, _, _ in store.callbacks_due()] == [{"event": "rated", "case_id": 5}]
    store.close()


def test_a_failing_case_closer_costs_no_rating(tmp_path):
    store = Store(str(tmp_path / "o.db"))

    def boom():
        raise RuntimeError("closer down")
    store.case_closer = Closer(boom)
    store.state_put("case:5", {"case_id": 5, "window": "A01", "status": "open"})
    assert store.commit_ratings([(make_rating("dev-a", 1, case_id=5), None)]) == [STORED]
    assert [n for n, _ in store.state_items("case:")] == ["case:5"] and not store.closed_in_commit(5)
    assert store.close_cases([(5, None)]) == [5] and store.state_items("case:") == []
    assert store.callbacks_pending() == 0
    store.close()


OPS = st.lists(st.one_of(
    st.tuples(st.just("open"), st.sampled_from(["A01", "B02"])),
    st.tuples(st.just("rate"), st.integers(0, 6)),         # a rating of case n (0: none) commits
    st.tuples(st.just("rate_twice"), st.integers(1, 6)),   # two ratings of one case, one group
    st.tuples(st.just("alone"), st.integers(1, 6)),        # on_rating's closing of its own
    st.tuples(st.just("reopen"), st.none())), max_size=14)


@settings(max_examples=30, deadline=None)
@given(ops=OPS)
def test_closings_follow_a_model_of_open_cases_and_windows(ops):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "o.db")
        store = Store(path)
        store.case_closer = Closer()
        cases, windows, events = {}, {}, []     # the model: open case -> window, window -> case
        counter = next_id = 0
        for op, arg in ops:
            if op == "open":
                next_id += 1
                n = next_id
                store.state_put("case:%d" % n, {"case_id": n, "window": arg, "status": "open"})
                store.state_put("window:" + arg, {"staff_id": "1001", "case_id": n})
                cases[n], windows[arg] = arg, n
            elif op == "reopen":
                store.close()
                store = Store(path)
                store.case_closer = Closer()
            elif op == "alone":
                assert store.close_cases([(arg, {"event": "rated", "case_id": arg})]) == (
                    [arg] if arg in cases else [])
            else:
                group = []
                for _ in range(2 if op == "rate_twice" else 1):
                    counter += 1
                    group.append((make_rating("dev-a", counter, case_id=arg), None))
                assert store.commit_ratings(group) == [STORED] * len(group)
                assert store.closed_in_commit(arg) == (arg in cases)
            if op in ("rate", "rate_twice", "alone") and arg in cases:
                window = cases.pop(arg)
                if windows.get(window) == arg:
                    windows[window] = 0
                events.append(arg)
            assert sorted(int(name[5:]) for name, _ in store.state_items("case:")) == sorted(cases)
            assert dict((name[7:], w["case_id"]) for name, w in store.state_items("window:")) == windows
            assert all(w["staff_id"] == "1001" for _, w in store.state_items("window:"))
            assert [e["case_id"] for _, e, _, _ in store.callbacks_due(100)] == events
            assert store.callbacks_pending() == len(events)
        store.close()
