"""The flash outbox on a flash that may lose or reorder unflushed bytes at a power cut
(tests/reorder_flash.py): a cut at every write step, several seeded loss patterns per cut.

Promises checked after every cut and reboot (fw_flash_support.check_recovered): a rating whose append
returned is there, byte-identical; a released rating never comes back unless its release never
returned; no phantom; the counter never goes back; the outbox keeps working. On the raw bytes of
outbox.log: a commit byte on flash means its record's header and payload are on flash exactly as
written (the write order the format promises). The planted bugs (payload and commit byte in one
write; two writes, one flush) break that order and are caught by these assertions.
"""

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).parent))
import fw_flash_support  # noqa: E402
from fw_flash_support import Journal, PowerCut, play  # noqa: E402
from reorder_flash import (ALL_KEPT, ALL_LOST, PREFIX_TORN, SUBSET, ReorderFlash,  # noqa: E402
                           Rng, cut_everywhere_reordered, pattern_of, survive)

import firmware.outbox as outbox_mod  # noqa: E402
from firmware.outbox import Outbox, encode_record  # noqa: E402

SEEDS = range(8)  # lost, kept, then three each of subset and prefix+torn
OPS = [("a",), ("a",), ("r", 0), ("a",), ("a",), ("a",), ("a",), ("a",), ("r", 1), ("r", 0),
       ("a",), ("r", 0), ("r", 0), ("r", 0), ("a",), ("a",)]
COMMIT = 0x5A


def commit_order(path, intended, survived):
    """Problems where a record's commit byte reached the log before its header and payload."""
    if not path.endswith(outbox_mod.LOG):
        return []  # outbox.new only counts once renamed, after a flush: one write is fine there
    problems = []
    pos = 0
    while pos + 8 <= len(intended):
        end = pos + 8 + (intended[pos + 2] | intended[pos + 3] << 8)  # the commit byte's offset
        if end < len(survived) and survived[end] == COMMIT and survived[pos:end] != intended[pos:end]:
            problems.append("commit byte at %d on flash before its record" % end)
        pos = end + 1
    return problems


# --- the model itself ------------------------------------------------------------------------
def test_the_model_loses_reorders_and_tears_unflushed_pages_only():
    pending = bytes(range(40))
    assert pattern_of(0) == ALL_LOST and pattern_of(1) == ALL_KEPT
    assert survive(3, pending, ALL_LOST, Rng(0), 8) == b""
    assert survive(3, pending, ALL_KEPT, Rng(1), 8) == pending
    later_without_earlier = torn = 0
    for seed in range(2, 60):
        out = survive(3, pending, pattern_of(seed), Rng(seed), 8)
        assert len(out) <= len(pending)
        if pattern_of(seed) == SUBSET:
            pages = [out[a:a + 8] for a in range(5, len(out), 8)]  # absolute page starts at 8k
            assert all(p in (pending[5 + i * 8:5 + i * 8 + len(p)], b"\xff" * len(p))
                       for i, p in enumerate(pages))
            if out and out[0] == 0xFF and out[-1] != 0xFF:
                later_without_earlier += 1
        else:
            assert pattern_of(seed) == PREFIX_TORN
            assert all(o | p == o for o, p in zip(out, pending))  # only unprogrammed bits differ
            if out != pending[:len(out)]:
                torn += 1
    assert later_without_earlier > 3 and torn > 3
    # flushed bytes are durable whatever the pattern
    for seed in SEEDS:
        flash = ReorderFlash(cut_at=4, seed=seed)
        f = flash.open("/x", "ab")
        f.write(b"durable")
        f.flush()
        with pytest.raises(PowerCut):
            f.write(b"maybe")
            f.flush()
        assert bytes(flash.files["/x"]).startswith(b"durable")


# --- the outbox on it --------------------------------------------------------------------------
@pytest.mark.parametrize("page", [4, 8, 16])
def test_power_cut_at_every_step_with_seeded_losses(page):
    steps, tried, problems = cut_everywhere_reordered(OPS, SEEDS, page, check_cut=commit_order)
    assert problems == []
    assert tried == steps * len(SEEDS) and steps > 60


op = st.one_of(st.just(("a",)), st.tuples(st.just("r"), st.integers(0, 5)))


@settings(max_examples=30, deadline=None)
@given(st.lists(op, max_size=12), st.integers(2, 10_000), st.sampled_from([4, 8, 32]))
def test_power_cut_at_every_step_of_any_sequence_with_any_loss(ops, seed, page):
    _, _, problems = cut_everywhere_reordered(ops, (0, 1, seed, seed + 1), page,
                                              check_cut=commit_order)
    assert problems == []


@settings(max_examples=25, deadline=None)
@given(st.lists(op, min_size=1, max_size=10), st.integers(1, 40), st.integers(1, 60),
       st.integers(0, 1000), st.integers(0, 1000))
def test_a_second_cut_during_recovery(ops, first_cut, second_cut, seed1, seed2):
    flash = ReorderFlash(cut_at=first_cut, seed=seed1)
    journal = Journal()
    try:
        play(flash, ops, journal)
    except PowerCut:
        pass
    flash = ReorderFlash(flash.files, cut_at=second_cut, seed=seed2)
    try:
        play(flash, ops, journal)
    except PowerCut:
        pass
    assert fw_flash_support.check_recovered(flash.files, journal) == []


# --- planted bugs: the order of the commit byte's flush ---------------------------------------
class _OneWrite(Outbox):
    """Broken: header, payload and commit byte in one write and one flush."""

    def _write(self, kind, payload):
        rec = encode_record(kind, payload) + b"\x5a"
        off = self.size
        self._dirty = True
        f = self.fs.open(self.path, "ab")
        try:
            f.write(rec)
            f.flush()
        finally:
            f.close()
        self._dirty = False
        self.size += len(rec)
        return off


class _NoFlushBetween(Outbox):
    """Broken: the commit byte written right after the record, with no flush between them."""

    def _write(self, kind, payload):
        rec = encode_record(kind, payload)
        off = self.size
        self._dirty = True
        f = self.fs.open(self.path, "ab")
        try:
            f.write(rec)
            f.write(b"\x5a")
            f.flush()
        finally:
            f.close()
        self._dirty = False
        self.size += len(rec) + 1
        return off


def _no_crc(data, start=0):
    return 0


@pytest.mark.parametrize("broken", [_OneWrite, _NoFlushBetween])
def test_a_commit_byte_flushed_with_its_record_is_caught(broken, monkeypatch):
    monkeypatch.setattr(fw_flash_support, "Outbox", broken)
    _, _, problems = cut_everywhere_reordered(OPS[:8], SEEDS, 8, check_cut=commit_order)
    assert any("before its record" in p for p in problems)


@pytest.mark.parametrize("broken", [_OneWrite, _NoFlushBetween])
def test_without_the_crc_the_flush_order_alone_keeps_ratings_intact(broken, monkeypatch):
    """The CRC hides a torn record whose commit byte landed early; with the CRC made blind, the
    broken writers hand back a corrupt rating after a cut, and the real writer still does not."""
    monkeypatch.setattr(outbox_mod, "crc32", _no_crc)
    _, _, problems = cut_everywhere_reordered(OPS[:8], SEEDS, 8)
    assert problems == []
    monkeypatch.setattr(fw_flash_support, "Outbox", broken)
    _, _, problems = cut_everywhere_reordered(OPS[:8], SEEDS, 8)
    assert any("corrupt" in p or "phantom" in p for p in problems)
    # the old prefix-only flash could not see it: a commit byte never outlived earlier bytes
    for torn in (0.0, 0.5, 1.0):
        assert fw_flash_support.cut_everywhere(OPS[:8], torn)[1] == []


def test_the_seeded_patterns_are_the_same_every_run():
    def run():
        flash = ReorderFlash(cut_at=9, seed=5)
        try:
            play(flash, OPS, Journal())
        except PowerCut:
            pass
        return {k: bytes(v) for k, v in flash.files.items()}, flash.cuts
    assert run() == run()


MP_SCRIPT = """
import sys
sys.path.insert(0, "/repo/tests")
from reorder_flash import cut_everywhere_reordered
ops = %r
steps, tried, problems = cut_everywhere_reordered(ops, range(6), 8)
for p in problems:
    print("PROBLEM", p)
print("TRIED", steps, tried)
"""


def test_the_same_seeded_cuts_under_micropython(micropython):
    """The model and the outbox on MicroPython 1.29: same seeds, same promises kept."""
    r = micropython(MP_SCRIPT % (OPS[:8],), trees=("protocol", "firmware", "tests")).check()
    assert "PROBLEM" not in r.stdout, r.stdout
    steps, tried = map(int, r.stdout.split("TRIED")[1].split())
    assert steps > 25 and tried == steps * 6
