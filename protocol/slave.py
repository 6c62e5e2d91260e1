"""The device side of the RS-485 bus (rules: link.py's header, SPEC.md section 4): feed it every
byte heard, take the requests addressed to this device, send back one reply each. Kept apart from
the gateway's side (link.py, which re-exports these names) so a device loads only this.
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


def refusal_reason(error):
    """Reason code for a REFUSE from whatever went wrong while handling a request."""
    return error.reason if isinstance(error, ProtocolError) else errors.R_MALFORMED
