"""Registry rules and persistence, the fast MAC check against protocol.auth, and the generated
Mosquitto password/ACL files enforced by a real broker."""

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings, strategies as st

from gateway import config as config_mod
from gateway.cli import main as cli_main
from gateway.mosquitto_acl import acl_file, hash_password, mqtt_password, write_files
from gateway.fastcodec import rating_from_json, verify_mac
from gateway.registry import Registry, RegistryError
from gw_support import HALL, device_key, make_rating
from protocol import auth, codec, schema, topics, vocab
from protocol.errors import ProtocolError
from protocol_strategies import record_of


def spec(device, **extra):
    out = {"id": device, "window": "A01", "key": device_key(device).hex()}
    out.update(extra)
    return out


def test_changes_persist_and_the_id_is_permanent(tmp_path):
    path = str(tmp_path / "registry.json")
    reg = Registry([spec("dev-a")], path)
    heard = []
    reg.listeners.append(lambda d, what: heard.append((d.id, what)))
    reg.add(spec("dev-b", transport="rs485", address=3, name="李堃的窗口"))
    reg.update("dev-a", {"window": "B07", "name": "二楼"})
    with pytest.raises(RegistryError):
        reg.update("dev-a", {"id": "dev-z"})
    with pytest.raises(RegistryError):
        reg.add(spec("dev-c", transport="rs485", address=3))       # address taken
    with pytest.raises(RegistryError):
        reg.add(spec("dev/x"))                                     # not a token: would break topics
    with pytest.raises(RegistryError):
        reg.add({"id": "dev-k", "key": "abcd"})                    # short key
    assert heard == [("dev-b", "added"), ("dev-a", "updated")]
    again = Registry([spec("dev-a")], path)                        # config + saved changes
    assert again.get("dev-a").window == "B07" and again.get("dev-b").name == "李堃的窗口"
    assert [d.id for d in again.by_window("B07")] == ["dev-a"]
    assert all("key" not in d for d in again.snapshot())
    again.remove("dev-b")
    assert Registry([], path).get("dev-b") is None


def test_check_rating_reasons():
    reg = Registry([spec("dev-a")])
    assert reg.check_rating(make_rating("dev-a", 1), "dev-a") is None
    assert reg.check_rating(make_rating("dev-q", 1), "dev-q")[0] == 11    # unknown device
    assert reg.check_rating(make_rating("dev-a", 1), "dev-b")[0] == 11    # sent by another
    forged = make_rating("dev-a", 1, level=vocab.SATISFIED)
    forged["overall"] = vocab.VERY_DISSATISFIED
    forged["tags"] = [501]
    assert reg.check_rating(forged, "dev-a")[0] == 9                      # bad MAC


@settings(max_examples=150, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), counter=st.integers(1, 2 ** 32 - 1),
       level=st.sampled_from(vocab.LEVELS), flip=st.integers(0, 15), text=st.text(max_size=20))
def test_fast_mac_check_agrees_with_protocol_auth(key, counter, level, flip, text):
    rating = {"device": "d1", "counter": counter, "source": vocab.SRC_PRESS, "overall": level,
              "text": "".join(c for c in text if " " <= c != "\x7f")}
    signed = auth.sign(key, rating)
    assert verify_mac(key, signed) is auth.verify(key, signed) is True
    bad = dict(signed, mac=bytes(b ^ (1 if i == flip else 0) for i, b in enumerate(signed["mac"])))
    assert verify_mac(key, bad) is auth.verify(key, bad) is False


def _outcome(decode, payload):
    try:
        return decode(payload)
    except ProtocolError as e:
        return e.reason


def _payloads():
    """RATING JSON as devices send it, and bytes around it: cut, flipped, padded, not UTF-8."""
    # Ratings of any size: from_obj checks each field, but only the size check catches too many.
    valid = record_of(schema.RATING_FIELDS, schema.REQUIRED[schema.RATING]).map(
        lambda r: codec.dumps(codec.to_obj(schema.RATING_FIELDS, r)).encode())
    mutated = st.tuples(valid, st.integers(0, 400), st.binary(max_size=3)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):])
    raw = st.one_of(st.binary(max_size=40), st.sampled_from(
        [b"[]", b"null", b'"x"', b"\xed\xa0\x80", b'{"device":"\\ud800","counter":1}', b"[" * 5000]))
    return st.one_of(valid, mutated, raw)


@settings(max_examples=400, deadline=None)
@given(payload=_payloads())
def test_fast_rating_decode_agrees_with_protocol(payload):
    slow = _outcome(lambda p: codec.from_json(schema.RATING, p), payload)
    fast = _outcome(rating_from_json, payload)
    if isinstance(slow, dict):
        assert fast == (slow, auth.signed_bytes(slow))
    else:
        assert fast == slow        # the same reason code


# Objects keyed by RATING's field names holding any JSON value, so that every check of every field
# (and which one decides first) is met: wrong types, floats, bools, huge and negative numbers, lone
# surrogates, control characters, non-token text, hex of any case, lists and nested items.
_ANY_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 2 ** 65), st.floats(allow_nan=True),
    st.text(max_size=30), st.sampled_from(["\ud800", "ab\x01", "x\x7f", "\x1f", "\x00", "A-b.c_9", "a/b",
                                           "a b", "é", "~", "@", "[", "`", "{", "王喆评价", "0f" * 16,
                                           "0F" * 16, "ab" * 17, "zz", "abc", "李堃" * 80]),
    # one character past each limit and right at it (tokens 16, 20, 24, 40; text 140)
    st.sampled_from([16, 17, 20, 21, 24, 25, 40, 41, 140, 141]).map(lambda n: "x" * n),
    st.sampled_from([140, 141]).map(lambda n: "朱镕" * (n // 2) + "评" * (n % 2)))
_ANY_VALUE = st.one_of(
    _ANY_SCALAR, st.lists(_ANY_SCALAR, max_size=18),
    st.lists(st.dictionaries(st.sampled_from(["code", "level", "x"]), _ANY_SCALAR), max_size=9))
_OBJECTS = st.dictionaries(st.sampled_from([f[1] for f in schema.RATING_FIELDS] + ["extra"]), _ANY_VALUE)


@settings(max_examples=600, deadline=None)
@given(obj=_OBJECTS, ascii_only=st.booleans())
def test_fast_rating_decode_agrees_with_protocol_on_any_json_object(obj, ascii_only):
    payload = json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    slow = _outcome(lambda p: codec.from_json(schema.RATING, p), payload)
    fast = _outcome(rating_from_json, payload)
    if isinstance(slow, dict):
        assert fast == (slow, auth.signed_bytes(slow))
    else:
        assert fast == slow


_BASE = {"device": "dev-a", "counter": 7, "case_id": 3, "serials": ["SZ1"], "node": 1, "source": 1,
         "overall": 4, "tags": [501], "text": "等待时间长", "items": [{"code": "m1", "level": 2}],
         "staff_id": "1001", "window": "A01", "device_time": 1700000000, "uptime_ms": 5,
         "mac": "00" * 16, "gateway_time": 1, "hall": "h1"}


# Text of the characters at the edges of every class a check draws (token, control, ASCII, BMP).
_EDGE_TEXT = st.text(alphabet=st.sampled_from("-._/09AZaz@[`{:~ \x00\x1f\x7f\x80é评\ud800"), min_size=1,
                     max_size=3)


@pytest.mark.parametrize("name", sorted(_BASE) + ["extra"])
@settings(max_examples=150, deadline=None)
@given(value=st.one_of(_EDGE_TEXT, _EDGE_TEXT.map(lambda t: [t]), _ANY_VALUE), other=_ANY_VALUE,
       other_name=st.sampled_from(sorted(_BASE)), ascii_only=st.booleans(), two=st.booleans())
def test_fast_rating_decode_agrees_with_protocol_field_by_field(name, value, other, other_name,
                                                                ascii_only, two):
    """A valid rating with one field (sometimes two) set to anything: each check meets every value."""
    changes = {other_name: other} if two else {}
    changes[name] = value
    payload = json.dumps(dict(_BASE, **changes), ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    slow = _outcome(lambda p: codec.from_json(schema.RATING, p), payload)
    fast = _outcome(rating_from_json, payload)
    assert fast == ((slow, auth.signed_bytes(slow)) if isinstance(slow, dict) else slow)


@pytest.mark.parametrize("payload", [
    b'\xef\xbb\xbf{"device":"d","counter":1,"source":1,"overall":1}',   # a BOM
    b'{"device":"d","counter":18446744073709551616,"source":1}',        # past u64: orjson says float
    b'{"device":"d","counter":1,"source":1,"overall":1,"device_time":1e400}',
    b'{"device":"d","counter":1,"source":1,"overall":NaN}',
    b'{"device":"d","counter":1,"counter":2,"source":1,"overall":1}',   # the last copy counts
    b'{"device":"d","counter":1,"source":1,"overall":1,"text":"\\ud83d"}',
    b'{"device":"d","counter":1,"source":1,"overall":1,"text":"\xed\xa0\x80"}',
    b'{"device":"d","counter":1,"source":1,"overall":1,"mac":"00FF00ff00ff00ff00ff00ff00ff00ff"}',
    b'{"device":"d","counter":1,"source":1,"items":[{"code":"m1","level":1},{}]}',
    b'{"device":"d","counter":1,"source":1,"items":[[]]}',
    b'{"device":"d","counter":1,"source":1,"tags":[0,0],"serials":["",""]} ',
])
def test_fast_rating_decode_agrees_with_protocol_on_edge_cases(payload):
    slow = _outcome(lambda p: codec.from_json(schema.RATING, p), payload)
    fast = _outcome(rating_from_json, payload)
    assert fast == ((slow, auth.signed_bytes(slow)) if isinstance(slow, dict) else slow)


@pytest.mark.parametrize("char", list("-._/09AZaz@[`{:~ \x00\x1f\x20\x7f\x80é评\ud800"))
@pytest.mark.parametrize("name", ["text", "window", "serials", "mac"])
def test_fast_rating_decode_agrees_with_protocol_on_each_edge_character(name, char):
    value = "ab%sc" % char
    payload = json.dumps(dict(_BASE, **{name: [value] if name == "serials" else value})).encode()
    slow = _outcome(lambda p: codec.from_json(schema.RATING, p), payload)
    fast = _outcome(rating_from_json, payload)
    assert fast == ((slow, auth.signed_bytes(slow)) if isinstance(slow, dict) else slow)


def test_fast_rating_decode_refuses_an_oversize_record_like_protocol():
    rating = make_rating("dev-a", 1, text="评" * 140, serials=["S%039d" % i for i in range(16)])
    payload = codec.dumps(codec.to_obj(schema.RATING_FIELDS, rating)).encode()
    assert _outcome(lambda p: codec.from_json(schema.RATING, p), payload) == 2     # R_OVERSIZE
    assert _outcome(rating_from_json, payload) == 2


def _connect(broker, user, password):
    got = []
    result = {}
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="acl-" + user)
    c.username_pw_set(user, password)

    def on_connect(client, userdata, flags, rc, props):
        result["rc"] = rc
        done.set()
    c.on_connect = on_connect
    c.on_message = lambda client, userdata, m: got.append((m.topic, m.payload))
    c.connect(broker.host, broker.port)
    c.loop_start()
    done.wait(5)
    return c, result.get("rc"), got


def test_generated_files_confine_each_device_to_its_topics(mosquitto_factory, tmp_path):
    reg = Registry([spec("dev-a"), spec("dev-b")])
    paths = write_files(str(tmp_path / "acl"), HALL, reg, "gateway", "gw-secret")
    broker = mosquitto_factory(allow_anonymous=False, extra_config="password_file %s\nacl_file %s\n"
                               % (paths["password_file"], paths["acl_file"]))
    gw, rc, seen = _connect(broker, "gateway", "gw-secret")
    assert not rc.is_failure
    gw.subscribe("hall/%s/#" % HALL, qos=1)
    time.sleep(0.2)
    _, rc_wrong, _ = _connect(broker, "dev-a", "not-the-password")
    assert rc_wrong is None or rc_wrong.is_failure
    dev_a, rc_a, got_a = _connect(broker, "dev-a", mqtt_password(device_key("dev-a")))
    assert not rc_a.is_failure
    dev_a.subscribe([("hall/%s/dev/dev-b/ack" % HALL, 1), (topics.device_topic(HALL, "dev-a", "ack"), 1)])
    time.sleep(0.2)
    dev_a.publish(topics.device_topic(HALL, "dev-b", "rating"), b"forged", qos=1).wait_for_publish(5)
    dev_a.publish(topics.device_topic(HALL, "dev-a", "context"), b"self-made", qos=1).wait_for_publish(5)
    dev_a.publish(topics.device_topic(HALL, "dev-a", "rating"), b"mine", qos=1).wait_for_publish(5)
    gw.publish(topics.device_topic(HALL, "dev-b", "ack"), b"for b", qos=1)
    gw.publish(topics.device_topic(HALL, "dev-a", "ack"), b"for a", qos=1)
    deadline = time.monotonic() + 5
    while (not got_a or len(seen) < 3) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    payloads = [p for _, p in seen]
    assert b"mine" in payloads and b"forged" not in payloads and b"self-made" not in payloads
    assert [p for _, p in got_a] == [b"for a"]
    for c in (gw, dev_a):
        c.disconnect()
        c.loop_stop()


def test_password_hash_format_and_acl_text():
    line = hash_password("pw", salt=b"\0" * 12)
    assert line.startswith("$7$101$AAAAAAAAAAAAAAAA$") and len(line.split("$")) == 5
    text = acl_file(HALL, Registry([spec("dev-a"), spec("dev-r", transport="rs485", address=1)]), "gw")
    assert "topic write hall/%s/dev/dev-a/rating" % HALL in text and "dev-r" not in text
    assert text.count("#") == 2   # the header comment and the gateway's own wildcard only


def test_cli_check_and_acl(tmp_path, capsys):
    toml = tmp_path / "gateway.toml"
    toml.write_text('[gateway]\nhall = "%s"\n\n[[devices]]\nid = "dev-a"\nwindow = "A01"\nkey = "%s"\n'
                    % (HALL, device_key("dev-a").hex()), encoding="utf-8")
    assert cli_main(["check", "--offline", "--config", str(toml)]) == 0
    assert '"devices": 1' in capsys.readouterr().out
    assert cli_main(["acl", "--config", str(toml), "--out", str(tmp_path / "m"),
                     "--gateway-password", "x"]) == 0
    assert (tmp_path / "m" / "acl").read_text().count("user ") == 3   # gateway, its intake, dev-a
    (tmp_path / "bad.toml").write_text("[gateway]\nhall = 5 5\n")
    assert cli_main(["check", "--config", str(tmp_path / "bad.toml")]) == 2
    with pytest.raises(config_mod.ConfigError):
        config_mod.from_dict({"gateway": {"hall": "h"}, "mqtt": {"hots": "x"}})


def test_example_config_parses():
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                        "gateway.example.toml")
    cfg = config_mod.load(path)
    assert cfg.hall == "futian-1" and cfg.buses[0].baud == 19200 and len(cfg.devices) == 2
    assert cfg.device_config["tags"][0]["label"] == "等待时间长"


@pytest.mark.parametrize("key, value", [("keepalive", 70000), ("keepalive", "30"), ("keepalive", 1.5),
                                        ("port", -1), ("port", True)])
def test_mqtt_numbers_are_checked_at_start(key, value):
    from gateway import config
    with pytest.raises(config.ConfigError, match=r"\[mqtt\] %s must be a whole number" % key):
        config.from_dict({"gateway": {"hall": "h"}, "mqtt": {key: value}})
