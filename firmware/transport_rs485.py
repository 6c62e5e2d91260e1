"""RS-485 slave: bytes from the UART into protocol.slave.SlaveLink, one reply per request, with
the driver-enable (DE) line held only while our own bytes are on the wire.

Timing (protocol.timing): before driving the line we let guard_us pass since the last byte
heard (the master has released it by then); DE goes on, the frame is written, and DE goes off
only once the last stop bit is out: frame bytes x byte_us(baud) after the write began (the
UART's FIFO returns from write() at once on the ESP32, so this wait is the real airtime).

A transport as firmware/device.py describes it: step() answers what the master asked. A POLL or
an ACK is answered with the device's head(), its stored bytes put into the RATING frame as they
are (they already are the canonical binary RATING), else UPDATE_STATE when the update has news
(SPEC 3.10: ratings first), else IDLE. A SETTLE (SPEC 3.11) is taken by the device and then
answered exactly as a POLL. UPDATE_* requests are answered with UPDATE_STATE.
"""

import time

from protocol import errors, schema, timing
from protocol.frame import encode_frame
from protocol.slave import SlaveLink, refusal_reason

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_PERIOD = const(1 << 30)  # MicroPython's ticks_us() wraps here


class Rs485Transport:
    def __init__(self, device, uart, address, baud, set_de, ticks_us, sleep_us):
        self.device = device
        self.uart = uart
        self.link = SlaveLink(address)
        self.baud = baud
        self.set_de = set_de
        self.ticks_us = ticks_us
        self.sleep_us = sleep_us
        self.last_rx_us = ticks_us()
        self.stats = {"replies": 0, "refused": 0}
        set_de(False)

    def step(self):
        n = self.uart.any()
        if n:
            data = self.uart.read(n)
            if data:
                self.last_rx_us = self.ticks_us()
                self.link.receive_data(data)
        while True:
            req = self.link.next_request()
            if req is None:
                return
            reply = self.handle(req)
            if reply is not None and not req.broadcast:
                self.send(reply)

    def handle(self, req):
        """Reply bytes for one request (None for a broadcast)."""
        link = self.link
        dev = self.device
        if req.error is not None:
            dev.health.count("bad_request")
            if req.broadcast:
                return None
            self.stats["refused"] += 1
            return link.refuse(req, refusal_reason(req.error))
        t = req.type
        rec = req.record
        if t == schema.POLL or t == schema.SETTLE:
            if t == schema.SETTLE:
                dev.on_settle(rec)
            else:
                dev.on_time(rec.get("time", 0))
            if not req.broadcast:
                dev.on_online()                 # the bus works: a release on trial is confirmed
            if rec.get("want_status") or dev.status_due():
                return link.reply(req, schema.STATUS, dev.status()) if not req.broadcast else None
            return self._next(req)
        if t == schema.ACK:
            dev.on_ack(rec)
            return self._next(req)
        if t == schema.CONTEXT:
            dev.on_context(rec)
        elif t == schema.CLEAR:
            dev.on_clear(rec)
        elif t == schema.CONFIG:
            dev.on_config(rec)
        elif schema.UPDATE_OFFER <= t <= schema.UPDATE_CANCEL:
            state = dev.on_update(t, rec, not req.broadcast)
            return None if req.broadcast else link.reply(req, schema.UPDATE_STATE, state)
        else:
            return None if req.broadcast else link.refuse(req, errors.R_UNKNOWN_TYPE)
        return self._idle(req)

    def _next(self, req):
        if req.broadcast:
            return None
        head = self.device.head()
        if head is not None:
            return encode_frame(self.link.address, schema.RATING, req.seq, head[1])
        if self.device.update_news():           # ratings first, then what the update has to say
            return self.link.reply(req, schema.UPDATE_STATE, self.device.update_state())
        return self._idle(req)

    def _idle(self, req):
        if req.broadcast:
            return None
        return self.link.reply(req, schema.IDLE, self.device.idle_record())

    def send(self, frame):
        quiet = (self.ticks_us() - self.last_rx_us) % _PERIOD
        guard = timing.guard_us(self.baud)
        if quiet < guard:
            self.sleep_us(guard - quiet)
        self.set_de(True)
        start = self.ticks_us()
        self.uart.write(frame)
        airtime = len(frame) * timing.byte_us(self.baud)
        left = airtime - (self.ticks_us() - start) % _PERIOD
        if left > 0:
            self.sleep_us(left)
        self.set_de(False)
        self.stats["replies"] += 1


def _us_clock():
    if hasattr(time, "ticks_us"):
        return time.ticks_us, time.sleep_us
    perf_counter = getattr(time, "perf_counter")   # CPython (the hall simulator): no ticks_us
    return (lambda: int(perf_counter() * 1000000)), (lambda us: time.sleep(us / 1000000))


def make(device, board, cfg):
    """The transport of a device whose config says rs485: the board's UART and DE line."""
    ticks_us, sleep_us = _us_clock()
    set_de = getattr(board.uart, "set_de", None) or board.set_de
    return Rs485Transport(device, board.uart, cfg["address"], cfg["baud"], set_de, ticks_us,
                          sleep_us)
