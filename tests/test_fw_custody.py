"""Custody (SPEC 3.11) in the flash outbox: the log records, a model-based state machine, and a
power cut at every write step (CPython and real MicroPython)."""

import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

sys.path.insert(0, str(Path(__file__).parent))
import fw_custody_support as cs  # noqa: E402
from fw_custody_support import Model, OPS, cut_everywhere, outbox_state  # noqa: E402
from fw_flash_support import FakeFlash, PowerCut, payload_for  # noqa: E402
from reorder_flash import ReorderFlash  # noqa: E402

from firmware import outbox as ob_mod  # noqa: E402
from firmware.outbox import Outbox, OutboxFull  # noqa: E402

LOG = "/ob/outbox.log"


def _record(kind, payload):
    """The layout in outbox.py's docstring, built independently of encode_record."""
    body = bytes((kind,)) + len(payload).to_bytes(2, "little")
    return b"\xa7" + body + zlib.crc32(body + payload).to_bytes(4, "little") + payload + b"\x5a"


def _custody(flash, capacity=10, compact_after=99):
    return Outbox(flash, "/ob", capacity, compact_after, custody=True).open()


# --- the records ---------------------------------------------------------------------------
def test_the_custody_records_are_exactly_the_documented_ones():
    flash = FakeFlash()
    ob = _custody(flash)
    ob.append(1, b"one")
    ob.append(2, b"two")
    assert ob.release(1)                                       # C 1: into custody
    assert ob.settle(0x1122334455667788, 5, 0, True) == 0      # G: new generation, marks 1
    assert ob.reoffer_head() == 1 and ob.unmark(1)             # C 1 again: unmarked
    assert ob.settle(0x1122334455667788, 6, 2, False) == 1     # G: 1 is settled
    gen = bytes(ob_mod._varint(0x1122334455667788))
    assert len(gen) == 9                                       # 64 bits: a 9-byte varint
    want = (_record(0x52, b"\x01one") + _record(0x52, b"\x02two") + _record(0x43, b"\x01")
            + _record(0x47, gen + b"\x05\x00\x00\x01") + _record(0x43, b"\x01")
            + _record(0x47, gen + b"\x06\x02\x01\x01"))                # marks (1, 1]: none
    assert bytes(flash.files[LOG]) == want
    assert ob.kept == 0 and ob.counters == [2] and ob.generation == 0x1122334455667788 and ob.seq == 6
    ob.release(2)
    ob.compact()                                               # H, G, K
    assert bytes(flash.files[LOG]) == (_record(0x48, b"\x02") + _record(0x47, gen + b"\x06\x00\x01\x01")
                                       + _record(0x4B, b"\x02two"))
    again = _custody(FakeFlash(flash.files))
    assert list(again.copies()) == [2] and again.copy(2) == b"two" and again.seq == 6


def test_custody_off_forgets_as_before():
    flash = FakeFlash()
    ob = Outbox(flash, "/ob", 10, 99).open()
    ob.append(1, b"one")
    assert ob.release(1) and ob.kept == 0
    assert bytes(flash.files[LOG]) == _record(0x52, b"\x01one") + _record(0x41, b"\x01")


def test_custody_costs_eight_bytes_a_run_not_a_copy():
    ob = _custody(FakeFlash(), capacity=600, compact_after=32)
    for c in range(1, 501):
        ob.append(c, payload_for(c))
        assert ob.release(c)
    assert ob.kept == 500 and list(ob.runs) == [1, 500]
    assert ob.copy(250) == payload_for(250) and ob.copy(501) is None
    # compactions waited for the dead records to outnumber the copies (not every 32 ACKs)
    assert ob.stats["compactions"] <= 2
    ob.settle(9, 1, 0, True)                                   # all marked
    assert ob.settle(9, 2, 400, False) == 0                    # marked: none dropped
    for c in range(1, 101):
        assert ob.reoffer_head() == c and ob.unmark(c)
    assert ob.settle(9, 3, 400, False) == 100                  # the unmarked ones below 400
    assert list(ob.runs) == [101, 399, 400, 500] or list(ob.runs) == [101, 500]
    assert ob.reoffer_head() == 101 and ob.kept == 400


def test_a_burnt_counter_or_a_kept_mark_breaks_a_run():
    ob = _custody(FakeFlash())
    for c in (1, 2, 4, 5):
        ob.append(c, payload_for(c))
        ob.release(c)
    assert list(ob.runs) == [1, 2, 4, 5] and ob.held(2) and not ob.held(3) and ob.held(5)
    assert not ob.held(0) and not ob.held(6)


def test_room_for_a_new_rating_comes_from_the_oldest_copy_only():
    counted = []
    ob = Outbox(FakeFlash(), "/ob", 3, 99, custody=True, count=counted.append).open()
    for c in (1, 2, 3):
        ob.append(c, payload_for(c))
    ob.release(1)
    ob.release(2)
    ob.append(4, payload_for(4))
    assert list(ob.copies()) == [2] and ob.counters == [3, 4] and counted == ["custody_dropped"]
    ob.append(5, payload_for(5))
    assert ob.kept == 0 and ob.counters == [3, 4, 5] and ob.stats["custody_dropped"] == 2
    with pytest.raises(OutboxFull):
        ob.append(6, payload_for(6))                           # the outbox alone refuses
    assert ob.counters == [3, 4, 5]


def test_only_the_lowest_marked_copy_is_unmarked():
    ob = _custody(FakeFlash())
    for c in (1, 2, 3):
        ob.append(c, payload_for(c))
        ob.release(c)
    assert not ob.unmark(1)                                    # nothing marked
    ob.settle(5, 1, 0, True)
    assert not ob.unmark(2) and ob.stats["not_head"] == 2
    assert ob.unmark(1) and ob.reoffer_head() == 2


# --- the model-based state machine ---------------------------------------------------------
class CustodyMachine(RuleBasedStateMachine):
    """Any sequence of appends, releases, SETTLEs (same generation or new, reoffer or not),
    re-offered copies acknowledged, compactions and reboots keeps exactly the model's outbox and
    custody, never drops an outbox rating, and stays within the capacity."""

    CAP = 6

    def __init__(self):
        RuleBasedStateMachine.__init__(self)
        self.flash = FakeFlash()
        self.ob = Outbox(self.flash, "/ob", self.CAP, 3, custody=True).open()
        self.m = Model(self.CAP)
        self.waiting = set()     # appended, not released: must never go
        self.gen = 1
        self.seq = 0

    @rule()
    def append(self):
        c = self.ob.high + 1
        if len(self.m.outbox) >= self.CAP:
            with pytest.raises(OutboxFull):
                self.ob.append(c, payload_for(c))
            return
        while self.m.drop_for_room():
            pass
        self.m.append(c)
        self.ob.append(c, payload_for(c))
        self.waiting.add(c)

    @precondition(lambda self: self.m.outbox)
    @rule()
    def release(self):
        c = self.m.outbox[0]
        assert self.ob.release(c)
        self.m.release()
        self.waiting.discard(c)

    @rule(settled=st.integers(0, 40), reoffer=st.booleans())
    def settle(self, settled, reoffer):
        self.seq += 1
        self.ob.settle(self.gen, self.seq, settled, reoffer)
        self.m.settle(self.gen, self.seq, settled, reoffer)

    @rule(settled=st.integers(0, 40))
    def new_generation(self, settled):
        self.gen += 1
        self.seq = 1
        self.ob.settle(self.gen, self.seq, settled, True)
        self.m.settle(self.gen, self.seq, settled, True)

    @rule()
    def reoffered_acknowledged(self):
        c = self.ob.reoffer_head()
        assert c == self.m.reoffer_head()
        if c is not None:
            assert self.ob.unmark(c)
            self.m.unmark()

    @rule(c=st.integers(0, 40))
    def no_other_copy_is_unmarked(self, c):
        if c != self.m.reoffer_head():
            assert not self.ob.unmark(c)

    @rule()
    def compact(self):
        self.ob.compact()

    @rule()
    def reopen(self):
        self.ob = Outbox(FakeFlash(self.flash.files), "/ob", self.CAP, 3, custody=True).open()
        self.flash = self.ob.fs

    @invariant()
    def same_as_the_model(self):
        assert outbox_state(self.ob) == self.m.state()
        assert self.waiting <= set(self.ob.counters)
        assert self.ob.depth + self.ob.kept <= self.CAP
        assert self.ob.reoffer_head() == self.m.reoffer_head()

    @invariant()
    def every_copy_reads_back(self):
        assert cs.check_bytes(self.ob) == []


CustodyMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestCustodyMachine = CustodyMachine.TestCase


# --- power cuts ------------------------------------------------------------------------------
@pytest.mark.parametrize("torn", [0.0, 0.5, 1.0])
def test_power_cut_at_every_step_of_the_custody_walk(torn):
    steps, problems = cut_everywhere(OPS, torn)
    assert problems == []
    assert steps > 150


def test_power_cut_at_every_step_with_reordered_page_losses():
    for seed in range(6):
        steps, problems = cut_everywhere(
            OPS, flash_of=lambda k, seed=seed: ReorderFlash(cut_at=k, seed=seed, page=8))
        assert problems == [], (seed, problems[:3])


op = st.one_of(st.just(("a",)), st.just(("r",)), st.just(("u",)), st.just(("c",)), st.just(("o",)),
               st.tuples(st.just("s"), st.integers(1, 3), st.integers(1, 30), st.integers(0, 12),
                         st.booleans()))


@settings(max_examples=40, deadline=None)
@given(st.lists(op, max_size=18), st.sampled_from([0.0, 0.5, 1.0]))
def test_power_cut_at_every_step_of_any_custody_sequence(ops, torn):
    assert cut_everywhere(ops, torn)[1] == []


@settings(max_examples=30, deadline=None)
@given(st.lists(op, min_size=1, max_size=14), st.integers(1, 60), st.integers(1, 80),
       st.sampled_from([0.0, 0.5, 1.0]))
def test_a_second_cut_during_recovery(ops, first_cut, second_cut, torn):
    """A cut, then a second one while the rebooted device carries on: no rating whose append
    returned leaves the outbox unless its release was called, every held rating reads back
    intact, and outbox plus custody stay within the capacity."""
    journal = {"promised": set(), "releasing": set()}
    flash = FakeFlash(cut_at=first_cut, torn=torn)
    for cut in (first_cut, second_cut):
        flash = FakeFlash(flash.files, cut_at=cut, torn=torn)
        try:
            cs.play(flash, ops, [0], 5, True, journal)
        except PowerCut:
            pass
    ob = cs.open_outbox(FakeFlash(flash.files), 5)
    assert journal["promised"] - journal["releasing"] <= set(ob.counters)
    assert cs.check_bytes(ob) == []
    assert ob.depth + ob.kept <= 5


# --- the checks catch a broken outbox ------------------------------------------------------
def _forget_marks(self, payload):
    """Broken: a SETTLE drops every copy below `settled`, marked or not."""
    gen, p = ob_mod._get_varint(payload, 0)
    seq, p = ob_mod._get_varint(payload, p)
    settled = ob_mod._get_varint(payload, p)[0]
    self.generation, self.seq = gen, seq
    self.runs = ob_mod._runs_of(c for c in self.copies() if c >= settled)
    self.kept = len(list(self.copies()))


def _compact_without_copies(self):
    """Broken: a compaction carries the outbox but not the custody copies."""
    self.runs = ob_mod.array("I")
    self.kept = 0
    _real_compact(self)


_real_compact = Outbox.compact


def _drop_outbox_head(self, counter, rating_bytes):
    """Broken: room is made by dropping the outbox head when custody is empty."""
    if not self.kept and len(self.counters) >= self.capacity - 1 and self.counters:
        self._write(ob_mod._KIND_ACK, ob_mod._varint(self.counters[0]))
        self._forget(self.counters[0])
    _real_append(self, counter, rating_bytes)


_real_append = Outbox.append


@pytest.mark.parametrize("attr, broken, why", [
    ("_settled", _forget_marks, "marked copies dropped"),
    ("compact", _compact_without_copies, "copies lost at a compaction"),
    ("append", _drop_outbox_head, "an outbox rating dropped for room"),
])
def test_the_checks_catch_a_broken_custody(monkeypatch, attr, broken, why):
    monkeypatch.setattr(Outbox, attr, broken)
    steps, problems = cut_everywhere(OPS, 0.5)
    assert problems, why


MP_SCRIPT = """
import sys
sys.path.insert(0, "/repo/tests")
from fw_custody_support import OPS, cut_everywhere
total = 0
for torn in (0.0, 0.5, 1.0):
    steps, problems = cut_everywhere(OPS, torn)
    total += steps
    for p in problems:
        print("PROBLEM", p)
print("STEPS", total)
"""


def test_power_cut_at_every_step_under_micropython(micropython):
    """The same walk and cuts on MicroPython 1.29: array runs, generators and the log scan."""
    r = micropython(MP_SCRIPT, trees=("protocol", "firmware", "tests"), timeout=300).check()
    assert "PROBLEM" not in r.stdout, r.stdout[:3000]
    assert int(r.stdout.split("STEPS")[1]) > 450
