"""Rating MAC, rating rules, replay verdicts, topics, timing arithmetic."""

import hashlib
import hmac

import pytest
from hypothesis import given, settings, strategies as st

from protocol import auth, codec, errors, rating, schema, timing, topics, vocab
from protocol.errors import LocalProtocolError, ProtocolError
from protocol_strategies import message

KEY = bytes(range(32))


def _rating(**kw):
    r = {"device": "ev-a05", "counter": 1042, "case_id": 31337, "serials": ["SZ1"], "node": 3,
         "source": vocab.SRC_PRESS, "overall": 4, "service": 5, "tags": [501], "text": "王喆 李堃 朱镕",
         "window": "A05", "device_time": 1767228000, "uptime_ms": 5}
    r.update(kw)
    return r


def test_hmac_matches_the_standard_library():
    for key in (KEY, b"k", bytes(100)):
        for msg in (b"", b"abc", bytes(1000)):
            assert auth.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


def test_mac_is_truncated_hmac_over_label_and_canonical_encoding():
    r = _rating()
    expected = hmac.new(KEY, b"hall-rating/1 rating\x00" + codec.encode(schema.RATING, r), hashlib.sha256)
    assert auth.rating_mac(KEY, r) == expected.digest()[:16]
    assert auth.sign(KEY, r)["mac"] == expected.digest()[:16]


@settings(max_examples=100, deadline=None)
@given(r=message(schema.RATING), data=st.data())
def test_tampering_any_covered_field_breaks_the_mac(r, data):
    r = {k: v for k, v in r.items() if k not in schema.MAC_EXCLUDED}
    signed = auth.sign(KEY, r)
    assert auth.verify(KEY, signed)
    other = data.draw(message(schema.RATING))
    name = data.draw(st.sampled_from([f[1] for f in schema.RATING_FIELDS if f[1] not in schema.MAC_EXCLUDED]))
    tampered = dict(signed)
    if name in other:
        tampered[name] = other[name]
    else:
        tampered.pop(name, None)
    if codec.encode(schema.RATING, {k: v for k, v in tampered.items() if k != "mac"}) == \
            codec.encode(schema.RATING, r):
        return  # drew the same value: nothing was tampered
    assert not auth.verify(KEY, tampered)
    # The gateway's own fields are outside the MAC.
    outside = dict(signed, gateway_time=data.draw(st.integers(1, 2 ** 40)), hall="sz-futian-01")
    assert auth.verify(KEY, outside)


def test_wrong_key_or_mangled_mac_fails():
    signed = auth.sign(KEY, _rating())
    assert not auth.verify(bytes(32), signed)
    for bad in (b"", signed["mac"][:15], bytes(16), signed["mac"][:-1] + bytes([signed["mac"][-1] ^ 1])):
        assert not auth.verify(KEY, dict(signed, mac=bad))
    assert not auth.verify(KEY, _rating())
    with pytest.raises(LocalProtocolError):
        auth.rating_mac(b"short", _rating())


def test_mac_survives_both_forms():
    signed = auth.sign(KEY, _rating())
    assert auth.verify(KEY, codec.decode(schema.RATING, codec.encode(schema.RATING, signed)))
    assert auth.verify(KEY, codec.from_json(schema.RATING, codec.to_json(schema.RATING, signed)))


@pytest.mark.parametrize("r,indicators,reason", [
    (_rating(), None, None),
    (_rating(overall=1, service=1, tags=[]), None, None),
    (_rating(overall=1, service=1), None, errors.R_BAD_STATE),                 # tag on a good rating
    (_rating(overall=0, service=0, tags=[], items=[]), None, errors.R_MISSING),
    (_rating(source=vocab.SRC_NOT_RATED, overall=0, service=0, tags=[], text=""), None, None),
    (_rating(source=vocab.SRC_NOT_RATED, tags=[], text=""), None, errors.R_BAD_STATE),
    (_rating(source=9), None, errors.R_OUT_OF_RANGE),
    (_rating(source=vocab.SRC_SYSTEM_DEFAULT, overall=3, service=0, tags=[], text=""), None,
     errors.R_BAD_STATE),                                                      # central side only
    (_rating(overall=0), vocab.NODE_INDICATORS[vocab.NODE_RECEIPT], None),
    (_rating(), vocab.NODE_INDICATORS[vocab.NODE_RECEIPT], errors.R_BAD_STATE),
])
def test_rating_rules(r, indicators, reason):
    r = {k: v for k, v in r.items() if v not in (0, "", [])}
    if reason is None:
        rating.check(r, indicators)
    else:
        with pytest.raises(ProtocolError) as e:
            rating.check(r, indicators)
        assert e.value.reason == reason


def test_bad_rating_detection_and_ids():
    assert rating.is_bad(_rating(overall=1, service=4))
    assert rating.is_bad({"items": [{"code": "T", "level": 5}]})
    assert not rating.is_bad(_rating(overall=3, service=2))
    assert rating.rating_id(_rating()) == "ev-a05:1042"
    assert rating.split_rating_id("a:b:7") == ("a:b", 7)
    for bad in ("nocolon", ":1", "d:", "d:x"):
        with pytest.raises(ProtocolError):
            rating.split_rating_id(bad)


def test_replay_verdicts():
    mac, other = b"m" * 16, b"n" * 16
    assert rating.verdict(5, 4, None, mac) == (vocab.ACK_STORED, errors.R_OK)
    assert rating.verdict(4, 4, mac, mac) == (vocab.ACK_DUPLICATE, errors.R_OK)
    assert rating.verdict(4, 4, mac, other) == (vocab.ACK_DEAD_LETTER, errors.R_REPLAY)
    assert rating.verdict(3, 4, None, mac) == (vocab.ACK_DEAD_LETTER, errors.R_REPLAY)
    assert [vocab.device_releases(a) for a in sorted(vocab.ACK_NAMES)] == [True, True, True, False, False]


def test_topics_build_and_parse():
    t = topics.device_topic("sz-futian-01", "ev-a05", "rating")
    assert t == "hall/sz-futian-01/dev/ev-a05/rating"
    assert topics.parse(t) == ("sz-futian-01", "ev-a05", "rating")
    assert topics.parse(topics.gateway_topic("h", "devices")) == ("h", None, "devices")
    assert topics.gateway_subscriptions("h") == ["hall/h/dev/+/rating", "hall/h/dev/+/status",
                                                 "hall/h/dev/+/availability", "hall/h/dev/+/update_state"]
    assert topics.device_subscriptions("h", "d") == ["hall/h/dev/d/context", "hall/h/dev/d/ack",
                                                     "hall/h/dev/d/config", "hall/h/dev/d/update", "hall/h/dev/d/settle"]
    for bad in ("hall/h/dev/d/x", "hall/h/dev/+/rating", "hall/#/gateway/state", "x/h/gateway/state",
                "hall/h/gateway", "hall/h/dev/王喆/rating", "hall/h/dev/%s/rating" % ("d" * 33)):
        with pytest.raises(ProtocolError):
            topics.parse(bad)
    for hall, dev in (("h/x", "d"), ("h", "d#"), ("", "d"), ("h", "+"), ("h", "ev a05"), ("h", "设备"),
                      ("h" * 33, "d")):
        with pytest.raises(LocalProtocolError):
            topics.device_topic(hall, dev, "rating")
    assert set(topics.QOS) >= set(topics.RETAINED)
    assert topics.QOS["rating"] == 1 and "rating" not in topics.RETAINED


def test_timing_figures_hold_together():
    for baud in (9600, 19200, 115200):
        assert timing.guard_us(baud) >= timing.GUARD_FLOOR_US
        assert timing.guard_us(baud) >= 3.5 * 10 * 1e6 / baud
        assert timing.frame_us(0, baud) >= 10 * 10 * 1e6 / baud
        assert timing.reply_start_timeout_us(baud) < timing.reply_timeout_us(baud, 1024)
        assert timing.poll_cycle_us(32, baud) == 32 * timing.exchange_us(0, 0, baud, 2000)
    assert timing.guard_us(9600) == 3646 and timing.guard_us(115200) == 1750
