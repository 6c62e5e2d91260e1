"""The gateway's HTTP API is secure by default (gateway.http_auth, gateway.queue_api): no write
without a credential, one credential per role, and nobody but the operator sees how a window was
rated, who works there, or a device key (rules Art. 4). A real gateway on loopback."""

import json
import logging
import os
import stat
import time
import tomllib

import pytest

from gateway import config as config_mod
from gateway.app import Gateway
from gw_live import STAFF, LiveGateway, gateway_config, state
from gw_support import FakeDevice, device_key, make_rating
from protocol import vocab

ATTACKER_KEY = "ee" * 32
LEVEL_NAMES = ("非常满意", "基本满意", "不满意", "非常不满意")   # "满意" is inside 非常满意 and 基本满意


def case_body(**extra):
    return dict({"window": "A01", "node": "completion", "serials": ["SN-1"], "matter_name": "企业开办",
                 "staff_id": "1001", "staff_name": STAFF}, **extra)


WRITES = [
    ("POST", "/api/v1/devices", {"id": "evil", "window": "A01", "key": ATTACKER_KEY}),
    ("PATCH", "/api/v1/devices/dev-a", {"key": ATTACKER_KEY}),
    ("PATCH", "/api/v1/devices/dev-a", {"window": "A09"}),
    ("DELETE", "/api/v1/devices/dev-b", None),
    ("POST", "/api/v1/cases", case_body(serials=["FAKE-1"])),
    ("POST", "/api/v1/windows/A01/sign-in", {"staff_id": "6666", "staff_name": "冒名"}),
    ("POST", "/api/v1/windows/A01/sign-out", None),
    ("DELETE", "/api/v1/dead-letters", None),
]
OPERATOR_ONLY = [w for w in WRITES if "/devices" in w[1] or "dead-letters" in w[1]] + [
    ("GET", "/api/v1/dead-letters", None), ("GET", "/api/v1/dead-letters/export", None)]
CLOSED_READS = [("GET", "/api/v1/devices", None), ("GET", "/api/v1/windows", None),
                ("GET", "/api/v1/cases/1", None), ("GET", "/api/v1/dead-letters", None)]


def keys_anywhere(value):
    if isinstance(value, dict):
        return set(value) | set().union(*(keys_anywhere(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(keys_anywhere(v) for v in value)) if value else set()
    return set()


def assert_nothing_private(text, parsed=None):
    assert STAFF not in text
    for d in ("dev-a", "dev-b"):
        assert device_key(d).hex() not in text
    assert not any(name in text for name in LEVEL_NAMES)
    if parsed is not None:
        assert not {"level", "level_name", "staff_name", "key", "overall"} & keys_anywhere(parsed)
    else:
        assert "level" not in text


def rated_gateway(live, broker):
    """Staff 王䶮明 at A01, a case open and rated 不满意 there: what an attacker wants to see."""
    assert live.request("POST", "/api/v1/windows/A01/sign-in", {"staff_id": "1001", "staff_name": STAFF},
                        role="queue")[0] == 200
    status, case = live.request("POST", "/api/v1/cases", case_body(), role="queue")
    assert status == 201
    device = FakeDevice(broker, "dev-a")
    try:
        device.rate(make_rating("dev-a", 1, level=vocab.DISSATISFIED, case_id=case["case_id"],
                                serials=["SN-1"]))
        deadline = time.monotonic() + 10
        while live.gw.last_rating is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert live.gw.last_rating is not None
    finally:
        device.close()
    # a second case open at A01, so the window state holds the staff name
    assert live.request("POST", "/api/v1/cases", case_body(serials=["SN-2"]), role="queue")[0] == 201


def test_without_the_right_credential_nothing_is_written_and_nothing_private_is_shown(
        mosquitto_broker, tmp_path):
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw")) as live:
        rated_gateway(live, mosquitto_broker)
        before = state(live.gw)
        for who in (None, "wrong"):           # an attacker on the LAN: no credential, a guessed one
            token = "guessed-token-123" if who else None
            for method, path, body in WRITES + CLOSED_READS:
                status, answer = live.request(method, path, body, token=token)
                assert status == 401 and answer["error"] == "unauthorized", (who, method, path, answer)
        for role in ("viewer", "queue"):      # a role that may not
            for method, path, body in (WRITES if role == "viewer" else OPERATOR_ONLY):
                status, answer = live.request(method, path, body, role=role)
                assert status == 403 and answer["error"] == "forbidden", (role, method, path, answer)
        assert state(live.gw) == before
        assert live.gw.registry.get("dev-a").key == device_key("dev-a")
        assert live.gw.registry.get("evil") is None
        # /status and /metrics: open, but never a level, a staff name or a key ...
        for role in (None, "viewer", "queue"):
            status, st = live.request("GET", "/status", role=role)
            assert status == 200 and st["last_rating"]["window"] == "A01"
            assert_nothing_private(json.dumps(st, ensure_ascii=False), st)
            assert st["cases"]["windows"]["A01"]["staff_id"] == "1001"
            status, text = live.request("GET", "/metrics", role=role)
            assert status == 200 and "hall_gateway_outbox_items" in text
            assert_nothing_private(text)
        for role in ("viewer", "queue"):      # ... nor do the lists a viewer may read
            for path in ("/api/v1/windows", "/api/v1/devices", "/api/v1/devices/dev-a"):
                status, answer = live.request("GET", path, role=role)
                assert status == 200, (role, path)
                assert_nothing_private(json.dumps(answer, ensure_ascii=False), answer)
        assert live.request("GET", "/healthz")[0] == 200
        # ... while the operator sees the level and who works there
        status, st = live.request("GET", "/status", role="operator")
        assert st["last_rating"]["level"] == vocab.DISSATISFIED and st["last_rating"]["level_name"] == "不满意"
        assert st["cases"]["windows"]["A01"]["staff_name"] == STAFF
        status, windows = live.request("GET", "/api/v1/windows", role="operator")
        assert windows["A01"]["staff_name"] == STAFF
        # the display snapshot (the OLED, in sight of the clerks) never carries the level
        assert "level" not in json.dumps(live.gw.display_snapshot())
        # the queue's own routes stay open to it; devices only to the operator
        assert live.request("POST", "/api/v1/windows/A02/sign-in", {"staff_id": "1002", "staff_name": "李四"},
                            role="queue")[0] == 200
        assert live.request("POST", "/api/v1/devices", WRITES[0][2], role="operator")[0] == 201


def test_credentials_are_generated_on_first_start_kept_private_and_read_again(
        mosquitto_broker, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    data_dir = tmp_path / "gw"
    path = data_dir / "http-credentials.toml"
    with LiveGateway(gateway_config(mosquitto_broker, data_dir)) as live:
        tokens = dict(live.gw.credentials)
        assert set(tokens) == {"queue", "operator", "technician", "viewer"} and len(set(tokens.values())) == 4
        assert all(len(t) >= 32 for t in tokens.values())
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path, "rb") as f:
            assert dict((k[:-len("_token")], v) for k, v in tomllib.load(f).items()) == tokens
        assert str(path) in caplog.text
        assert not any(t in caplog.text for t in tokens.values())
        sign_in = ("POST", "/api/v1/windows/A01/sign-in", {"staff_id": "1001", "staff_name": STAFF})
        assert live.request(*sign_in)[0] == 401
        assert live.request(*sign_in, role="queue")[0] == 200
        assert not [n for n in os.listdir(data_dir) if n.startswith(".http-credentials-")]
    written = path.read_bytes()
    # a restart reads them back (and keeps the file as it was)
    cfg = gateway_config(mosquitto_broker, data_dir)
    gw = Gateway(cfg)
    try:
        assert gw.credentials == tokens and path.read_bytes() == written
    finally:
        gw.committer.close()
        gw.store.close()
    # the older [http] token is the queue's; the other roles come from the file, which no longer
    # lists a queue token (it would mislead whoever reads it)
    cfg = gateway_config(mosquitto_broker, data_dir, http={"token": "queue-token-from-config"})
    gw = Gateway(cfg)
    try:
        assert gw.credentials == dict(tokens, queue="queue-token-from-config")
        with open(path, "rb") as f:
            assert tomllib.load(f) == {"operator_token": tokens["operator"], "viewer_token": tokens["viewer"],
                                       "technician_token": tokens["technician"]}
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        gw.committer.close()
        gw.store.close()


@pytest.mark.parametrize("http", [{"queue_token": "same-token-x", "operator_token": "same-token-x"},
                                  {"viewer_token": "short"}, {"operator_token": "has space in it"},
                                  {"token": "older-token-1", "queue_token": "newer-token-2"},
                                  {"queue_token": 12345678}])
def test_configured_credentials_are_checked(http):
    with pytest.raises(config_mod.ConfigError):
        config_mod.from_dict({"gateway": {"hall": "h"}, "http": http})


def test_a_broken_credentials_file_stops_the_start(mosquitto_broker, tmp_path):
    data_dir = tmp_path / "gw"
    data_dir.mkdir()
    (data_dir / "http-credentials.toml").write_text('operator_token = "x\n')
    with pytest.raises(ValueError):
        Gateway(gateway_config(mosquitto_broker, data_dir))


def test_dead_letters_for_the_operator(mosquitto_broker, tmp_path):
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw")) as live:
        for device_id, n in (("dev-a", 3), ("dev-b", 2)):
            device = FakeDevice(mosquitto_broker, device_id)
            try:
                for i in range(n):
                    device.publish("rating", b"{not a rating %d" % i)
            finally:
                device.close()
        deadline = time.monotonic() + 10
        while live.gw.store.backlog()["dead_letters"] < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        status, rows = live.request("GET", "/api/v1/dead-letters", role="operator")
        assert status == 200 and len(rows) == 5
        ids = [r["id"] for r in rows]
        assert ids == sorted(ids, reverse=True)
        status, page = live.request("GET", "/api/v1/dead-letters?limit=2&before_id=%d" % ids[0], role="operator")
        assert [r["id"] for r in page] == ids[1:3]
        status, mine = live.request("GET", "/api/v1/dead-letters?device=dev-b", role="operator")
        assert {r["device"] for r in mine} == {"dev-b"} and len(mine) == 2
        status, text = live.request("GET", "/api/v1/dead-letters/export", role="operator")
        assert status == 200 and [json.loads(line)["id"] for line in text.splitlines()] == ids
        for method, query in (("GET", "limit=0"), ("GET", "limit=1001"), ("GET", "limit=x"),
                              ("GET", "before_id=-1"), ("GET", "before_id=" + "9" * 30),
                              ("DELETE", "up_to_id=%EF%BC%91%EF%BC%92"), ("DELETE", "up_to_id=0"),
                              ("GET", "device=" + "x" * 65), ("DELETE", "device=%01")):
            status, answer = live.request(method, "/api/v1/dead-letters?" + query, role="operator")
            assert status == 400, (query, answer)
        assert live.gw.store.backlog()["dead_letters"] == 5
        assert live.request("GET", "/api/v1/dead-letters", role="viewer")[0] == 403
        status, answer = live.request("DELETE", "/api/v1/dead-letters?device=dev-a&up_to_id=%d" % ids[2],
                                      role="operator")
        assert status == 200 and answer["deleted"] == len([r for r in rows if r["device"] == "dev-a"
                                                           and r["id"] <= ids[2]])
        left = live.request("GET", "/api/v1/dead-letters", role="operator")[1]
        assert len(left) == 5 - answer["deleted"]
        assert live.request("DELETE", "/api/v1/dead-letters", role="operator")[1]["deleted"] == len(left)
        assert live.request("GET", "/api/v1/dead-letters", role="operator")[1] == []


def test_the_cli_names_a_broken_credentials_file_and_exits_2(mosquitto_broker, tmp_path, monkeypatch,
                                                             capsys):
    from gateway import cli, config as config_mod
    data_dir = tmp_path / "gw"
    data_dir.mkdir()
    (data_dir / "http-credentials.toml").write_text('operator_token = "x\n')
    cfg = gateway_config(mosquitto_broker, data_dir)
    monkeypatch.setattr(config_mod, "load", lambda path: cfg)
    assert cli.main(["run", "--config", str(tmp_path / "gateway.toml")]) == 2
    err = capsys.readouterr().err
    assert "http-credentials.toml" in err and "Traceback" not in err
