"""One path for a rating: the device offers its outbox head as the bytes it stored, the flash is
read only when the head changes, RS-485 sends those bytes as they are and MQTT builds its JSON
once per head. Real parts: the firmware Device and transports, the gateway's protocol.link
master byte for byte, a real Mosquitto with paho playing the gateway; the flash is the counting
test flash of fw_flash_support."""

import sys
import time
from pathlib import Path

import paho.mqtt.client as paho
from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from fw_flash_support import FakeFlash  # noqa: E402
from fw_support import Rig, check_rating  # noqa: E402

from protocol import auth, codec, jsonform, schema, topics, vocab  # noqa: E402
from protocol.frame import FrameDecoder  # noqa: E402
from protocol.link import MasterBus  # noqa: E402
from firmware.main import attach_transport  # noqa: E402
from firmware.transport_rs485 import Rs485Transport  # noqa: E402

BAUD = 9600
HALL = "sz-futian"
TURNS = 300


def head_read_cost(rig, flash):
    """Reads of the test flash that one read of the outbox head takes."""
    before = flash.reads
    rig.dev.outbox.oldest()
    return flash.reads - before


def rate(rig, case_id, sleep=None):
    rig.context(case_id)
    if sleep is None:
        rig.wait(1000)
    else:
        time.sleep(sleep)                        # a real clock: past the misuse guard
    rig.press_level(vocab.SATISFIED)
    assert rig.state == "thanks"


# --- RS-485 -------------------------------------------------------------------------------------
class Bus:
    """The gateway's master on the device's MemUart; keeps each reply's raw payload too."""

    def __init__(self, rig, address=5):
        self.rig = rig
        self.us = 0
        rig.dev.transport = Rs485Transport(rig.dev, rig.board.uart, address, BAUD,
                                           lambda on: None, self.ticks_us, self.sleep_us)
        self.master = MasterBus()
        self.ch = self.master.channel(address)
        self.payloads = []

    def ticks_us(self):
        return self.us

    def sleep_us(self, n):
        self.us += n

    def ask(self, msg_type, record):
        self.us += 5000
        self.rig.board.uart.feed(self.ch.request(msg_type, record))
        self.rig.dev.step()
        tx = self.rig.board.uart.take_tx()
        dec = FrameDecoder()
        dec.receive_data(tx)
        self.payloads.append(dec.next_frame().payload)
        self.master.receive_data(tx)
        got = self.master.next_reply()
        assert got is not None, "no reply"
        return got[1]


def test_rs485_reads_the_flash_only_when_the_head_changes(tmp_path):
    flash = FakeFlash()
    rig = Rig("five_button", base=str(tmp_path), fs=flash)
    bus = Bus(rig)
    bus.ask(schema.POLL, {"want_status": 1})
    rate(rig, 31)
    rig.wait(5000)
    rate(rig, 32)
    ack1 = rig.signed_ack(1)                      # the test's own flash reads, done before counting
    cost = head_read_cost(rig, flash)
    assert cost > 0
    start = flash.reads
    for i in range(TURNS):
        reply = bus.ask(schema.POLL, {"time": 1700000000 + i})
        assert reply.type == schema.RATING and reply.record["counter"] == 1
        rig.dev.step()                            # and loop turns with nothing on the line
    assert flash.reads - start == cost            # the head read once, not once per poll
    start = flash.reads
    reply = bus.ask(schema.ACK, ack1)             # released: the answer is the new head
    assert reply.type == schema.RATING and reply.record["counter"] == 2
    for _ in range(TURNS):
        assert bus.ask(schema.POLL, {}).record["counter"] == 2
    assert flash.reads - start == cost            # one read for the new head, then none
    check_rating(reply.record)


def test_rs485_puts_the_stored_bytes_into_the_rating_frame_as_they_are(tmp_path, monkeypatch):
    """Not decoded and encoded again: the frame carries exactly what the outbox holds, so even a
    field this firmware does not know (a newer firmware's rating, kept across a downgrade)
    reaches the gateway under the MAC it was signed with."""
    rig = Rig("five_button", base=str(tmp_path))
    bus = Bus(rig)
    bus.ask(schema.POLL, {})                        # the first poll: a heartbeat
    rate(rig, 33)
    stored = rig.dev.outbox.get(1)
    encoded = []
    real_encode = codec.encode
    monkeypatch.setattr(codec, "encode", lambda t, r: (encoded.append(t), real_encode(t, r))[1])
    reply = bus.ask(schema.POLL, {})
    assert reply.type == schema.RATING and bus.payloads[-1] == stored
    assert schema.RATING not in encoded
    # a stored rating with a field unknown here (18, a varint, between tags_version and mac)
    key = rig.cfg["key_bytes"]
    known = auth.sign(key, {"device": "win07", "counter": 2, "case_id": 34, "source": 1, "overall": 2})
    raw = real_encode(schema.RATING, known)
    mac_key, extra = bytearray(), bytearray()
    codec.put_varint(mac_key, 20 << 3 | 2)
    codec.put_varint(extra, 18 << 3)
    mac_at = raw.index(bytes(mac_key) + b"\x10")
    newer = raw[:mac_at] + bytes(extra) + b"\x01" + raw[mac_at:]
    assert codec.decode(schema.RATING, newer) == known    # what a decode would keep of it
    rig.dev.outbox.append(2, newer)
    rig.dev.on_ack(rig.signed_ack(1))
    reply = bus.ask(schema.POLL, {})
    assert reply.record["counter"] == 2 and bus.payloads[-1] == newer
    ack = auth.sign_ack(key, "win07", {"device": "win07", "counter": 2}, known["mac"])
    done = bus.ask(schema.ACK, ack)                # its MAC was read off the stored bytes
    assert done.type == schema.IDLE and rig.dev.outbox.depth == 0


# --- MQTT ---------------------------------------------------------------------------------------
def now_ms():
    return int(time.monotonic() * 1000)


def run_until(cond, step, timeout=8.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        step()
        if cond():
            return True
        time.sleep(0.002)
    return False


def test_mqtt_reads_the_flash_and_builds_the_json_once_per_head(mosquitto_broker, tmp_path,
                                                                  monkeypatch):
    got = []
    gw = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="gw-path")
    gw.on_message = lambda c, u, m: got.append(m.payload.decode())
    gw.connect(mosquitto_broker.host, mosquitto_broker.port)
    gw.subscribe(topics.device_topic(HALL, "win07", "rating"), 1)
    gw.loop_start()
    built = []
    real_to_json = jsonform.to_json

    def to_json(msg_type, record):
        if msg_type == schema.RATING:
            built.append(record["counter"])
        return real_to_json(msg_type, record)
    monkeypatch.setattr(jsonform, "to_json", to_json)
    flash = FakeFlash()
    rig = Rig("five_button", base=str(tmp_path), clock=now_ms, net="tcp", fs=flash,
              extra={"transport": "mqtt", "hall": HALL,
                     "mqtt": {"host": mosquitto_broker.host, "port": mosquitto_broker.port}})
    try:
        tr = attach_transport(rig.dev, rig.board, rig.cfg)
        step = rig.dev.step
        assert run_until(lambda: tr.client.connected, step)
        time.sleep(0.2)
        rate(rig, 41, sleep=0.6)
        rate(rig, 42, sleep=4.6)                   # past the thank-you, then the guard
        assert run_until(lambda: got, step)
        stored = {c: rig.dev.outbox.get(c) for c in (1, 2)}
        ack1 = rig.signed_ack(1)
        cost = head_read_cost(rig, flash)
        start = flash.reads
        for i in range(TURNS):
            if i % 100 == 0:
                tr.sent_counter = 0                # as after a reconnect: send it again at once
            step()
            time.sleep(0.001)
        assert run_until(lambda: len(got) >= 4, step)
        assert flash.reads - start == 0            # the head was read before; never again
        assert built == [1]                        # one JSON for every copy sent
        want = real_to_json(schema.RATING, codec.decode(schema.RATING, stored[1]))
        assert set(got) == {want}
        # the gateway's ACK releases it: the next head is read once and built once
        gw.publish(topics.device_topic(HALL, "win07", "ack"),
                   real_to_json(schema.ACK, ack1), 1).wait_for_publish(5)
        assert run_until(lambda: rig.dev.outbox.depth == 1 and got[-1] != want, step)
        start = flash.reads
        for _ in range(TURNS):
            step()
        assert flash.reads - start == 0
        assert built == [1, 2]
        rec = codec.from_json(schema.RATING, got[-1])
        check_rating(rec)
        assert codec.encode(schema.RATING, rec) == stored[2] and rec["case_id"] == 42
    finally:
        gw.loop_stop()
        gw.disconnect()


# --- the head as a state machine ----------------------------------------------------------------
_rigs = [0]


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.sampled_from(["append", "release", "head", "head", "forged"]), max_size=40))
def test_head_is_the_stored_head_and_is_read_only_when_it_changes(ops):
    """Whatever the order of appends, releases and asks, head() is (counter, stored bytes, MAC)
    of the outbox's oldest rating, and an ask reads the flash exactly when the head changed."""
    flash = FakeFlash()
    _rigs[0] += 1
    rig = Rig("five_button", root="/h%d" % _rigs[0], fs=flash)
    dev, key = rig.dev, rig.cfg["key_bytes"]
    macs = {}
    seen = None                                   # the head counter head() returned last
    for op in ops:
        ob = dev.outbox
        if op == "append" and not ob.full():
            c = ob.high + 1
            rec = auth.sign(key, {"device": "win07", "counter": c, "case_id": 100 + c, "source": 1})
            ob.append(c, codec.encode(schema.RATING, rec))
            macs[c] = rec["mac"]
        elif op == "release" and ob.depth:
            c = ob.counters[0]
            ack = auth.sign_ack(key, "win07", {"device": "win07", "counter": c}, macs[c])
            assert dev.on_ack(ack) and c not in ob.counters
        elif op == "forged" and ob.depth:
            c = ob.counters[0]
            ack = auth.sign_ack(key, "win07", {"device": "win07", "counter": c}, bytes(16))
            assert not dev.on_ack(ack) and ob.counters[0] == c
        before = flash.reads
        head = dev.head()
        read = flash.reads - before
        if not ob.depth:
            assert head is None and read == 0
            seen = None
            continue
        c = ob.counters[0]
        assert head == (c, ob.get(c), macs[c])
        assert (read > 0) == (c != seen), (op, c, seen, read)
        seen = c


# --- the same path under MicroPython ------------------------------------------------------------
MP_SCRIPT = """
import sys
sys.path.insert(0, "/repo/tests")
from fw_flash_support import FakeFlash
from fw_support import Rig
from protocol import codec, schema
from protocol.frame import FrameDecoder
from protocol.link import MasterBus
from firmware.transport_rs485 import Rs485Transport
flash = FakeFlash()
rig = Rig("five_button", root="/mp", fs=flash)
clock = [0]
def ticks():
    return clock[0]
def sleep(n):
    clock[0] += n
rig.dev.transport = Rs485Transport(rig.dev, rig.board.uart, 5, 9600, lambda on: None, ticks, sleep)
bus = MasterBus()
ch = bus.channel(5)
def poll():
    clock[0] += 5000
    rig.board.uart.feed(ch.request(schema.POLL, {}))
    rig.dev.step()
    tx = rig.board.uart.take_tx()
    bus.receive_data(tx)
    assert bus.next_reply() is not None
    dec = FrameDecoder()
    dec.receive_data(tx)
    return dec.next_frame()
poll()
for case_id in (51, 52):
    rig.context(case_id)
    rig.wait(1000)
    rig.press_level(2)
    rig.wait(5000)
stored = rig.dev.outbox.get(1)
stored2 = rig.dev.outbox.get(2)
mac = codec.decode(schema.RATING, stored)["mac"]
ack = rig.signed_ack(1)
start = flash.reads
rig.dev.outbox.oldest()
cost = flash.reads - start
start = flash.reads
frames = [poll() for _ in range(50)]
assert all(f.type == schema.RATING and f.payload == stored for f in frames)
first = flash.reads - start
assert rig.dev.head() == (1, stored, mac)
start = flash.reads
assert rig.dev.on_ack(ack)
frames = [poll() for _ in range(50)]
assert all(f.type == schema.RATING and f.payload == stored2 for f in frames)
print("READS", cost, first, flash.reads - start)
"""


def test_the_rs485_path_under_micropython(micropython):
    """On MicroPython too: 50 polls read the flash for one head only, and the RATING frame carries
    the stored bytes."""
    r = micropython(MP_SCRIPT, trees=("protocol", "firmware", "tests"), timeout=180).check()
    words = r.stdout.split()
    cost, first, second = [int(w) for w in words[words.index("READS") + 1:][:3]]
    assert cost > 0 and first == second == cost, r.stdout   # one read per head, not per poll
