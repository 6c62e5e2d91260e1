"""JSON form of every message (SPEC.md 3.3), driven by the same tables as the binary form.

An object keyed by field name; B fields are lowercase hex, M fields nested objects. Validation is
the binary codec's: a record is accepted or written here only if codec.encode would take it.
Kept apart from codec.py so a device that speaks only the binary form (RS-485) does not load it;
codec.to_json / from_json / to_obj / from_obj / dumps import it on first use.
"""

import json
from binascii import hexlify, unhexlify

from protocol import errors
from protocol.codec import (_check, _check_utf8, _is_default, _sized, _utf8, check_required,
                            encode_fields, fields_of)
from protocol.errors import LocalProtocolError, ProtocolError
from protocol.schema import B, M, MAX_RECORD_BYTES, S, T, U, table


def to_obj(fields, record):
    """JSON-ready object of a record: bytes become hex text, nothing else changes."""
    obj = {}
    for num, name, kind, limit, repeat, sub in fields:
        value = record.get(name)
        if value is None:
            continue
        if kind == B:
            value = hexlify(value).decode()
        elif kind == M:
            value = [to_obj(sub, v) for v in value] if repeat else to_obj(sub, value)
        elif repeat:
            value = list(value)
        obj[name] = value
    return obj


def from_obj(fields, obj, depth=0):
    """Validated record from a parsed JSON object. Unknown keys are ignored (newer peers)."""
    if not isinstance(obj, dict):
        raise ProtocolError(errors.R_MALFORMED, "expected an object")
    if depth > 2:
        raise ProtocolError(errors.R_MALFORMED, "nesting too deep")
    record = {}
    for num, name, kind, limit, repeat, sub in fields:
        value = obj.get(name)
        if value is None:
            continue
        if repeat:
            if not isinstance(value, list):
                raise ProtocolError(errors.R_MALFORMED, "%s must be a list" % name)
            if len(value) > repeat:
                raise ProtocolError(errors.R_OVERSIZE, "%s holds more than %d items" % (name, repeat))
            items = [_value_from_json(name, kind, limit, sub, v, depth) for v in value]
            if items:
                record[name] = items
        else:
            value = _value_from_json(name, kind, limit, sub, value, depth)
            if not _is_default(kind, value):
                record[name] = value
    return record


def _value_from_json(name, kind, limit, sub, value, depth):
    if kind == M:
        return from_obj(sub, value, depth + 1)
    if kind == B:
        if not isinstance(value, str) or len(value) % 2:
            raise ProtocolError(errors.R_MALFORMED, "%s must be hex" % name)
        try:
            value = unhexlify(value)
        except Exception:
            raise ProtocolError(errors.R_MALFORMED, "%s must be hex" % name)
    if kind == S or kind == T:
        _check_scalars(value, name)
    _check(ProtocolError, name, kind, limit, value)
    return value


def _check_scalars(text, name):
    """Reject text holding surrogates (a JSON \\ud83d escape decodes to one on either runtime)."""
    if not isinstance(text, str):
        return
    try:
        raw = text.encode("utf-8")
    except Exception:  # CPython: a lone surrogate cannot be encoded
        raise ProtocolError(errors.R_MALFORMED, "%s is not valid Unicode" % name)
    _check_utf8(raw, name)  # MicroPython encodes surrogates as ED A0..ED BF: caught here


def to_json(msg_type, record):
    """Canonical JSON text of a valid record (SPEC.md 3.3): keys in field-number order, no spaces,
    non-ASCII text as raw UTF-8. Identical on CPython and MicroPython (whose dicts keep no order)."""
    fields = table(msg_type)
    if fields is None:
        raise LocalProtocolError("unknown message type %r" % msg_type)
    check_required(msg_type, record, LocalProtocolError)
    _sized(encode_fields(fields, record))  # full validation, same rules as the binary form
    out = []
    _json_record(out, fields, record)
    return "".join(out)


def _json_record(out, fields, record):
    out.append("{")
    first = True
    for num, name, kind, limit, repeat, sub in fields:
        value = record.get(name)
        if value is None:
            continue
        if repeat:
            if not value:
                continue
        elif kind != M and _is_default(kind, value):
            continue
        if not first:
            out.append(",")
        first = False
        out.append('"%s":' % name)
        if repeat:
            out.append("[")
            for i, item in enumerate(value):
                if i:
                    out.append(",")
                _json_value(out, kind, sub, item)
            out.append("]")
        else:
            _json_value(out, kind, sub, value)
    out.append("}")


def _json_value(out, kind, sub, value):
    if kind == U:
        out.append("%d" % value)
    elif kind == M:
        _json_record(out, sub, value)
    elif kind == B:
        out.append('"%s"' % hexlify(value).decode())
    else:
        out.append(_json_string(value))


def _json_string(text):
    out = ['"']
    for c in text:
        if c == '"' or c == "\\":
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def from_json(msg_type, text):
    """Record from JSON text or bytes. Raises ProtocolError with a reason code if it is not valid."""
    if isinstance(text, (bytes, bytearray)):
        text = _utf8(bytes(text), "payload")
    try:
        obj = json.loads(text)
    except Exception:
        raise ProtocolError(errors.R_MALFORMED, "not JSON")
    fields = fields_of(msg_type)
    record = from_obj(fields, obj)
    check_required(msg_type, record)
    size = len(encode_fields(fields, record))
    if size > MAX_RECORD_BYTES:
        raise ProtocolError(errors.R_OVERSIZE, "record of %d bytes" % size)
    return record


def dumps(obj):
    """Compact JSON, non-ASCII kept as UTF-8, keys in a stable order on CPython."""
    try:
        # CPython only; MicroPython's json.dumps has no ensure_ascii (its stubs say so).
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)  # pyright: ignore[reportCallIssue]
    except TypeError:  # MicroPython: no ensure_ascii, and it writes UTF-8 as is anyway
        return json.dumps(obj, separators=(",", ":"))
