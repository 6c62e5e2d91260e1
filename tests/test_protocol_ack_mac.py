"""ACK MAC (SPEC 7.5): the gateway signs every ACK under the receiving device's key; the device
releases a rating only on an ACK that verifies. `device` is covered even when the ACK omits it."""

import hashlib
import hmac

import pytest
from hypothesis import given, settings, strategies as st

from protocol import auth, codec, schema, vocab
from protocol.errors import LocalProtocolError
from protocol_strategies import message

KEY = bytes(range(32))
DEV = "ev-a05"


def _ack(**kw):
    a = {"device": DEV, "counter": 1042, "result": vocab.ACK_STORED}
    a.update(kw)
    return a


def test_ack_mac_is_truncated_hmac_over_its_label_and_the_encoding_with_device():
    bare = {"counter": 1042, "result": vocab.ACK_DEAD_LETTER, "reason": 9}
    with_dev = dict(bare, device=DEV)
    expected = hmac.new(KEY, b"hall-rating/1 ack\x00" + codec.encode(schema.ACK, with_dev),
                        hashlib.sha256).digest()[:16]
    assert auth.ack_mac(KEY, DEV, bare) == expected
    assert auth.ack_mac(KEY, DEV, with_dev) == expected
    assert auth.sign_ack(KEY, DEV, bare)["mac"] == expected
    # Not the rating label: an ACK MAC can never pass for a rating MAC over the same bytes.
    assert expected != hmac.new(KEY, b"hall-rating/1 rating\x00" + codec.encode(schema.ACK, with_dev),
                                hashlib.sha256).digest()[:16]


def test_device_omitted_or_present_gives_the_same_mac():
    signed = auth.sign_ack(KEY, DEV, _ack())
    bare = dict(signed)
    del bare["device"]
    assert auth.verify_ack(KEY, DEV, signed)
    assert auth.verify_ack(KEY, DEV, bare)
    assert auth.sign_ack(KEY, DEV, {"counter": 1042})["mac"] == \
        auth.sign_ack(KEY, DEV, {"device": DEV, "counter": 1042})["mac"]


def test_signed_for_another_device_or_key_fails():
    signed = auth.sign_ack(KEY, DEV, _ack())
    assert not auth.verify_ack(KEY, "ev-a06", signed)
    assert not auth.verify_ack(bytes(32), DEV, signed)
    other = auth.sign_ack(KEY, "ev-a06", _ack(device="ev-a06"))
    assert not auth.verify_ack(KEY, DEV, dict(other, device=DEV))


def test_missing_or_mangled_mac_fails():
    signed = auth.sign_ack(KEY, DEV, _ack())
    assert not auth.verify_ack(KEY, DEV, _ack())
    for bad in (b"", signed["mac"][:15], bytes(16), signed["mac"][:-1] + bytes([signed["mac"][-1] ^ 1])):
        assert not auth.verify_ack(KEY, DEV, dict(signed, mac=bad))
    with pytest.raises(LocalProtocolError):
        auth.ack_mac(b"short", DEV, _ack())


def test_sign_replaces_an_old_mac():
    signed = auth.sign_ack(KEY, DEV, _ack(mac=bytes(16)))
    assert auth.verify_ack(KEY, DEV, signed)


def test_ack_mac_survives_both_forms():
    for rec in (_ack(), {"counter": 7, "result": vocab.ACK_RETRY, "reason": 12}):
        signed = auth.sign_ack(KEY, DEV, rec)
        assert auth.verify_ack(KEY, DEV, codec.decode(schema.ACK, codec.encode(schema.ACK, signed)))
        assert auth.verify_ack(KEY, DEV, codec.from_json(schema.ACK, codec.to_json(schema.ACK, signed)))


@settings(max_examples=150, deadline=None)
@given(a=message(schema.ACK), data=st.data())
def test_tampering_any_field_breaks_the_ack_mac(a, data):
    a = dict(a)
    a.pop("mac", None)
    dev = a.get("device") or DEV
    signed = auth.sign_ack(KEY, dev, a)
    assert auth.verify_ack(KEY, dev, signed)
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
    assert not auth.verify_ack(KEY, dev, tampered)
