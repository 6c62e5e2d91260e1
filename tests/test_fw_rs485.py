"""The device's RS-485 side against the gateway's real protocol.link master, byte for byte,
with the driver-enable line timed by a fake microsecond clock."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fw_support import Rig, check_rating  # noqa: E402

from protocol import codec, errors, frame, schema, timing, vocab  # noqa: E402
from protocol.link import MasterBus  # noqa: E402
from firmware.transport_rs485 import Rs485Transport  # noqa: E402

BAUD = 9600
FONT = str(Path(__file__).resolve().parent.parent / "firmware" / "fonts" / "unifont16.bin")


class Wire:
    """Microsecond clock, DE line and UART timestamps of one device."""

    def __init__(self, uart):
        self.us = 0
        self.events = []   # (us, what)
        self.uart = uart
        real_write = uart.write

        def write(data):
            self.events.append((self.us, "write", len(data)))
            return real_write(data)
        uart.write = write

    def ticks_us(self):
        return self.us

    def sleep_us(self, n):
        self.us += n

    def set_de(self, on):
        self.events.append((self.us, "de", on))


def setup(tmp_path):
    rig = Rig("five_button", base=str(tmp_path), font=FONT)
    wire = Wire(rig.board.uart)
    rig.dev.transport = Rs485Transport(rig.dev, rig.board.uart, 5, BAUD, wire.set_de,
                                       wire.ticks_us, wire.sleep_us)
    bus = MasterBus()
    return rig, wire, bus, bus.channel(5)


def exchange(rig, wire, bus, ch, msg_type, record):
    wire.us += 5000
    rig.board.uart.feed(ch.request(msg_type, record))
    rig.dev.step()
    bus.receive_data(rig.board.uart.take_tx())
    got = bus.next_reply()
    assert got is not None, "no reply"
    return got[1]


def test_a_rating_over_the_bus_from_context_to_ack(tmp_path):
    rig, wire, bus, ch = setup(tmp_path)
    st = exchange(rig, wire, bus, ch, schema.POLL, {"time": 1700000000})
    assert st.type == schema.STATUS and st.record["device"] == "win07"   # first poll: a heartbeat
    reply = exchange(rig, wire, bus, ch, schema.CONTEXT, {"case_id": 31, "node": 3, "time": 1700000000,
                                                          "serials": ["SZ2024-0031"], "staff_name": "李堃"})
    assert reply.type == schema.IDLE and reply.record == {"case_id": 31}
    rig.wait(2000)
    rig.key(0)
    got = exchange(rig, wire, bus, ch, schema.POLL, {"time": 1700000002})
    assert got.type == schema.RATING
    check_rating(got.record)
    assert got.record["overall"] == 1 and got.record["device_time"] == 1700000002
    again = exchange(rig, wire, bus, ch, schema.POLL, {})
    assert again.record == got.record                    # kept until the ACK
    retry = exchange(rig, wire, bus, ch, schema.ACK, rig.signed_ack(1, vocab.ACK_RETRY))
    assert retry.type == schema.RATING and rig.dev.outbox.depth == 1
    # Anyone on the bus can send an ACK; only one signed under our key releases (SPEC 7.5).
    for forged in ({"device": "win07", "counter": 1, "result": vocab.ACK_STORED}, {"counter": 1},
                   dict(rig.signed_ack(1), mac=bytes(16)), dict(rig.signed_ack(2), counter=1)):
        again = exchange(rig, wire, bus, ch, schema.ACK, forged)
        assert again.type == schema.RATING and again.record == got.record and rig.dev.outbox.depth == 1
    assert rig.dev.health.errors.get("ack_forged") == 4
    bare = rig.signed_ack(1, vocab.ACK_STORED)
    del bare["device"]                                    # the address says who it is for
    done = exchange(rig, wire, bus, ch, schema.ACK, bare)
    assert done.type == schema.IDLE and done.record == {"custody": 1} and rig.dev.outbox.depth == 0
    st = exchange(rig, wire, bus, ch, schema.POLL, {"want_status": 1})
    assert st.type == schema.STATUS and st.record["counter"] == 1 and st.record["firmware"]


def test_driver_enable_covers_exactly_our_bytes(tmp_path):
    rig, wire, bus, ch = setup(tmp_path)
    exchange(rig, wire, bus, ch, schema.POLL, {"want_status": 1})
    rx_at = 5000
    (t_on, _, on), (t_w, _, n), (t_off, _, off) = wire.events[-3:]
    assert on is True and off is False
    assert t_on >= rx_at + timing.guard_us(BAUD)        # the master had released the line
    assert t_w == t_on
    assert t_off - t_w == n * timing.byte_us(BAUD)       # off right after the last stop bit
    assert n > frame.OVERHEAD


def test_garbage_and_broadcast_and_config(tmp_path):
    rig, wire, bus, ch = setup(tmp_path)
    exchange(rig, wire, bus, ch, schema.POLL, {})        # the first heartbeat
    rig.board.uart.feed(b"\x00\xff" * 20)                 # line noise: no reply, no crash
    # a broadcast CONFIG is applied, and nobody answers it
    rig.board.uart.feed(frame.encode_frame(0, schema.CONFIG, 1, codec.encode(
        schema.CONFIG, {"version": 2, "rating_timeout_s": 45, "idle_text": "欢迎"})))
    rig.dev.step()
    assert rig.board.uart.take_tx() == b"" and rig.dev.app.cfg["rating_timeout_s"] == 45
    # a request whose payload does not decode gets a REFUSE with the reason
    ch.request(schema.POLL, {})
    bad = frame.encode_frame(5, schema.CONTEXT, ch.seq, b"\x0a\x05ab")  # truncated field
    rig.board.uart.feed(bad)
    rig.dev.step()
    bus.receive_data(rig.board.uart.take_tx())
    _, reply = bus.next_reply()
    assert reply.type == schema.REFUSE and reply.record["reason"] == errors.R_TRUNCATED
    # another address is ignored
    other = MasterBus().channel(6)
    rig.board.uart.feed(other.request(schema.POLL, {}))
    rig.dev.step()
    assert rig.board.uart.take_tx() == b""


def test_the_config_survives_a_reboot(tmp_path):
    rig, wire, bus, ch = setup(tmp_path)
    exchange(rig, wire, bus, ch, schema.CONFIG, {"version": 3, "thanks_s": 9})
    rig.reboot()
    assert rig.dev.app.cfg["thanks_s"] == 9
