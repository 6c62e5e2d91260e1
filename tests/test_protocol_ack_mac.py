"""ACK MAC (SPEC 7.5): the gateway signs every ACK under the receiving device's key, bound to the MAC
of the rating it answers; the device releases a rating only on an ACK that verifies against its own
head's MAC. `device` is covered even when the ACK omits it."""

import hashlib
import hmac

import pytest
from hypothesis import given, settings, strategies as st

from protocol import auth, codec, schema, vocab
from protocol.errors import LocalProtocolError
from protocol_strategies import message

KEY = bytes(range(32))
DEV = "ev-a05"
RMAC = bytes(range(100, 116))   # the answered rating's MAC


def _ack(**kw):
    a = {"device": DEV, "counter": 1042, "result": vocab.ACK_STORED}
    a.update(kw)
    return a


def test_ack_mac_is_truncated_hmac_over_its_label_and_the_encoding_with_device():
    bare = {"counter": 1042, "result": vocab.ACK_DEAD_LETTER, "reason": 9}
    with_dev = dict(bare, device=DEV)
    expected = hmac.new(KEY, b"hall-rating/2 ack\x00" + codec.encode(schema.ACK, with_dev) + RMAC,
                        hashlib.sha256).digest()[:16]
    assert auth.ack_mac(KEY, DEV, bare, RMAC) == expected
    assert auth.ack_mac(KEY, DEV, with_dev, RMAC) == expected
    assert auth.sign_ack(KEY, DEV, bare, RMAC)["mac"] == expected
    # Not the rating label: an ACK MAC can never pass for a rating MAC over the same bytes.
    assert expected != hmac.new(KEY, b"hall-rating/1 rating\x00" + codec.encode(schema.ACK, with_dev) + RMAC,
                                hashlib.sha256).digest()[:16]
    # Nor for a version 1 ACK (not bound to a rating): old and new never verify each other.
    assert expected != hmac.new(KEY, b"hall-rating/1 ack\x00" + codec.encode(schema.ACK, with_dev),
                                hashlib.sha256).digest()[:16]


def test_device_omitted_or_present_gives_the_same_mac():
    signed = auth.sign_ack(KEY, DEV, _ack(), RMAC)
    bare = dict(signed)
    del bare["device"]
    assert auth.verify_ack(KEY, DEV, signed, RMAC)
    assert auth.verify_ack(KEY, DEV, bare, RMAC)
    assert auth.sign_ack(KEY, DEV, {"counter": 1042}, RMAC)["mac"] == \
        auth.sign_ack(KEY, DEV, {"device": DEV, "counter": 1042}, RMAC)["mac"]


def test_signed_for_another_device_or_key_fails():
    signed = auth.sign_ack(KEY, DEV, _ack(), RMAC)
    assert not auth.verify_ack(KEY, "ev-a06", signed, RMAC)
    assert not auth.verify_ack(bytes(32), DEV, signed, RMAC)
    other = auth.sign_ack(KEY, "ev-a06", _ack(device="ev-a06"), RMAC)
    assert not auth.verify_ack(KEY, DEV, dict(other, device=DEV), RMAC)


def test_missing_or_mangled_mac_fails():
    signed = auth.sign_ack(KEY, DEV, _ack(), RMAC)
    assert not auth.verify_ack(KEY, DEV, _ack(), RMAC)
    for bad in (b"", signed["mac"][:15], bytes(16), signed["mac"][:-1] + bytes([signed["mac"][-1] ^ 1])):
        assert not auth.verify_ack(KEY, DEV, dict(signed, mac=bad), RMAC)
    with pytest.raises(LocalProtocolError):
        auth.ack_mac(b"short", DEV, _ack(), RMAC)


def test_sign_replaces_an_old_mac():
    signed = auth.sign_ack(KEY, DEV, _ack(mac=bytes(16)), RMAC)
    assert auth.verify_ack(KEY, DEV, signed, RMAC)


def test_ack_mac_survives_both_forms():
    for rec in (_ack(), {"counter": 7, "result": vocab.ACK_RETRY, "reason": 12}):
        signed = auth.sign_ack(KEY, DEV, rec, RMAC)
        assert auth.verify_ack(KEY, DEV, codec.decode(schema.ACK, codec.encode(schema.ACK, signed)), RMAC)
        assert auth.verify_ack(KEY, DEV, codec.from_json(schema.ACK, codec.to_json(schema.ACK, signed)), RMAC)


@settings(max_examples=150, deadline=None)
@given(a=message(schema.ACK), data=st.data())
def test_tampering_any_field_breaks_the_ack_mac(a, data):
    a = dict(a)
    a.pop("mac", None)
    dev = a.get("device") or DEV
    signed = auth.sign_ack(KEY, dev, a, RMAC)
    assert auth.verify_ack(KEY, dev, signed, RMAC)
    other = data.draw(message(schema.ACK))
    name = data.draw(st.sampled_from(["counter", "result", "reason"]))
    tampered = dict(signed)
    if name in other:
        tampered[name] = other[name]
    else:
        tampered.pop(name, None)
    core = lambda r: codec.encode(schema.ACK, dict({k: v for k, v in r.items() if k != "mac"}, device=dev))
    if core(tampered) == core(signed):
        return  # drew the same value: nothing was tampered
    assert not auth.verify_ack(KEY, dev, tampered, RMAC)


def test_a_rating_mac_of_the_wrong_length_never_verifies():
    signed = auth.sign_ack(KEY, DEV, _ack(), RMAC)
    for bad in (b"", None, RMAC[:15], RMAC + b"\x00"):
        assert not auth.verify_ack(KEY, DEV, signed, bad)
    with pytest.raises(LocalProtocolError):
        auth.sign_ack(KEY, DEV, _ack(), RMAC[:15])
