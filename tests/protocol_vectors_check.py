"""Replay protocol/vectors/*.json against the protocol code; runs on CPython AND MicroPython 1.29.

    python tests/protocol_vectors_check.py [vector_dir]

Prints one JSON line: {"runtime": ..., "passed": n, "failed": [names...]}. Exit status 1 if any
vector failed. Uses only what both runtimes have: json, binascii, no f-strings, no pathlib.
tests/test_protocol_vectors.py runs it on both and checks the counts agree with the files.
"""

import json
import sys
from binascii import hexlify, unhexlify

from protocol import auth, codec, crc, errors, frame, ota, rating, schema, timing, topics, vocab

FILES = ("crc", "messages", "mac", "decoder", "invalid", "rules", "timing", "ota")


def _hex(data):
    return hexlify(bytes(data)).decode()


def _load(vector_dir, name):
    with open("%s/%s.json" % (vector_dir, name)) as f:
        return json.load(f)


def _check_crc(v):
    data = unhexlify(v["data"])
    assert crc.crc16(data) == v["crc16"], "crc16"
    assert crc.crc8(data) == v["crc8"], "crc8"
    if len(data) > 1:  # incremental use gives the same CRC
        half = len(data) // 2
        assert crc.crc16(data[half:], crc.crc16(data[:half])) == v["crc16"], "crc16 split"


def _check_message(v):
    t = v["type"]
    record = codec.from_json(t, v["json"])
    binary = unhexlify(v["binary"])
    assert codec.to_json(t, record) == v["json"], "json not canonical"
    assert codec.encode(t, record) == binary, "binary differs"
    assert codec.decode(t, binary) == record, "binary decode differs"
    whole = frame.encode_frame(v["addr"], t, v["seq"], binary)
    assert _hex(whole) == v["frame"], "frame differs"
    d = frame.FrameDecoder()
    for i in range(len(whole)):
        d.receive_data(whole[i:i + 1])
    f = d.next_frame()
    assert f is not None and d.next_frame() is None, "decoder count"
    assert (f.addr, f.type, f.seq, f.payload) == (v["addr"], t, v["seq"], binary), "decoded frame"


def _check_mac(v):
    if "ack" in v:
        return _check_ack_mac(v)
    if "settle" in v:
        return _check_settle_mac(v)
    key = unhexlify(v["key"])
    signed = codec.from_json(schema.RATING, v["rating"])
    assert _hex(signed["mac"]) == v["mac"], "mac in record"
    bare = {}
    for name in signed:
        if name not in schema.MAC_EXCLUDED:
            bare[name] = signed[name]
    assert _hex(auth.signed_bytes(bare)) == v["signed_bytes"], "signed bytes"
    assert _hex(auth.rating_mac(key, bare)) == v["mac"], "mac"
    assert auth.verify(key, signed), "verify"
    assert auth.sign(key, bare) == _without(signed, ("gateway_time", "hall", "reoffer")), "sign"
    tampered = dict(signed)
    tampered["counter"] = signed["counter"] + 1
    assert not auth.verify(key, tampered), "tampered counter verified"
    outside = dict(signed)
    outside["gateway_time"] = 1
    outside["hall"] = "elsewhere"
    outside["reoffer"] = 1 - signed.get("reoffer", 0)
    assert auth.verify(key, outside), "gateway fields and the re-offer flag are outside the MAC"


def _check_settle_mac(v):
    key = unhexlify(v["key"])
    dev = v["device"]
    signed = codec.from_json(schema.SETTLE, v["settle"])
    assert _hex(signed["mac"]) == v["mac"], "mac in record"
    bare = _without(signed, ("mac",))
    assert _hex(auth.settle_signed_bytes(dev, bare)) == v["signed_bytes"], "signed bytes"
    assert auth.sign_settle(key, dev, bare) == signed, "sign"
    assert auth.verify_settle(key, dev, signed), "verify"
    assert auth.verify_settle(key, dev, _without(signed, ("device",))), "device omitted"
    assert not auth.verify_settle(key, dev + "x", signed), "verified for another device"
    assert not auth.verify_settle(key, dev, bare), "unsigned verified"
    for name in ("settled", "seq", "generation", "reoffer"):
        tampered = dict(signed)
        tampered[name] = signed.get(name, 0) ^ 1
        assert not auth.verify_settle(key, dev, tampered), "tampered %s verified" % name


def _check_ack_mac(v):
    key = unhexlify(v["key"])
    dev = v["device"]
    answered = unhexlify(v["rating_mac"])
    signed = codec.from_json(schema.ACK, v["ack"])
    assert _hex(signed["mac"]) == v["mac"], "mac in record"
    bare = _without(signed, ("mac",))
    assert _hex(auth.ack_signed_bytes(dev, bare, answered)) == v["signed_bytes"], "signed bytes"
    assert _hex(auth.ack_mac(key, dev, bare, answered)) == v["mac"], "mac"
    assert auth.sign_ack(key, dev, bare, answered) == signed, "sign"
    assert auth.verify_ack(key, dev, signed, answered), "verify"
    other = dict(signed)                     # the device field is implied by the verifier
    if "device" in other:
        del other["device"]
    else:
        other["device"] = dev
    assert auth.verify_ack(key, dev, other, answered), "device omitted or present"
    assert not auth.verify_ack(key, dev + "x", signed, answered), "verified for another device"
    assert not auth.verify_ack(key, dev, _without(signed, ("mac",)), answered), "unsigned verified"
    other_mac = bytes([answered[0] ^ 1]) + answered[1:]
    assert not auth.verify_ack(key, dev, signed, other_mac), "verified for another rating"
    tampered = dict(signed)
    tampered["counter"] = signed["counter"] + 1
    assert not auth.verify_ack(key, dev, tampered, answered), "tampered counter verified"
    tampered = dict(signed)
    tampered["result"] = (signed.get("result", 0) + 1) % 5
    assert not auth.verify_ack(key, dev, tampered, answered), "tampered result verified"
    tampered = dict(signed)
    tampered["generation"] = signed.get("generation", 0) ^ 1
    assert not auth.verify_ack(key, dev, tampered, answered), "tampered generation verified"


def _without(record, names):
    out = dict(record)
    for n in names:
        out.pop(n, None)
    return out


def _check_decoder(v):
    stream = unhexlify(v["stream"])
    cut = v.get("reset_at")
    want = [(f["addr"], f["type"], f["seq"], f["payload"]) for f in v["frames"]]
    for step in (len(stream) or 1, 1, 7):
        d = frame.FrameDecoder()
        got = []
        pos = 0
        while pos < len(stream):
            end = min(pos + step, len(stream))
            if cut is not None and pos < cut < end:
                end = cut
            d.receive_data(stream[pos:end])
            pos = end
            if pos == cut:
                d.reset()
            while True:
                f = d.next_frame()
                if f is None:
                    break
                got.append((f.addr, f.type, f.seq, _hex(f.payload)))
        assert got == want, "frames with step %d" % step
        assert d.stats == v["stats"], "stats with step %d: %r" % (step, d.stats)
        assert d.buffered() == v["buffered"], "buffered with step %d" % step


def _check_invalid(v):
    t = v["type"]
    try:
        if v["form"] == "binary":
            codec.decode(t, unhexlify(v["input"]))
        else:
            codec.from_json(t, v["input"])
    except errors.ProtocolError as e:
        assert e.reason == v["reason"], "reason %d, want %d" % (e.reason, v["reason"])
        return
    assert v["reason"] == errors.R_OK, "accepted, want reason %d" % v["reason"]


def _check_rules(rules):
    """Yields (name, check function) pairs: rules.json holds several small tables."""
    for v in rules["check"]:
        yield "check/" + v["name"], _rule_check(v)
    for v in rules["verdict"]:
        yield "verdict/" + v["name"], _rule_verdict(v)
    for v in rules["rating_id"]:
        yield "rating_id/" + v["id"], _rule_id(v)
    for v in rules["topics"]:
        yield "topic/" + v["topic"], _rule_topic(v)
    for v in rules["releases"]:
        yield "releases/" + v["name"], _rule_releases(v)


def _rule_releases(v):
    def run():
        assert vocab.device_releases(v["result"]) == v["releases"], "releases"
    return run


def _rule_check(v):
    def run():
        r = codec.from_json(schema.RATING, v["rating"])
        try:
            rating.check(r, v["indicators"])
        except errors.ProtocolError as e:
            assert e.reason == v["reason"], "reason %d" % e.reason
            return
        assert v["reason"] == errors.R_OK, "accepted"
    return run


def _rule_verdict(v):
    def run():
        stored = v["stored_mac"]
        got = rating.verdict(v["counter"], v["high_water"],
                             None if stored is None else unhexlify(stored), unhexlify(v["mac"]))
        assert tuple(got) == (v["result"], v["reason"]), "verdict %r" % (got,)
    return run


def _rule_id(v):
    def run():
        assert rating.rating_id({"device": v["device"], "counter": v["counter"]}) == v["id"], "id"
        assert tuple(rating.split_rating_id(v["id"])) == (v["device"], v["counter"]), "split"
    return run


def _rule_topic(v):
    def run():
        try:
            got = list(topics.parse(v["topic"]))
        except errors.ProtocolError:
            assert v["parsed"] is None, "rejected"
            return
        assert got == v["parsed"], "parsed %r" % (got,)
        hall, device, kind = got
        built = topics.gateway_topic(hall, kind) if device is None else topics.device_topic(hall, device, kind)
        assert built == v["topic"], "rebuilt"
    return run


def _check_timing(v):
    b = v["baud"]
    got = {
        "baud": b, "byte_us": timing.byte_us(b), "guard_us": timing.guard_us(b),
        "poll_frame_us": timing.frame_us(0, b), "max_frame_us": timing.frame_us(frame.MAX_PAYLOAD, b),
        "reply_start_timeout_us": timing.reply_start_timeout_us(b),
        "reply_timeout_max_us": timing.reply_timeout_us(b, frame.MAX_PAYLOAD),
        "silence_reset_us": timing.silence_reset_us(b),
        "exchange_idle_us": timing.exchange_us(0, 0, b, 2000),
        "poll_cycle_32_us": timing.poll_cycle_us(32, b),
        "poll_cycle_32_worst_us": timing.poll_cycle_worst_us(32, b),
    }
    assert got == v, "timing %d" % b


def _check_ota(v):
    if "plan" in v:
        got = [list(c) for c in ota.chunk_plan(v["sizes"], v["chunk"], tuple(v["start"]))]
        assert got == v["plan"], "chunk plan"
        return
    manifest = unhexlify(v["manifest"])
    if "canonical" in v:
        try:
            ota.parse_manifest(manifest)
            ok = True
        except errors.ProtocolError:
            ok = False
        assert ok == v["canonical"], "canonical"
        return
    key = unhexlify(v["key"])
    assert _hex(ota.release_id(manifest)) == v["release_id"], "release id"
    assert _hex(ota.release_mac(key, manifest)) == v["mac"], "mac"
    assert ota.verify_release(key, manifest, unhexlify(v["mac"])), "verify"
    if "mac_input" in v:
        assert _hex(ota.LABEL + manifest) == v["mac_input"], "mac input"
        info = ota.parse_manifest(manifest)
        assert info["version"] == v["version"] and info["boards"] == v["boards"], "head"
        assert [list(f) for f in info["files"]] == v["files"], "files"
        for i in (0, len(manifest) // 2, len(manifest) - 1):
            bent = bytearray(manifest)
            bent[i] ^= 1
            assert not ota.verify_release(key, bent, unhexlify(v["mac"])), "changed byte verified"


def cases(vector_dir):
    """Every (name, function) the vector files hold."""
    out = []
    simple = (("crc", _check_crc), ("messages", _check_message), ("mac", _check_mac),
              ("decoder", _check_decoder), ("invalid", _check_invalid), ("timing", _check_timing),
              ("ota", _check_ota))
    for fname, fn in simple:
        for i, v in enumerate(_load(vector_dir, fname)):
            out.append(("%s/%s" % (fname, v.get("name", v.get("baud", i))), _bind(fn, v)))
    for name, fn in _check_rules(_load(vector_dir, "rules")):
        out.append(("rules/" + name, fn))
    return out


def _bind(fn, v):
    return lambda: fn(v)


def run(vector_dir):
    passed = 0
    failed = []
    for name, fn in cases(vector_dir):
        try:
            fn()
            passed += 1
        except Exception as e:  # report every failure, keep going
            failed.append("%s: %s %s" % (name, type(e).__name__, e))
    return passed, failed


def main(vector_dir):
    passed, failed = run(vector_dir)
    runtime = sys.implementation.name
    print(json.dumps({"runtime": runtime, "passed": passed, "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "protocol/vectors"))
