"""The bus's line model on a fake event loop: exact line times, so every byte's fate is known."""

import heapq
import random

import pytest

from hall_simulator.bus import Bus

BAUD = 10000          # 1 ms per byte
BT = 10 / BAUD


class FakeLoop:
    def __init__(self):
        self.now = 100.0
        self.events = []
        self.n = 0

    def time(self):
        return self.now

    def call_at(self, due, fn, *args):
        self.n += 1
        heapq.heappush(self.events, (due, self.n, fn, args))
        return self.n

    def run_until(self, t):
        while self.events and self.events[0][0] <= t:
            due, _, fn, args = heapq.heappop(self.events)
            self.now = max(self.now, due)
            fn(*args)
        self.now = max(self.now, t)


class FakeTransport:
    def __init__(self, port):
        self.port = port
        self.got = bytearray()

    def get_extra_info(self, name):
        return ("127.0.0.1", self.port) if name == "peername" else None

    def write(self, data):
        self.got += data


def make_bus(nodes=3, **options):
    bus = Bus(baud=BAUD, rng=random.Random(3), **options)
    loop = bus._loop = FakeLoop()
    ports = [FakeTransport(5000 + i) for i in range(nodes)]
    members = [bus._join(t) for t in ports]
    return bus, loop, members, ports


def at(loop, t):
    loop.run_until(100.0 + t)


def test_back_to_back_talkers_do_not_collide():
    bus, loop, (a, b, c), (ta, tb, tc) = make_bus()
    bus._written(a, b"0123456789")
    at(loop, 10 * BT)                      # b starts exactly when a's last stop bit ends
    bus._written(b, b"abcdefghij")
    at(loop, 1.0)
    assert bytes(tc.got) == b"0123456789abcdefghij"
    assert bytes(ta.got) == b"abcdefghij" and bytes(tb.got) == b"0123456789"
    s = bus.stats()
    assert s["collisions"] == 0 and s["collided_bytes"] == 0
    assert s["line_time_s"] == pytest.approx(20 * BT)


def test_overlap_garbles_exactly_the_overlapping_bytes_on_both_sides():
    bus, loop, (a, b, c), (ta, tb, tc) = make_bus()
    bus._written(a, b"0123456789")
    at(loop, 7 * BT)                       # b barges in over a's last three bytes
    bus._written(b, b"abcde")
    at(loop, 1.0)
    heard = bytes(tc.got)
    assert len(heard) == 15
    assert heard[:7] == b"0123456"
    assert all(heard[i] != b"0123456789"[i] for i in (7, 8, 9))
    assert all(heard[10 + i] != b"abcde"[i] for i in (0, 1, 2))
    assert heard[13:] == b"de"
    assert bytes(ta.got)[3:] == b"de" and bytes(tb.got)[:7] == b"0123456"
    s = bus.stats()
    assert s["collisions"] == 1 and s["collided_bytes"] == 6


def test_bytes_arrive_no_faster_than_the_line():
    bus, loop, (a, b, c), (ta, tb, tc) = make_bus(batch_s=0.001)
    for i in range(10):                    # ten writes at the same instant: they queue up
        bus._written(a, bytes([i]) * 10)
    at(loop, 50 * BT)
    assert 45 <= len(tc.got) <= 50
    at(loop, 99.5 * BT)
    assert len(tc.got) < 100
    at(loop, 100 * BT + 1e-9)
    assert bytes(tc.got) == b"".join(bytes([i]) * 10 for i in range(10))
    assert a.stats["last_tx_end"] - a.stats["first_tx_start"] == pytest.approx(100 * BT)
    assert loop.n == 100                   # one delivery per byte-time batch (1 ms here), no more


def test_a_cut_in_the_middle_of_a_transmission():
    bus, loop, (a, b, c), (ta, tb, tc) = make_bus(batch_s=0.001)
    bus._written(a, bytes(20))
    at(loop, 5 * BT)
    bus.cut(10 * BT, node=c.port)          # c's cable is cut for the middle ten bytes
    at(loop, 1.0)
    assert len(tb.got) == 20
    assert 9 <= len(tc.got) <= 11          # the bytes completed before and after the cut
    assert bus.stats()["cut_bytes"] == 20 - len(tc.got)


def test_a_node_that_left_still_garbles_what_overlaps_its_last_bytes():
    bus, loop, (a, b, c), (ta, tb, tc) = make_bus()
    bus._written(a, bytes(10))
    bus._leave(a)                          # its bytes are on the wire already
    at(loop, 2 * BT)
    bus._written(b, b"xy")
    at(loop, 1.0)
    assert bus.stats()["collisions"] == 1
    assert len(tc.got) == 12 and bytes(tc.got)[10:] != b"xy"


def test_batches_delay_the_middle_of_a_write_never_its_last_byte():
    bus, loop, (a, b, c), (ta, tb, tc) = make_bus(batch_s=0.004)   # 4 bytes per delivery
    bus._written(a, bytes(range(10)))
    at(loop, 3.9 * BT)
    assert len(tc.got) == 0
    at(loop, 4 * BT + 1e-9)
    assert len(tc.got) == 4
    at(loop, 10 * BT + 1e-9)               # the last two bytes come at the frame's end
    assert bytes(tc.got) == bytes(range(10)) and loop.n == 3
