"""RS-485 frames: build them, and find them again in a noisy byte stream.

    A5 5A | addr | type | seq | len (u16 LE) | hcrc | payload (len bytes) | crc (u16 LE)

hcrc is CRC-8 over addr..len; crc is CRC-16/MODBUS over addr..payload (everything between the
sync and the crc). 10 bytes of overhead. After any error the decoder drops one byte and searches for
the next sync, so a frame hidden inside garbage or inside a broken frame is still found.
The decoder's memory is bounded: it holds at most one partial frame plus one chunk of input, and a
small queue of finished frames (an overflow is counted, never silent).
"""

from protocol.crc import crc8, crc16
from protocol.errors import LocalProtocolError

SYNC0 = 0xA5
SYNC1 = 0x5A
HEADER_LEN = 8          # sync(2) addr type seq len(2) hcrc
OVERHEAD = HEADER_LEN + 2
MAX_PAYLOAD = 1024
MAX_FRAME = OVERHEAD + MAX_PAYLOAD
BROADCAST = 0
MAX_ADDRESS = 247


class Frame:
    __slots__ = ("addr", "type", "seq", "payload")

    def __init__(self, addr, msg_type, seq, payload):
        self.addr = addr
        self.type = msg_type
        self.seq = seq
        self.payload = payload

    def __eq__(self, other):
        return (self.addr, self.type, self.seq, self.payload) == (
            other.addr, other.type, other.seq, other.payload)

    def __repr__(self):
        return "Frame(addr=%d, type=0x%02x, seq=%d, %d bytes)" % (
            self.addr, self.type, self.seq, len(self.payload))


def encode_frame(addr, msg_type, seq, payload):
    if not 0 <= addr <= MAX_ADDRESS:
        raise LocalProtocolError("address %r outside 0..%d" % (addr, MAX_ADDRESS))
    if not 0 <= msg_type <= 0xFF or not 0 <= seq <= 0xFF:
        raise LocalProtocolError("type and seq are single bytes")
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise LocalProtocolError("payload of %d bytes exceeds %d" % (n, MAX_PAYLOAD))
    out = bytearray(OVERHEAD + n)
    out[0] = SYNC0
    out[1] = SYNC1
    out[2] = addr
    out[3] = msg_type
    out[4] = seq
    out[5] = n & 0xFF
    out[6] = n >> 8
    out[7] = crc8(memoryview(out)[2:7])
    out[8:8 + n] = payload
    crc = crc16(memoryview(out)[2:8 + n])
    out[8 + n] = crc & 0xFF
    out[9 + n] = crc >> 8
    return bytes(out)


# Counter names: every rejected byte or frame lands in exactly one of them.
STAT_NAMES = ("frames", "noise_bytes", "bad_header", "oversize", "bad_crc", "overflow", "dropped_partial")


class FrameDecoder:
    """Incremental decoder: receive_data(bytes) any split, then next_frame() until it returns None."""

    def __init__(self, max_payload=MAX_PAYLOAD, max_pending=8):
        self._max_payload = max_payload
        self._max_pending = max_pending
        self._buf = bytearray()
        self._frames = []
        self.stats = {}
        for name in STAT_NAMES:
            self.stats[name] = 0

    def receive_data(self, data):
        step = OVERHEAD + self._max_payload
        for i in range(0, len(data), step):
            self._buf.extend(data[i:i + step])
            self._parse()

    def next_frame(self):
        if self._frames:
            return self._frames.pop(0)
        return None

    def reset(self):
        """The line went silent: the partial frame at the head can never complete. Abandon it
        (one count) and search what follows its first byte again, so that a real frame buffered
        behind a false header is still delivered; whatever stays incomplete is dropped too."""
        if self._buf:
            self.stats["dropped_partial"] += 1
        while self._buf:
            self._parse(1)

    def buffered(self):
        """Bytes held for a partial frame: always below MAX_FRAME between calls."""
        return len(self._buf)

    def expected_total(self):
        """Length of the frame being received once its header has checked out, else 0.

        The master uses it to extend its reply timeout to the end of a long frame."""
        buf = self._buf
        if len(buf) < HEADER_LEN or buf[0] != SYNC0 or buf[1] != SYNC1:
            return 0
        if crc8(memoryview(buf)[2:7]) != buf[7]:
            return 0
        return OVERHEAD + (buf[5] | (buf[6] << 8))

    def _parse(self, skip=0):
        # Works on an index into the buffer and cuts the consumed bytes once at the end, so that
        # a burst of false syncs costs no copying per byte. `skip` bytes at the head are dropped.
        buf = self._buf
        stats = self.stats
        mv = memoryview(buf)
        i = skip
        n_buf = len(buf)
        while True:
            start = _find_sync(buf, i)
            if start < 0:
                keep = 1 if n_buf > i and buf[n_buf - 1] == SYNC0 else 0
                stats["noise_bytes"] += n_buf - i - keep
                i = n_buf - keep
                break
            stats["noise_bytes"] += start - i
            i = start
            if n_buf - i < HEADER_LEN:
                break
            if crc8(mv[i + 2:i + 7]) != buf[i + 7]:
                stats["bad_header"] += 1
                i += 1
                continue
            n = buf[i + 5] | (buf[i + 6] << 8)
            if n > self._max_payload:
                stats["oversize"] += 1
                i += 1
                continue
            total = OVERHEAD + n
            if n_buf - i < total:
                break
            crc = crc16(mv[i + 2:i + 8 + n])
            if crc != buf[i + 8 + n] | (buf[i + 9 + n] << 8):
                stats["bad_crc"] += 1
                i += 1
                continue
            frame = Frame(buf[i + 2], buf[i + 3], buf[i + 4], bytes(mv[i + 8:i + 8 + n]))
            i += total
            if len(self._frames) >= self._max_pending:
                stats["overflow"] += 1
                self._frames.pop(0)
            self._frames.append(frame)
            stats["frames"] += 1
        mv = None  # release the view before the buffer is replaced
        if i:
            self._buf = buf[i:]


_SYNC = bytes((SYNC0, SYNC1))


def _find_sync(buf, start):
    """Index of the next A5 5A at or after `start`, or -1."""
    try:
        return buf.find(_SYNC, start)
    except (AttributeError, TypeError):  # a MicroPython build without bytearray.find(sub, start)
        pass
    i = start
    n = len(buf) - 1
    while i < n:
        if buf[i] == SYNC0 and buf[i + 1] == SYNC1:
            return i
        i += 1
    return -1
