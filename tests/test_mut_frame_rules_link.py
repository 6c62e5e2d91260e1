"""Edges of the frame, the rating rules and the master side of the link that mutation testing
(tools/mutation.py, docs/mutation.md) found untested: each test pins one behaviour whose mutants
used to survive. (The codec's are in test_mut_protocol.py.)"""

import pytest

from protocol import codec, errors, schema
from protocol.errors import LocalProtocolError, ProtocolError


# --- frame ----------------------------------------------------------------------------------------
from protocol import frame as fr


def test_frame_encoder_refusals_say_why():
    with pytest.raises(LocalProtocolError, match=r"^address 248 outside 0\.\.247$"):
        fr.encode_frame(248, 1, 1, b"")
    with pytest.raises(LocalProtocolError, match=r"^type and seq are single bytes$"):
        fr.encode_frame(1, 256, 1, b"")
    with pytest.raises(LocalProtocolError, match=r"^payload of 1025 bytes exceeds 1024$"):
        fr.encode_frame(1, 1, 1, bytes(1025))


def test_type_and_seq_take_every_byte_value_and_nothing_else():
    d = fr.FrameDecoder(max_pending=1000)
    for v in (0, 1, 254, 255):
        d.receive_data(fr.encode_frame(0, v, v, b"") + fr.encode_frame(247, 255 - v, v, b"p"))
    got = []
    while True:
        f = d.next_frame()
        if f is None:
            break
        got.append((f.addr, f.type, f.seq, f.payload))
    assert got == [x for v in (0, 1, 254, 255) for x in ((0, v, v, b""), (247, 255 - v, v, b"p"))]
    for t, s in ((-1, 0), (256, 0), (0, -1), (0, 256)):
        with pytest.raises(LocalProtocolError):
            fr.encode_frame(1, t, s, b"")
    with pytest.raises(LocalProtocolError):
        fr.encode_frame(-1, 1, 1, b"")
    assert len(fr.encode_frame(1, 1, 1, bytes(1024))) == fr.MAX_FRAME


def test_eight_finished_frames_wait_and_a_ninth_pushes_out_the_oldest():
    d = fr.FrameDecoder()
    d.receive_data(b"".join(fr.encode_frame(5, 0x81, k, b"") for k in range(8)))
    assert d.stats["overflow"] == 0
    d.receive_data(fr.encode_frame(5, 0x81, 8, b""))
    assert d.stats["overflow"] == 1 and d.stats["frames"] == 9
    d.receive_data(fr.encode_frame(5, 0x81, 9, b""))
    assert d.stats["overflow"] == 2
    assert [d.next_frame().seq for _ in range(8)] == list(range(2, 10)) and d.next_frame() is None


def test_each_rejected_header_and_body_is_counted_once_and_scanning_moves_on():
    d = fr.FrameDecoder(max_payload=4)
    big = fr.encode_frame(6, 0x81, 1, b"0123456789")          # a good header, payload over 4
    bad = bytearray(fr.encode_frame(6, 0x81, 2, b"ab"))
    bad[-1] ^= 0xFF                                           # CRC-16 off
    good = fr.encode_frame(6, 0x81, 3, b"ok")
    d.receive_data(b"xyz" + big + b"q" + bytes(bad) + big + bytes(bad) + good)
    assert d.stats["oversize"] == 2 and d.stats["bad_crc"] == 2 and d.stats["frames"] == 1
    assert d.next_frame() == fr.Frame(6, 0x81, 3, b"ok") and d.buffered() == 0
    junk = 3 + 1 + 2 * len(big) + 2 * len(bad)                # each rejected sync: one count
    assert d.stats["noise_bytes"] + d.stats["oversize"] + d.stats["bad_crc"] == junk


def test_frames_compare_by_content_and_show_their_header():
    a = fr.Frame(3, 0x81, 9, b"xy")
    assert a == fr.Frame(3, 0x81, 9, b"xy")
    for other in (fr.Frame(4, 0x81, 9, b"xy"), fr.Frame(3, 0x82, 9, b"xy"), fr.Frame(3, 0x81, 8, b"xy"),
                  fr.Frame(3, 0x81, 9, b"x")):
        assert a != other
    assert repr(a) == "Frame(addr=3, type=0x81, seq=9, 2 bytes)"


def test_the_sync_search_without_find_agrees_with_find():
    """The loop a MicroPython build without bytearray.find(sub, start) uses (a list has no find)."""
    bufs = [b"", b"\xa5", b"\x5a", b"\xa5\x5a", b"x\xa5\x5a", b"\x5a\xa5", b"\xa5\xa5\x5a",
            b"ab\xa5", b"\x5a\x5a\xa5\x5a\x00", b"\xa5\x00\x5a\xa5\x5a\xa5\x5a"]
    for buf in bufs:
        for start in range(len(buf) + 1):
            assert fr._find_sync(list(buf), start) == bytearray(buf).find(b"\xa5\x5a", start), (buf, start)


def test_every_abandoned_partial_frame_is_counted():
    d = fr.FrameDecoder()
    for k in range(1, 4):
        d.receive_data(fr.encode_frame(3, 0x81, k, b"abc")[:6])
        d.reset()
        assert d.stats["dropped_partial"] == k and d.buffered() == 0
    d.reset()  # nothing held: nothing dropped
    assert d.stats["dropped_partial"] == 3


@pytest.mark.parametrize("n", [0, 5, 255, 256, 300, 1024])
def test_expected_total_once_the_header_checks_out(n):
    raw = fr.encode_frame(7, 0x82, 9, (bytes(range(256)) * 5)[:n])
    d = fr.FrameDecoder()
    d.receive_data(raw[:fr.HEADER_LEN - 1])
    assert d.expected_total() == 0            # header not complete yet
    d.receive_data(raw[fr.HEADER_LEN - 1:fr.HEADER_LEN])
    assert d.expected_total() == fr.OVERHEAD + n == len(raw)
    bad = fr.FrameDecoder()
    bad._buf = bytearray(raw[:fr.HEADER_LEN])
    bad._buf[7] ^= 1                          # header CRC off
    assert bad.expected_total() == 0
    for i in (0, 1):                          # either sync byte off, header CRC still right
        other = bytearray(raw[:fr.HEADER_LEN])
        other[i] ^= 0x40
        bad._buf = other
        assert bad.expected_total() == 0


# --- rating rules ---------------------------------------------------------------------------------
from protocol import rating, vocab


def _press(**kw):
    r = {"device": "ev-a05", "counter": 7, "source": vocab.SRC_PRESS}
    r.update(kw)
    return r


def _refusal(r, indicators=None):
    with pytest.raises(ProtocolError) as e:
        rating.check(r, indicators)
    return e.value.reason, e.value.detail


def test_rating_ids_round_trip_and_refuse_what_is_not_one():
    assert rating.rating_id({"device": "ev:a05", "counter": 0}) == "ev:a05:0"
    assert rating.split_rating_id("ev:a05:0") == ("ev:a05", 0)
    assert rating.split_rating_id("d:4294967295") == ("d", 4294967295)
    for bad in ("d:", ":3", "d:3x", "d:-3", "d:+3", ""):
        with pytest.raises(ProtocolError) as e:
            rating.split_rating_id(bad)
        assert e.value.reason == errors.R_MALFORMED and e.value.detail == "rating id %r" % bad


def test_levels_come_in_indicator_order_and_a_bad_item_makes_a_bad_rating():
    assert rating.levels(_press(service=5, overall=1, business=3)) == [1, 3, 5]
    assert rating.levels(_press(service=0, business=2)) == [2]
    for level in vocab.LEVELS:
        bad = level in (vocab.DISSATISFIED, vocab.VERY_DISSATISFIED)
        assert rating.is_bad(_press(business=level)) == bad
        assert rating.is_bad(_press(overall=1, items=[{"code": "a", "level": 1},
                                                      {"code": "b", "level": level}])) == bad
    assert not rating.is_bad(_press(items=[{"code": "a"}]))


def test_each_rule_refuses_with_its_own_reason_and_words():
    assert _refusal(_press()) == (errors.R_MISSING, "a press carries at least one level")
    rating.check(_press(items=[{"code": "a", "level": 2}]))          # a theme item alone is a press
    assert _refusal(_press(source=vocab.SRC_NOT_RATED, business=2)) == (
        errors.R_BAD_STATE, "'not rated' carries no level")
    for name, value in (("tags", [501]), ("text", "x"), ("items", [{"code": "a", "level": 1}])):
        assert _refusal(_press(source=vocab.SRC_NOT_RATED, **{name: value})) == (
            errors.R_BAD_STATE, "'%s' without a press" % name)
    rating.check(_press(source=vocab.SRC_NOT_RATED))
    assert _refusal(_press(source=vocab.SRC_SYSTEM_DEFAULT)) == (
        errors.R_BAD_STATE, "a system default is set by the central side only")
    assert _refusal(_press(source=0, overall=1)) == (errors.R_OUT_OF_RANGE, "source 0")
    assert _refusal(_press(overall=2, tags=[501])) == (errors.R_BAD_STATE,
                                                      "tags refine a bad rating only")
    rating.check(_press(overall=2, items=[{"code": "a", "level": 5}], tags=[501]))


@pytest.mark.parametrize("name,bit", [("overall", vocab.IND_OVERALL), ("business", vocab.IND_BUSINESS),
                                      ("service", vocab.IND_SERVICE)])
def test_each_indicator_is_allowed_by_its_own_bit_only(name, bit):
    r = _press(**{name: 2})
    rating.check(r, bit)
    rating.check(r, 7)
    rating.check(r)                                  # no case limits: any indicator
    assert _refusal(r, 7 & ~bit) == (errors.R_BAD_STATE, "%s may not be rated at this node" % name)
    assert _refusal(r, 0)[0] == errors.R_BAD_STATE


def test_a_counter_at_the_high_water_mark_is_a_replay_unless_it_is_the_stored_one():
    mac = bytes(range(16))
    assert rating.verdict(4, 4, None, mac) == (vocab.ACK_DEAD_LETTER, errors.R_REPLAY)
    assert rating.verdict(5, 4, None, mac) == (vocab.ACK_STORED, errors.R_OK)
    assert rating.verdict(1, 0, None, mac) == (vocab.ACK_STORED, errors.R_OK)
    assert rating.verdict(4, 9, bytearray(mac), mac) == (vocab.ACK_DUPLICATE, errors.R_OK)
    assert rating.verdict(4, 9, memoryview(mac), bytearray(mac)) == (vocab.ACK_DUPLICATE, errors.R_OK)
    assert rating.verdict(9, 4, mac[:15] + b"\x00", mac) == (vocab.ACK_DEAD_LETTER, errors.R_REPLAY)


# --- link: the master side ------------------------------------------------------------------------
from protocol import link


def _answer(ch, msg_type=schema.IDLE, payload=b""):
    return ch.accept(fr.Frame(ch.address, msg_type, ch.seq, payload))


def test_the_master_counts_every_event_and_forgets_an_answered_request():
    ch = link.MasterChannel(1, seq=256 + 7)
    assert ch.seq == 7 and ch.state == link.READY and ch.pending_type is None
    for k in (1, 2):
        raw = ch.request(schema.POLL, {"want_status": 1})
        assert raw == fr.encode_frame(1, schema.POLL, 7 + k, codec.encode(schema.POLL, {"want_status": 1}))
        assert ch.pending_type == schema.POLL and ch.attempts == 1
        assert ch.resend() == raw and ch.resend() == raw and ch.attempts == 3
        reply = _answer(ch, schema.IDLE, codec.encode(schema.IDLE, {"outbox": 2}))
        assert (reply.type, reply.record, reply.error, reply.attempts) == (schema.IDLE, {"outbox": 2}, None, 3)
        assert ch.pending_type is None and ch._pending is None
        assert _answer(ch) is None                       # nothing outstanding: stale
        assert ch.stats == {"requests": k, "resends": 2 * k, "replies": k, "stale": k,
                            "bad_replies": 0, "gave_up": 0}
    for k in (1, 2):
        ch.request(schema.POLL, {})
        ch.give_up()
        assert ch.pending_type is None and ch._pending is None and ch.stats["gave_up"] == k
    for k in (1, 2):
        ch.request(schema.POLL, {})
        reply = _answer(ch, schema.RATING, b"\x10\x01")
        assert reply.record is None and reply.error.reason == errors.R_MISSING
        assert ch.stats["bad_replies"] == k and ch.state == link.READY


def test_a_reply_must_match_address_seq_and_come_from_a_device():
    ch = link.MasterChannel(247)
    ch.request(schema.POLL, {})
    for f in (fr.Frame(246, schema.IDLE, ch.seq, b""), fr.Frame(247, schema.IDLE, ch.seq - 1, b""),
              fr.Frame(247, schema.POLL, ch.seq, b"")):
        assert ch.accept(f) is None and ch.state == link.WAITING
    assert ch.stats["stale"] == 3
    assert ch.accept(fr.Frame(247, schema.IDLE, ch.seq, b"")).type == schema.IDLE


def test_master_misuse_says_what_went_wrong():
    with pytest.raises(LocalProtocolError, match=r"^device address must be 1\.\.247$"):
        link.MasterChannel(0)
    ch = link.MasterChannel(3)
    with pytest.raises(LocalProtocolError, match="^the gateway sends gateway message types$"):
        ch.request(schema.RATING, {})
    assert ch.state == link.READY and ch.stats["requests"] == 0
    with pytest.raises(LocalProtocolError, match="^resend while ready$"):
        ch.resend()
    ch.request(schema.POLL, {})
    with pytest.raises(LocalProtocolError, match="^send while waiting$"):
        ch.request(schema.POLL, {})


def test_the_bus_keeps_one_channel_per_address_and_counts_every_foreign_frame():
    bus = link.MasterBus()
    a = bus.channel(4, seq=9)
    assert bus.channel(4) is a and a.seq == 9 and bus.channel(5) is not a
    a.request(schema.POLL, {})
    for k in (1, 2, 3):
        bus.receive_data(fr.encode_frame(9, schema.IDLE, a.seq, b""))      # nobody's channel
        assert bus.next_reply() is None and bus.stats["foreign"] == 2 * k - 1
        bus.receive_data(fr.encode_frame(4, schema.POLL, a.seq, b""))      # a request: our echo
        assert bus.next_reply() is None and bus.stats["foreign"] == 2 * k
    bus.receive_data(fr.encode_frame(4, schema.IDLE, a.seq - 1, b"")       # stale, then the answer
                     + fr.encode_frame(4, schema.IDLE, a.seq, b""))
    ch, reply = bus.next_reply()
    assert ch is a and reply.type == schema.IDLE and bus.next_reply() is None


def test_a_new_channel_has_made_no_attempt_and_its_first_request_is_seq_1():
    for ch in (link.MasterChannel(5), link.MasterBus().channel(5)):
        assert ch.attempts == 0 and ch.seq == 0
        assert ch.request(schema.POLL, {})[4] == 1 and ch.attempts == 1
