"""Edges of the flash outbox that mutation testing (tools/mutation.py, docs/mutation.md) found
untested: the exact log layout, every counter, a failed write, the compaction threshold."""

import sys
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fw_flash_support import FakeFlash, payload_for  # noqa: E402

from firmware import outbox as ob_mod  # noqa: E402
from firmware.flashfs import Fs  # noqa: E402
from firmware.outbox import Outbox, OutboxFull, encode_record, read_records  # noqa: E402

LOG = "/ob/outbox.log"


def _record(kind, payload):
    """The layout in outbox.py's docstring, built independently of encode_record."""
    body = bytes((kind,)) + len(payload).to_bytes(2, "little")
    crc = zlib.crc32(body + payload).to_bytes(4, "little")
    return b"\xa7" + body + crc + payload + b"\x5a"


def test_the_log_is_exactly_the_documented_records():
    flash = FakeFlash()
    ob = Outbox(flash, "/ob", compact_after=99).open()
    big = bytes(range(256)) * 2          # length above 255: both length bytes matter
    ob.append(1, b"one")
    ob.append(300, big)                  # a two-byte varint counter
    ob.append(20000, b"")                # a three-byte varint counter, empty rating
    assert ob.release(1)
    want = (_record(0x52, b"\x01one") + _record(0x52, b"\xac\x02" + big)
            + _record(0x52, b"\xa0\x9c\x01") + _record(0x41, b"\x01"))
    assert bytes(flash.files[LOG]) == want
    assert encode_record(0x52, b"\x01one") + b"\x5a" == _record(0x52, b"\x01one")
    assert ob.size == len(want) and ob.offsets == [len(_record(0x52, b"\x01one")),
                                                   len(want) - 10 - 12]
    again = Outbox(FakeFlash(flash.files), "/ob").open()
    assert again.counters == [300, 20000] and again.high == 20000 and again.acks == 1
    assert again.get(300) == big and again.get(20000) == b"" and again.get(1) is None
    assert again.oldest() == (300, big) and again.newest(1) == [b""]
    assert again.newest(2) == [big, b""] and again.newest(5) == [big, b""]


def test_read_records_reports_offsets_and_stops_at_the_first_bad_record():
    recs = [_record(0x52, b"\x01abc"), _record(0x41, b"\x01"), _record(0x52, b"\x02" + b"z" * 300)]
    log = b"".join(recs)

    class F:
        def __init__(self, data):
            self.data, self.pos = data, 0

        def read(self, n):
            out = self.data[self.pos:self.pos + n]
            self.pos += len(out)
            return out

    assert [(k, off, p) for k, off, p in read_records(F(log))] == [
        (0x52, 0, b"\x01abc"), (0x41, len(recs[0]), b"\x01"),
        (0x52, len(recs[0]) + len(recs[1]), b"\x02" + b"z" * 300)]
    for cut in range(1, len(recs[2])):
        assert len(list(read_records(F(log[:-cut])))) == 2
    bad_magic = bytearray(log)
    bad_magic[len(recs[0])] = 0xA6
    assert len(list(read_records(F(bytes(bad_magic))))) == 1
    # a length above the 2048-byte limit stops the reader, whatever follows
    over = bytearray(_record(0x52, b"\x05" + bytes(2048)))
    assert len(list(read_records(F(bytes(over))))) == 0
    limit = _record(0x52, bytes(2048))
    assert len(list(read_records(F(limit)))) == 1


def test_every_refusal_and_repair_is_counted():
    flash = FakeFlash()
    ob = Outbox(flash, "/ob", capacity=2, compact_after=2).open()
    ob.append(1, b"a")
    ob.append(2, b"b")
    for n in (1, 2):
        with pytest.raises(OutboxFull):
            ob.append(3, b"c")
        assert ob.stats["full"] == n
    for n in (1, 2):
        assert not ob.release(2)                 # not the head
        assert ob.stats["not_head"] == n
    assert ob.counters == [1, 2]
    assert ob.release(1) and ob.stats["compactions"] == 0 and ob.acks == 1
    ob.append(3, b"c")
    assert ob.release(2) and ob.stats["compactions"] == 1 and ob.acks == 0   # the 2nd ACK
    assert ob.release(3) and ob.stats["compactions"] == 1 and ob.acks == 1
    ob.append(4, b"d")
    assert ob.release(4) and ob.stats["compactions"] == 2
    empty = Outbox(FakeFlash(), "/ob").open()
    assert not empty.release(1) and empty.stats["not_head"] == 1


def test_the_first_append_after_a_failed_write_repairs_the_log_first():
    class Failing(FakeFlash):
        fail = False

        def step(self, what):
            FakeFlash.step(self, what)
            if self.fail and what == "flush":
                self.fail = False
                raise OSError(28)   # ENOSPC mid-write: half a record may be on flash

    flash = Failing()
    ob = Outbox(flash, "/ob").open()
    ob.append(1, payload_for(1))
    flash.fail = True
    with pytest.raises(OSError):
        ob.append(2, payload_for(2))
    assert ob.stats["write_errors"] == 1 and ob.counters == [1] and ob.high == 2
    with pytest.raises(ValueError, match="^counter 2 not above 2$"):
        ob.append(2, payload_for(2))            # the counter is burnt
    ob.append(3, payload_for(3))
    assert ob.stats["compactions"] == 1          # the torn tail went before record 3 was added
    again = Outbox(FakeFlash(flash.files), "/ob").open()
    assert again.counters == [1, 3] and again.get(3) == payload_for(3) and again.high == 3
    assert again.stats["dropped_tail"] == 0
    flash.fail = True
    with pytest.raises(OSError):
        ob.append(4, payload_for(4))
    assert ob.stats["write_errors"] == 2


def test_a_failed_ack_write_is_repaired_before_the_next_release():
    class Failing(FakeFlash):
        fail = False

        def step(self, what):
            FakeFlash.step(self, what)
            if self.fail and what == "flush":
                self.fail = False
                raise OSError(5)

    flash = Failing()
    ob = Outbox(flash, "/ob", compact_after=99).open()
    for c in (1, 2):
        ob.append(c, payload_for(c))
    flash.fail = True
    with pytest.raises(OSError):
        ob.release(1)
    assert ob.counters == [1, 2] and ob.stats["write_errors"] == 1
    assert ob.release(1) and ob.stats["compactions"] == 1
    again = Outbox(FakeFlash(flash.files), "/ob").open()
    assert again.counters == [2] and again.stats["dropped_tail"] == 0


def test_boot_removes_an_unfinished_compaction_and_counts_a_torn_tail(tmp_path):
    root = str(tmp_path)
    ob = Outbox(Fs(), root).open()
    ob.append(1, b"x")
    (tmp_path / "outbox.new").write_bytes(b"half a compaction")
    with open(tmp_path / "outbox.log", "ab") as f:
        f.write(_record(0x52, b"\x02y")[:-1])     # no commit byte
    again = Outbox(Fs(), root).open()
    assert not (tmp_path / "outbox.new").exists()
    assert again.counters == [1] and again.stats["dropped_tail"] == 1
    assert again.stats["compactions"] == 1 and again.high == 1
    assert (tmp_path / "outbox.log").read_bytes() == _record(0x48, b"\x01") + _record(0x52, b"\x01x")
    clean = Outbox(Fs(), root).open()
    assert clean.stats["dropped_tail"] == 0 and clean.stats["compactions"] == 0


def test_a_duplicate_rating_record_counts_once_and_acks_are_counted_at_boot():
    flash = FakeFlash()
    flash.files[LOG] = bytearray(_record(0x52, b"\x05r5") + _record(0x52, b"\x05r5")
                                 + _record(0x52, b"\x06r6") + _record(0x41, b"\x09")
                                 + _record(0x48, b"\x0b"))
    ob = Outbox(flash, "/ob").open()
    assert ob.counters == [5, 6] and ob.offsets == [0, 2 * len(_record(0x52, b"\x05r5"))]
    assert ob.high == 11 and ob.acks == 1 and ob.get(6) == b"r6"
    with pytest.raises(ValueError):
        ob.append(11, b"")
    assert ob_mod._get_varint(b"\xff\x7f", 0) == (0x3FFF, 2)
    assert ob_mod._varint(0x3FFF) == b"\xff\x7f" and ob_mod._varint(0x80) == b"\x80\x01"


def test_the_default_capacity_is_500_ratings():
    ob = Outbox(FakeFlash(), "/ob").open()
    for c in range(1, 501):
        ob.append(c, b"")
    with pytest.raises(OutboxFull):
        ob.append(501, b"")


def test_queries_on_a_real_directory(tmp_path):
    ob = Outbox(Fs(), str(tmp_path)).open()
    for c in (1, 2, 3):
        ob.append(c, payload_for(c))
    assert ob.newest(2) == [payload_for(2), payload_for(3)]
    assert ob.oldest() == (1, payload_for(1)) and ob.get(2) == payload_for(2)


def test_compaction_carries_records_longer_than_255_bytes(tmp_path):
    ob = Outbox(Fs(), str(tmp_path), compact_after=1).open()
    big = bytes(range(256)) * 3
    ob.append(1, b"a")
    ob.append(2, big)
    ob.append(3, big[:300])
    assert ob.release(1) and ob.stats["compactions"] == 1
    assert ob.get(2) == big and ob.newest(1) == [big[:300]]
    log = _record(0x48, b"\x03") + _record(0x52, b"\x02" + big) + _record(0x52, b"\x03" + big[:300])
    assert (tmp_path / "outbox.log").read_bytes() == log and ob.size == len(log)
    again = Outbox(Fs(), str(tmp_path)).open()
    assert again.counters == [2, 3] and again.get(2) == big and again.get(3) == big[:300]


def test_acks_and_torn_tails_are_counted_across_boots_of_one_outbox():
    flash = FakeFlash()
    ob = Outbox(flash, "/ob", compact_after=3).open()
    for c in (1, 2, 3):
        ob.append(c, b"r")
    assert ob.release(1) and ob.release(2)
    ob.open()                                     # a warm restart of the same object
    assert ob.acks == 2 and ob.stats["compactions"] == 0
    assert ob.release(3) and ob.stats["compactions"] == 1   # the third ACK, two of them from flash
    for n in (1, 2):
        flash.files[LOG].extend(b"\xa7junk")
        ob.open()
        assert ob.stats["dropped_tail"] == n
