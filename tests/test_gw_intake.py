"""The gateway's one rating path (gateway.intake) and its fast codec (gateway.fastcodec).

- fastcodec's ACK MAC and ACK JSON equal protocol.auth's and the codec's on every valid ACK; its
  token and text checks are protocol's rule on every text (all of Unicode);
- text_rules (HTTP text) is protocol's text rule plus the C1 controls;
- the intake answers by SPEC 7.3-7.5 whichever transport hands a rating in (MQTT JSON, an RS-485
  record, an oversized head): random sequences of genuine, repeated, replayed, rule-breaking,
  forged, unsigned, misdirected and undecodable ratings from known and unknown senders, on a real
  SQLite store, against a model of the rules.
"""

import json
import tempfile

from hypothesis import given, settings, strategies as st

from gateway import fastcodec, text_rules
from gateway.intake import Intake, commit
from gateway.registry import Registry
from gateway.rejects import Rejections
from gateway.committer import GroupCommitter
from gateway.store import Store
from gw_support import HALL, device_key, make_rating
from protocol import auth, codec, errors, schema, vocab

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
_ANY_TEXT = st.text(alphabet=st.one_of(
    st.characters(),                                                   # all of Unicode, surrogates too
    st.sampled_from("\x00\x1f\x20\x7e\x7f\x80\x85\x9f\xa0\ud800\udfff-._/@[`{~é评𠀋" + TOKEN_CHARS)),
    max_size=12)


# --- ACK: MAC and JSON from ACK_FIELDS --------------------------------------------------------
def _ack_records():
    """Valid ACK records with any subset of the fields, zeros and empties included (the gateway
    writes them all; the canonical encoding leaves them out)."""
    return st.fixed_dictionaries({}, optional={
        "device": st.text(TOKEN_CHARS, max_size=24), "counter": st.integers(0, schema.U32),
        "result": st.integers(0, 4), "reason": st.integers(0, schema.U8),
        "mac": st.binary(max_size=16)})


@settings(max_examples=400, deadline=None)
@given(ack=_ack_records(), device=st.text(TOKEN_CHARS, min_size=1, max_size=24),
       key=st.binary(min_size=32, max_size=32), rating_mac=st.binary(min_size=16, max_size=16))
def test_fast_ack_mac_is_protocols(ack, device, key, rating_mac):
    assert fastcodec.ack_signed_bytes(device, ack, rating_mac) == auth.ack_signed_bytes(device, ack, rating_mac)
    assert fastcodec.ack_mac(key, device, ack, rating_mac) == auth.ack_mac(key, device, ack, rating_mac)
    signed = fastcodec.sign_ack(key, device, ack, rating_mac)
    assert signed == auth.sign_ack(key, device, ack, rating_mac)
    assert auth.verify_ack(key, device, signed, rating_mac)


@settings(max_examples=400, deadline=None)
@given(ack=_ack_records())
def test_fast_ack_json_is_the_codecs_json_object(ack):
    text = fastcodec.ack_json(ack)
    assert text == codec.dumps(codec.to_obj(schema.ACK_FIELDS, ack))
    if ack.get("counter"):                         # and a device reads it back as the same record
        canonical = dict((k, v) for k, v in ack.items() if v)
        assert codec.from_json(schema.ACK, text) == canonical


def test_fast_ack_refuses_what_protocol_refuses():
    for call in (lambda: fastcodec.ack_mac(b"short", "d", {}, bytes(16)),
                 lambda: fastcodec.ack_mac(bytes(32), "d", {}, bytes(15))):
        try:
            call()
        except Exception as e:
            assert type(e).__name__ == "LocalProtocolError"
        else:
            raise AssertionError("accepted")


# --- one token rule, one text rule ------------------------------------------------------------
@settings(max_examples=600, deadline=None)
@given(value=_ANY_TEXT, limit=st.integers(0, 12))
def test_token_and_text_checks_are_protocols_rule(value, limit):
    assert fastcodec.is_token(value, limit) == (codec.text_problem(schema.T, value, limit) is None)
    try:
        value.encode("utf-8")
        unicode_ok = True
    except UnicodeEncodeError:
        unicode_ok = False
    bad = fastcodec.bad_text_char(value)
    assert (bad is None) == (unicode_ok and codec.text_problem(schema.S, value, len(value)) is None)
    if bad is not None:     # the first character the rule refuses
        first = next(c for c in value if codec.text_problem(schema.S, c, 1) or 0xD800 <= ord(c) <= 0xDFFF)
        assert bad == first


@settings(max_examples=600, deadline=None)
@given(value=_ANY_TEXT)
def test_http_text_is_protocols_text_rule_and_no_c1_control(value):
    refused = [c for c in value if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF]
    assert text_rules.bad_char(value) == (refused[0] if refused else None)
    assert text_rules.is_text(value, 12) == (not refused)


def test_every_token_check_of_the_gateway_is_protocols():
    from gateway.cases import CaseError, _token
    from gateway.registry import RegistryError, _token as registry_token
    for value, ok in (("A-1._z", True), ("a b", False), ("é", False), ("x" * 17, False), (7, False)):
        assert fastcodec.is_token(value, 16) is ok
        try:
            _token({"window": value}, "window", 16)
            assert ok
        except CaseError:
            assert not ok
        try:
            registry_token(value, "window", 16)
            assert ok
        except RegistryError:
            assert not ok
    try:
        registry_token("", "device id", 24)
        raise AssertionError("an empty id")
    except RegistryError:
        pass


# --- the one path, over every transport -------------------------------------------------------
DEVICES = ("dev-a", "dev-b")
KINDS = ("genuine", "again", "altered", "bad_mac", "no_mac", "other_device", "rule", "junk", "oversize")


def _rating_for(kind, sender, counter):
    """(what the sender's channel carries: a rating record, or bytes for junk and oversize heads)"""
    if kind == "other_device":
        other = DEVICES[1 - DEVICES.index(sender)] if sender in DEVICES else "dev-a"
        return make_rating(other, counter)
    if kind == "altered":           # the same id with other content, genuinely signed: a replay
        return make_rating(sender, counter, level=vocab.BASICALLY_SATISFIED)
    if kind == "rule":              # tags on a good rating: authentic, breaks a rule
        return make_rating(sender, counter, tags=[501])
    if kind == "no_mac":
        return make_rating(sender, counter, sign=False)
    rating = make_rating(sender, counter)
    if kind == "bad_mac":
        rating["mac"] = bytes([rating["mac"][0] ^ 1]) + rating["mac"][1:]
    if kind in ("junk", "oversize"):
        head = '{"device":"%s","counter":%d,"overall":9,"mac":"%s"' % (sender, counter, rating["mac"].hex())
        return (head + "}").encode() if kind == "junk" else (head + ',"text":"' + "x" * 3000).encode()
    return rating


def _expected(model, kind, sender, counter, rating):
    """(answer or None, kept as dead letter) by SPEC 7.3 for what the model holds. The intake
    counts (rejections) what it refuses itself; a replay is the store's verdict, kept alike."""
    if sender not in DEVICES:
        return None, False
    if kind == "junk":
        return (vocab.ACK_REJECTED, errors.R_OUT_OF_RANGE), True
    if kind == "oversize":
        return (vocab.ACK_REJECTED, errors.R_OVERSIZE), True
    if kind == "other_device":
        return (vocab.ACK_REJECTED, errors.R_WRONG_DEVICE), True
    if kind == "no_mac":
        return None, True
    if kind == "bad_mac":
        return (vocab.ACK_REJECTED, errors.R_BAD_MAC), True
    if kind == "rule":
        return (vocab.ACK_DEAD_LETTER, errors.R_BAD_STATE), True
    stored = model["stored"].get((sender, counter))
    if stored is not None:
        if stored == rating["mac"]:
            return (vocab.ACK_DUPLICATE, errors.R_OK), False
        return (vocab.ACK_DEAD_LETTER, errors.R_REPLAY), True
    if counter <= model["hwm"].get(sender, 0):
        return (vocab.ACK_DEAD_LETTER, errors.R_REPLAY), True
    model["stored"][(sender, counter)] = rating["mac"]
    model["hwm"][sender] = counter
    return (vocab.ACK_STORED, errors.R_OK), False


_STEPS = st.lists(st.tuples(st.sampled_from(DEVICES + ("ghost",)), st.integers(1, 4),
                            st.sampled_from(KINDS), st.sampled_from(("mqtt", "rs485")),
                            st.booleans()), min_size=1, max_size=10)


@settings(max_examples=60, deadline=None)
@given(steps=_STEPS)
def test_the_intake_answers_by_spec_7_3_whatever_the_transport(steps):
    registry = Registry([{"id": d, "window": "A0%d" % i, "key": device_key(d).hex()}
                         for i, d in enumerate(DEVICES)])
    rejections = Rejections()
    rated = []
    intake = Intake(HALL, registry, rejections, enrich=lambda r: {"matter_name": "营业执照"},
                    on_rating=lambda r, res, enrichment: rated.append((r["device"], r["counter"], res)),
                    clock=lambda: 1700000000)
    model = {"stored": {}, "hwm": {}}
    with tempfile.TemporaryDirectory() as workdir:
        store = Store(workdir + "/outbox.db")
        committer = GroupCommitter(store)
        try:
            group = []
            expected_stored = 0
            for sender, counter, kind, transport, flush in steps:
                if kind == "again":
                    kind = "genuine"        # a retransmission of what was sent before, if it was
                carried = _rating_for(kind, sender, counter)
                if transport == "rs485" and isinstance(carried, bytes):
                    transport = "mqtt"      # a frame that does not decode never reaches the intake
                answers = []
                dead_before = len(store.dead_letters(1000))
                rejected_before = rejections.total()
                if transport == "rs485":
                    record = codec.decode(schema.RATING, codec.encode(schema.RATING, carried))
                    pending = intake.from_record("rs485", sender, record, answers.append)
                    commit(pending, committer)
                else:
                    if kind == "oversize":
                        pending = intake.from_head("mqtt", sender, carried[:2048], len(carried), answers.append)
                    else:
                        payload = carried if isinstance(carried, bytes) else \
                            codec.dumps(codec.to_obj(schema.RATING_FIELDS, carried)).encode()
                        pending = intake.from_json("mqtt", sender, payload, answers.append)
                    if pending is not None:
                        group.append(pending)
                    committer.commit_batch(group)     # one at a time: the model is sequential
                    group = []
                want, kept = _expected(model, kind, sender, counter,
                                       None if isinstance(carried, bytes) else carried)
                expected_stored += want == (vocab.ACK_STORED, errors.R_OK)
                refused = sender not in DEVICES or (kept and want[1] != errors.R_REPLAY if want else kept)
                assert rejections.total() == rejected_before + refused
                assert len(store.dead_letters(1000)) == dead_before + kept
                if sender not in DEVICES:
                    assert pending is None and answers == []
                    continue
                if want is None:
                    assert answers == []
                    continue
                assert len(answers) == 1
                ack = answers[0]
                assert (ack["device"], ack["counter"], ack["result"], ack["reason"]) == (sender, counter) + want
                # signed under the sender's key, bound to the MAC the rating carried (SPEC 7.5)
                if kind == "oversize":
                    mac = make_rating(sender, counter)["mac"]
                elif kind == "junk":
                    mac = bytes.fromhex(json.loads(carried)["mac"])
                else:
                    mac = carried["mac"]
                assert auth.verify_ack(device_key(sender), sender, ack, mac)
                assert vocab.device_releases(ack["result"]) == (kind in ("genuine", "altered", "rule"))
            assert store.backlog()["ratings"] == expected_stored
            assert len([r for r in rated if r[2][0] == vocab.ACK_STORED]) == expected_stored
        finally:
            committer.close()
            store.close()
