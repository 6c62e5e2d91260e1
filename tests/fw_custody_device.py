"""Custody (SPEC 3.11) on a whole device: RS-485 frames and MQTT JSON in, what it answers out.
Runs on CPython and MicroPython alike (tests/test_fw_custody_device.py runs it on both)."""

from fw_support import Rig

from protocol import auth, codec, jsonform, schema, vocab
from protocol.frame import FrameDecoder, encode_frame

GEN1 = 0x1234567890ABCDEF       # a gateway store's generation: 64 bits, never 0
GEN2 = 0x0FEDCBA987654321
ADDR = 1


def rate(rig, case_id):
    rig.context(case_id)
    rig.wait(1000)
    rig.press_level(2)
    rig.wait(5000)


def held_mac(rig, counter):
    """The MAC of rating `counter` as the device holds it, in the outbox or in custody."""
    ob = rig.dev.outbox
    raw = ob.get(counter)
    if raw is None:
        raw = ob.copy(counter)
    return codec.decode(schema.RATING, raw)["mac"]


def ack(rig, counter, result=0, generation=None):
    """The gateway's ACK: for a re-offered copy it names the store's generation (SPEC 3.11), by
    default the one the device took last."""
    rec = {"device": "win07", "counter": counter, "result": result}
    if generation is None and rig.dev.outbox.marked(counter):
        generation = rig.dev.outbox.generation
    if generation:
        rec["generation"] = generation
    return auth.sign_ack(rig.cfg["key_bytes"], "win07", rec, held_mac(rig, counter))


def settle(rig, generation, seq, settled=0, reoffer=0, key=None, device="win07"):
    rec = {"generation": generation, "seq": seq, "settled": settled, "reoffer": reoffer}
    return auth.sign_settle(key or rig.cfg["key_bytes"], device, rec)


class Bus:
    """The gateway's end of the device's RS-485 line: a request frame in, the decoded reply out."""

    def __init__(self, rig):
        from firmware.transport_rs485 import Rs485Transport
        self.rig = rig
        self.seq = 0
        rig.dev.transport = Rs485Transport(rig.dev, rig.board.uart, ADDR, 115200,
                                           lambda on: None, lambda: 0, lambda us: None)

    def ask(self, msg_type, record):
        """(reply type, reply record, raw payload)."""
        self.seq = (self.seq + 1) & 0xFF
        self.rig.board.uart.feed(encode_frame(ADDR, msg_type, self.seq, codec.encode(msg_type, record)))
        self.rig.dev.step()
        dec = FrameDecoder()
        dec.receive_data(self.rig.board.uart.take_tx())
        f = dec.next_frame()
        assert f is not None and f.seq == self.seq, "no reply"
        return f.type, codec.decode(f.type, f.payload), bytes(f.payload)


def errors_of(rig, name):
    return rig.dev.health.errors.get(name, 0)


def flow_custody_rs485(rig):
    """ACK -> custody; forged and stale SETTLEs ignored; a new generation re-offers every copy
    first, with reoffer = 1, ACKs verified against the copy's MAC; SETTLE drops only unmarked
    copies below `settled`; all of it survives a reboot."""
    bus = Bus(rig)
    ob = rig.dev.outbox
    bus.ask(schema.POLL, {"want_status": 1, "time": 1700000000})
    for cid in (51, 52, 53):
        rate(rig, cid)
    t, r1, raw1 = bus.ask(schema.POLL, {})
    assert t == schema.RATING and r1["counter"] == 1 and "reoffer" not in r1
    t, r2, raw2 = bus.ask(schema.ACK, ack(rig, 1))
    assert t == schema.RATING and r2["counter"] == 2
    assert ob.depth == 2 and ob.kept == 1 and ob.held(1)          # moved into custody, not gone
    t, r3, raw3 = bus.ask(schema.ACK, ack(rig, 2))
    t, rec, _ = bus.ask(schema.ACK, ack(rig, 3))
    assert t == schema.IDLE and rec == {"custody": 3}
    assert list(ob.copies()) == [1, 2, 3] and len(ob.runs) == 2   # one run: 8 bytes for all three
    # forged SETTLEs: another key, another device's, a field altered after signing, unsigned
    genuine = settle(rig, GEN1, 1, 99)
    for bad in (settle(rig, GEN1, 1, 99, key=bytes(32)), settle(rig, GEN1, 1, 99, device="win08"),
                dict(genuine, settled=100), dict(genuine, generation=GEN2),
                {"generation": GEN1, "seq": 1, "settled": 99}, dict(genuine, mac=genuine["mac"][:15])):
        t, rec, _ = bus.ask(schema.SETTLE, bad)
        assert t == schema.IDLE and rec == {"custody": 3}, rec
    assert errors_of(rig, "settle_forged") == 6 and ob.generation == 0
    # a new store: every copy is offered again, lowest first, before the outbox, reoffer = 1
    rate(rig, 54)
    t, rec, raw = bus.ask(schema.SETTLE, settle(rig, GEN1, 1, 99))
    assert t == schema.RATING and rec["counter"] == 1 and rec["reoffer"] == 1, rec
    assert raw == raw1 + b"\xb8\x01\x01"                    # the stored bytes, field 23 appended
    assert auth.verify(rig.cfg["key_bytes"], rec) and rec["mac"] == r1["mac"]
    assert ob.kept == 3                                     # settled=99 dropped no marked copy
    # an ACK bound to another rating's MAC does not unmark it
    wrong = auth.sign_ack(rig.cfg["key_bytes"], "win07", {"device": "win07", "counter": 1}, r2["mac"])
    t, rec, _ = bus.ask(schema.ACK, wrong)
    assert t == schema.RATING and rec["counter"] == 1 and rec["reoffer"] == 1
    assert errors_of(rig, "ack_forged") == 1
    # the lost store's own ACK for copy 1, replayed: genuine, but it names no generation or
    # another one, so it says nothing about the store that must now hold the copy
    for old in (ack(rig, 1, generation=0), ack(rig, 1, generation=GEN1 ^ 1)):
        t, rec, _ = bus.ask(schema.ACK, old)
        assert t == schema.RATING and rec["counter"] == 1 and rec["reoffer"] == 1
    assert errors_of(rig, "ack_stale") == 2 and ob.marked(1)
    t, rec, _ = bus.ask(schema.ACK, ack(rig, 1, vocab.ACK_RETRY))
    assert rec["counter"] == 1 and rec["reoffer"] == 1     # a retry leaves it marked
    t, rec, raw = bus.ask(schema.ACK, ack(rig, 1, vocab.ACK_DUPLICATE))
    assert t == schema.RATING and rec["counter"] == 2 and raw == raw2 + b"\xb8\x01\x01"
    assert ob.kept == 3 and not ob.marked(1) and ob.marked(2)
    # a reboot keeps the copies, the marks, the generation
    rig.reboot()
    bus = Bus(rig)
    ob = rig.dev.outbox
    bus.ask(schema.POLL, {"want_status": 1})
    t, rec, _ = bus.ask(schema.POLL, {})
    assert rec["counter"] == 2 and rec["reoffer"] == 1 and ob.generation == GEN1 and ob.seq == 1
    t, rec, _ = bus.ask(schema.ACK, ack(rig, 2))
    t, rec, _ = bus.ask(schema.ACK, ack(rig, 3))
    assert t == schema.RATING and rec["counter"] == 4 and "reoffer" not in rec   # the outbox next
    t, rec, _ = bus.ask(schema.ACK, ack(rig, 4))
    assert t == schema.IDLE and rec == {"custody": 4, "generation": GEN1}
    st = rig.dev.status()
    assert st["custody"] == 4 and st["custody_oldest"] == codec.decode(schema.RATING, raw1)["device_time"]
    assert st["custody_oldest"] > 0
    # the central API holds 1 and 2: SETTLE drops them, nothing else
    t, rec, _ = bus.ask(schema.SETTLE, settle(rig, GEN1, 5, 3))
    assert t == schema.IDLE and rec == {"custody": 2, "generation": GEN1}
    assert list(ob.copies()) == [3, 4]
    # replayed or reordered: an older or the same seq is ignored
    for old in (settle(rig, GEN1, 5, 9), settle(rig, GEN1, 2, 9)):
        t, rec, _ = bus.ask(schema.SETTLE, old)
        assert rec == {"custody": 2, "generation": GEN1}
    assert errors_of(rig, "settle_stale") == 2
    # reoffer = 1 marks every copy; a marked copy is never dropped by `settled`
    t, rec, _ = bus.ask(schema.SETTLE, settle(rig, GEN1, 6, 9, reoffer=1))
    assert t == schema.RATING and rec["counter"] == 3 and rec["reoffer"] == 1
    assert ob.kept == 2
    t, rec, _ = bus.ask(schema.ACK, ack(rig, 3))
    assert rec["counter"] == 4 and rec["reoffer"] == 1
    t, rec, _ = bus.ask(schema.ACK, ack(rig, 4))
    assert t == schema.IDLE
    t, rec, _ = bus.ask(schema.SETTLE, settle(rig, GEN1, 7, 5))
    assert t == schema.IDLE and rec == {"generation": GEN1} and ob.kept == 0
    assert rig.dev.status()["custody_oldest"] == 0
    names = [e["name"] for e in rig.dev.status()["errors"]]
    assert names == ["settle_stale"], names              # STATUS carries it (counted since the reboot)


def flow_custody_old_ack(rig):
    """A rating whose first ACK never arrived: once the device took a new store's generation, the
    lost store's ACK for it (genuine, recorded, replayed) names another generation and releases
    nothing: the rating stays at the outbox head for the new store. The new store's ACK, and one
    naming no generation (a gateway with custody off), release it into custody."""
    bus = Bus(rig)
    ob = rig.dev.outbox
    bus.ask(schema.POLL, {"want_status": 1, "time": 1700000000})
    rate(rig, 71)
    t, rec, _ = bus.ask(schema.POLL, {})
    assert t == schema.RATING and rec["counter"] == 1
    old = ack(rig, 1, generation=GEN1)         # the lost store's ACK, recorded on the way
    t, rec, _ = bus.ask(schema.SETTLE, settle(rig, GEN2, 1))
    assert t == schema.RATING and rec["counter"] == 1 and ob.generation == GEN2
    t, rec, _ = bus.ask(schema.ACK, old)
    assert t == schema.RATING and rec["counter"] == 1 and "reoffer" not in rec, rec
    assert errors_of(rig, "ack_stale") == 1 and ob.depth == 1 and ob.kept == 0
    rig.reboot()                                # the refusal holds after a reboot too
    bus = Bus(rig)
    ob = rig.dev.outbox
    bus.ask(schema.POLL, {"want_status": 1})
    t, rec, _ = bus.ask(schema.ACK, old)
    assert t == schema.RATING and rec["counter"] == 1 and ob.depth == 1
    t, rec, _ = bus.ask(schema.ACK, ack(rig, 1, generation=GEN2))
    assert t == schema.IDLE and ob.depth == 0 and list(ob.copies()) == [1]
    rate(rig, 72)
    bus.ask(schema.POLL, {})
    t, rec, _ = bus.ask(schema.ACK, ack(rig, 2, generation=0))
    assert t == schema.IDLE and ob.depth == 0 and list(ob.copies()) == [1, 2]


def flow_custody_room(rig):
    """Outbox and custody share the capacity: a new rating drops the oldest copy (counted);
    only an outbox alone at capacity refuses a press."""
    ob = rig.dev.outbox
    cap = ob.capacity
    for cid in range(cap):
        rate(rig, 100 + cid)
        assert rig.dev.on_ack(ack(rig, ob.counters[0]))
    assert ob.kept == cap and ob.depth == 0
    rate(rig, 200)
    assert ob.kept == cap - 1 and ob.depth == 1 and not ob.held(1)
    assert errors_of(rig, "custody_dropped") == 1
    for cid in range(cap - 1):
        rate(rig, 300 + cid)
    assert ob.kept == 0 and ob.depth == cap and errors_of(rig, "custody_dropped") == cap
    rig.context(400)
    rig.wait(1000)
    rig.press_level(2)
    assert rig.state == "storage_full" and ob.depth == cap   # the outbox alone refuses


def flow_custody_off(rig):
    """Custody off: an ACK forgets the rating as before; nothing is kept or offered again."""
    bus = Bus(rig)
    ob = rig.dev.outbox
    bus.ask(schema.POLL, {"want_status": 1})
    rate(rig, 61)
    bus.ask(schema.POLL, {})
    t, rec, _ = bus.ask(schema.ACK, ack(rig, 1))
    assert t == schema.IDLE and rec == {} and ob.kept == 0
    t, rec, _ = bus.ask(schema.SETTLE, settle(rig, GEN1, 1, 0, reoffer=1))
    assert t == schema.IDLE and rec == {"generation": GEN1}
    assert rig.dev.status()["custody"] == 0


class FakeClient:
    """The MQTT client as the transport sees it: connected, every publish recorded."""

    def __init__(self):
        self.sent = []
        self.connected = True
        self.state = "up"
        self.pid = 0

    def step(self):
        pass

    def publish(self, topic, payload, qos, retain=False):
        self.sent.append((topic.rsplit("/", 1)[1], payload))
        self.pid += 1
        return self.pid

    def is_acked(self, pid):
        return True

    def subscribe(self, topic, qos):
        pass

    def drop(self):
        pass


class _Net:
    def isconnected(self):
        return True

    def connect(self):
        pass

    def socket_factory(self, host, port):
        raise OSError(113)


def flow_custody_mqtt(rig):
    """Over MQTT: the retained SETTLE marks the copies; the re-offered copy's JSON carries
    "reoffer": 1; its ACK (JSON) is verified against that copy's MAC; bad payloads are counted."""
    from firmware.transport_mqtt import MqttTransport
    clock = [1000]
    tr = MqttTransport(rig.dev, _Net(), "h1", {"host": "10.0.0.2"}, lambda: clock[0])
    tr.client = FakeClient()
    rig.dev.transport = tr
    ob = rig.dev.outbox
    topic = "hall/h1/dev/win07/"

    def ratings():
        out = [jsonform.from_json(schema.RATING, p) for k, p in tr.client.sent if k == "rating"]
        tr.client.sent = []
        return out

    def deliver(kind, record):
        tr._message(topic + kind, jsonform.to_json(getattr(schema, kind.upper()), record).encode(),
                    kind == "settle")
        rig.dev.step()

    rate(rig, 71)
    rate(rig, 72)
    got = ratings()
    assert [r["counter"] for r in got] == [1] and "reoffer" not in got[0]
    deliver("ack", ack(rig, 1))
    deliver("ack", ack(rig, 2))
    assert ob.kept == 2 and ob.depth == 0
    ratings()
    deliver("settle", settle(rig, GEN2, 1, 0))
    got = ratings()
    assert [(r["counter"], r["reoffer"]) for r in got] == [(1, 1)], got
    assert auth.verify(rig.cfg["key_bytes"], got[0])
    assert '"reoffer":1' in jsonform.to_json(schema.RATING, got[0])
    # an ACK bound to the other copy's MAC: forged, nothing unmarked
    wrong = auth.sign_ack(rig.cfg["key_bytes"], "win07", {"device": "win07", "counter": 1},
                          held_mac(rig, 2))
    deliver("ack", wrong)
    assert ob.marked(1) and errors_of(rig, "ack_forged") == 1
    deliver("ack", ack(rig, 1))
    got = ratings()
    assert [(r["counter"], r["reoffer"]) for r in got] == [(2, 1)]
    deliver("ack", ack(rig, 2))
    assert ob.reoffer_head() is None and ob.kept == 2
    # invalid SETTLE payloads: counted and dropped
    for junk in (b"{", b'{"seq": 1}', b'{"generation": 1, "seq": -1}'):
        tr._message(topic + "settle", junk, True)
    assert tr.stats["bad_messages"] == 3 and ob.generation == GEN2 and ob.seq == 1
    deliver("settle", settle(rig, GEN2, 2, 2))
    assert list(ob.copies()) == [2]
    deliver("settle", settle(rig, GEN2, 2, 3))          # the retained one again: stale
    assert list(ob.copies()) == [2] and errors_of(rig, "settle_stale") == 1
    deliver("settle", settle(rig, GEN2, 3, 3))
    assert ob.kept == 0
    # an ACK and a new store's SETTLE in one read: the rating just acknowledged goes out again
    # at once, flagged (not as the JSON built for it as the outbox head)
    rate(rig, 73)
    got = ratings()
    assert [r["counter"] for r in got] == [3] and "reoffer" not in got[0]
    tr._message(topic + "ack", jsonform.to_json(schema.ACK, ack(rig, 3)).encode(), False)
    tr._message(topic + "settle", jsonform.to_json(schema.SETTLE, settle(rig, GEN1, 1)).encode(), True)
    rig.dev.step()
    got = ratings()
    assert [(r["counter"], r.get("reoffer")) for r in got] == [(3, 1)], got


CUSTODY_FLOWS = ("flow_custody_rs485", "flow_custody_old_ack", "flow_custody_room", "flow_custody_off",
                 "flow_custody_mqtt")


def run_custody_flow(name, base="/tmp"):
    extra = {"custody": False} if name == "flow_custody_off" else None
    rig = Rig("five_button", capacity=4 if name == "flow_custody_room" else 10, base=base, extra=extra)
    globals()[name](rig)
    return rig
