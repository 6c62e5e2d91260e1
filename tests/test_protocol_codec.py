"""Binary and JSON codecs: round trips from the schema tables, canonical form, hostile input."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from protocol import codec, errors, schema, vocab
from protocol.errors import LocalProtocolError, ProtocolError
from protocol_strategies import CHINESE_NAMES, message, typed_message


@pytest.mark.parametrize("msg_type", sorted(schema.MESSAGES), ids=lambda t: schema.TYPE_NAMES[t])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_binary_and_json_round_trip_every_type(msg_type, data):
    record = data.draw(message(msg_type))
    payload = codec.encode(msg_type, record)
    assert codec.decode(msg_type, payload) == record
    text = codec.to_json(msg_type, record)
    assert codec.from_json(msg_type, text) == record
    assert codec.from_json(msg_type, text.encode("utf-8")) == record
    # The JSON is ordinary JSON, keyed by field name, bytes as hex.
    assert set(json.loads(text)) == set(record)


@settings(max_examples=150, deadline=None)
@given(typed_message())
def test_canonical_form_is_stable(tr):
    msg_type, record = tr
    payload = codec.encode(msg_type, record)
    again = codec.encode(msg_type, codec.decode(msg_type, payload))
    assert again == payload
    text = codec.to_json(msg_type, record)
    assert codec.to_json(msg_type, codec.from_json(msg_type, text)) == text
    # Field order follows the field numbers, whatever order the dict was built in.
    shuffled = dict(reversed(list(record.items())))
    assert codec.encode(msg_type, shuffled) == payload
    assert codec.to_json(msg_type, shuffled) == text


def test_zero_and_empty_values_are_absent_on_the_wire():
    assert codec.encode(schema.IDLE, {"outbox": 0, "case_id": 0}) == b""
    assert codec.decode(schema.IDLE, b"") == {}
    assert codec.encode(schema.RATING, {"device": "d", "counter": 1, "source": 1, "text": "", "tags": []}) == \
        codec.encode(schema.RATING, {"device": "d", "counter": 1, "source": 1})


@pytest.mark.parametrize("name", CHINESE_NAMES)
def test_rare_chinese_names_survive_both_forms(name):
    ctx = {"case_id": 7, "node": vocab.NODE_COMPLETION, "staff_name": name, "matter_name": name + "的事项"}
    assert codec.decode(schema.CONTEXT, codec.encode(schema.CONTEXT, ctx)) == ctx
    text = codec.to_json(schema.CONTEXT, ctx)
    assert name in text  # raw UTF-8, not \u escapes
    assert codec.from_json(schema.CONTEXT, text) == ctx


def test_limits_count_characters_not_bytes():
    name = "𠀋" * 16  # 16 characters, 64 bytes
    ctx = {"case_id": 1, "node": 1, "staff_name": name}
    assert codec.decode(schema.CONTEXT, codec.encode(schema.CONTEXT, ctx))["staff_name"] == name
    with pytest.raises(LocalProtocolError):
        codec.encode(schema.CONTEXT, {"case_id": 1, "node": 1, "staff_name": name + "王"})


def test_record_size_cap_applies_to_both_forms():
    ctx = {"case_id": 1, "node": 1, "serials": ["S" * 40] * 16, "matter_name": "𠀋" * 60, "qr": "q" * 200}
    with pytest.raises(LocalProtocolError):
        codec.encode(schema.CONTEXT, ctx)
    with pytest.raises(LocalProtocolError):
        codec.to_json(schema.CONTEXT, ctx)
    with pytest.raises(ProtocolError) as e:
        codec.decode(schema.POLL, bytes(schema.MAX_RECORD_BYTES + 1))
    assert e.value.reason == errors.R_OVERSIZE


@pytest.mark.parametrize("record,problem", [
    ({"device": "d", "counter": 1}, "source"),                        # required field missing
    ({"device": "d", "counter": 1, "source": 1, "overall": 6}, "6"),  # level out of range
    ({"device": "d", "counter": 1, "source": 1, "colour": 1}, "colour"),
    ({"device": "d e", "counter": 1, "source": 1}, "token"),
    ({"device": "d", "counter": 1, "source": True}, "source"),
    ({"device": "d", "counter": 1, "source": 1, "tags": [1] * 9}, "tags"),
    ({"device": "d", "counter": 1, "source": 1, "text": "a\nb"}, "control"),
    ({"device": "d", "counter": 1, "source": 1, "mac": "00" * 16}, "bytes"),
])
def test_invalid_records_are_local_errors(record, problem):
    with pytest.raises(LocalProtocolError) as e:
        codec.encode(schema.RATING, record)
    assert problem in str(e.value)


def test_unknown_type_is_refused_with_its_reason():
    with pytest.raises(ProtocolError) as e:
        codec.decode(0x7F, b"")
    assert e.value.reason == errors.R_UNKNOWN_TYPE
    with pytest.raises(LocalProtocolError):
        codec.encode(0x7F, {})


@settings(max_examples=400, deadline=None)
@given(msg_type=st.sampled_from(sorted(schema.MESSAGES) + [0x7F, 0x86]), data=st.binary(max_size=300))
def test_garbage_payload_raises_only_protocol_error(msg_type, data):
    try:
        record = codec.decode(msg_type, data)
    except ProtocolError as e:
        assert e.reason in errors.REASON_NAMES
        return
    # Whatever was accepted is a valid record: it re-encodes without complaint.
    codec.encode(msg_type, record)


@settings(max_examples=200, deadline=None)
@given(tr=typed_message(), data=st.data())
def test_bit_flips_raise_only_protocol_error(tr, data):
    msg_type, record = tr
    payload = bytearray(codec.encode(msg_type, record))
    if not payload:
        return
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] ^= 1 << data.draw(st.integers(0, 7))
    try:
        got = codec.decode(msg_type, bytes(payload))
    except ProtocolError:
        return
    codec.encode(msg_type, got)


@settings(max_examples=300, deadline=None)
@given(msg_type=st.sampled_from(sorted(schema.MESSAGES)),
       text=st.one_of(st.text(max_size=200), st.recursive(
           st.none() | st.booleans() | st.integers(-5, 2 ** 70) | st.floats() | st.text(max_size=20),
           lambda c: st.lists(c, max_size=5) | st.dictionaries(
               st.sampled_from(["case_id", "device", "counter", "source", "tags", "items", "mac", "x"]),
               c, max_size=6), max_leaves=20).map(json.dumps)))
def test_garbage_json_raises_only_protocol_error(msg_type, text):
    try:
        record = codec.from_json(msg_type, text)
    except ProtocolError as e:
        assert e.reason in errors.REASON_NAMES
        return
    codec.encode(msg_type, record)


def test_json_with_escaped_rare_character_is_accepted_on_cpython():
    text = json.dumps({"device": "d", "counter": 1, "source": 1, "text": "王喆 𠀋"}, ensure_ascii=True)
    assert codec.from_json(schema.RATING, text)["text"] == "王喆 𠀋"
