"""Edges of protocol/auth.py that mutation testing (tools/mutation.py, docs/mutation.md) found
untested: the HMAC against the standard's vectors and keys of every length around the block size,
MACs of the wrong length refused (a prefix of a genuine MAC must never verify), misuse by its words,
and the MQTT password derivation."""

import hashlib
import hmac
from binascii import hexlify

import pytest

from protocol import auth, schema
from protocol.errors import LocalProtocolError

KEY = bytes(range(1, 33))
RATING = {"device": "ev-0a1b2c3d4e5f", "counter": 7, "case_id": 3, "serials": ["SZ2026120300017"],
          "node": 1, "source": 1, "overall": 4, "business": 5, "service": 4, "tags": [502],
          "text": "王䶮明 讲解不清", "staff_id": "A017", "window": "07"}
ACK = {"device": RATING["device"], "counter": 7, "result": 0, "reason": 0}


@pytest.mark.parametrize("key, data, digest", [
    # RFC 4231 test cases 1, 2, 6 (a key longer than the block: hashed first) and 7
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than block-size "
                    b"data. The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
])
def test_hmac_matches_the_rfc_vectors(key, data, digest):
    assert auth.hmac_sha256(key, data).hex() == digest


def test_hmac_matches_the_standard_library_for_every_key_length_around_the_block():
    for n in range(0, 130):
        key = bytes((i * 7 + n) & 0xFF for i in range(n))
        assert auth.hmac_sha256(key, b"hall") == hmac.new(key, b"hall", hashlib.sha256).digest(), n


def test_a_mac_that_is_missing_short_long_or_a_prefix_never_verifies():
    signed = auth.sign(KEY, RATING)
    assert auth.verify(KEY, signed)
    good = signed["mac"]
    for mac in (None, b"", good[:8], good[:15], good + b"\x00", bytes(16), bytes([good[0] ^ 1]) + good[1:]):
        assert not auth.verify(KEY, dict(signed, mac=mac)), mac
    unsigned = dict(RATING)
    assert not auth.verify(KEY, unsigned)
    ack = auth.sign_ack(KEY, RATING["device"], ACK, good)
    assert auth.verify_ack(KEY, RATING["device"], ack, good)
    for mac in (None, b"", ack["mac"][:8], ack["mac"] + b"\x00", bytes([ack["mac"][0] ^ 1]) + ack["mac"][1:]):
        assert not auth.verify_ack(KEY, RATING["device"], dict(ack, mac=mac), good), mac
    for rating_mac in (None, b"", good[:8], good + b"\x00"):
        assert not auth.verify_ack(KEY, RATING["device"], ack, rating_mac), rating_mac


def test_signing_again_replaces_an_old_mac_and_gives_the_same_mac():
    signed = auth.sign(KEY, dict(RATING, mac=b"\x01" * 16))
    assert signed == auth.sign(KEY, RATING) and auth.verify(KEY, signed)
    ack = auth.sign_ack(KEY, RATING["device"], dict(ACK, mac=b"\x02" * 16), signed["mac"])
    assert ack == auth.sign_ack(KEY, RATING["device"], ACK, signed["mac"])


def test_misuse_says_what_is_wrong():
    for call in (lambda: auth.rating_mac(KEY[:31], RATING),
                 lambda: auth.ack_mac(KEY + b"\x00", RATING["device"], ACK, bytes(16))):
        with pytest.raises(LocalProtocolError) as e:
            call()
        assert str(e.value) == "device keys are 32 bytes"
    with pytest.raises(LocalProtocolError) as e:
        auth.ack_signed_bytes(RATING["device"], ACK, bytes(15))
    assert str(e.value) == "a rating MAC is 16 bytes"


def test_the_ack_mac_covers_the_receivers_id_and_the_answered_ratings_mac():
    raw = auth.ack_signed_bytes("ev-1", dict(ACK, device="someone-else"), b"\x05" * 16)
    assert raw.startswith(auth.ACK_LABEL) and raw.endswith(b"\x05" * 16)
    assert raw == auth.ack_signed_bytes("ev-1", dict(ACK, device="ev-1"), b"\x05" * 16)
    assert b"ev-1" in raw and b"someone-else" not in raw


def test_the_mqtt_password_is_the_first_16_bytes_of_the_hmac_of_its_label_in_hex():
    want = hexlify(hmac.new(KEY, b"hall-mqtt-password/1", hashlib.sha256).digest()[:16]).decode()
    assert auth.mqtt_password(KEY) == want
    assert auth.mqtt_password(bytearray(KEY)) == want and len(want) == 32
    assert auth.mqtt_password(KEY[::-1]) != want


def test_the_rating_mac_leaves_out_what_the_gateway_adds():
    signed = auth.sign(KEY, RATING)
    assert auth.verify(KEY, dict(signed, gateway_time=1764720000, hall="futian-1", reoffer=1))
    assert not auth.verify(KEY, dict(signed, counter=8))
    assert set(schema.MAC_EXCLUDED) == {"mac", "gateway_time", "hall", "reoffer"}


SETTLE = {"generation": 0x1F2E3D4C5B6A7988, "settled": 1043, "seq": 7}


def test_the_settle_mac_is_hmac_sha256_over_its_label_and_the_record_naming_the_device():
    from protocol import codec
    signed = auth.sign_settle(KEY, "win07", SETTLE)
    body = codec.encode(schema.SETTLE, dict(SETTLE, device="win07"))
    want = hmac.new(KEY, b"hall-rating/2 settle\x00" + bytes(body), hashlib.sha256).digest()[:16]
    assert signed["mac"] == want and "device" not in signed
    assert auth.verify_settle(KEY, "win07", signed)
    assert auth.verify_settle(KEY, "win07", dict(signed, device="win07"))


def test_a_settle_verifies_only_unaltered_for_its_own_device_and_key():
    signed = auth.sign_settle(KEY, "win07", SETTLE)
    assert not auth.verify_settle(KEY, "win08", signed)          # another device's
    assert not auth.verify_settle(KEY[::-1], "win07", signed)    # another key
    for name, value in (("settled", 1044), ("seq", 8), ("generation", 1), ("reoffer", 1)):
        assert not auth.verify_settle(KEY, "win07", dict(signed, **{name: value})), name
    assert not auth.verify_settle(KEY, "win07", dict(signed, mac=signed["mac"][:15]))
    assert not auth.verify_settle(KEY, "win07", {k: v for k, v in signed.items() if k != "mac"})
    # the labels differ: a settle MAC is never an ACK MAC over the same numbers
    assert auth.settle_signed_bytes("win07", SETTLE)[:21] != auth.ack_signed_bytes(
        "win07", {"counter": 1}, bytes(16))[:21]
