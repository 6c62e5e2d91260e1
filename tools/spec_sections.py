"""The generated sections of protocol/SPEC.md (between <!-- gen:NAME --> and <!-- /gen:NAME -->),
rendered from the code and from the vectors of tools/gen_vectors.py; that tool writes and checks them.
"""

import json

from protocol import codec, crc, errors, frame, schema, timing, topics, vocab
from tools.gen_vectors import BAUDS, mac_vectors, message_vectors, timing_vectors

# --- SPEC.md sections -----------------------------------------------------------------------------
KIND_WORDS = {schema.U: "uint", schema.S: "text", schema.T: "token", schema.B: "bytes", schema.M: "message"}
SUBS = (("ThemeItem", schema.THEME_ITEM), ("ItemRating", schema.ITEM_RATING), ("Tag", schema.TAG),
        ("Text", schema.TEXT), ("Glyph", schema.GLYPH), ("Counter", schema.COUNTER))


def _sub_name(sub):
    for name, table in SUBS:
        if table is sub:
            return name
    raise KeyError(sub)


def _limit_words(kind, limit, sub):
    if kind == schema.U:
        return "0..%d" % limit
    if kind == schema.S:
        return "≤ %d chars" % limit
    if kind == schema.T:
        return "≤ %d ASCII" % limit
    if kind == schema.B:
        return "≤ %d bytes" % limit
    return _sub_name(sub)


def _field_table(msg_type, fields):
    required = schema.REQUIRED.get(msg_type, ()) if msg_type else ()
    rows = ["| # | name | kind | limit | list | notes |", "|---|---|---|---|---|---|"]
    for num, name, kind, limit, repeat, sub in fields:
        notes = []
        if name in required:
            notes.append("required")
        if msg_type == schema.RATING and name in schema.MAC_EXCLUDED:
            notes.append("outside the MAC")
        rows.append("| %d | `%s` | %s | %s | %s | %s |" % (
            num, name, KIND_WORDS[kind], _limit_words(kind, limit, sub),
            "≤ %d" % repeat if repeat else "", ", ".join(notes)))
    return "\n".join(rows)


def _max_bytes(fields):
    def vlen(n):
        size = 1
        while n > 0x7F:
            n >>= 7
            size += 1
        return size
    total = 0
    for num, name, kind, limit, repeat, sub in fields:
        key = vlen(num << 3)
        if kind == schema.U:
            one = key + vlen(limit)
        elif kind == schema.S:
            one = key + vlen(limit * 4) + limit * 4
        elif kind == schema.M:
            body = _max_bytes(sub)
            one = key + vlen(body) + body
        else:
            one = key + vlen(limit) + limit
        total += one * (repeat or 1)
    return total


def sec_types():
    rows = ["| code | name | sender | field-limit maximum (bytes) |", "|---|---|---|---|"]
    for code in sorted(schema.MESSAGES):
        rows.append("| 0x%02X | %s | %s | %d |" % (code, schema.TYPE_NAMES[code].upper(),
                                                  "device" if schema.from_device(code) else "gateway",
                                                  _max_bytes(schema.MESSAGES[code])))
    return "\n".join(rows)


def sec_fields():
    parts = []
    for code in sorted(schema.MESSAGES):
        parts.append("#### %s (0x%02X)\n\n%s" % (schema.TYPE_NAMES[code].upper(), code,
                                                 _field_table(code, schema.MESSAGES[code])))
    for name, table in SUBS:
        parts.append("#### %s (nested)\n\n%s" % (name, _field_table(None, table)))
    return "\n\n".join(parts)


def sec_proto():
    kinds = {schema.U: "uint64", schema.S: "string", schema.T: "string", schema.B: "bytes"}
    lines = ['syntax = "proto3";', "package hallrating.v1;", ""]

    def message(name, fields):
        lines.append("message %s {" % name)
        for num, fname, kind, limit, repeat, sub in fields:
            t = _sub_name(sub) if kind == schema.M else kinds[kind]
            packed = " [packed = false]" if repeat and kind == schema.U else ""   # one key per item (3.2)
            lines.append("  %s%s %s = %d%s;" % ("repeated " if repeat else "", t, fname, num, packed))
        lines.append("}")
    for name, table in SUBS:
        message(name, table)
    for code in sorted(schema.MESSAGES):
        message(schema.TYPE_NAMES[code].capitalize(), schema.MESSAGES[code])
    return "```proto\n%s\n```" % "\n".join(lines)


def sec_reasons():
    meaning = {
        errors.R_OK: "no error", errors.R_TRUNCATED: "ran out of bytes inside a field or header",
        errors.R_OVERSIZE: "a length, list or record beyond its limit",
        errors.R_BAD_CRC: "frame CRC-16 mismatch (counted by the decoder, never answered)",
        errors.R_BAD_HEADER: "header CRC-8 mismatch (counted by the decoder, never answered)",
        errors.R_MALFORMED: "wire type, duplicate field, runaway varint, bad UTF-8, bad JSON",
        errors.R_OUT_OF_RANGE: "a value outside its range (level 6, 17-character name, control character)",
        errors.R_UNKNOWN_TYPE: "a message type the receiver does not know",
        errors.R_MISSING: "a required field is absent or zero",
        errors.R_BAD_MAC: "the rating MAC does not verify",
        errors.R_REPLAY: "a rating counter already used, or at/below the committed high-water mark",
        errors.R_UNKNOWN_DEVICE: "the sender (topic or bus address) is not in the gateway's registry",
        errors.R_STORE_FULL: "the receiver cannot commit now; the sender keeps it and retries",
        errors.R_BAD_STATE: "valid message at the wrong moment or against a rule (tag on a good rating)",
        errors.R_WRONG_DEVICE: "a rating whose `device` is not its sender (the topic's device, the polled address's device)",
    }
    rows = ["| code | name | meaning |", "|---|---|---|"]
    for code in sorted(errors.REASON_NAMES):
        rows.append("| %d | `%s` | %s |" % (code, errors.REASON_NAMES[code], meaning[code]))
    return "\n".join(rows)


def sec_vocab():
    rows = ["| level | 中文 | bad (差评) |", "|---|---|---|"]
    for lv in vocab.LEVELS:
        rows.append("| %d | %s | %s |" % (lv, vocab.LEVEL_NAMES[lv], "yes" if vocab.is_bad(lv) else ""))
    rows += ["", "| indicator bit | 中文 |", "|---|---|"]
    for bit in sorted(vocab.INDICATOR_NAMES):
        rows.append("| %d | %s |" % (bit, vocab.INDICATOR_NAMES[bit]))
    rows += ["", "| node | 中文 | indicators allowed |", "|---|---|---|"]
    for node in sorted(vocab.NODE_NAMES):
        rows.append("| %d | %s | %d |" % (node, vocab.NODE_NAMES[node], vocab.NODE_INDICATORS[node]))
    rows += ["", "| source | name |", "|---|---|"]
    for src in sorted(vocab.SOURCE_NAMES):
        rows.append("| %d | `%s` |" % (src, vocab.SOURCE_NAMES[src]))
    return "\n".join(rows)


def sec_acks():
    what = {
        vocab.ACK_STORED: "delete the rating from flash; it is committed",
        vocab.ACK_DUPLICATE: "delete it; it was committed earlier (this was a retransmission)",
        vocab.ACK_DEAD_LETTER: "delete it; it is authentic but not valid (replay, rule): the gateway keeps it for review with `reason`",
        vocab.ACK_RETRY: "keep it and send it again later (gateway store full or busy)",
        vocab.ACK_REJECTED: "keep it, count it (`ack_rejected`): the gateway could not authenticate what it received as this rating (bad MAC, wrong device, malformed, oversize) and kept that as evidence",
    }
    rows = ["| result | name | device releases the rating | what the device does |", "|---|---|---|---|"]
    for code in sorted(vocab.ACK_NAMES):
        rows.append("| %d | `%s` | %s | %s |" % (code, vocab.ACK_NAMES[code],
                                                 "yes" if vocab.device_releases(code) else "no", what[code]))
    return "\n".join(rows)


def sec_crc():
    v = b"123456789"
    return "\n".join([
        "| CRC | width | poly | init | refin/refout | xorout | check (\"123456789\") |",
        "|---|---|---|---|---|---|---|",
        "| CRC-16/MODBUS | 16 | 0x8005 (reflected 0xA001) | 0xFFFF | yes | 0x0000 | 0x%04X |" % crc.crc16(v),
        "| CRC-8/SMBUS | 8 | 0x07 | 0x00 | no | 0x00 | 0x%02X |" % crc.crc8(v),
    ])


def sec_timing():
    rows = ["| figure | " + " | ".join("%d baud" % b for b in BAUDS) + " |",
            "|---|" + "---|" * len(BAUDS)]
    tv = timing_vectors()
    labels = [
        ("byte_us", "one byte (10 bits), µs"), ("guard_us", "guard time t3.5 (floor 1,750 µs), µs"),
        ("poll_frame_us", "empty frame (10 bytes), µs"), ("max_frame_us", "largest frame (1,034 bytes), µs"),
        ("reply_start_timeout_us", "master: wait for a reply header, µs"),
        ("reply_timeout_max_us", "master: wait for a largest reply, µs"),
        ("silence_reset_us", "device: silence that drops a partial frame, µs"),
        ("exchange_idle_us", "empty POLL + empty IDLE exchange (2 ms turnaround), µs"),
        ("poll_cycle_32_us", "cycle over 32 idle devices (2 ms turnaround), µs"),
        ("poll_cycle_32_worst_us", "cycle over 32 idle devices (10 ms turnaround), µs"),
    ]
    for key, label in labels:
        rows.append("| %s | " % label + " | ".join("{:,}".format(t[key]) for t in tv) + " |")
    return "\n".join(rows)


def _hexdump(data):
    return " ".join("%02x" % b for b in data)


def _frame_breakdown(frame_hex):
    f = bytes.fromhex(frame_hex)
    n = f[5] | (f[6] << 8)
    return "\n".join([
        "sync     %s" % _hexdump(f[0:2]),
        "addr     %s" % _hexdump(f[2:3]),
        "type     %s" % _hexdump(f[3:4]),
        "seq      %s" % _hexdump(f[4:5]),
        "len      %s            (%d, little-endian)" % (_hexdump(f[5:7]), n),
        "hcrc     %s               (CRC-8/SMBUS of addr..len)" % _hexdump(f[7:8]),
        "payload  %s" % (_wrap(f[8:8 + n]) if n else "(none)"),
        "crc      %s            (CRC-16/MODBUS of addr..payload, hcrc included, little-endian)"
        % _hexdump(f[8 + n:]),
    ])


def _wrap(data, width=24, indent=9):
    chunks = [_hexdump(data[i:i + width]) for i in range(0, len(data), width)]
    return ("\n" + " " * indent).join(chunks)


def _field_walk(fields, payload):
    """One line per field of a payload: its bytes, then name = value (top level only)."""
    index = {f[0]: f for f in fields}
    lines = []
    pos = 0
    while pos < len(payload):
        start = pos
        key, pos = codec.get_varint(payload, pos, len(payload))
        if key & 7 == 0:
            value, pos = codec.get_varint(payload, pos, len(payload))
            shown = str(value)
        else:
            size, pos = codec.get_varint(payload, pos, len(payload))
            raw = payload[pos:pos + size]
            pos += size
            kind = index[key >> 3][2]
            shown = raw.hex() if kind == schema.B else (
                "(nested, %d bytes)" % size if kind == schema.M else json.dumps(raw.decode(), ensure_ascii=False))
        lines.append("%-44s %s = %s" % (_hexdump(payload[start:pos])[:40] + (
            "…" if pos - start > 13 else ""), index[key >> 3][1], shown))
    return "\n".join(lines)


def sec_examples():
    mv = {v["name"]: v for v in message_vectors()}
    macs = {v["name"]: v for v in mac_vectors()}
    parts = []
    titles = [
        ("poll", "A POLL from the gateway to device 5, carrying the gateway clock"),
        ("idle", "The device's IDLE reply: nothing to send, empty payload"),
        ("rating", "A typical RATING (bad rating with one tag and Chinese text), MAC under the test key"),
        ("context", "A CONTEXT push for a batch of two cases, with Chinese names"),
        ("context_supplement", "A CONTEXT with a rare character in the name: glyph supplement and QR modules"),
        ("ack", "The ACK that settles the rating above"),
    ]
    for name, title in titles:
        v = mv[name]
        f = bytes.fromhex(v["frame"])
        parts.append("#### %s\n\nJSON form (%d bytes as UTF-8):\n\n```json\n%s\n```\n\n"
                     "Frame: %d bytes = 10 overhead + %d payload\n\n```\n%s\n```" % (
                         title, len(v["json"].encode()), v["json"], len(f), len(f) - 10,
                         _frame_breakdown(v["frame"])))
        if name in ("rating", "context", "context_supplement"):
            parts.append("The payload field by field (key, length, value):\n\n```\n%s\n```" % _field_walk(
                schema.MESSAGES[v["type"]], bytes.fromhex(v["binary"])))
        if name == "rating":
            m = macs["rating"]
            parts.append("MAC computation for this rating: key = `%s` (the test key).\n"
                         "The MAC input is the label `hall-rating/1 rating` + 0x00 followed by the\n"
                         "canonical encoding of the rating without `mac`, `gateway_time` and `hall`:\n\n"
                         "```\n%s\n```\n\nHMAC-SHA256 over it, first 16 bytes: `%s`." % (
                             m["key"], _wrap(bytes.fromhex(m["signed_bytes"]), indent=0), m["mac"]))
        if name == "ack":
            m = macs["ack"]
            parts.append("ACK MAC computation (7.5): the same key; the input is the label\n"
                         "`hall-rating/2 ack` + 0x00, the canonical encoding of the ACK without `mac`\n"
                         "and with `device` = the receiving device's id (`%s`), then the 16-byte MAC of\n"
                         "the rating it answers (`%s`, the rating above; not sent):\n\n"
                         "```\n%s\n```\n\nHMAC-SHA256 over it, first 16 bytes: `%s`. An ACK that omits\n"
                         "`device` carries the same MAC." % (
                             m["device"], m["rating_mac"], _wrap(bytes.fromhex(m["signed_bytes"]), indent=0),
                             m["mac"]))
    return "\n\n".join(parts)


def sec_sizes():
    mv = {v["name"]: v for v in message_vectors()}
    rows = ["| message | payload bytes | frame bytes | overhead | time at 9,600 | time at 115,200 |",
            "|---|---|---|---|---|---|"]
    for name in ("poll", "poll_empty", "idle", "idle_busy", "rating", "rating_good", "ack", "context",
                 "context_supplement", "status", "settle", "idle_custody"):
        n = len(mv[name]["binary"]) // 2
        rows.append("| %s | %d | %d | %d | %.2f ms | %.2f ms |" % (
            name, n, n + frame.OVERHEAD, frame.OVERHEAD, timing.frame_us(n, 9600) / 1000.0,
            timing.frame_us(n, 115200) / 1000.0))
    return "\n".join(rows)


def sec_topics():
    rows = ["| topic | direction | QoS | retained | payload |", "|---|---|---|---|---|"]
    payload = {"rating": "RATING JSON", "status": "STATUS JSON", "availability": '`online` / `offline` (last will)',
               "context": "CONTEXT JSON, empty = no case", "ack": "ACK JSON", "config": "CONFIG JSON",
               "state": '`online` / `offline` (last will)', "devices": "registry JSON (6.3)",
               "event": "event JSON (6.3)", "update_state": "UPDATE_STATE JSON",
               "update": 'UPDATE_OFFER / _CHUNK / _COMMIT / _CANCEL JSON with `"type"` (3.10)',
               "settle": "SETTLE JSON (custody, 3.11)"}
    for kind in topics.DEVICE_TO_GATEWAY + topics.GATEWAY_TO_DEVICE:
        rows.append("| `hall/<hall>/dev/<device>/%s` | %s | %d | %s | %s |" % (
            kind, "device → gateway" if kind in topics.DEVICE_TO_GATEWAY else "gateway → device",
            topics.QOS[kind], "yes" if kind in topics.RETAINED else "no", payload[kind]))
    for kind in ("state", "devices", "event"):
        rows.append("| `hall/<hall>/gateway/%s` | gateway → all | %d | %s | %s |" % (
            kind, topics.QOS[kind], "yes" if kind in topics.RETAINED else "no", payload[kind]))
    return "\n".join(rows)


def spec_sections():
    return {"types": sec_types(), "fields": sec_fields(), "proto": sec_proto(), "reasons": sec_reasons(),
            "vocab": sec_vocab(), "acks": sec_acks(), "crc": sec_crc(), "timing": sec_timing(),
            "examples": sec_examples(), "sizes": sec_sizes(), "topics": sec_topics()}


def render_spec(text):
    """SPEC.md text with every generated section replaced by its current content."""
    for name, body in spec_sections().items():
        start = "<!-- gen:%s -->" % name
        end = "<!-- /gen:%s -->" % name
        a = text.find(start)
        b = text.find(end)
        if a < 0 or b < a:
            raise ValueError("SPEC.md lacks the section markers for %r" % name)
        text = text[:a + len(start)] + "\n" + body + "\n" + text[b:]
    return text
