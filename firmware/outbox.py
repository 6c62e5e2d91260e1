"""The power-safe flash outbox: every rating lives here from before "thank you" until its ACK.

File layout: one append-only log, `outbox.log`, of records

    A7 | kind | len (u16 LE) | crc32 (u32 LE over kind, len, payload) | payload | 5A

kind R = a rating (payload: varint counter, then the RATING's binary encoding), A = its ACK
(payload: varint counter), H = the counter high-water mark (written first by a compaction).
An append writes and flushes header + payload, then writes and flushes the commit byte 5A, and
only then returns: a record counts only when it is whole, its CRC matches and its commit byte is
there. Reading stops at the first record that does not count, so a power cut in the middle of an
append loses only that record, which nobody was told about yet.
Compaction writes the live records to `outbox.new` and renames it over the log (atomic on
LittleFS and POSIX); a leftover `outbox.new` at boot is an unfinished compaction and is removed.
The log also keeps the highest counter ever written, so counters never go backwards.
RAM: two lists of small ints (counter, file offset) per live rating, ~8 bytes each.
"""

from firmware.flashfs import join
from protocol.codec import get_varint, put_varint   # the one varint (loaded on every device anyway)

from binascii import crc32   # in every supported runtime (ESP32 and wasm MicroPython, CPython)

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_MAGIC = const(0xA7)
_COMMIT = const(0x5A)
KIND_RATING = const(0x52)  # "R"
_KIND_ACK = const(0x41)     # "A"
_KIND_HIGH = const(0x48)    # "H"
_HEADER = const(8)
_MAX_PAYLOAD = const(2048)
LOG = "outbox.log"
NEW = "outbox.new"
_COMPACT_AFTER_ACKS = const(32)


class OutboxFull(Exception):
    """No room for another rating: the device must refuse the press and say so."""


def _varint(n):
    out = bytearray()
    put_varint(out, n)
    return out


def _get_varint(buf, pos):
    return get_varint(buf, pos, len(buf))


def encode_record(kind, payload):
    n = len(payload)
    body = bytes((kind, n & 0xFF, n >> 8)) + bytes(payload)
    c = crc32(body) & 0xFFFFFFFF
    return (bytes((_MAGIC,)) + body[:3] + bytes((c & 0xFF, (c >> 8) & 0xFF, (c >> 16) & 0xFF, c >> 24))
            + body[3:])


def read_records(f):
    """Yield (kind, offset, payload) for each record of an open log that counts, stopping at the
    first that does not; then `f` is positioned just after the last good record's bytes read.
    One record in RAM at a time."""
    pos = 0
    while True:
        head = f.read(_HEADER)
        if len(head) < _HEADER or head[0] != _MAGIC:
            return
        n = head[2] | (head[3] << 8)
        if n > _MAX_PAYLOAD:
            return
        rest = f.read(n + 1)
        if len(rest) < n + 1 or rest[n] != _COMMIT:
            return
        stored = head[4] | (head[5] << 8) | (head[6] << 16) | (head[7] << 24)
        payload = rest[:n]
        if crc32(payload, crc32(head[1:4])) & 0xFFFFFFFF != stored:
            return
        yield head[1], pos, payload
        pos += _HEADER + n + 1


def _payload_at(f, off):
    """The rating bytes of the record at `off` (a record already checked by open())."""
    f.seek(off)
    head = f.read(_HEADER)
    data = f.read(head[2] | (head[3] << 8))
    return data[_get_varint(data, 0)[1]:]


class Outbox:
    def __init__(self, fs, root, capacity=500, compact_after=_COMPACT_AFTER_ACKS):
        self.fs = fs
        self.compact_after = compact_after
        self.path = join(root, LOG)
        self.new_path = join(root, NEW)
        self.capacity = capacity
        self.counters = []   # live ratings, oldest first
        self.offsets = []    # file offset of each one's record
        self.high = 0        # highest counter ever written
        self.size = 0        # bytes of valid log
        self.acks = 0        # ACK records since the last compaction
        self.stats = {"dropped_tail": 0, "compactions": 0, "full": 0, "write_errors": 0, "not_head": 0}
        self._dirty = False  # the log may end in a half-written record: compact before appending

    # --- boot ---------------------------------------------------------------------------------
    def open(self):
        """Rebuild the state from flash. Safe to call after any power cut."""
        if self.fs.exists(self.new_path):
            self.fs.remove(self.new_path)  # an unfinished compaction: the log is still the truth
        self.counters = []
        self.offsets = []
        self.high = 0
        self.acks = 0
        end = 0
        tail = False
        f = self.fs.open(self.path, "rb") if self.fs.exists(self.path) else None
        if f is not None:
            try:
                for kind, off, payload in read_records(f):
                    end = off + _HEADER + len(payload) + 1
                    counter = _get_varint(payload, 0)[0]
                    if kind == KIND_RATING:
                        if counter not in self.counters:
                            self.counters.append(counter)
                            self.offsets.append(off)
                    elif kind == _KIND_ACK:
                        self.acks += 1
                        self._forget(counter)
                    if counter > self.high:
                        self.high = counter
                f.seek(end)
                tail = len(f.read(1)) > 0
            finally:
                f.close()
        self.size = end
        if tail:
            self.stats["dropped_tail"] += 1
            self.compact()
        return self

    # --- queries ------------------------------------------------------------------------------
    @property
    def depth(self):
        return len(self.counters)

    def full(self):
        return len(self.counters) >= self.capacity

    def oldest(self):
        """(counter, rating bytes) of the oldest unacknowledged rating, or None."""
        if not self.counters:
            return None
        return self.counters[0], self._read_payload(0)

    def get(self, counter):
        for i in range(len(self.counters)):
            if self.counters[i] == counter:
                return self._read_payload(i)
        return None

    def newest(self, n):
        """Rating bytes of the newest `n` unacknowledged ratings, oldest first (one file open)."""
        out = []
        if self.counters:
            f = self.fs.open(self.path, "rb")
            try:
                for off in self.offsets[-n:]:
                    out.append(_payload_at(f, off))
            finally:
                f.close()
        return out

    def _read_payload(self, i):
        f = self.fs.open(self.path, "rb")
        try:
            return _payload_at(f, self.offsets[i])
        finally:
            f.close()

    # --- changes ------------------------------------------------------------------------------
    def append(self, counter, rating_bytes):
        """Store a rating durably. Returns only once it would survive a power cut."""
        if self.full():
            self.stats["full"] += 1
            raise OutboxFull()
        if counter <= self.high:
            raise ValueError("counter %d not above %d" % (counter, self.high))
        if self._dirty:
            self.compact()
        self.high = counter  # burnt even if the write fails: a counter is never offered twice
        off = self._write(KIND_RATING, _varint(counter) + rating_bytes)
        self.counters.append(counter)
        self.offsets.append(off)

    def release(self, counter):
        """The gateway holds this rating now: forget it. True when it was the head. Only the head
        is ever released: it is the one rating sent and answered, so any other counter (an ACK
        for a rating we never sent) is refused and counted."""
        if not self.counters or self.counters[0] != counter:
            self.stats["not_head"] += 1
            return False
        if self._dirty:
            self.compact()
        self._write(_KIND_ACK, _varint(counter))
        self._forget(counter)
        self.acks += 1
        if self.acks >= self.compact_after:
            self.compact()
        return True

    def _forget(self, counter):
        for i in range(len(self.counters)):
            if self.counters[i] == counter:
                del self.counters[i]
                del self.offsets[i]
                return

    def _write(self, kind, payload):
        """Append one record; returns its offset."""
        rec = encode_record(kind, payload)
        off = self.size
        self._dirty = True  # until the commit byte is flushed, the tail is uncertain
        try:
            f = self.fs.open(self.path, "ab")
            try:
                f.write(rec)
                f.flush()
                f.write(b"\x5a")
                f.flush()
            finally:
                f.close()
        except OSError:
            self.stats["write_errors"] += 1
            raise
        self._dirty = False
        self.size += len(rec) + 1
        return off

    def compact(self):
        """Rewrite the log with only the high-water mark and the live ratings, one record at a
        time (never the whole outbox in RAM), then rename it over the old log."""
        src = self.fs.open(self.path, "rb") if self.counters else None
        f = self.fs.open(self.new_path, "wb")
        offsets = []
        try:
            rec = encode_record(_KIND_HIGH, _varint(self.high))
            f.write(rec + b"\x5a")
            size = len(rec) + 1
            if src is not None:                  # None: no live rating to carry over
                for i in range(len(self.counters)):
                    src.seek(self.offsets[i])
                    head = src.read(_HEADER)
                    n = head[2] | (head[3] << 8)
                    rec = head + src.read(n) + b"\x5a"
                    f.write(rec)
                    offsets.append(size)
                    size += len(rec)
            f.flush()
        finally:
            f.close()
            if src is not None:
                src.close()
        self.fs.rename(self.new_path, self.path)
        self.offsets = offsets
        self.size = size
        self.acks = 0
        self._dirty = False
        self.stats["compactions"] += 1
