"""Regenerate protocol/vectors/*.json and the generated parts of protocol/SPEC.md from the code.

    python tools/gen_vectors.py          write the files
    python tools/gen_vectors.py --check  exit 1 (and name the files) if anything is stale

Everything is deterministic: fixed records, a fixed test key, fixed noise. The vectors are data
files that tests/protocol_vectors_check.py replays on CPython and on MicroPython 1.29.
SPEC.md sections between <!-- gen:NAME --> and <!-- /gen:NAME --> are produced by spec_sections().
"""

import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from protocol import auth, codec, crc, errors, frame, ota, schema, supplement, timing, vocab  # noqa: E402

VECTOR_DIR = os.path.join(ROOT, "protocol", "vectors")
SPEC_PATH = os.path.join(ROOT, "protocol", "SPEC.md")
TEST_KEY = bytes(range(32))            # 000102...1f: the documented test key, never a real one
BAUDS = (9600, 19200, 38400, 115200)
NOW = 1767225600                       # 2026-01-01T00:00:00Z

# --- example records ------------------------------------------------------------------------------
DEVICE = "ev-a05"


def _rating_unsigned():
    return {
        "device": DEVICE, "counter": 1042, "case_id": 31337, "serials": ["SZ20260101000123"],
        "node": vocab.NODE_COMPLETION, "source": vocab.SRC_PRESS,
        "overall": vocab.DISSATISFIED, "business": vocab.SATISFIED, "service": vocab.DISSATISFIED,
        "tags": [501], "text": "等待时间长", "staff_id": "S1024", "window": "A05",
        "device_time": NOW + 2400, "uptime_ms": 3600000, "tags_version": 7,
    }


def _ack(record, rating_mac):
    """An ACK as the gateway sends it to DEVICE: signed under the test key, bound to the MAC of
    the rating it answers."""
    return auth.sign_ack(TEST_KEY, DEVICE, record, rating_mac)


# A SETTLE (SPEC 3.11): the store 0x5EED..., every counter of DEVICE below 1043 held upstream.
SETTLE_EXAMPLE = {"device": DEVICE, "generation": 0x5EED0A11C0FFEE01, "settled": 1043, "seq": 41}


def _settle(record):
    return auth.sign_settle(TEST_KEY, DEVICE, record)


# The rating each ACK example answers (its MAC is part of the ACK MAC's input, never sent).
_ACK_ANSWERS = {"ack": "rating", "ack_duplicate": "rating", "ack_dead_letter": "rating_good",
                "ack_no_device": "rating", "ack_rejected": "rating_good", "ack_reoffer": "rating"}


RELEASE_KEY = hashlib.sha256(b"hall-rating test release key").digest()   # documented, never real


def release_manifest():
    """A small release: two code files and the root main.py, for the five-button board."""
    files = {"firmware/ota.mpy": b"\x4d\x06" + bytes(range(64)), "main.py": b"from firmware import main\nmain.run()\n",
             "protocol/ota.mpy": "王䶮明 𠈌".encode() * 3}
    listed = [(p, hashlib.sha256(d).hexdigest(), len(d)) for p, d in files.items()]
    return ota.manifest_bytes("1.1.0", listed, ["five_button"]), files


def _update_examples():
    manifest, files = release_manifest()
    rid = ota.release_id(manifest)
    second = files["main.py"]
    return [
        ("update_offer", schema.UPDATE_OFFER, ota.offer(RELEASE_KEY, manifest), 5, 17),
        ("update_chunk_manifest", schema.UPDATE_CHUNK,
         {"release_id": rid, "file": 0, "offset": 0, "data": manifest[:64]}, 5, 18),
        ("update_chunk", schema.UPDATE_CHUNK,
         {"release_id": rid, "file": 2, "offset": 8, "data": second[8:]}, 5, 19),
        ("update_commit", schema.UPDATE_COMMIT, {"release_id": rid}, 5, 20),
        ("update_cancel", schema.UPDATE_CANCEL, {"release_id": rid}, 5, 21),
        ("update_state_receiving", schema.UPDATE_STATE,
         {"device": DEVICE, "release_id": rid, "state": ota.ST_RECEIVING, "file": 2, "offset": 8,
          "version": "1.1.0", "running": "1.0.0", "received": 74, "total": 151}, 5, 17),
        ("update_state_rolled_back", schema.UPDATE_STATE,
         {"device": DEVICE, "release_id": rid, "state": ota.ST_ROLLED_BACK,
          "reason": ota.WHY_BOOT_FAILED, "version": "1.1.0", "running": "1.0.0", "boots": 3,
          "detail": "试运行启动失败 3 次"}, 5, 22),
    ]


QR_TOKEN = "U1oyMDI2MDEwMTAwMDEyNiM0.1767830400.kM2pQ8vR4sT6uW1x"
QR_LINK = "https://pj.example.gov.cn/r?t=" + QR_TOKEN


def _test_pattern():
    """16x16 test bitmap: a frame with a diagonal, rows MSB first."""
    rows = []
    for y in range(16):
        bits = 0xFFFF if y in (0, 15) else 0x8001 | (0x8000 >> y)
        rows += [bits >> 8, bits & 0xFF]
    return bytes(rows)


def _qr_modules(text):
    """qr_modules of a link: QR error correction M, smallest version, no quiet zone."""
    import qrcode
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=0)
    code.add_data(text)
    code.make(fit=True)
    return supplement.qr_pack(code.get_matrix())


def _examples():
    """(name, type, record, addr, seq): the worked examples of SPEC.md and the message vectors."""
    signed = auth.sign(TEST_KEY, _rating_unsigned())
    at_gateway = dict(signed)
    at_gateway["gateway_time"] = NOW + 2401
    at_gateway["hall"] = "sz-futian-01"
    good = auth.sign(TEST_KEY, {"device": DEVICE, "counter": 1043, "case_id": 31338,
                                "serials": ["SZ20260101000124"], "node": vocab.NODE_RECEIPT,
                                "source": vocab.SRC_PRESS, "service": vocab.VERY_SATISFIED,
                                "window": "A05", "device_time": NOW + 2500, "uptime_ms": 3700000})
    not_rated = auth.sign(TEST_KEY, {"device": DEVICE, "counter": 1044, "case_id": 31339,
                                     "node": vocab.NODE_PICKUP, "source": vocab.SRC_NOT_RATED,
                                     "window": "A05", "uptime_ms": 3800000})
    theme = auth.sign(TEST_KEY, {"device": DEVICE, "counter": 1045, "case_id": 31340,
                                 "serials": ["SZ20260101000125"], "node": vocab.NODE_COMPLETION,
                                 "source": vocab.SRC_PRESS, "overall": vocab.SATISFIED,
                                 "items": [{"code": "T01", "level": vocab.VERY_SATISFIED},
                                           {"code": "T02", "level": vocab.VERY_DISSATISFIED}],
                                 "text": "李堃: 材料要求说明不清楚 𠀋", "uptime_ms": 3900000})
    context = {
        "case_id": 31337, "window": "A05", "staff_id": "S1024", "staff_name": "王喆",
        "matter_code": "440300-011-0042", "matter_name": "不动产登记（转移登记）",
        "serials": ["SZ20260101000123", "SZ20260101000124"], "node": vocab.NODE_COMPLETION,
        "indicators": vocab.IND_OVERALL | vocab.IND_BUSINESS | vocab.IND_SERVICE,
        "tags_version": 7, "deadline": NOW + 7 * 86400, "time": NOW,
    }
    theme_context = {
        "case_id": 31340, "window": "B12", "staff_id": "S2048", "staff_name": "朱镕",
        "matter_code": "THEME-KY", "matter_name": "我要开饭店", "serials": ["SZ20260101000125"],
        "node": vocab.NODE_COMPLETION,
        "items": [{"code": "T01", "name": "食品经营许可"}, {"code": "T02", "name": "公众聚集场所消防安全检查"}],
        "indicators": vocab.IND_OVERALL | vocab.IND_BUSINESS | vocab.IND_SERVICE,
        "tags_version": 7, "deadline": NOW + 7 * 86400,
        "qr": "https://hall.example.cn/r/31340.Kq3xZ9", "time": NOW,
    }
    config = {
        "version": 7,
        "tags": [{"code": 501, "label": "等待时间长", "indicator": vocab.IND_SERVICE},
                 {"code": 502, "label": "服务态度差", "indicator": vocab.IND_SERVICE},
                 {"code": 503, "label": "办事效率低", "indicator": vocab.IND_BUSINESS},
                 {"code": 509, "label": "其他原因", "indicator": 7}],
        "texts": [{"key": "prompt", "text": "请您对本次服务进行评价"}],
        "rating_timeout_s": 60, "thanks_s": 5, "press_guard_ms": 1500, "status_interval_s": 300,
        "idle_text": "欢迎光临",
    }
    # A rare-character name (王䶮明, U+4DAE in Extension A) with its glyph supplement, a staff id
    # that is not ASCII, and the QR code of the signed link as a module matrix. The bitmap is a
    # test pattern (a frame with a diagonal), not the real glyph: the vectors depend on no font.
    pattern = _test_pattern()
    supplement_context = {
        "case_id": 31341, "window": "A05", "staff_id": "综窗-07", "staff_name": "王䶮明",
        "matter_name": "居民身份证换领", "serials": ["粤B-2026-000126"], "node": vocab.NODE_PICKUP,
        "indicators": vocab.IND_OVERALL | vocab.IND_BUSINESS | vocab.IND_SERVICE,
        "deadline": NOW + 7 * 86400, "qr": QR_TOKEN, "time": NOW,
        "glyphs": [{"cp": 0x4DAE, "width": 16, "bits": pattern}],
        "qr_modules": _qr_modules(QR_LINK),
    }
    config_voice = {"version": 8, "texts": [{"key": "prompt", "text": "Please rate our service"},
                                            {"key": "thanks", "text": "Thank you"}],
                    "volume": supplement.volume_wire(0), "large_text": supplement.large_text_wire(True)}
    status = {
        "device": DEVICE, "firmware": "1.0.0", "board": "esp32c3", "uptime_s": 86400,
        "heap_free": 61440, "outbox": 2, "outbox_capacity": 4096, "counter": 1045,
        "case_id": 31340, "boots": 3,
        "errors": [{"name": "bad_crc", "count": 2}, {"name": "noise_bytes", "count": 17}],
    }
    return [
        ("poll", schema.POLL, {"time": NOW}, 5, 1),
        ("poll_empty", schema.POLL, {}, 5, 2),
        ("poll_status", schema.POLL, {"time": NOW, "want_status": 1}, 5, 3),
        ("idle", schema.IDLE, {}, 5, 1),
        ("idle_busy", schema.IDLE, {"outbox": 2, "case_id": 31337}, 5, 2),
        ("rating", schema.RATING, signed, 5, 4),
        ("rating_good", schema.RATING, good, 5, 5),
        ("rating_not_rated", schema.RATING, not_rated, 5, 6),
        ("rating_theme", schema.RATING, theme, 5, 7),
        ("rating_at_gateway", schema.RATING, at_gateway, 5, 8),
        ("ack", schema.ACK, _ack({"device": DEVICE, "counter": 1042, "result": vocab.ACK_STORED},
                                 signed["mac"]), 5, 5),
        ("ack_duplicate", schema.ACK, _ack({"device": DEVICE, "counter": 1042,
                                            "result": vocab.ACK_DUPLICATE}, signed["mac"]), 5, 6),
        ("ack_dead_letter", schema.ACK, _ack({"device": DEVICE, "counter": 1043,
                                              "result": vocab.ACK_DEAD_LETTER,
                                              "reason": errors.R_REPLAY}, good["mac"]), 5, 7),
        ("ack_no_device", schema.ACK, _ack({"counter": 1042, "result": vocab.ACK_STORED},
                                           signed["mac"]), 5, 8),
        ("ack_rejected", schema.ACK, _ack({"device": DEVICE, "counter": 1043,
                                           "result": vocab.ACK_REJECTED,
                                           "reason": errors.R_BAD_MAC}, good["mac"]), 5, 14),
        ("context", schema.CONTEXT, context, 5, 9),
        ("context_theme", schema.CONTEXT, theme_context, 12, 10),
        ("clear", schema.CLEAR, {"case_id": 31337}, 5, 11),
        ("config", schema.CONFIG, config, 0, 12),
        ("context_supplement", schema.CONTEXT, supplement_context, 5, 15),
        ("config_voice", schema.CONFIG, config_voice, 5, 16),
        ("status", schema.STATUS, status, 5, 3),
        ("rating_reoffer", schema.RATING, dict(signed, reoffer=1), 5, 17),
        ("ack_reoffer", schema.ACK, _ack({"device": DEVICE, "counter": 1042,
                                          "result": vocab.ACK_DUPLICATE,
                                          "generation": SETTLE_EXAMPLE["generation"]}, signed["mac"]),
         5, 21),
        ("idle_custody", schema.IDLE, {"custody": 12, "generation": SETTLE_EXAMPLE["generation"]}, 5, 18),
        ("settle", schema.SETTLE, _settle(SETTLE_EXAMPLE), 5, 19),
        ("settle_reoffer", schema.SETTLE, _settle(dict(SETTLE_EXAMPLE, seq=SETTLE_EXAMPLE["seq"] + 1,
                                                       reoffer=1)), 5, 20),
        ("refuse", schema.REFUSE, {"reason": errors.R_UNKNOWN_TYPE, "request": 0x7F,
                                   "detail": "未知请求"}, 5, 13),
    ] + _update_examples()


def message_vectors():
    out = []
    for name, msg_type, record, addr, seq in _examples():
        payload = codec.encode(msg_type, record)
        out.append({
            "name": name, "type": msg_type, "type_name": schema.TYPE_NAMES[msg_type],
            "json": codec.to_json(msg_type, record), "binary": payload.hex(),
            "addr": addr, "seq": seq, "frame": frame.encode_frame(addr, msg_type, seq, payload).hex(),
        })
    return out


def crc_vectors():
    cases = [b"123456789", b"", b"\x00", b"\xff\xff", bytes(range(256)), "王喆 李堃 朱镕".encode()]
    cases.append(bytes.fromhex(message_vectors()[0]["frame"])[2:-2])
    return [{"data": c.hex(), "crc16": crc.crc16(c), "crc8": crc.crc8(c)} for c in cases]


def mac_vectors():
    out = []
    for name, msg_type, record, _, _ in _examples():
        if msg_type != schema.RATING:
            continue
        bare = dict(record)
        for k in schema.MAC_EXCLUDED:
            bare.pop(k, None)
        out.append({"name": name, "key": TEST_KEY.hex(), "rating": codec.to_json(msg_type, record),
                    "signed_bytes": auth.signed_bytes(bare).hex(), "mac": record["mac"].hex()})
    other_key = hashlib.sha256(b"hall-rating second test key").digest()
    bare = _rating_unsigned()
    out.append({"name": "second_key", "key": other_key.hex(),
                "rating": codec.to_json(schema.RATING, auth.sign(other_key, bare)),
                "signed_bytes": auth.signed_bytes(bare).hex(),
                "mac": auth.rating_mac(other_key, bare).hex()})
    ratings = {}
    for name, msg_type, record, _, _ in _examples():
        if msg_type == schema.RATING:
            ratings[name] = record["mac"]
    for name, msg_type, record, _, _ in _examples():
        if msg_type != schema.ACK:
            continue
        answered = ratings[_ACK_ANSWERS[name]]
        out.append({"name": name, "key": TEST_KEY.hex(), "device": DEVICE,
                    "ack": codec.to_json(msg_type, record), "rating_mac": answered.hex(),
                    "signed_bytes": auth.ack_signed_bytes(DEVICE, record, answered).hex(),
                    "mac": record["mac"].hex()})
    for name, msg_type, record, _, _ in _examples():
        if msg_type == schema.SETTLE:
            out.append({"name": name, "key": TEST_KEY.hex(), "device": DEVICE,
                        "settle": codec.to_json(msg_type, record),
                        "signed_bytes": auth.settle_signed_bytes(DEVICE, record).hex(),
                        "mac": record["mac"].hex()})
    return out


def _noise(n, seed):
    """Deterministic pseudo-random bytes (SHA-256 in counter mode)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out.extend(hashlib.sha256(b"%s:%d" % (seed.encode(), i)).digest())
        i += 1
    return bytes(out[:n])


def decoder_streams():
    ex = {v["name"]: bytes.fromhex(v["frame"]) for v in message_vectors()}
    poll, idle, rate, ctx = ex["poll"], ex["idle"], ex["rating"], ex["context"]
    flipped = bytearray(rate)
    flipped[20] ^= 0x04
    bad_hdr = bytearray(poll)
    bad_hdr[3] ^= 0x01
    big = bytearray(b"\xa5\x5a\x05\x01\x00\x01\x08\x00")   # claims 2049 bytes
    big[7] = crc.crc8(big[2:7])
    big_payload = bytes(frame.MAX_PAYLOAD + 1)
    return [
        ("three_frames", poll + idle + rate),
        ("leading_garbage", _noise(50, "a") + poll),
        ("garbage_between", poll + _noise(37, "b") + idle + b"\xa5\xa5\x5a" + rate),
        ("false_syncs", b"\xa5\x5a" * 9 + poll),
        ("bit_flip_in_payload", bytes(flipped) + idle),
        ("bad_header_crc", bytes(bad_hdr) + poll),
        ("oversize_claim", bytes(big) + poll),
        ("oversize_frame_real_crc", b"\xa5\x5a\x05\x01\x00" + bytes([(len(big_payload)) & 0xFF,
                                                                      len(big_payload) >> 8])
         + bytes([crc.crc8(bytes([5, 1, 0, (len(big_payload)) & 0xFF, len(big_payload) >> 8]))])
         + big_payload + b"\x00\x00" + idle),
        ("truncated_then_frame", rate[:30] + ctx),
        ("frame_inside_broken_frame", rate[:12] + poll + rate[12:40] + idle + poll * 4),
        ("swallowed_until_length", rate[:12] + poll + idle),
        ("partial_at_end", poll + ctx[:25]),
        ("sync_split", poll + b"\xa5"),
        ("noise_only", _noise(3000, "c")),
    ]


RESETS = {"silence_drops_partial": 40,   # name -> offset at which the receiver calls reset()
          "silence_keeps_frame_behind_false_header": 26}


def decoder_vectors():
    out = []
    streams = decoder_streams()
    ex = {v["name"]: bytes.fromhex(v["frame"]) for v in message_vectors()}
    streams.append(("silence_drops_partial", ex["rating"][:40] + ex["poll"]))
    false_hdr = bytearray(b"\xa5\x5a\x05\x01\x00\x2c\x01\x00")   # noise that passes CRC-8, claims 300
    false_hdr[7] = crc.crc8(false_hdr[2:7])
    streams.append(("silence_keeps_frame_behind_false_header", bytes(false_hdr) + ex["poll"] + b"\xa5\x5a"
                    + ex["idle"]))
    for name, stream in streams:
        d = frame.FrameDecoder()
        cut = RESETS.get(name)
        if cut is None:
            d.receive_data(stream)
        else:
            d.receive_data(stream[:cut])
            d.reset()
            d.receive_data(stream[cut:])
        frames = []
        while True:
            f = d.next_frame()
            if f is None:
                break
            frames.append({"addr": f.addr, "type": f.type, "seq": f.seq, "payload": f.payload.hex()})
        case = {"name": name, "stream": stream.hex(), "frames": frames, "stats": dict(d.stats),
                "buffered": d.buffered()}
        if cut is not None:
            case["reset_at"] = cut
        out.append(case)
    return out


def _bin_case(name, msg_type, payload, reason):
    return {"name": name, "type": msg_type, "form": "binary", "input": payload.hex(), "reason": reason}


def _json_case(name, msg_type, text, reason):
    return {"name": name, "type": msg_type, "form": "json", "input": text, "reason": reason}


def invalid_vectors():
    r = errors
    good = bytes.fromhex(next(v["binary"] for v in message_vectors() if v["name"] == "rating"))
    cases = [
        _bin_case("truncated_varint", schema.RATING, good[:3] + b"\x80", r.R_TRUNCATED),
        _bin_case("truncated_length", schema.RATING, good[:-5], r.R_TRUNCATED),
        _bin_case("varint_too_long", schema.POLL, b"\x08" + b"\xff" * 10 + b"\x01", r.R_MALFORMED),
        _bin_case("wire_type_5", schema.POLL, b"\x0d\x00\x00\x00\x00", r.R_MALFORMED),
        _bin_case("wrong_wire_type", schema.POLL, b"\x0a\x01\x00", r.R_MALFORMED),
        _bin_case("packed_list", schema.RATING, b"\x0a\x01d\x10\x01\x30\x01\x52\x02\x01\x02",
                  r.R_MALFORMED),   # proto3's default packing of repeated uint: not our wire form
        _bin_case("overlong_varint_accepted", schema.CLEAR, b"\x08\x81\x00", r.R_OK),
        _bin_case("duplicate_scalar", schema.CLEAR, b"\x08\x01\x08\x02", r.R_MALFORMED),
        _bin_case("duplicate_zero_scalar", schema.CLEAR, b"\x08\x00\x08\x02", r.R_MALFORMED),
        _bin_case("level_6", schema.RATING, b"\x0a\x01d\x10\x01\x30\x01\x38\x06", r.R_OUT_OF_RANGE),
        _bin_case("bad_utf8", schema.REFUSE, b"\x08\x01\x1a\x02\xc3\x28", r.R_MALFORMED),
        _bin_case("overlong_utf8", schema.REFUSE, b"\x08\x01\x1a\x02\xc0\xaf", r.R_MALFORMED),
        _bin_case("surrogate_utf8", schema.REFUSE, b"\x08\x01\x1a\x03\xed\xa0\x80", r.R_MALFORMED),
        _bin_case("truncated_utf8", schema.REFUSE, b"\x08\x01\x1a\x02\xe7\x8e", r.R_MALFORMED),
        _bin_case("control_char", schema.REFUSE, b"\x08\x01\x1a\x01\x07", r.R_OUT_OF_RANGE),
        _bin_case("token_with_space", schema.CLEAR, b"\x08\x01\x12\x01 ", r.R_OK),  # unknown field 2 skipped
        _bin_case("device_not_token", schema.STATUS, b"\x0a\x03a/b", r.R_OUT_OF_RANGE),
        _bin_case("name_too_long", schema.CONTEXT,
                  b"\x08\x01\x40\x01\x22\x33" + ("王" * 17).encode(), r.R_OUT_OF_RANGE),
        _bin_case("too_many_tags", schema.RATING,
                  b"\x0a\x01d\x10\x01\x30\x01" + b"\x50\x01" * 9, r.R_OVERSIZE),
        _bin_case("mac_too_long", schema.RATING, b"\x0a\x01d\x10\x01\x30\x01\xa2\x01\x11" + bytes(17),
                  r.R_OVERSIZE),
        _bin_case("missing_counter", schema.RATING, b"\x0a\x01d\x30\x01", r.R_MISSING),
        _bin_case("missing_case_id", schema.CONTEXT, b"\x40\x01", r.R_MISSING),
        _bin_case("staff_id_printable", schema.CONTEXT,
                  b"\x08\x01\x40\x01\x1a\x09" + "综窗 07".encode(), r.R_OK),
        _bin_case("staff_id_control_char", schema.CONTEXT, b"\x08\x01\x40\x01\x1a\x02S\x07",
                  r.R_OUT_OF_RANGE),
        _bin_case("too_many_glyphs", schema.CONTEXT,
                  b"\x08\x01\x40\x01" + b"\x7a\x03\x08\xae\x01" * (schema.MAX_GLYPHS + 1), r.R_OVERSIZE),
        _bin_case("glyph_bits_too_long", schema.CONTEXT,
                  b"\x08\x01\x40\x01\x7a\x23\x1a\x21" + bytes(33), r.R_OVERSIZE),
        _bin_case("qr_modules_too_long", schema.CONTEXT, b"\x08\x01\x40\x01\x82\x01\x99\x03"
                  + bytes(schema.QR_MODULES_BYTES + 1), r.R_OVERSIZE),
        _bin_case("volume_12", schema.CONFIG, b"\x48\x0c", r.R_OUT_OF_RANGE),
        _bin_case("unknown_type", 0x7F, b"", r.R_UNKNOWN_TYPE),
        _bin_case("chunk_too_long", schema.UPDATE_CHUNK, b"\x0a\x01\x01\x22\x81\x06" + bytes(769),
                  r.R_OVERSIZE),
        _bin_case("offer_without_mac", schema.UPDATE_OFFER, b"\x0a\x01\x01\x18\x10", r.R_MISSING),
        _bin_case("record_too_big", schema.POLL, b"\x08\x01" + b"\xf8\x07\x00" * 400, r.R_OVERSIZE),
        _bin_case("unknown_field_skipped", schema.CLEAR, b"\x08\x05\xf8\x07\x09\x82\x08\x02\xab\xcd",
                  r.R_OK),
        _json_case("not_json", schema.CLEAR, "{case_id: 1}", r.R_MALFORMED),
        _json_case("not_object", schema.CLEAR, "[1]", r.R_MALFORMED),
        _json_case("string_for_int", schema.CLEAR, '{"case_id":"1"}', r.R_OUT_OF_RANGE),
        _json_case("float_for_int", schema.CLEAR, '{"case_id":1.5}', r.R_OUT_OF_RANGE),
        _json_case("bool_for_int", schema.CLEAR, '{"case_id":true}', r.R_OUT_OF_RANGE),
        _json_case("negative", schema.CLEAR, '{"case_id":-1}', r.R_OUT_OF_RANGE),
        _json_case("missing_required", schema.CLEAR, '{}', r.R_MISSING),
        _json_case("list_for_scalar", schema.RATING,
                   '{"device":"d","counter":1,"source":[1]}', r.R_OUT_OF_RANGE),
        _json_case("scalar_for_list", schema.RATING,
                   '{"device":"d","counter":1,"source":1,"tags":501}', r.R_MALFORMED),
        _json_case("bad_hex_mac", schema.RATING,
                   '{"device":"d","counter":1,"source":1,"mac":"zz"}', r.R_MALFORMED),
        _json_case("lone_surrogate", schema.RATING,
                   '{"device":"d","counter":1,"source":1,"text":"\\ud840"}', r.R_MALFORMED),
        _json_case("too_long_text", schema.RATING,
                   '{"device":"d","counter":1,"source":1,"text":"%s"}' % ("喆" * 141), r.R_OUT_OF_RANGE),
        _json_case("unknown_key_ignored", schema.CLEAR, '{"case_id":3,"x":1}', r.R_OK),
        _json_case("record_too_big", schema.CONTEXT,
                   '{"case_id":1,"node":1,"serials":[%s],"matter_name":"%s","qr":"%s"}'
                   % (",".join(['"%s"' % ("S" * 40)] * 16), "𠀋" * 60, "q" * 200), r.R_OVERSIZE),
    ]
    return cases


def rule_vectors():
    """rating.check, rating.verdict, rating ids and topics."""
    base = {"device": "d", "counter": 1, "source": vocab.SRC_PRESS}

    def rt(**kw):
        out = dict(base)
        out.update(kw)
        return out
    all3 = vocab.IND_OVERALL | vocab.IND_BUSINESS | vocab.IND_SERVICE
    checks = [
        ("press_overall", rt(overall=1), None, errors.R_OK),
        ("press_without_level", rt(), None, errors.R_MISSING),
        ("press_item_only", rt(items=[{"code": "T1", "level": 2}]), None, errors.R_OK),
        ("bad_with_tag", rt(service=5, tags=[501]), None, errors.R_OK),
        ("tag_on_good", rt(service=1, tags=[501]), None, errors.R_BAD_STATE),
        ("not_rated_plain", rt(source=vocab.SRC_NOT_RATED), None, errors.R_OK),
        ("not_rated_with_level", rt(source=vocab.SRC_NOT_RATED, overall=3), None, errors.R_BAD_STATE),
        ("not_rated_with_text", rt(source=vocab.SRC_NOT_RATED, text="x"), None, errors.R_BAD_STATE),
        ("system_default_from_device", rt(source=vocab.SRC_SYSTEM_DEFAULT, overall=3), None,
         errors.R_BAD_STATE),
        ("receipt_service_only", rt(service=2), vocab.NODE_INDICATORS[vocab.NODE_RECEIPT], errors.R_OK),
        ("receipt_overall", rt(overall=2), vocab.NODE_INDICATORS[vocab.NODE_RECEIPT], errors.R_BAD_STATE),
        ("completion_all", rt(overall=1, business=2, service=3), all3, errors.R_OK),
    ]
    verdicts = [
        ("new", 11, 10, None, "aa", vocab.ACK_STORED, errors.R_OK),
        ("first_ever", 1, 0, None, "aa", vocab.ACK_STORED, errors.R_OK),
        ("retransmission", 10, 10, "aa", "aa", vocab.ACK_DUPLICATE, errors.R_OK),
        ("old_retransmission", 3, 10, "aa", "aa", vocab.ACK_DUPLICATE, errors.R_OK),
        ("same_id_other_content", 10, 10, "aa", "bb", vocab.ACK_DEAD_LETTER, errors.R_REPLAY),
        ("unstored_below_mark", 9, 10, None, "aa", vocab.ACK_DEAD_LETTER, errors.R_REPLAY),
        ("unstored_at_mark", 10, 10, None, "aa", vocab.ACK_DEAD_LETTER, errors.R_REPLAY),
    ]
    topic_cases = [
        ("hall/sz-futian-01/dev/ev-a05/rating", ["sz-futian-01", "ev-a05", "rating"]),
        ("hall/sz-futian-01/dev/ev-a05/availability", ["sz-futian-01", "ev-a05", "availability"]),
        ("hall/sz-futian-01/gateway/devices", ["sz-futian-01", None, "devices"]),
        ("hall/sz-futian-01/dev/ev-a05/unknown", None),
        ("hall//dev/ev-a05/rating", None),
        ("other/sz/dev/ev/rating", None),
        ("hall/sz/gateway/state/extra", None),
        ("hall/sz/dev/+/rating", None),               # a subscription filter, not a topic
        ("hall/sz/dev/ev a05/rating", None),          # ids are tokens
    ]
    return {
        "check": [{"name": n, "rating": codec.to_json(schema.RATING, r), "indicators": ind, "reason": why}
                  for n, r, ind, why in checks],
        "verdict": [{"name": n, "counter": c, "high_water": hw, "stored_mac": sm, "mac": m,
                     "result": res, "reason": why} for n, c, hw, sm, m, res, why in verdicts],
        "rating_id": [{"device": "ev-a05", "counter": 1042, "id": "ev-a05:1042"},
                      {"device": "a.b_c-9", "counter": 0xFFFFFFFF, "id": "a.b_c-9:4294967295"}],
        "topics": [{"topic": t, "parsed": p} for t, p in topic_cases],
        "releases": [{"result": code, "name": vocab.ACK_NAMES[code], "releases": vocab.device_releases(code)}
                     for code in sorted(vocab.ACK_NAMES)],
    }


def ota_vectors():
    """Release manifests (canonical or not), their ids and MACs, and chunk plans."""
    manifest, files = release_manifest()
    info = ota.parse_manifest(manifest)
    other = hashlib.sha256(b"hall-rating other hall's release key").digest()
    out = [{"name": "release", "manifest": manifest.hex(), "key": RELEASE_KEY.hex(),
            "release_id": ota.release_id(manifest).hex(), "mac": ota.release_mac(RELEASE_KEY, manifest).hex(),
            "mac_input": (ota.LABEL + manifest).hex(), "version": info["version"], "boards": info["boards"],
            "files": [list(f) for f in info["files"]]},
           {"name": "other_key", "manifest": manifest.hex(), "key": other.hex(),
            "release_id": ota.release_id(manifest).hex(), "mac": ota.release_mac(other, manifest).hex()}]
    text = manifest.decode()
    bad = [("as_built", text),
           ("crlf", text.replace("\n", "\r\n")),
           ("no_final_lf", text[:-1]),
           ("leading_zero_size", text.replace(" 66 ", " 066 ")),
           ("dotdot_path", text.replace("main.py", "../main.py")),
           ("absolute_path", text.replace("main.py", "/main.py")),
           ("upper_hex", text.replace(info["files"][0][1], info["files"][0][1].upper())),
           ("files_out_of_order", "\n".join([text.split("\n")[0], text.split("\n")[1], text.split("\n")[2],
                                             text.split("\n")[4], text.split("\n")[3], text.split("\n")[5], ""])),
           ("wrong_magic", text.replace("hall-release/1", "hall-release/2"))]
    for name, t in bad:
        out.append({"name": "manifest_" + name, "manifest": t.encode().hex(),
                    "canonical": t.encode() == manifest})
    sizes = ota.sizes(len(manifest), info["files"])
    for chunk, start in ((64, (0, 0)), (ota.CHUNK_MAX, (0, 0)), (16, (2, 8))):
        out.append({"name": "plan_%d_%d_%d" % (chunk, start[0], start[1]), "sizes": sizes, "chunk": chunk,
                    "start": list(start), "plan": [list(c) for c in ota.chunk_plan(sizes, chunk, start)]})
    return out


def timing_vectors():
    out = []
    for baud in BAUDS:
        out.append({
            "baud": baud, "byte_us": timing.byte_us(baud), "guard_us": timing.guard_us(baud),
            "poll_frame_us": timing.frame_us(0, baud), "max_frame_us": timing.frame_us(frame.MAX_PAYLOAD, baud),
            "reply_start_timeout_us": timing.reply_start_timeout_us(baud),
            "reply_timeout_max_us": timing.reply_timeout_us(baud, frame.MAX_PAYLOAD),
            "silence_reset_us": timing.silence_reset_us(baud),
            "exchange_idle_us": timing.exchange_us(0, 0, baud, 2000),
            "poll_cycle_32_us": timing.poll_cycle_us(32, baud),
            "poll_cycle_32_worst_us": timing.poll_cycle_worst_us(32, baud),
        })
    return out


def build_vectors():
    """{file name: text} of every vector file."""
    data = {
        "crc.json": crc_vectors(), "messages.json": message_vectors(), "mac.json": mac_vectors(),
        "decoder.json": decoder_vectors(), "invalid.json": invalid_vectors(),
        "rules.json": rule_vectors(), "timing.json": timing_vectors(), "ota.json": ota_vectors(),
    }
    out = {}
    for name, value in data.items():
        out[name] = json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    return out


def stale_files():
    """[(path, new text)] of every file whose content differs from what the code produces."""
    out = []
    for name, text in build_vectors().items():
        path = os.path.join(VECTOR_DIR, name)
        old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if old != text:
            out.append((path, text))
    if os.path.exists(SPEC_PATH):
        from tools.spec_sections import render_spec
        old = open(SPEC_PATH, encoding="utf-8").read()
        new = render_spec(old)
        if new != old:
            out.append((SPEC_PATH, new))
    return out


def main(argv):
    stale = stale_files()
    if "--check" in argv:
        for path, _ in stale:
            print("stale: %s" % os.path.relpath(path, ROOT))
        return 1 if stale else 0
    os.makedirs(VECTOR_DIR, exist_ok=True)
    for path, text in stale:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print("wrote %s" % os.path.relpath(path, ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
