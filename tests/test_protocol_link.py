"""Master/slave link: a MasterBus and SlaveLinks joined by an in-memory bus that loses frames."""

import random

import pytest
from hypothesis import given, settings, strategies as st

from protocol import auth, codec, errors, frame, link, rating, schema, vocab
from protocol.errors import LocalProtocolError

KEY = bytes(range(32))


class FakeDevice:
    """A device as SPEC.md section 4.5 describes it: an outbox of signed ratings, oldest first."""

    def __init__(self, address, name):
        self.link = link.SlaveLink(address)
        self.name = name
        self.counter = 0
        self.outbox = []
        self.case_id = 0

    def press(self, level):
        self.counter += 1
        self.outbox.append(auth.sign(KEY, {"device": self.name, "counter": self.counter, "case_id": 9,
                                           "source": vocab.SRC_PRESS, "overall": level}))

    def hear(self, data):
        """Bytes heard on the bus -> bytes of its replies."""
        self.link.receive_data(data)
        out = b""
        while True:
            req = self.link.next_request()
            if req is None:
                return out
            if req.error is not None:
                if not req.broadcast:
                    out += self.link.refuse(req, link.refusal_reason(req.error), "bad request")
                continue
            if req.type == schema.ACK and req.record.get("device") == self.name:
                self.outbox = [r for r in self.outbox if r["counter"] != req.record["counter"]
                               or not vocab.device_releases(req.record.get("result", 0))]
            elif req.type == schema.CONTEXT:
                self.case_id = req.record["case_id"]
            if req.broadcast:
                continue
            if self.outbox:
                out += self.link.reply(req, schema.RATING, self.outbox[0])
            else:
                out += self.link.reply(req, schema.IDLE, {"outbox": 0, "case_id": self.case_id})


class FakeGateway:
    """Commits ratings by id, with the replay rule of rating.verdict."""

    def __init__(self):
        self.bus = link.MasterBus()
        self.stored = {}        # rating id -> mac
        self.high_water = {}
        self.acks = []

    def settle(self, r):
        assert auth.verify(KEY, r)
        rid = rating.rating_id(r)
        result, reason = rating.verdict(r["counter"], self.high_water.get(r["device"], 0),
                                        self.stored.get(rid), r["mac"])
        if result == vocab.ACK_STORED:
            self.stored[rid] = r["mac"]
            self.high_water[r["device"]] = r["counter"]
        self.acks.append(result)
        return {"device": r["device"], "counter": r["counter"], "result": result, "reason": reason}


class LossyBus:
    """Delivers the master's bytes to every device and their replies back; drops whole frames."""

    def __init__(self, devices, seed, loss):
        self.devices = devices
        self.rng = random.Random(seed)
        self.loss = loss
        self.lost = 0

    def carry(self, data):
        if self.rng.random() < self.loss:
            self.lost += 1
            return b""
        return data

    def exchange(self, gateway, ch, request_bytes):
        gateway.bus.decoder.reset()          # SPEC 4.3: the master resets its receiver before sending
        replies = b""
        heard = self.carry(request_bytes)
        for dev in self.devices:
            replies += dev.hear(heard)
        return self.carry(replies)


def run_cycle(gateway, bus, ch, msg_type, record, tries=5):
    data = ch.request(msg_type, record)
    for attempt in range(tries):
        gateway.bus.receive_data(bus.exchange(gateway, ch, data))
        got = gateway.bus.next_reply()
        if got is not None:
            assert got[0] is ch
            return got[1]
        data = ch.resend()
    ch.give_up()
    return None


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32), loss=st.sampled_from([0.0, 0.1, 0.3]), presses=st.integers(1, 6))
def test_every_rating_committed_exactly_once_despite_losses(seed, loss, presses):
    devs = [FakeDevice(3, "ev-03"), FakeDevice(4, "ev-04")]
    gw = FakeGateway()
    bus = LossyBus(devs, seed, loss)
    for d in devs:
        for i in range(presses):
            d.press(1 + i % 5)
    pending_ack = {}
    for _ in range(400):
        if not any(d.outbox for d in devs):
            break
        for d in devs:
            ch = gw.bus.channel(d.link.address)
            ack = pending_ack.pop(d.link.address, None)
            reply = run_cycle(gw, bus, ch, schema.ACK if ack else schema.POLL, ack or {"time": 1})
            if reply is None:
                if ack:
                    pending_ack[d.link.address] = ack   # try the ACK again next round
                continue
            assert reply.error is None
            if reply.type == schema.RATING:
                pending_ack[d.link.address] = gw.settle(reply.record)
    assert not any(d.outbox for d in devs)
    assert sorted(gw.stored) == sorted("%s:%d" % (d.name, c) for d in devs for c in range(1, presses + 1))
    assert gw.acks.count(vocab.ACK_STORED) == 2 * presses
    assert vocab.ACK_DEAD_LETTER not in gw.acks
    if loss == 0.0:
        assert vocab.ACK_DUPLICATE not in gw.acks


def test_lost_ack_makes_the_device_resend_and_the_gateway_answers_duplicate():
    dev = FakeDevice(7, "ev-07")
    gw = FakeGateway()
    ch = gw.bus.channel(7)
    dev.press(vocab.VERY_DISSATISFIED)
    gw.bus.receive_data(dev.hear(ch.request(schema.POLL, {})))
    _, reply = gw.bus.next_reply()
    ack = gw.settle(reply.record)
    assert ack["result"] == vocab.ACK_STORED
    ch.request(schema.ACK, ack)                      # this ACK is lost on the wire
    ch.give_up()
    gw.bus.receive_data(dev.hear(ch.request(schema.POLL, {})))
    _, again = gw.bus.next_reply()
    assert again.type == schema.RATING and rating.rating_id(again.record) == "ev-07:1"
    dup = gw.settle(again.record)
    assert dup["result"] == vocab.ACK_DUPLICATE
    gw.bus.receive_data(dev.hear(ch.request(schema.ACK, dup)))
    _, last = gw.bus.next_reply()
    assert last.type == schema.IDLE and dev.outbox == []
    assert len(gw.stored) == 1


def test_resend_uses_the_same_seq_and_a_late_reply_is_stale():
    dev = FakeDevice(5, "ev-05")
    gw = FakeGateway()
    ch = gw.bus.channel(5)
    first = ch.request(schema.POLL, {})
    late = dev.hear(first)                           # the reply is late: master resends meanwhile
    second = ch.resend()
    assert first == second and ch.attempts == 2
    gw.bus.receive_data(late + dev.hear(second))     # both replies arrive
    ch_, reply = gw.bus.next_reply()
    assert reply.type == schema.IDLE and reply.attempts == 2
    assert gw.bus.next_reply() is None               # the second copy is stale
    assert ch.stats["stale"] == 1
    nxt = ch.request(schema.POLL, {})
    gw.bus.receive_data(late)                        # a reply to the old seq: stale
    assert gw.bus.next_reply() is None
    gw.bus.receive_data(dev.hear(nxt))
    assert gw.bus.next_reply()[1].type == schema.IDLE


def test_reply_after_give_up_is_stale_and_foreign_frames_are_ignored():
    dev = FakeDevice(5, "ev-05")
    gw = FakeGateway()
    ch = gw.bus.channel(5)
    late = dev.hear(ch.request(schema.POLL, {}))
    ch.give_up()
    gw.bus.receive_data(late)
    assert gw.bus.next_reply() is None and ch.stats["stale"] == 1
    gw.bus.receive_data(frame.encode_frame(9, schema.IDLE, 1, b""))   # unknown address
    gw.bus.receive_data(frame.encode_frame(5, schema.POLL, 1, b""))   # our own echo
    assert gw.bus.next_reply() is None and gw.bus.stats["foreign"] == 2


def test_devices_answer_only_their_address_and_never_a_broadcast():
    a, b = FakeDevice(1, "a"), FakeDevice(2, "b")
    gw = FakeGateway()
    req = gw.bus.channel(2).request(schema.POLL, {})
    assert a.hear(req) == b"" and a.link.stats["not_for_us"] == 1
    assert b.hear(req) != b""
    cfg = frame.encode_frame(frame.BROADCAST, schema.CONTEXT, 1,
                             codec.encode(schema.CONTEXT, {"case_id": 4, "node": 1}))
    assert a.hear(cfg) == b"" and a.case_id == 4
    assert a.hear(b.hear(req)) == b""                 # replies of other devices are not requests
    with pytest.raises(LocalProtocolError):
        a.link.reply(link.Request(schema.POLL, 1, {}, None, True), schema.IDLE, {})


def test_undecodable_request_is_refused_with_its_reason():
    dev = FakeDevice(5, "ev-05")
    gw = FakeGateway()
    ch = gw.bus.channel(5)
    ch.request(schema.POLL, {})
    bad = frame.encode_frame(5, 0x7F, ch.seq, b"")                   # unknown type, right seq
    gw.bus.receive_data(dev.hear(bad))
    _, reply = gw.bus.next_reply()
    assert reply.type == schema.REFUSE
    assert reply.record["reason"] == errors.R_UNKNOWN_TYPE and reply.record["request"] == 0x7F
    ch.request(schema.POLL, {})
    gw.bus.receive_data(dev.hear(frame.encode_frame(5, schema.POLL, ch.seq, b"\x08")))
    assert gw.bus.next_reply()[1].record["reason"] == errors.R_TRUNCATED


def test_bad_reply_payload_is_reported_not_raised():
    gw = FakeGateway()
    ch = gw.bus.channel(5)
    ch.request(schema.POLL, {})
    gw.bus.receive_data(frame.encode_frame(5, schema.RATING, ch.seq, b"\x10\x01"))  # no device
    _, reply = gw.bus.next_reply()
    assert reply.record is None and reply.error.reason == errors.R_MISSING
    assert ch.stats["bad_replies"] == 1


# The master state machine, as a table: (state, event) -> next state or an error.
EVENTS = {
    "send": lambda ch: ch.request(schema.POLL, {}),
    "resend": lambda ch: ch.resend(),
    "give_up": lambda ch: ch.give_up(),
    "answer": lambda ch: ch.accept(frame.Frame(ch.address, schema.IDLE, ch.seq, b"")),
}
TABLE = [
    (link.READY, "send", link.WAITING),
    (link.READY, "resend", LocalProtocolError),
    (link.READY, "give_up", LocalProtocolError),
    (link.READY, "answer", link.READY),              # a reply nobody waits for: stale, ignored
    (link.WAITING, "send", LocalProtocolError),
    (link.WAITING, "resend", link.WAITING),
    (link.WAITING, "give_up", link.READY),
    (link.WAITING, "answer", link.READY),
]


@pytest.mark.parametrize("state,event,expected", TABLE)
def test_master_state_table(state, event, expected):
    ch = link.MasterChannel(5)
    if state == link.WAITING:
        ch.request(schema.POLL, {})
    if expected is LocalProtocolError:
        with pytest.raises(LocalProtocolError):
            EVENTS[event](ch)
        assert ch.state == state
    else:
        EVENTS[event](ch)
        assert ch.state == expected


def test_sequence_numbers_wrap_and_addresses_are_checked():
    ch = link.MasterChannel(5, seq=254)
    seqs = []
    for _ in range(3):
        f = ch.request(schema.POLL, {})
        seqs.append(f[4])
        ch.give_up()
    assert seqs == [255, 0, 1]
    for bad in (0, 248):
        with pytest.raises(LocalProtocolError):
            link.MasterChannel(bad)
        with pytest.raises(LocalProtocolError):
            link.SlaveLink(bad)
    with pytest.raises(LocalProtocolError):
        link.MasterChannel(5).request(schema.IDLE, {})
