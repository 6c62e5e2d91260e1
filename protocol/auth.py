"""Rating and ACK authenticity: HMAC-SHA256 under the device's own 32-byte key, truncated to 16 bytes.

The MAC covers a fixed label, then the canonical binary encoding of the rating without the
fields listed in schema.MAC_EXCLUDED (the MAC itself and what the gateway adds). The counter is
inside the encoding, so a replayed or altered rating cannot carry a valid MAC for new content.
hashlib.sha256 exists on both runtimes; hmac does not exist on MicroPython, so HMAC is built here
(RFC 2104).

An ACK releases a rating from the device's flash, so it is signed too (SPEC 7.5), by the gateway
under the same device key, over its own label, the ACK's canonical encoding with `device` set
to the receiving device's id (an RS-485 ACK may omit it; the verifier knows its own id), and the
16-byte MAC of the rating it answers. That MAC is not sent: the device puts in its own outbox
head's, so an ACK the gateway gave for anything else (junk, a forged or another device's rating
under our counter) never verifies against the rating we hold.

A SETTLE (SPEC 3.11) lets a device forget the custody copies of ratings the central API holds;
it is signed the same way over its own label (no rating MAC: it names counters, not one rating).
"""

import hashlib
from binascii import hexlify

from protocol import schema
from protocol.codec import encode_fields
from protocol.errors import LocalProtocolError

MAC_LEN = 16
KEY_LEN = 32
LABEL = b"hall-rating/1 rating\x00"
ACK_LABEL = b"hall-rating/2 ack\x00"   # /2: bound to the rating MAC (never verifies as /1)
SETTLE_LABEL = b"hall-rating/2 settle\x00"
MQTT_LABEL = b"hall-mqtt-password/1"
_BLOCK = 64


def hmac_sha256(key, message):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_BLOCK - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(message)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def signed_bytes(rating):
    """The exact bytes the MAC covers."""
    core = {}
    for name in rating:
        if name not in schema.MAC_EXCLUDED:
            core[name] = rating[name]
    return LABEL + bytes(encode_fields(schema.RATING_FIELDS, core))


def rating_mac(key, rating):
    return _mac(key, signed_bytes(rating))


def sign(key, rating):
    """A copy of `rating` carrying its MAC."""
    out = dict(rating)
    out["mac"] = rating_mac(key, out)   # an old "mac" is outside the MAC, and overwritten
    return out


def verify(key, rating):
    """True when the rating's MAC is right. Compares in constant time."""
    mac = rating.get("mac")
    if not mac or len(mac) != MAC_LEN:
        return False
    return _same(rating_mac(key, rating), mac)


def _same(good, mac):
    diff = 0
    for a, b in zip(good, mac):
        diff |= a ^ b
    return diff == 0


def _addressed(label, fields, device_id, record):
    """A gateway record's signed bytes: its label, then its canonical encoding without `mac` and
    with `device` = device_id (the receiver's id, whether the record carries it or not)."""
    core = {}
    for name in record:
        if name != "mac":
            core[name] = record[name]
    core["device"] = device_id
    return label + bytes(encode_fields(fields, core))


def _mac(key, data):
    if len(key) != KEY_LEN:
        raise LocalProtocolError("device keys are %d bytes" % KEY_LEN)
    return hmac_sha256(key, data)[:MAC_LEN]


def ack_signed_bytes(device_id, ack, rating_mac):
    """The exact bytes an ACK's MAC covers: every field but `mac`, `device` = device_id, then the
    answered rating's 16-byte MAC."""
    if len(rating_mac) != MAC_LEN:
        raise LocalProtocolError("a rating MAC is %d bytes" % MAC_LEN)
    return _addressed(ACK_LABEL, schema.ACK_FIELDS, device_id, ack) + bytes(rating_mac)


def ack_mac(key, device_id, ack, rating_mac):
    return _mac(key, ack_signed_bytes(device_id, ack, rating_mac))


def sign_ack(key, device_id, ack, rating_mac):
    """A copy of `ack` carrying its MAC for device `device_id`, answering the rating whose MAC is
    `rating_mac` (the gateway's side)."""
    out = dict(ack)
    out["mac"] = ack_mac(key, device_id, out, rating_mac)   # an old "mac" is outside the MAC
    return out


def verify_ack(key, device_id, ack, rating_mac):
    """True when the ACK was signed for device `device_id` under `key` as the answer to the rating
    whose MAC is `rating_mac` (the device's own copy). Constant-time compare."""
    mac = ack.get("mac")
    if not mac or len(mac) != MAC_LEN or not rating_mac or len(rating_mac) != MAC_LEN:
        return False
    return _same(ack_mac(key, device_id, ack, rating_mac), mac)


def settle_signed_bytes(device_id, settle):
    """The exact bytes a SETTLE's MAC covers (SPEC 3.11): every field but `mac`, with `device` =
    device_id, under its own label, so it is never taken for a rating's or an ACK's MAC."""
    return _addressed(SETTLE_LABEL, schema.SETTLE_FIELDS, device_id, settle)


def settle_mac(key, device_id, settle):
    return _mac(key, settle_signed_bytes(device_id, settle))


def sign_settle(key, device_id, settle):
    """A copy of `settle` carrying its MAC for device `device_id` (the gateway's side)."""
    out = dict(settle)
    out["mac"] = settle_mac(key, device_id, out)   # an old "mac" is outside the MAC
    return out


def verify_settle(key, device_id, settle):
    """True when the SETTLE was signed for device `device_id` under `key`. Constant-time compare."""
    mac = settle.get("mac")
    if not mac or len(mac) != MAC_LEN or len(key) != KEY_LEN:
        return False
    return _same(settle_mac(key, device_id, settle), mac)


def mqtt_password(key):
    """The device's MQTT login password (SPEC 6.2): 32 hex characters, the first 16 bytes of
    HMAC-SHA256 of MQTT_LABEL under its device key. The gateway writes its hash into the broker's
    password file, the device computes it at connect: no second secret to hand around."""
    return hexlify(hmac_sha256(bytes(key), MQTT_LABEL)[:16]).decode()
