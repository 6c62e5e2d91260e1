"""protocol's codec and MACs for RATING and ACK in a CPython fast form, derived from protocol's own
tables and rules at import: the gateway's ingest path (rating JSON in, signed ACK out) and the
gateway's token and text checks.

Why it is not under protocol/: everything there is frozen into every evaluator's image
(firmware/manifest.py) and must import under MicroPython (tools/mpy_check.py). This module needs
CPython (re, the C hmac, orjson when installed) and would only take flash on a device. It holds no
schema of its own: field keys, kinds, limits, MAC coverage and required fields come from
protocol.schema, the varint is protocol.codec's, the token and text character classes are read
off protocol.codec's text rule, so a schema change touches protocol alone. Property tests
(tests/test_gw_registry.py, tests/test_gw_intake.py) prove every function here equal to
protocol.codec / protocol.jsonform / protocol.auth on every input.

rating_from_json(payload) -> (record, signed bytes) gives exactly what
codec.from_json(schema.RATING, payload) and auth.signed_bytes(record) give, and raises
ProtocolError with the same reason code on every input, in about a third of the time:
- one pass over the compiled table checks each value and writes its canonical encoding at once
  (protocol checks a value in from_obj, again while encode_fields writes it, and once more when
  auth encodes the record for the MAC);
- text is checked by compiled regular expressions, not a loop over its characters;
- the JSON is parsed by orjson; on anything it refuses (or if it is missing) the standard library
  parses it, so orjson only ever decides an input both accept alike.
ack_mac / sign_ack / ack_json are auth.ack_mac / auth.sign_ack and the ACK's JSON object
(codec.dumps(codec.to_obj(schema.ACK_FIELDS, ack))) from the compiled ACK table, with the C HMAC.
"""

import hashlib
import hmac
import json
import re
from operator import itemgetter
from binascii import Error as _HexError
from binascii import unhexlify

try:
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - the standard library gives the same results
    _orjson_loads = None

from protocol import auth, codec, errors, schema
from protocol.errors import LocalProtocolError, ProtocolError
from protocol.schema import B, M, S, T, U

_WT_VARINT = 0
_WT_LEN = 2


def _varint(n):
    out = bytearray()
    codec.put_varint(out, n)
    return bytes(out)


_SMALL = [_varint(n) for n in range(0x80)]     # one-byte varints, looked up on the hot path


def _char_class(accepts):
    """A regex character class of the code points below U+0100 that `accepts`: protocol's text
    rule only ever names ASCII (tokens) and C0/DEL (text); the property tests cover the rest."""
    return "[%s]" % "".join(re.escape(chr(o)) for o in range(0x100) if accepts(chr(o)))


_TOKEN_CLASS = _char_class(lambda c: codec.text_problem(T, c, 1) is None)
_CONTROL_CLASS = _char_class(lambda c: codec.text_problem(S, c, 1) is not None)
_TOKEN = re.compile(_TOKEN_CLASS + "*")                       # the whole of a T value (fullmatch)
_CONTROL = re.compile(_CONTROL_CLASS)                         # not allowed in S text
_BAD_TEXT = re.compile(_CONTROL_CLASS[:-1] + "\ud800-\udfff]")   # ... nor a lone surrogate


# --- the one token and text rule, for the gateway's own inputs -------------------------------
def is_token(value, limit):
    """protocol's T rule: a str of at most `limit` characters of [A-Za-z0-9._-] (may be empty)."""
    return type(value) is str and len(value) <= limit and _TOKEN.fullmatch(value) is not None


def bad_text_char(value):
    """The first character protocol's S rule refuses in `value` (a C0 control or DEL), or a lone
    surrogate (not valid Unicode: jsonform refuses it too); None when there is none."""
    found = _BAD_TEXT.search(value)
    return found.group() if found else None


# --- RATING from JSON ------------------------------------------------------------------------
def _compile(fields, excluded=()):
    """(name, kind, limit, repeat, sub, key bytes, covered) per field, in field order; `covered`:
    the field is in the MAC's bytes (not in `excluded`)."""
    out = []
    for num, name, kind, limit, repeat, sub in fields:
        key = _varint((num << 3) | (_WT_VARINT if kind == U else _WT_LEN))
        out.append((name, kind, limit, repeat, _compile(sub) if kind == M else None, key,
                    name not in excluded))
    return tuple(out)


_RATING = _compile(schema.RATING_FIELDS, schema.MAC_EXCLUDED)
_REQUIRED = schema.REQUIRED[schema.RATING]


def _malformed(detail):
    return ProtocolError(errors.R_MALFORMED, detail)


def _out_of_range(detail):
    return ProtocolError(errors.R_OUT_OF_RANGE, detail)


def _put_len(out, data):
    n = len(data)
    out += _SMALL[n] if n < 0x80 else _varint(n)
    out += data


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
            codec.put_varint(out, value)
        return value
    if kind == M:
        body = bytearray()
        value = _record(sub, value, body, body, depth + 1)
        out += key
        _put_len(out, body)
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
        _put_len(out, data)
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
                if value < 0x80:
                    out += _SMALL[value]
                else:
                    codec.put_varint(out, value)
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


def rating_mac_of(rating):
    """The 16-byte MAC a rating carries, the one its ACK is bound to; None without one."""
    mac = rating.get("mac")
    return bytes(mac) if mac and len(mac) == auth.MAC_LEN else None


# --- ACK out ---------------------------------------------------------------------------------
_ACK = _compile(schema.ACK_FIELDS, ("mac",))           # the ACK MAC covers all but mac (SPEC 7.5)
_ACK_SIGNED = tuple((f[0], f[1], f[5]) for f in _ACK if f[6])
_ACK_JSON = tuple((f[0], f[1], '"%s":' % f[0]) for f in _ACK)
if [f[1] for f in _ACK if f[1] == M or f[3]]:   # pragma: no cover - a schema change must come here
    raise ImportError("fastcodec writes scalar ACK fields only")
# An ACK with every field (what the gateway sends): one format string, from the same table.
_ACK_NAMES = tuple(f[0] for f in _ACK_JSON)
_ACK_VALUES = itemgetter(*_ACK_NAMES)
_ACK_FULL = "{%s}" % ",".join(head + ("%d" if kind == U else '"%s"') for _, kind, head in _ACK_JSON)
_ACK_HEX = tuple(i for i, f in enumerate(_ACK_JSON) if f[1] == B)
_ACK_TEXT = tuple(i for i, f in enumerate(_ACK_JSON) if f[1] in (S, T))


def ack_signed_bytes(device_id, ack, rating_mac):
    """auth.ack_signed_bytes: the label, the ACK's canonical encoding without mac and with
    device = the receiving device's id, then the answered rating's 16-byte MAC."""
    if len(rating_mac) != auth.MAC_LEN:
        raise LocalProtocolError("a rating MAC is %d bytes" % auth.MAC_LEN)
    out = bytearray(auth.ACK_LABEL)
    for name, kind, key in _ACK_SIGNED:
        value = device_id if name == "device" else ack.get(name)
        if not value:
            continue            # absent, zero or empty: not written (canonical form)
        out += key
        if kind == U:
            if value < 0x80:
                out += _SMALL[value]
            else:
                codec.put_varint(out, value)
        else:
            _put_len(out, value.encode("utf-8") if kind != B else bytes(value))
    out += rating_mac
    return out


def ack_mac(key, device_id, ack, rating_mac):
    """auth.ack_mac with the C HMAC."""
    if len(key) != auth.KEY_LEN:
        raise LocalProtocolError("device keys are %d bytes" % auth.KEY_LEN)
    return hmac.digest(key, ack_signed_bytes(device_id, ack, rating_mac),
                       hashlib.sha256)[:auth.MAC_LEN]


def sign_ack(key, device_id, ack, rating_mac):
    """auth.sign_ack: a copy of `ack` carrying its MAC for `device_id`, bound to `rating_mac`."""
    out = dict(ack)
    out.pop("mac", None)
    out["mac"] = ack_mac(key, device_id, out, rating_mac)
    return out


def ack_json(ack):
    """The ACK's JSON object as the gateway publishes it: every field present in `ack` (zeros too)
    in field order, bytes as lowercase hex, = codec.dumps(codec.to_obj(schema.ACK_FIELDS, ack))."""
    if len(ack) == len(_ACK_NAMES):
        try:
            values = list(_ACK_VALUES(ack))
        except KeyError:
            values = None
        else:
            for i in _ACK_TEXT:         # text holds only tokens here: nothing to escape
                if not _TOKEN.fullmatch(values[i]):
                    values = None
                    break
        if values is not None:
            for i in _ACK_HEX:
                values[i] = values[i].hex()
            return _ACK_FULL % tuple(values)
    parts = []
    for name, kind, head in _ACK_JSON:
        value = ack.get(name)
        if value is None:
            continue
        if kind == U:
            parts.append("%s%d" % (head, value))
        elif kind == B:
            parts.append('%s"%s"' % (head, value.hex()))
        elif _TOKEN.fullmatch(value):     # a token: nothing to escape
            parts.append('%s"%s"' % (head, value))
        else:
            parts.append(head + json.dumps(value, ensure_ascii=False))
    return "{%s}" % ",".join(parts)
