"""The power-safe flash outbox: every rating lives here from before "thank you" until its ACK.

File layout: one append-only log, `outbox.log`, of records

    A7 | kind | len (u16 LE) | crc32 (u32 LE over kind, len, payload) | payload | 5A

kind R = a rating (payload: varint counter, then the RATING's binary encoding), A = forgotten
(payload: varint counter: the outbox head's ACK without custody, or the oldest custody copy
dropped for room), H = the counter high-water mark (written first by a compaction).
Custody (SPEC 3.11, when on): C = varint counter: the outbox head moves into custody, or a copy
offered again is acknowledged again (unmarked); G = a SETTLE's effect as explicit values:
varints generation, seq, settled, mark_lo, mark_hi (custody copies in (mark_lo, mark_hi] are
marked for re-offer; those below settled and unmarked are dropped); K = a custody copy carried
by a compaction (payload as R). Copies enter custody head first and re-offered ones are
acknowledged lowest first, so the marks are one range: two numbers, never a per-copy flag.
An append writes and flushes header + payload, then writes and flushes the commit byte 5A, and
only then returns: a record counts only when it is whole, its CRC matches and its commit byte is
there. Reading stops at the first record that does not count, so a power cut in the middle of an
append loses only that record, which nobody was told about yet.
Compaction writes the live records to `outbox.new` and renames it over the log (atomic on
LittleFS and POSIX); a leftover `outbox.new` at boot is an unfinished compaction and is removed.
The log also keeps the highest counter ever written, so counters never go backwards.
RAM: two lists of small ints (counter, file offset) per live rating, ~8 bytes each. Custody
copies are held as runs of consecutive counters (firmware/custody_runs.py, 8 bytes a run); their
bytes are found by a log scan, since re-offer is rare.
Outbox and custody share `capacity`: a new rating drops the oldest custody copy when they fill
it; only an outbox alone at capacity refuses (OutboxFull).
"""

from firmware.flashfs import join
from firmware.custody_runs import add as _add, bisect as _bisect, runs_of as _runs_of
from protocol.codec import get_varint, put_varint   # the one varint (loaded on every device anyway)

from array import array
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
_KIND_CUSTODY = const(0x43)  # "C"
_KIND_GEN = const(0x47)      # "G"
_KIND_COPY = const(0x4B)     # "K"
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


def read_records(f, pos=0):
    """Yield (kind, offset, payload) for each record of an open log that counts, stopping at the
    first that does not; then `f` is positioned just after the last good record's bytes read.
    `pos`: the offset `f` is positioned at. One record in RAM at a time."""
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
    def __init__(self, fs, root, capacity=500, compact_after=_COMPACT_AFTER_ACKS, custody=False,
                 count=None):
        self.fs = fs
        self.compact_after = compact_after
        self.path = join(root, LOG)
        self.new_path = join(root, NEW)
        self.capacity = capacity
        self.keep = custody  # a released rating moves into custody (SPEC 3.11), else forgotten
        self.count = count   # count(name): the device's error counters (custody_dropped)
        self.counters = []   # live ratings, oldest first
        self.offsets = []    # file offset of each one's record
        self.runs = array("I")  # custody copies: [first, last] of each run of counters, ascending
        self.kept = 0           # how many custody copies
        self.generation = 0  # the last SETTLE taken: its generation and seq
        self.seq = 0
        self.mark_lo = 0     # custody copies in (mark_lo, mark_hi] are marked for re-offer
        self.mark_hi = 0
        self.high = 0        # highest counter ever written
        self.size = 0        # bytes of valid log
        self.acks = 0        # A, C and G records since the last compaction
        self.stats = {"dropped_tail": 0, "compactions": 0, "full": 0, "write_errors": 0, "not_head": 0,
                      "custody_dropped": 0}
        self._dirty = False  # the log may end in a half-written record: compact before appending
        self._hint = None    # (counter, offset) of the last custody copy a scan found

    # --- boot ---------------------------------------------------------------------------------
    def open(self):
        """Rebuild the state from flash. Safe to call after any power cut."""
        if self.fs.exists(self.new_path):
            self.fs.remove(self.new_path)  # an unfinished compaction: the log is still the truth
        self.counters = []
        self.offsets = []
        self.runs = array("I")
        self.kept = 0
        self.generation = self.seq = self.mark_lo = self.mark_hi = 0
        self.high = 0
        self.acks = 0
        self._hint = None
        end = 0
        tail = False
        f = self.fs.open(self.path, "rb") if self.fs.exists(self.path) else None
        if f is not None:
            try:
                for kind, off, payload in read_records(f):
                    end = off + _HEADER + len(payload) + 1
                    if kind == _KIND_GEN:
                        self.acks += 1
                        self._settled(payload)
                        continue
                    counter = _get_varint(payload, 0)[0]
                    if kind == KIND_RATING or kind == _KIND_COPY:
                        if counter not in self.counters and not self.held(counter):
                            if kind == KIND_RATING:
                                self.counters.append(counter)
                                self.offsets.append(off)
                            else:
                                self._hold(counter)
                    elif kind == _KIND_ACK:
                        self.acks += 1
                        if not self._forget(counter):
                            self._drop(counter)
                    elif kind == _KIND_CUSTODY:
                        self.acks += 1
                        self._moved(counter)
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

    # --- custody queries ----------------------------------------------------------------------
    def held(self, counter):
        """True when a custody copy of `counter` is kept."""
        r = self.runs
        i = _bisect(r, counter)
        return i < len(r) and (r[i] == counter or i & 1 == 1)   # a boundary, or inside a run

    def marked(self, counter):
        return self.mark_lo < counter <= self.mark_hi and self.held(counter)

    def copies(self):
        """The custody copies' counters, ascending."""
        r = self.runs
        for i in range(0, len(r), 2):
            c = r[i]
            while c <= r[i + 1]:     # no range(): counters may lie above a small int
                yield c
                c += 1

    def reoffer_head(self):
        """The lowest custody copy marked for re-offer, or None."""
        r = self.runs
        c = self.mark_lo + 1
        i = _bisect(r, c)
        if i >= len(r):
            return None
        if not i & 1:
            c = r[i]                 # before a run (or its first): that run's first
        return c if c <= self.mark_hi else None

    def copy(self, counter):
        """The rating bytes of custody copy `counter` (None if not found): a log scan, from where
        the last one was found when this one lies beyond it (the log is in counter order)."""
        f = self.fs.open(self.path, "rb")
        try:
            h = self._hint
            start = h[1] if h is not None and h[0] < counter else 0
            while True:
                f.seek(start)
                for kind, off, payload in read_records(f, start):
                    if kind == KIND_RATING or kind == _KIND_COPY:
                        c, p = _get_varint(payload, 0)
                        if c == counter:
                            self._hint = (counter, off)
                            return payload[p:]
                if not start:
                    return None
                start = 0
        finally:
            f.close()

    # --- changes ------------------------------------------------------------------------------
    def append(self, counter, rating_bytes):
        """Store a rating durably. Returns only once it would survive a power cut. The oldest
        custody copies give way first; only an outbox alone at capacity refuses."""
        if self.full():
            self.stats["full"] += 1
            raise OutboxFull()
        if counter <= self.high:
            raise ValueError("counter %d not above %d" % (counter, self.high))
        if self._dirty:
            self.compact()
        while self.kept and len(self.counters) + self.kept >= self.capacity:
            oldest = self.runs[0]
            self._write(_KIND_ACK, _varint(oldest))
            self._drop(oldest)
            self.acks += 1
            self.stats["custody_dropped"] += 1
            if self.count is not None:
                self.count("custody_dropped")
        self.high = counter  # burnt even if the write fails: a counter is never offered twice
        off = self._write(KIND_RATING, _varint(counter) + rating_bytes)
        self.counters.append(counter)
        self.offsets.append(off)

    def release(self, counter):
        """The gateway holds this rating now: move it into custody (custody on) or forget it.
        True when it was the head. Only the head is ever released: it is the one rating sent and
        answered, so any other counter (an ACK for a rating we never sent) is refused and
        counted."""
        if not self.counters or self.counters[0] != counter:
            self.stats["not_head"] += 1
            return False
        if self._dirty:
            self.compact()
        self._write(_KIND_CUSTODY if self.keep else _KIND_ACK, _varint(counter))
        self._forget(counter)
        if self.keep:
            self._hold(counter)
        self._logged()
        return True

    def unmark(self, counter):
        """A re-offered copy was acknowledged again: it stays in custody, unmarked. Only the
        lowest marked copy (the one offered) is; True when it was."""
        if self.reoffer_head() != counter:
            self.stats["not_head"] += 1
            return False
        if self._dirty:
            self.compact()
        self._write(_KIND_CUSTODY, _varint(counter))
        self._moved(counter)
        self._logged()
        return True

    def settle(self, generation, seq, settled, mark_all):
        """A verified SETTLE's effect (SPEC 3.11 steps 3-5), one record: mark every copy for
        re-offer when `mark_all`, drop the unmarked copies below `settled`, keep generation and
        seq. Returns how many copies were dropped."""
        lo, hi = self.mark_lo, self.mark_hi
        if mark_all:
            lo = 0
            hi = self.runs[-1] if self.kept else 0
        payload = _varint(generation)
        for n in (seq, settled, lo, hi):
            put_varint(payload, n)
        if self._dirty:
            self.compact()
        self._write(_KIND_GEN, payload)
        before = self.kept
        self._settled(payload)
        self._logged()
        return before - self.kept

    def _logged(self):
        """One more record a compaction would leave out; compact once they outnumber the live
        ones (so a full custody area is not copied after every few ratings)."""
        self.acks += 1
        if self.acks >= self.compact_after and self.acks >= self.kept:
            self.compact()

    def _forget(self, counter):
        for i in range(len(self.counters)):
            if self.counters[i] == counter:
                del self.counters[i]
                del self.offsets[i]
                return True
        return False

    def _hold(self, counter):
        if not self.held(counter):
            r = self.runs
            if not len(r) or r[-1] < counter:
                _add(r, counter)
            else:                    # never below the newest in a sound log: rebuild all the same
                self.runs = _runs_of(c for c in sorted(list(self.copies()) + [counter]))
            self.kept += 1

    def _drop(self, counter):
        if self.held(counter):
            r = self.runs
            if r[0] != counter:      # never but the oldest in a sound log
                self.runs = _runs_of(c for c in self.copies() if c != counter)
            elif r[0] < r[1]:
                r[0] = counter + 1
            else:
                self.runs = r[2:]
            self.kept -= 1

    def _moved(self, counter):
        """A C record: the outbox head moves into custody, or a marked copy is unmarked."""
        if self._forget(counter):
            self._hold(counter)
        elif self.marked(counter):
            self.mark_lo = counter

    def _settled(self, payload):
        """A G record (the same code at the SETTLE and at boot, so both agree)."""
        gen, p = _get_varint(payload, 0)
        seq, p = _get_varint(payload, p)
        settled, p = _get_varint(payload, p)
        lo, p = _get_varint(payload, p)
        hi = _get_varint(payload, p)[0]
        self.generation, self.seq, self.mark_lo, self.mark_hi = gen, seq, lo, hi
        if self.kept and self.runs[0] < settled:
            self.runs = _runs_of(c for c in self.copies() if c >= settled or lo < c <= hi)
            self.kept = 0
            for c in self.copies():
                self.kept += 1

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
        """Rewrite the log with only the high-water mark, the SETTLE state, the custody copies and
        the live ratings, one record at a time (never the whole outbox in RAM), then rename it
        over the old log."""
        src = self.fs.open(self.path, "rb") if self.counters or self.kept else None
        f = self.fs.open(self.new_path, "wb")
        offsets = []
        runs = array("I")
        kept = 0
        try:
            rec = encode_record(_KIND_HIGH, _varint(self.high))
            f.write(rec + b"\x5a")
            size = len(rec) + 1
            if self.generation or self.seq or self.mark_hi:
                payload = _varint(self.generation)
                for n in (self.seq, 0, self.mark_lo, self.mark_hi):
                    put_varint(payload, n)
                rec = encode_record(_KIND_GEN, payload)
                f.write(rec + b"\x5a")
                size += len(rec) + 1
            if src is not None and self.kept:
                for kind, off, payload in read_records(src):
                    if kind == KIND_RATING or kind == _KIND_COPY:
                        c = _get_varint(payload, 0)[0]
                        if self.held(c) and (not len(runs) or runs[-1] < c):
                            rec = encode_record(_KIND_COPY, payload)
                            f.write(rec + b"\x5a")
                            size += len(rec) + 1
                            _add(runs, c)
                            kept += 1
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
        self.runs = runs
        self.kept = kept
        self.size = size
        self.acks = 0
        self._dirty = False
        self._hint = None
        self.stats["compactions"] += 1
