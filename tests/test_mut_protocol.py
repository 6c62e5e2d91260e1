"""Edges of the protocol code that mutation testing (tools/mutation.py, docs/mutation.md) found
untested: each test pins one behaviour whose mutants used to survive.

The UTF-8 guard (codec._check_utf8) is what rejects bad text on a MicroPython build that does not
validate UTF-8; on CPython bytes.decode backs it up, so the public decode could not show a weak
guard. It is checked here directly against CPython's strict decoder.
"""

import itertools

import pytest

from protocol import codec, errors, schema
from protocol.errors import LocalProtocolError, ProtocolError


# --- codec: UTF-8 -----------------------------------------------------------------------------
_LEAD = (0x00, 0x41, 0x7F, 0x80, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3, 0xDE, 0xDF, 0xE0, 0xE1, 0xEC, 0xED,
         0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xF7, 0xF8, 0xFF)  # each side of every limit
_SECOND = (0x00, 0x7F, 0x80, 0x81, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF)
_LATER = (0x41, 0x80, 0xBF, 0xC0)


def _strict_ok(raw):
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _guard_ok(raw):
    try:
        codec._check_utf8(raw, "f")
        return True
    except ProtocolError as e:
        assert e.reason == errors.R_MALFORMED and e.detail.startswith("f")
        return False


def test_the_utf8_guard_agrees_with_a_strict_decoder_at_every_boundary():
    """Lead bytes on each side of every limit, with second bytes on each side of every range limit and later bytes
    inside and outside the continuation range, whole and cut short, alone and after text."""
    for lead in _LEAD:
        for second in _SECOND:
            for rest in itertools.product(_LATER, repeat=2):
                whole = bytes((lead, second) + rest)
                for n in range(1, 5):
                    for raw in (whole[:n], b"a" + whole[:n], whole[:n] + b"z"):
                        assert _guard_ok(raw) == _strict_ok(raw), raw.hex()


def test_utf8_guard_errors_say_what_is_wrong():
    with pytest.raises(ProtocolError) as e:
        codec._check_utf8(b"\xc3", "staff_name")
    assert e.value.detail == "staff_name: truncated UTF-8"
    with pytest.raises(ProtocolError) as e:
        codec._check_utf8(b"\xff", "staff_name")
    assert e.value.detail == "staff_name is not UTF-8"
    with pytest.raises(ProtocolError) as e:
        codec._check_utf8(b"\xc3\x28", "matter_name")
    assert e.value.detail == "matter_name is not UTF-8"
    with pytest.raises(ProtocolError) as e:
        codec._check_utf8(b"\xe4\xb8\x28", "text")
    assert e.value.detail == "text is not UTF-8"
    payload = bytes((4 << 3 | 2, 1, 0xFF))  # staff_name = FF
    with pytest.raises(ProtocolError) as e:
        codec.decode(schema.CONTEXT, bytes((8, 1, 64, 1)) + payload)
    assert e.value.reason == errors.R_MALFORMED and e.value.detail == "staff_name is not UTF-8"


def test_the_decoder_still_refuses_bad_utf8_when_the_guard_lets_it_through(monkeypatch):
    """The second line of defence: a runtime whose decoder validates catches what a weakened
    guard would miss, with the same reason and detail."""
    monkeypatch.setattr(codec, "_check_utf8", lambda raw, name: None)
    with pytest.raises(ProtocolError) as e:
        codec._utf8(b"\xed\xa0\x80", "staff_name")  # a surrogate
    assert e.value.reason == errors.R_MALFORMED and e.value.detail == "staff_name is not UTF-8"
    assert codec._utf8("张三".encode(), "staff_name") == "张三"


def test_the_json_entry_points_hand_over_to_jsonform():
    from protocol import jsonform
    rec = {"case_id": 3, "node": 1, "staff_name": "李四"}
    fields = schema.MESSAGES[schema.CONTEXT]
    obj = codec.to_obj(fields, rec)
    assert obj == jsonform.to_obj(fields, rec) and codec.from_obj(fields, obj) == rec
    assert codec.from_obj(fields, obj, 2) == rec
    with pytest.raises(ProtocolError):
        codec.from_obj(fields, {"items": [{"code": "x"}]}, 3)  # nested past the depth limit
    assert codec.dumps(obj) == jsonform.dumps(obj)


def test_varints_are_minimal_at_every_7_bit_boundary():
    for n, raw in ((0, b"\x00"), (1, b"\x01"), (0x7F, b"\x7f"), (0x80, b"\x80\x01"),
                   (0x3FFF, b"\xff\x7f"), (0x4000, b"\x80\x80\x01")):
        out = bytearray()
        codec.put_varint(out, n)
        assert bytes(out) == raw and codec.get_varint(raw, 0, len(raw)) == (n, len(raw))
    assert codec.encode(schema.IDLE, {"outbox": 127}) == b"\x08\x7f"


def _nest(levels):
    """A table nesting sub-records `levels` deep, and a record filling it."""
    fields, record = ((1, "v", schema.U, 9, 0, None),), {"v": 3}
    for _ in range(levels):
        fields, record = ((1, "m", schema.M, 0, 0, fields),), {"m": record}
    return fields, record


def test_both_forms_take_two_levels_of_sub_records_and_refuse_a_third():
    for levels, ok in ((2, True), (3, False)):
        fields, record = _nest(levels)
        raw = bytes(codec.encode_fields(fields, record))
        obj = codec.to_obj(fields, record)
        if ok:
            assert codec.decode_fields(fields, raw) == record and codec.from_obj(fields, obj) == record
        else:
            with pytest.raises(ProtocolError) as e:
                codec.decode_fields(fields, raw)
            assert e.value.reason == errors.R_MALFORMED and e.value.detail == "nesting too deep"
            with pytest.raises(ProtocolError):
                codec.from_obj(fields, obj)


def test_field_tables_index_the_same_from_a_cold_cache(monkeypatch):
    """The per-table indexes are built on first use; a cold cache (a fresh boot) builds them right."""
    monkeypatch.setattr(codec, "_INDEX_CACHE", {})
    monkeypatch.setattr(codec, "_NAMES_CACHE", {})
    rec = {"case_id": 9, "node": 2, "staff_name": "王五", "items": [{"code": "a", "name": "甲"}]}
    for _ in range(2):                                       # built, then taken from the cache
        raw = codec.encode(schema.CONTEXT, rec)
        assert codec.decode(schema.CONTEXT, raw) == rec
    with pytest.raises(LocalProtocolError, match="^unknown field: nope$"):
        codec.encode(schema.CONTEXT, dict(rec, nope=1))


def test_sub_records_must_be_dicts():
    with pytest.raises(LocalProtocolError, match="^items items must be dicts$"):
        codec.encode(schema.CONTEXT, {"case_id": 1, "node": 1, "items": [("code", "x")]})


# --- codec: tokens and text ---------------------------------------------------------------------
def test_token_characters_are_ascii_letters_digits_and_dot_dash_underscore():
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    for cp in range(0x250):
        c = chr(cp)
        assert codec._is_token_char(c) == (c in allowed), hex(cp)


def test_text_problems_name_the_rule():
    assert codec._text_problem(schema.S, "x" * 16, 16) is None
    assert codec._text_problem(schema.S, "x" * 17, 16) == "longer than 16 characters"
    assert codec._text_problem(schema.T, "a[b", 16) == "not a token character: '['"
    assert codec._text_problem(schema.S, "a\x7fb", 16) == "control character"
    assert codec._text_problem(schema.S, "a\x1fb", 16) == "control character"
    assert codec._text_problem(schema.S, "a\x20\x80\u3000b", 16) is None  # only C0 and DEL


def test_range_errors_say_which_field_and_which_limit():
    with pytest.raises(ProtocolError) as e:
        codec.decode(schema.CONTEXT, bytes((8, 1, 64, 9)))  # node 9 of 0..4
    assert e.value.reason == errors.R_OUT_OF_RANGE and e.value.detail == "node=9 (0..4)"
    with pytest.raises(LocalProtocolError) as e:
        codec.encode(schema.CONTEXT, {"case_id": 1, "node": 9})
    assert str(e.value) == "out_of_range: node=9 (0..4)"


# --- frame ----------------------------------------------------------------------------------------
from protocol import frame as fr  # noqa: E402


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
from protocol import rating, vocab  # noqa: E402


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
from protocol import link  # noqa: E402


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


# --- codec: every refusal of the decoder, by reason and words ----------------------------------
def _key(num, wire):
    out = bytearray()
    codec.put_varint(out, num << 3 | wire)
    return bytes(out)


def _padded(total):
    """A valid CONTEXT of exactly `total` bytes: an unknown field 99 carries the padding."""
    head = codec.encode(schema.CONTEXT, {"case_id": 1, "node": 1})
    pad = total - len(head) - len(_key(99, 2)) - 2
    return head + _key(99, 2) + bytes((pad & 0x7F | 0x80, pad >> 7)) + bytes(pad)


CTX = codec.encode(schema.CONTEXT, {"case_id": 1, "node": 1})
REFUSALS = [
    (schema.CONTEXT, CTX + _key(4, 2) + b"\x05ab", errors.R_TRUNCATED, "field 4 wants 5 bytes"),
    (schema.CONTEXT, CTX + _key(4, 3), errors.R_MALFORMED, "wire type 3"),
    (schema.CONTEXT, CTX + _key(8, 2) + b"\x00", errors.R_MALFORMED, "node has the wrong wire type"),
    (schema.CONTEXT, CTX + _key(1, 0) + b"\x00", errors.R_MALFORMED, "case_id appears twice"),
    (schema.CONTEXT, CTX + (_key(7, 2) + b"\x01a") * 17, errors.R_OVERSIZE,
     "serials holds more than 16 items"),
    (schema.CONTEXT, CTX + _key(4, 2) + b"\x11" + b"x" * 17, errors.R_OUT_OF_RANGE,
     "staff_name longer than 16 characters"),
    (0x06, b"", errors.R_UNKNOWN_TYPE, "type 0x06"),
    (schema.CONTEXT, _padded(1025), errors.R_OVERSIZE, "record of 1025 bytes"),
    (schema.CONTEXT, b"", errors.R_MISSING, "case_id"),
    (schema.CONTEXT, CTX + b"\x80", errors.R_TRUNCATED, "varint"),
    (schema.CONTEXT, CTX + _key(12, 0) + b"\xff" * 10 + b"\x01", errors.R_MALFORMED, "varint too long"),
]


@pytest.mark.parametrize("msg_type,raw,reason,detail", REFUSALS)
def test_each_refusal_of_the_decoder_has_its_reason_and_words(msg_type, raw, reason, detail):
    with pytest.raises(ProtocolError) as e:
        codec.decode(msg_type, raw)
    assert (e.value.reason, e.value.detail) == (reason, detail)


def test_a_record_of_exactly_1024_bytes_and_unknown_fields_anywhere_are_taken():
    raw = _padded(1024)
    assert len(raw) == 1024 and codec.decode(schema.CONTEXT, raw) == {"case_id": 1, "node": 1}
    first = _key(99, 0) + b"\x05" + _key(98, 2) + b"\x02zz" + CTX      # unknown fields lead
    assert codec.decode(schema.CONTEXT, first) == {"case_id": 1, "node": 1}


# --- codec: our own misuse, by words ------------------------------------------------------------
_RAT = {"device": "d1", "counter": 1, "source": 1, "overall": 1}
MISUSE = [
    (schema.CONTEXT, {"case_id": 1, "node": 1, "serials": "SZ1"}, "serials must be a list"),
    (schema.CONTEXT, {"case_id": 1, "node": 1, "serials": ["a"] * 17}, "serials holds more than 16 items"),
    (schema.CONTEXT, {"case_id": 1, "node": 1, "serials": ["a b"]},
     "out_of_range: serials not a token character: ' '"),
    (schema.CONTEXT, {"case_id": 1, "node": 1, "staff_name": b"x"}, "malformed: staff_name is not text"),
    (schema.CONTEXT, {"case_id": 1, "node": 1, "staff_name": "x" * 17},
     "out_of_range: staff_name longer than 16 characters"),
    (schema.RATING, dict(_RAT, mac="ab"), "malformed: mac is not bytes"),
    (schema.RATING, dict(_RAT, mac=bytes(17)), "oversize: mac longer than 16 bytes"),
    (schema.RATING, {"counter": 1, "source": 1}, "%s needs device" % schema.RATING),
    (0x06, {}, "unknown message type 6"),
]


@pytest.mark.parametrize("msg_type,record,words", MISUSE)
def test_each_misuse_of_the_encoder_says_what_is_wrong(msg_type, record, words):
    with pytest.raises(LocalProtocolError) as e:
        codec.encode(msg_type, record)
    assert str(e.value) == words


def test_the_encoder_takes_1024_bytes_and_refuses_1025():
    rec = {"case_id": 1, "node": 1, "serials": ["s" * 40] * 16, "matter_name": "事" * 60}
    n = 1
    while len(codec.encode_fields(schema.MESSAGES[schema.CONTEXT], dict(rec, qr="q" * n))) < 1024:
        n += 1
    assert len(codec.encode(schema.CONTEXT, dict(rec, qr="q" * n))) == 1024
    with pytest.raises(LocalProtocolError) as e:
        codec.encode(schema.CONTEXT, dict(rec, qr="q" * (n + 1)))
    assert str(e.value) == "record of 1025 bytes exceeds 1024"
