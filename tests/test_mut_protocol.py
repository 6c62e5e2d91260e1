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
    (0x7f, b"", errors.R_UNKNOWN_TYPE, "type 0x7f"),
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
    (schema.CONTEXT, {"case_id": 1, "node": 1, "window": "a b"},
     "out_of_range: window not a token character: ' '"),
    (schema.CONTEXT, {"case_id": 1, "node": 1, "serials": ["a\x07"]}, "out_of_range: serials control character"),
    (schema.CONTEXT, {"case_id": 1, "node": 1, "staff_name": b"x"}, "malformed: staff_name is not text"),
    (schema.CONTEXT, {"case_id": 1, "node": 1, "staff_name": "x" * 17},
     "out_of_range: staff_name longer than 16 characters"),
    (schema.RATING, dict(_RAT, mac="ab"), "malformed: mac is not bytes"),
    (schema.RATING, dict(_RAT, mac=bytes(17)), "oversize: mac longer than 16 bytes"),
    (schema.RATING, {"counter": 1, "source": 1}, "%s needs device" % schema.RATING),
    (0x7F, {}, "unknown message type 127"),
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
