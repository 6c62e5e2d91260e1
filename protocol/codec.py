"""Binary and JSON forms of every message, both driven by the tables in schema.py (the JSON form's
code lives in jsonform.py and is imported on first use).

Binary form: a subset of the Protocol Buffers wire format. Each field is a varint key
(number << 3 | wire type) followed by a varint (wire type 0: kinds U) or a varint length and that
many bytes (wire type 2: kinds S, T, B, M). Fields are written in ascending number order; zero,
empty and absent values are not written, so every record has exactly one canonical encoding
(the MAC is computed over it). Lists are repeated fields in list order. A decoder skips unknown
field numbers (forward compatibility) and rejects everything else that is off with ProtocolError.

JSON form: an object keyed by field name; B fields are lowercase hex, M fields nested objects.
A record in memory is a plain dict in that same shape (bytes for B fields).
"""

import sys

from protocol import errors
from protocol.errors import ProtocolError, LocalProtocolError
from protocol.schema import U, S, T, B, M, REQUIRED, MAX_RECORD_BYTES, table

_WT_VARINT = 0
_WT_LEN = 2
_MAX_VARINT_BYTES = 10
_TOKEN_EXTRA = "._-"


# --- varints ------------------------------------------------------------------------------------
def put_varint(out, n):
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def get_varint(buf, pos, end):
    """Return (value, next position). Raises ProtocolError on truncation or a runaway varint."""
    n = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise ProtocolError(errors.R_TRUNCATED, "varint")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7
        if pos - start >= _MAX_VARINT_BYTES:
            raise ProtocolError(errors.R_MALFORMED, "varint too long")


# --- value checks shared by both directions ---------------------------------------------------
def _is_token_char(c):
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c in _TOKEN_EXTRA


def _text_problem(kind, value, limit):
    """None if the text is acceptable for its kind and limit, else a short reason."""
    if len(value) > limit:
        return "longer than %d characters" % limit
    for c in value:
        if kind == T:
            if not _is_token_char(c):
                return "not a token character: %r" % c
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            return "control character"
    return None


text_problem = _text_problem   # the one token and text rule; the gateway checks its inputs by it


def _check(err, name, kind, limit, value):
    """Type and range check of one scalar value; `err` is the exception class to raise."""
    if kind == U:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > limit:
            raise _error(err, errors.R_OUT_OF_RANGE, "%s=%r (0..%d)" % (name, value, limit))
    elif kind == S or kind == T:
        if not isinstance(value, str):
            raise _error(err, errors.R_MALFORMED, "%s is not text" % name)
        problem = _text_problem(kind, value, limit)
        if problem:
            raise _error(err, errors.R_OUT_OF_RANGE, "%s %s" % (name, problem))
    elif kind == B:
        if not isinstance(value, (bytes, bytearray)):
            raise _error(err, errors.R_MALFORMED, "%s is not bytes" % name)
        if len(value) > limit:
            raise _error(err, errors.R_OVERSIZE, "%s longer than %d bytes" % (name, limit))


def _error(err, reason, detail):
    if err is LocalProtocolError:
        from protocol.names import REASON_NAMES   # our own misuse: the name may cost RAM
        return LocalProtocolError("%s: %s" % (REASON_NAMES[reason], detail))
    return ProtocolError(reason, detail)


def _is_default(kind, value):
    if kind == U:
        return value == 0
    if kind == M:
        return False
    return len(value) == 0


# --- binary -------------------------------------------------------------------------------------
def encode_fields(fields, record, out=None):
    """Append the canonical encoding of `record` (a dict) to `out` (a bytearray) and return it."""
    if out is None:
        out = bytearray()
    index = _names_of(fields)
    for name in record:
        if name not in index:
            raise LocalProtocolError("unknown field: %s" % name)
    for num, name, kind, limit, repeat, sub in fields:
        value = record.get(name)
        if value is None:
            continue
        if repeat:
            if not isinstance(value, (list, tuple)):
                raise LocalProtocolError("%s must be a list" % name)
            if len(value) > repeat:
                raise LocalProtocolError("%s holds more than %d items" % (name, repeat))
            for item in value:
                _encode_one(out, num, name, kind, limit, sub, item)
        elif not _is_default(kind, value):
            _encode_one(out, num, name, kind, limit, sub, value)
    return out


def _encode_one(out, num, name, kind, limit, sub, value):
    if kind == M:
        if not isinstance(value, dict):
            raise LocalProtocolError("%s items must be dicts" % name)
        body = encode_fields(sub, value)
        put_varint(out, (num << 3) | _WT_LEN)
        put_varint(out, len(body))
        out.extend(body)
        return
    _check(LocalProtocolError, name, kind, limit, value)
    if kind == U:
        put_varint(out, (num << 3) | _WT_VARINT)
        put_varint(out, value)
        return
    data = value.encode("utf-8") if kind != B else value
    put_varint(out, (num << 3) | _WT_LEN)
    put_varint(out, len(data))
    out.extend(data)


_INDEX_CACHE = {}
_NAMES_CACHE = {}


def _index_of(fields):
    """{field number: field} of a table, built once per table."""
    index = _INDEX_CACHE.get(id(fields))
    if index is None:
        index = {}
        for f in fields:
            index[f[0]] = f
        _INDEX_CACHE[id(fields)] = index
    return index


def _names_of(fields):
    """{field name: field} of a table, built once per table."""
    names = _NAMES_CACHE.get(id(fields))
    if names is None:
        names = {}
        for f in fields:
            names[f[1]] = f
        _NAMES_CACHE[id(fields)] = names
    return names


def decode_fields(fields, buf, pos=0, end=None, depth=0):
    """Decode one record from buf[pos:end]. Raises ProtocolError for anything malformed."""
    if end is None:
        end = len(buf)
    if depth > 2:
        raise ProtocolError(errors.R_MALFORMED, "nesting too deep")
    index = _index_of(fields)
    record = {}
    seen = []   # single-value fields met so far, even when zero (a second copy is malformed)
    while pos < end:
        key, pos = get_varint(buf, pos, end)
        num = key >> 3
        wire = key & 7
        if wire == _WT_VARINT:
            value, pos = get_varint(buf, pos, end)
            start = pos  # unused for varints; keeps `start` bound on every path
        elif wire == _WT_LEN:
            size, pos = get_varint(buf, pos, end)
            if size > end - pos:
                raise ProtocolError(errors.R_TRUNCATED, "field %d wants %d bytes" % (num, size))
            value = None
            start = pos
            pos += size
        else:
            raise ProtocolError(errors.R_MALFORMED, "wire type %d" % wire)
        field = index.get(num)
        if field is None or num == 0:
            continue  # unknown field from a newer peer: skip
        _, name, kind, limit, repeat, sub = field
        if (kind == U) != (wire == _WT_VARINT):
            raise ProtocolError(errors.R_MALFORMED, "%s has the wrong wire type" % name)
        if kind == M:
            value = decode_fields(sub, buf, start, pos, depth + 1)
        elif kind != U:
            raw = bytes(buf[start:pos])
            if kind == B:
                value = raw
            else:
                value = _utf8(raw, name)
            _check(ProtocolError, name, kind, limit, value)
        else:
            _check(ProtocolError, name, kind, limit, value)
        if repeat:
            items = record.get(name)
            if items is None:
                items = record[name] = []
            if len(items) >= repeat:
                raise ProtocolError(errors.R_OVERSIZE, "%s holds more than %d items" % (name, repeat))
            items.append(value)
        else:
            if num in seen:
                raise ProtocolError(errors.R_MALFORMED, "%s appears twice" % name)
            seen.append(num)
            if not _is_default(kind, value):
                record[name] = value
    return record


def _utf8(raw, name):
    """Strict UTF-8 decoding on both runtimes (some MicroPython builds do not validate)."""
    _check_utf8(raw, name)
    try:
        return raw.decode("utf-8")
    except Exception:
        raise ProtocolError(errors.R_MALFORMED, "%s is not UTF-8" % name)


def _check_utf8(raw, name):
    i = 0
    n = len(raw)
    while i < n:
        b = raw[i]
        if b < 0x80:
            i += 1
            continue
        if 0xC2 <= b <= 0xDF:
            need, low, high = 1, 0x80, 0xBF
        elif 0xE0 <= b <= 0xEF:
            need = 2
            low = 0xA0 if b == 0xE0 else 0x80
            high = 0x9F if b == 0xED else 0xBF   # no surrogates
        elif 0xF0 <= b <= 0xF4:
            need = 3
            low = 0x90 if b == 0xF0 else 0x80
            high = 0x8F if b == 0xF4 else 0xBF
        else:
            raise ProtocolError(errors.R_MALFORMED, "%s is not UTF-8" % name)
        if i + need >= n:
            raise ProtocolError(errors.R_MALFORMED, "%s: truncated UTF-8" % name)
        c = raw[i + 1]
        if c < low or c > high:
            raise ProtocolError(errors.R_MALFORMED, "%s is not UTF-8" % name)
        for j in range(i + 2, i + need + 1):
            if raw[j] & 0xC0 != 0x80:
                raise ProtocolError(errors.R_MALFORMED, "%s is not UTF-8" % name)
        i += need + 1


def fields_of(msg_type):
    fields = table(msg_type)
    if fields is None:
        raise ProtocolError(errors.R_UNKNOWN_TYPE, "type 0x%02x" % msg_type)
    return fields


def check_required(msg_type, record, err: type = ProtocolError):
    for name in REQUIRED.get(msg_type, ()):
        if not record.get(name):
            if err is LocalProtocolError:
                raise LocalProtocolError("%s needs %s" % (msg_type, name))
            raise ProtocolError(errors.R_MISSING, name)


def encode(msg_type, record):
    """Canonical binary payload of a message. Raises LocalProtocolError if the record is invalid."""
    fields = table(msg_type)
    if fields is None:
        raise LocalProtocolError("unknown message type %r" % msg_type)
    check_required(msg_type, record, LocalProtocolError)
    return _sized(encode_fields(fields, record))


def _sized(body):
    if len(body) > MAX_RECORD_BYTES:
        raise LocalProtocolError("record of %d bytes exceeds %d" % (len(body), MAX_RECORD_BYTES))
    return bytes(body)


def decode(msg_type, payload):
    """Record from a binary payload. Raises ProtocolError with a reason code if it is not valid."""
    fields = fields_of(msg_type)
    if len(payload) > MAX_RECORD_BYTES:
        raise ProtocolError(errors.R_OVERSIZE, "record of %d bytes" % len(payload))
    record = decode_fields(fields, payload)
    check_required(msg_type, record)
    return record


# --- JSON form: protocol/jsonform.py, loaded on first use (an RS-485 device never needs it) ----
def to_json(msg_type, record):
    from protocol import jsonform
    return jsonform.to_json(msg_type, record)


def from_json(msg_type, text):
    from protocol import jsonform
    return jsonform.from_json(msg_type, text)


def to_obj(fields, record):
    from protocol import jsonform
    return jsonform.to_obj(fields, record)


def from_obj(fields, obj, depth=0):
    from protocol import jsonform
    return jsonform.from_obj(fields, obj, depth)


def dumps(obj):
    from protocol import jsonform
    return jsonform.dumps(obj)


if sys.implementation.name != "micropython":   # a host has the RAM: every table from the start
    from protocol import update_records  # noqa: E402,F401
