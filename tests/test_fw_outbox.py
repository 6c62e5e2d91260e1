"""The flash outbox: normal use, a full outbox, and power cuts at every write step."""

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from fw_flash_support import FakeFlash, Journal, PowerCut, cut_everywhere, payload_for, play  # noqa: E402

from firmware.flashfs import Fs  # noqa: E402
from firmware.outbox import Outbox, OutboxFull, encode_record, KIND_RATING  # noqa: E402


def test_append_release_and_reboot_on_a_real_directory(tmp_path):
    ob = Outbox(Fs(), str(tmp_path), capacity=3).open()
    for c in (1, 2, 3):
        ob.append(c, payload_for(c))
    with pytest.raises(OutboxFull):
        ob.append(4, b"x")
    assert ob.full() and ob.stats["full"] == 1
    assert ob.oldest() == (1, payload_for(1))
    assert ob.release(1) and not ob.release(1)
    again = Outbox(Fs(), str(tmp_path), capacity=3).open()
    assert again.counters == [2, 3] and again.high == 3
    assert again.oldest() == (2, payload_for(2))
    with pytest.raises(ValueError):
        again.append(3, b"reused counter")


def test_counters_survive_compaction_of_an_empty_outbox(tmp_path):
    ob = Outbox(Fs(), str(tmp_path), capacity=5, compact_after=2).open()
    for c in (1, 2):
        ob.append(c, payload_for(c))
    ob.release(1)
    ob.release(2)  # second ACK: compaction leaves only the high-water mark
    assert ob.stats["compactions"] == 1
    again = Outbox(Fs(), str(tmp_path)).open()
    assert again.depth == 0 and again.high == 2


def test_a_torn_or_corrupt_tail_is_dropped_and_compacted_away():
    flash = FakeFlash()
    ob = Outbox(flash, "/ob").open()
    ob.append(1, payload_for(1))
    good = bytes(flash.files["/ob/outbox.log"])
    # a whole record whose commit byte never made it, then garbage
    flash.files["/ob/outbox.log"].extend(encode_record(KIND_RATING, b"\x02xyz") + b"\xff\x00")
    ob = Outbox(flash.reboot(), "/ob").open()
    assert ob.counters == [1] and ob.stats["dropped_tail"] == 1
    ob.append(2, payload_for(2))  # lands after a clean log, so it is found again
    assert Outbox(flash.reboot(), "/ob").open().counters == [1, 2]
    # a flipped bit inside the first record: it is not accepted
    flash.files["/ob/outbox.log"] = bytearray(good)
    flash.files["/ob/outbox.log"][12] ^= 0x01
    assert Outbox(flash.reboot(), "/ob").open().counters == []


OPS = [("a",), ("a",), ("r", 0), ("a",), ("a",), ("a",), ("a",), ("a",), ("r", 1), ("r", 0),
       ("a",), ("r", 0), ("r", 0), ("r", 0), ("a",), ("a",)]


@pytest.mark.parametrize("torn", [0.0, 0.5, 1.0])
def test_power_cut_at_every_step_of_a_fixed_sequence(torn):
    steps, problems = cut_everywhere(OPS, torn)
    assert steps > 60  # appends, releases, full refusals and compactions were all exercised
    assert problems == []


op = st.one_of(st.just(("a",)), st.tuples(st.just("r"), st.integers(0, 5)))


@settings(max_examples=40, deadline=None)
@given(st.lists(op, max_size=14), st.sampled_from([0.0, 0.3, 1.0]))
def test_power_cut_at_every_step_of_any_sequence(ops, torn):
    _, problems = cut_everywhere(ops, torn)
    assert problems == []


@settings(max_examples=25, deadline=None)
@given(st.lists(op, min_size=1, max_size=10), st.integers(1, 40), st.integers(1, 60))
def test_power_cut_during_recovery_too(ops, first_cut, second_cut):
    """A cut, then a second cut while the rebooted device recovers and carries on."""
    flash = FakeFlash(cut_at=first_cut, torn=0.5)
    journal = Journal()
    try:
        play(flash, ops, journal)
    except PowerCut:
        pass
    flash = flash.reboot(cut_at=second_cut)
    try:
        play(flash, ops, journal)
    except PowerCut:
        pass
    from fw_flash_support import check_recovered
    assert check_recovered(flash.files, journal) == []


class _ForgetfulOutbox(Outbox):
    """A broken outbox that reports success before the record is flushed."""

    def _write(self, kind, payload):
        off = self.size
        f = self.fs.open(self.path, "ab")
        f.write(encode_record(kind, payload) + b"\x5a")
        self.size += len(payload) + 9
        f.close_later = f  # never flushed nor closed
        return off


def test_the_power_cut_check_catches_an_outbox_that_lies(monkeypatch):
    import fw_flash_support
    monkeypatch.setattr(fw_flash_support, "Outbox", _ForgetfulOutbox)
    _, problems = cut_everywhere(OPS[:6], 0.0)
    assert any("lost" in p for p in problems)


MP_SCRIPT = """
import sys
sys.path.insert(0, "/repo/tests")
from fw_flash_support import cut_everywhere
ops = %r
total = 0
for torn in (0.0, 0.5, 1.0):
    steps, problems = cut_everywhere(ops, torn)
    total += steps
    for p in problems:
        print("PROBLEM", p)
print("STEPS", total)
"""


def test_power_cut_at_every_step_under_micropython(micropython):
    r = micropython(MP_SCRIPT % (OPS,), trees=("protocol", "firmware", "tests")).check()
    assert "PROBLEM" not in r.stdout
    assert int(r.stdout.split("STEPS")[1]) > 180
