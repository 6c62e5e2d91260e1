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
The master's per-device state machine is the table _MASTER below; the device side
(SlaveLink, Request, refusal_reason) is in slave.py and re-exported here.
"""

from protocol import codec, schema
from protocol.errors import LocalProtocolError, ProtocolError
from protocol.frame import FrameDecoder, encode_frame, MAX_ADDRESS
# The device side lives in slave.py, so a device loads it without the master's code.
from protocol.slave import Request, SlaveLink, refusal_reason  # noqa: F401 (re-exported)

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
