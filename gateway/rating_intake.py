"""A RATING from a device, decoded and authenticated on the gateway's ingest path (CPython only).

rating_from_json(payload) -> (record, signed bytes) gives exactly what protocol's
codec.from_json(schema.RATING, payload) and auth.signed_bytes(record) give, and raises
ProtocolError with the same reason code on every input (property tests compare them); verify_mac
is auth.verify with the C one-shot hmac.digest. Protocol's portable code is what the devices run
(MicroPython); this is its CPython fast form, in about a third of the time:
- one pass over the schema table checks each value and writes its canonical encoding at once
  (protocol checks a value in from_obj, then again while encode_fields writes it, then once more
  when auth encodes the record for the MAC);
- text is checked by compiled regular expressions, not a loop over its characters;
- the JSON is parsed by orjson; on anything it refuses (or if it is missing) the standard library
  parses it, so orjson only ever decides an input both accept alike.
"""

import hashlib
import hmac
import json
import re
from binascii import Error as _HexError
from binascii import unhexlify

try:
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - the standard library gives the same results
    _orjson_loads = None

from protocol import auth, errors, schema, vocab
from protocol.errors import ProtocolError
from protocol.schema import B, M, S, T, U

_CONTROL = re.compile("[\x00-\x1f\x7f]")      # not allowed in S text (codec._text_problem)
_TOKEN = re.compile("[A-Za-z0-9._-]*")         # the whole of a T token (fullmatch)
_SMALL = [bytes((n,)) for n in range(0x80)]
_WT_VARINT = 0
_WT_LEN = 2


def _varint(n):
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return out


def _compile(fields):
    """(name, kind, limit, repeat, sub, key bytes, MAC-covered) per field, in field order."""
    out = []
    for num, name, kind, limit, repeat, sub in fields:
        key = bytes(_varint((num << 3) | (_WT_VARINT if kind == U else _WT_LEN)))
        out.append((name, kind, limit, repeat, _compile(sub) if kind == M else None, key,
                    name not in schema.MAC_EXCLUDED))
    return tuple(out)


_RATING = _compile(schema.RATING_FIELDS)
_REQUIRED = schema.REQUIRED[schema.RATING]


def _malformed(detail):
    return ProtocolError(errors.R_MALFORMED, detail)


def _out_of_range(detail):
    return ProtocolError(errors.R_OUT_OF_RANGE, detail)


def _text(name, kind, limit, value):
    """UTF-8 of a checked S or T value; the reasons and their order are jsonform's: not text or
    not valid Unicode (malformed), then too long or a character it may not hold (out of range)."""
    if type(value) is not str:
        raise _malformed("%s is not text" % name)
    if kind == T and _TOKEN.fullmatch(value):      # ASCII, so nothing malformed can hide in it
        if len(value) > limit:
            raise _out_of_range("%s longer than %d characters" % (name, limit))
        return value.encode("ascii")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:          # a lone surrogate (a JSON \ud83d escape)
        raise _malformed("%s is not valid Unicode" % name) from None
    if len(value) > limit:
        raise _out_of_range("%s longer than %d characters" % (name, limit))
    if kind == T:
        raise _out_of_range("%s holds a character outside [A-Za-z0-9._-]" % name)
    if _CONTROL.search(value):
        raise _out_of_range("%s control character" % name)
    return data


def _value(name, kind, limit, sub, value, depth, key, out, always):
    """Check one JSON value and append its encoding to `out` (unless a default, not `always`);
    return the record's value."""
    if kind == U:
        if type(value) is not int or value < 0 or value > limit:
            raise _out_of_range("%s=%r (0..%d)" % (name, value, limit))
        if value or always:
            out += key
            out += _varint(value)
        return value
    if kind == M:
        body = bytearray()
        value = _record(sub, value, body, body, depth + 1)
        out += key
        out += _varint(len(body))
        out += body
        return value
    if kind == B:
        if type(value) is not str or len(value) % 2:
            raise _malformed("%s must be hex" % name)
        try:
            data = value = unhexlify(value)
        except (_HexError, ValueError):
            raise _malformed("%s must be hex" % name) from None
        if len(data) > limit:
            raise ProtocolError(errors.R_OVERSIZE, "%s longer than %d bytes" % (name, limit))
    else:
        data = _text(name, kind, limit, value)
    if data or always:
        out += key
        out += _varint(len(data))
        out += data
    return value


def _record(spec, obj, core, extra, depth=0):
    """jsonform.from_obj on a compiled table, writing the MAC-covered fields' canonical encoding
    to `core` and the others' to `extra` as it goes."""
    if type(obj) is not dict:
        raise _malformed("expected an object")
    if depth > 2:
        raise _malformed("nesting too deep")
    record = {}
    get = obj.get
    for name, kind, limit, repeat, sub, key, covered in spec:
        value = get(name)
        if value is None:
            continue
        out = core if covered else extra
        if repeat:
            if type(value) is not list:
                raise _malformed("%s must be a list" % name)
            if len(value) > repeat:
                raise ProtocolError(errors.R_OVERSIZE, "%s holds more than %d items" % (name, repeat))
            if value:
                record[name] = [_value(name, kind, limit, sub, v, depth, key, out, True) for v in value]
        elif kind == U:     # the commonest kind, inline (_value does the same)
            if type(value) is not int or value < 0 or value > limit:
                raise _out_of_range("%s=%r (0..%d)" % (name, value, limit))
            if value:
                out += key
                out += _SMALL[value] if value < 0x80 else _varint(value)
                record[name] = value
        else:
            value = _value(name, kind, limit, sub, value, depth, key, out, kind == M)
            if value or kind == M:
                record[name] = value
    return record


def _parse(payload):
    if _orjson_loads is not None:
        try:
            return _orjson_loads(payload)
        except Exception:
            pass   # the standard library decides (and words the reason) for whatever orjson refuses
    try:
        text = bytes(payload).decode("utf-8")   # strict: no surrogates, overlongs or > U+10FFFF
    except UnicodeDecodeError:
        raise _malformed("payload is not UTF-8") from None
    try:
        return json.loads(text)
    except Exception:
        raise _malformed("not JSON") from None


def rating_from_json(payload):
    """(record, signed bytes): codec.from_json(schema.RATING, payload) and auth.signed_bytes of it."""
    core = bytearray()
    extra = bytearray()
    record = _record(_RATING, _parse(payload), core, extra)
    for name in _REQUIRED:
        if not record.get(name):
            raise ProtocolError(errors.R_MISSING, name)
    size = len(core) + len(extra)   # a record's encoding is the sum of its fields' encodings
    if size > schema.MAX_RECORD_BYTES:
        raise ProtocolError(errors.R_OVERSIZE, "record of %d bytes" % size)
    return record, auth.LABEL + core


def verify_mac(key, rating, signed=None):
    """auth.verify with CPython's C HMAC: the same HMAC-SHA256/16 over the same auth.signed_bytes
    (`signed`, when the caller has them from rating_from_json), compared in constant time."""
    mac = rating.get("mac")
    if not mac or len(mac) != auth.MAC_LEN:
        return False
    if signed is None:
        signed = auth.signed_bytes(rating)
    return hmac.compare_digest(hmac.digest(key, signed, hashlib.sha256)[:auth.MAC_LEN], bytes(mac))


_ACK_DEVICE_KEY = bytes(_varint((1 << 3) | _WT_LEN))
_UNAUTHENTIC = (errors.R_BAD_MAC, errors.R_UNKNOWN_DEVICE, errors.R_WRONG_DEVICE)


def ack_mac(key, device_id, counter, result, reason, rating_mac):
    """auth.ack_mac(key, device_id, {"counter", "result", "reason"}, rating_mac) with the C HMAC:
    the ACK's canonical encoding written directly (a registry id is a token; the rest are small
    integers), then the 16-byte MAC of the rating it answers (SPEC 7.5)."""
    if len(rating_mac) != auth.MAC_LEN:
        raise ValueError("a rating MAC is %d bytes" % auth.MAC_LEN)
    body = bytearray(auth.ACK_LABEL)
    device = device_id.encode("ascii")
    body += _ACK_DEVICE_KEY
    body += _varint(len(device))
    body += device
    for field_key, value in ((b"\x10", counter), (b"\x18", result), (b"\x20", reason)):
        if value:
            body += field_key
            body += _varint(value)
    body += rating_mac
    return hmac.digest(key, body, hashlib.sha256)[:auth.MAC_LEN]


def rating_mac_of(rating):
    """The 16-byte MAC a rating carries, the one its ACK is bound to; None without one."""
    mac = rating.get("mac")
    return bytes(mac) if mac and len(mac) == auth.MAC_LEN else None


def authenticate(key, rating, problem, signed=None):
    """(problem, authentic) in SPEC 7.3's order: the rating is verifiably its sender's own when
    there is no problem, or only a rule problem and its MAC verifies; a rule problem on a rating
    whose MAC fails becomes R_BAD_MAC (registry.check_rating may stop at a rule before the MAC)."""
    if problem is None:
        return None, True
    if problem[0] in _UNAUTHENTIC:
        return problem, False
    if verify_mac(key, rating, signed):
        return problem, True
    return (errors.R_BAD_MAC, "MAC does not verify (and %s)" % problem[1]), False


def answer(result, is_authentic):
    """The ACK result for a commit result (SPEC 7.3): a dead letter the gateway could not
    authenticate as the sender's own rating is ACK_REJECTED, which no device releases on."""
    if not is_authentic and result[0] == vocab.ACK_DEAD_LETTER:
        return (vocab.ACK_REJECTED, result[1])
    return result
