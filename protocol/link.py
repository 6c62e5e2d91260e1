"""Who says what on the RS-485 bus: the gateway polls, each device answers every request once.

Rules (SPEC.md section 4):
- The gateway (master) sends one request to one address and waits for the reply with the same
  seq. It may resend the same request with the same seq; every request is idempotent, so a
  device simply answers again. A reply whose seq or address does not match is stale and ignored.
- A device answers only requests addressed to it; address 0 is a broadcast nobody answers.
  Frames sent by other devices (type bit 7 set) are not requests and are passed over.
- A request the device cannot decode is answered with REFUSE and a reason code.
- A rating is retransmitted until the gateway ACKs its counter; the gateway recognises the
  retransmission by the rating id (device, counter) and answers ACK_DUPLICATE.
The master's per-device state machine is the table _MASTER below.
"""

from protocol import codec, errors, schema
from protocol.errors import LocalProtocolError, ProtocolError
from protocol.frame import BROADCAST, FrameDecoder, encode_frame, MAX_ADDRESS


class Request:
    """A request heard by a device. `error` is a ProtocolError when the payload did not decode."""
    __slots__ = ("type", "seq", "record", "error", "broadcast")

    def __init__(self, msg_type, seq, record, error, broadcast):
        self.type = msg_type
        self.seq = seq
        self.record = record
        self.error = error
        self.broadcast = broadcast


class SlaveLink:
    """Device side of the bus: feed it every byte heard, take requests, send back reply bytes."""

    def __init__(self, address):
        if not 1 <= address <= MAX_ADDRESS:
            raise LocalProtocolError("device address must be 1..%d" % MAX_ADDRESS)
        self.address = address
        self.decoder = FrameDecoder()
        self.stats = {"requests": 0, "bad_requests": 0, "not_for_us": 0}

    def receive_data(self, data):
        self.decoder.receive_data(data)

    def next_request(self):
        """The next request for this device, or None when more bytes are needed."""
        while True:
            frame = self.decoder.next_frame()
            if frame is None:
                return None
            if schema.from_device(frame.type) or frame.addr not in (self.address, BROADCAST):
                self.stats["not_for_us"] += 1
                continue
            broadcast = frame.addr == BROADCAST
            try:
                record = codec.decode(frame.type, frame.payload)
            except ProtocolError as e:
                self.stats["bad_requests"] += 1
                return Request(frame.type, frame.seq, None, e, broadcast)
            self.stats["requests"] += 1
            return Request(frame.type, frame.seq, record, None, broadcast)

    def reply(self, request, msg_type, record):
        """Bytes of the one reply to `request`."""
        if request.broadcast:
            raise LocalProtocolError("nobody answers a broadcast")
        if not schema.from_device(msg_type):
            raise LocalProtocolError("a device replies with a device message type")
        return encode_frame(self.address, msg_type, request.seq, codec.encode(msg_type, record))

    def refuse(self, request, reason, detail=""):
        record = {"reason": reason, "request": request.type, "detail": detail[:60]}
        return self.reply(request, schema.REFUSE, record)


# --- master side --------------------------------------------------------------------------------
READY = "ready"       # nothing outstanding: a new request may be sent
WAITING = "waiting"   # a request is out: wait for its reply, resend it, or give up

# (state, event) -> next state. Anything else is a LocalProtocolError: our own bug.
_MASTER = {
    (READY, "send"): WAITING,
    (WAITING, "resend"): WAITING,
    (WAITING, "answer"): READY,
    (WAITING, "give_up"): READY,
}


class Reply:
    """A device's answer to our outstanding request. `error` set when its payload was invalid."""
    __slots__ = ("type", "record", "error", "attempts")

    def __init__(self, msg_type, record, error, attempts):
        self.type = msg_type
        self.record = record
        self.error = error
        self.attempts = attempts


class MasterChannel:
    """The gateway's conversation with one device address."""

    def __init__(self, address, seq=0):
        if not 1 <= address <= MAX_ADDRESS:
            raise LocalProtocolError("device address must be 1..%d" % MAX_ADDRESS)
        self.address = address
        self.state = READY
        self.seq = seq & 0xFF
        self.attempts = 0
        self._pending = None
        self.pending_type = None
        self.stats = {"requests": 0, "resends": 0, "replies": 0, "stale": 0, "bad_replies": 0,
                      "gave_up": 0}

    def _step(self, event):
        nxt = _MASTER.get((self.state, event))
        if nxt is None:
            raise LocalProtocolError("%s while %s" % (event, self.state))
        self.state = nxt

    def request(self, msg_type, record):
        """Bytes of a new request (next seq)."""
        if schema.from_device(msg_type):
            raise LocalProtocolError("the gateway sends gateway message types")
        payload = codec.encode(msg_type, record)
        self._step("send")
        self.seq = (self.seq + 1) & 0xFF
        self._pending = encode_frame(self.address, msg_type, self.seq, payload)
        self.pending_type = msg_type
        self.attempts = 1
        self.stats["requests"] += 1
        return self._pending

    def resend(self):
        """The same bytes again, same seq (the reply was lost or late)."""
        self._step("resend")
        self.attempts += 1
        self.stats["resends"] += 1
        return self._pending

    def give_up(self):
        self._step("give_up")
        self._pending = None
        self.pending_type = None
        self.stats["gave_up"] += 1

    def accept(self, frame):
        """A Reply if `frame` answers our outstanding request, None if it is stale or not ours."""
        if (self.state != WAITING or frame.addr != self.address or frame.seq != self.seq
                or not schema.from_device(frame.type)):
            self.stats["stale"] += 1
            return None
        self._step("answer")
        self._pending = None
        self.pending_type = None
        self.stats["replies"] += 1
        try:
            record = codec.decode(frame.type, frame.payload)
            error = None
        except ProtocolError as e:
            record = None
            error = e
            self.stats["bad_replies"] += 1
        return Reply(frame.type, record, error, self.attempts)


class MasterBus:
    """All channels of one bus behind one decoder: feed bytes, collect (channel, Reply) pairs."""

    def __init__(self):
        self.decoder = FrameDecoder()
        self.channels = {}
        self.stats = {"foreign": 0}

    def channel(self, address, seq=0):
        ch = self.channels.get(address)
        if ch is None:
            ch = self.channels[address] = MasterChannel(address, seq)
        return ch

    def receive_data(self, data):
        self.decoder.receive_data(data)

    def next_reply(self):
        """(channel, Reply) for the next reply that answers an outstanding request, else None."""
        while True:
            frame = self.decoder.next_frame()
            if frame is None:
                return None
            ch = self.channels.get(frame.addr)
            if ch is None or not schema.from_device(frame.type):
                self.stats["foreign"] += 1  # our own echo, or an unknown address
                continue
            reply = ch.accept(frame)
            if reply is not None:
                return ch, reply


def refusal_reason(error):
    """Reason code for a REFUSE from whatever went wrong while handling a request."""
    return error.reason if isinstance(error, ProtocolError) else errors.R_MALFORMED
