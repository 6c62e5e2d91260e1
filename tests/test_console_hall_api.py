"""The hall console's API (gateway.console_api, gateway.hall_view) on a real gateway, real
Mosquitto, real loopback HTTP: the hall view by role (levels and staff names for the operator
only, rules Art. 4), the static files (no path leaves the table), live events (SSE, bounded),
alarm acknowledgement, and the registry's `since` and `rssi`."""

import http.client
import json
import time

import pytest

from conftest import free_port
from gateway import config as config_mod
from gateway import console_api
from gateway.hall_view import Acks, hall_view
from gateway.registry import Registry
from gw_live import STAFF, LiveGateway, gateway_config
from gw_support import HALL, FakeDevice, device_key, make_rating
from protocol import vocab

LEVEL_NAMES = ("非常满意", "满意", "基本满意", "不满意", "非常不满意")
PRIVATE = {"level", "level_name", "staff_name", "key", "overall", "tags", "text", "applicant"}


def keys_anywhere(value):
    if isinstance(value, dict):
        return set(value) | set().union(*(keys_anywhere(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(keys_anywhere(v) for v in value)) if value else set()
    return set()


def assert_redacted(text):
    parsed = json.loads(text)
    assert not PRIVATE & keys_anywhere(parsed)
    assert STAFF not in text and not any(name in text for name in LEVEL_NAMES)
    for d in ("dev-a", "dev-b"):
        assert device_key(d).hex() not in text


@pytest.fixture
def live(mosquitto_broker, tmp_path):
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw")) as gw:
        gw.broker = mosquitto_broker
        yield gw


def others(live):
    """The roles that must never see a level: viewer, and technician where it exists."""
    return [r for r in ("viewer", "technician") if live.token(r)]


def raw_get(live, path, token=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for k, v in dict(headers or {}, **({"Authorization": "Bearer " + token} if token else {})).items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def rate(live, level, counter=1, window="A01"):
    """Staff 王䶮明 signed in at `window`, a case opened and rated `level` by its evaluator over MQTT
    (the real intake path); returns once the gateway stored it."""
    assert live.request("POST", "/api/v1/windows/%s/sign-in" % window,
                        {"staff_id": "1001", "staff_name": STAFF}, role="queue")[0] == 200
    status, case = live.request("POST", "/api/v1/cases", {
        "window": window, "node": "completion", "serials": ["SN-%d" % counter],
        "matter_name": "企业开办", "staff_id": "1001", "staff_name": STAFF}, role="queue")
    assert status == 201
    before = live.gw.last_rating
    device = FakeDevice(live.broker, "dev-a")
    try:
        device.rate(make_rating("dev-a", counter, level=level, case_id=case["case_id"],
                                serials=["SN-%d" % counter], window=window))
        assert device.ack()["counter"] == counter
    finally:
        device.close()
    deadline = time.monotonic() + 10
    while live.gw.last_rating is before and time.monotonic() < deadline:
        time.sleep(0.02)


def test_the_hall_view_shows_levels_and_staff_to_the_operator_only(live):
    rate(live, vocab.DISSATISFIED)
    status, view = live.request("GET", "/api/v1/hall", role="operator")
    assert status == 200 and view["hall"] == live.gw.cfg.hall
    a01 = [w for w in view["windows"] if w["window"] == "A01"]
    assert len(a01) == 1 and a01[0]["staff_name"] == STAFF
    assert a01[0]["last_rating"]["level"] == vocab.DISSATISFIED
    assert a01[0]["last_rating"]["level_name"] == "不满意"
    dev = a01[0]["device"]
    assert dev["id"] == "dev-a" and dev["online"] is True and dev["transport"] == "mqtt"
    assert dev["since"] and dev["last_seen"] and "key" not in dev
    assert [w["window"] for w in view["windows"]] == ["A01", "A02"]
    g = view["gateway"]
    assert g["broker_connected"] is True and g["disk_free_bytes"] > 0
    assert g["outbox"]["ratings"] >= 1 and g["uplink"]["state"] == "idle"
    for role in others(live):
        status, text = raw_get(live, "/api/v1/hall", live.token(role))[0::2]
        assert status == 200
        assert_redacted(text.decode())
        (w,) = [w for w in json.loads(text)["windows"] if w["window"] == "A01"]
        assert w["last_rating"]["time"] == a01[0]["last_rating"]["time"]
    assert live.request("GET", "/api/v1/hall")[0] == 401
    assert live.request("GET", "/api/v1/hall", role="queue")[0] == 403


def test_hall_view_of_64_windows_is_built_from_one_read_of_each_part(live):
    """hall_view itself: one entry per window, online counts, a window without a device."""
    for i in range(3, 65):
        live.gw.registry.add({"id": "ev-%02d" % i, "window": "B%02d" % i, "key": "ab" * 32,
                              "transport": "rs485", "address": i})
    view = hall_view(live.gw, "viewer")
    assert len(view["windows"]) == 64
    assert not PRIVATE & keys_anywhere(view)
    rs = [w for w in view["windows"] if w["window"] == "B10"][0]["device"]
    assert rs["transport"] == "rs485" and rs["address"] == 10 and rs["online"] is False


TRAVERSALS = ["/console/../console_api.py", "/console/%2e%2e/console_api.py",
              "/console/..%2fconsole_api.py", "/console/%2e%2e%2f%2e%2e%2fpyproject.toml",
              "/console/..%5c..%5cpyproject.toml", "/console/%2fetc%2fpasswd", "/console//etc/passwd",
              "/console/.", "/console/", "/console/__init__.py", "/console/static",
              "/console/index.html%00.js", "/console/app.js/", "/console/APP.JS",
              "/../../../etc/passwd", "/console/..\\console_api.py"]


def test_static_files_are_served_from_their_table_only(live):
    status, headers, body = raw_get(live, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<script type=\"module\" src=\"/console/app.js\">" in body.decode()
    assert live.gw.cfg.hall not in body.decode()             # the page itself holds no data
    assert headers["Cache-Control"] == "no-cache" and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")   # no inline script
    for name, kind in (("app.js", "text/javascript"), ("console.css", "text/css"),
                       ("icon.svg", "image/svg+xml")):
        status, headers, body = raw_get(live, "/console/" + name)
        assert status == 200 and headers["Content-Type"].startswith(kind) and body
        assert raw_get(live, "/console/" + name, headers={"If-None-Match": headers["ETag"]})[0] == 304
    for path in TRAVERSALS:
        status, _, body = raw_get(live, path)
        assert status in (400, 404), path
        assert b"import " not in body and b"root:" not in body and b"[project]" not in body, path


def sse_open(live, role):
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    conn.request("GET", "/api/v1/events", headers={"Authorization": "Bearer " + live.token(role)})
    resp = conn.getresponse()
    return conn, resp


def sse_next(resp, kind, deadline_s=5.0):
    """The data of the next event named `kind` (others are skipped)."""
    end = time.monotonic() + deadline_s
    name, data = None, []
    while time.monotonic() < end:
        line = resp.readline().decode("utf-8").rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            if name == kind:
                return json.loads("\n".join(data))
            name, data = None, []
    raise AssertionError("no %s event within %.0f s" % (kind, deadline_s))


def test_events_push_the_hall_and_ratings_with_levels_for_operators_only(live):
    streams = {role: sse_open(live, role) for role in ["operator"] + others(live)}
    try:
        for role, (_, resp) in streams.items():
            assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
            first = sse_next(resp, "hall")
            assert first["windows"] and ("staff_name" in first["windows"][0]) == (role == "operator")
        rate(live, vocab.VERY_DISSATISFIED)
        for role, (_, resp) in streams.items():
            event = sse_next(resp, "rating")
            assert event["window"] == "A01" and event["device"] == "dev-a" and event["time"]
            if role == "operator":
                assert event["level"] == vocab.VERY_DISSATISFIED and event["level_name"] == "非常不满意"
            else:
                assert not PRIVATE & set(event)
            # the next hall event carries the window's new last rating
            view = sse_next(resp, "hall")
            (a01,) = [w for w in view["windows"] if w["window"] == "A01"]
            assert a01["last_rating"]["time"] == event["time"]
            if role != "operator":
                assert_redacted(json.dumps(view, ensure_ascii=False))
    finally:
        for conn, _ in streams.values():
            conn.close()


def test_live_connections_are_bounded(live, monkeypatch):
    monkeypatch.setattr(console_api, "MAX_STREAMS", 2)
    opened = [sse_open(live, "operator") for _ in range(2)]
    try:
        for _, resp in opened:
            sse_next(resp, "hall")
        status, headers, body = raw_get(live, "/api/v1/events", live.token("operator"))
        assert status == 429 and headers["Retry-After"] == "5"
        assert json.loads(body)["error"] == "busy"
        opened.pop()[0].close()          # one leaves: its slot is free again
        deadline = time.monotonic() + 5
        while len(live.gw.console._streams) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        conn, resp = sse_open(live, "operator")
        opened.append((conn, resp))
        assert resp.status == 200
    finally:
        for conn, _ in opened:
            conn.close()


def test_alarm_acknowledgement_by_operator_and_technician(live):
    gw = live.gw
    gw.alarm("bus_unavailable", "RS-485 bus socket://x: gone")
    path = "/api/v1/alarms/bus_unavailable/ack"
    assert live.request("POST", path)[0] == 401
    assert live.request("POST", path, role="viewer")[0] == 403
    assert live.request("POST", path, role="queue")[0] == 403
    assert live.request("POST", "/api/v1/alarms/no_such_alarm/ack", role="operator")[0] == 404
    assert live.request("POST", "/api/v1/alarms/..%2f/ack", role="operator")[0] == 404
    acker = "technician" if live.token("technician") else "operator"
    status, answer = live.request("POST", path, role=acker)
    assert status == 200 and answer["acked_by"] == acker and answer["acked_at"]
    (alarm,) = [a for a in live.request("GET", "/api/v1/hall", role="viewer")[1]["alarms"]
                if a["name"] == "bus_unavailable"]
    assert alarm["acked_by"] == acker and alarm["detail"].startswith("RS-485 bus")
    assert Acks(gw.store).get("bus_unavailable")["by"] == acker      # in the store: kept over a restart
    time.sleep(0.01)                   # the clock moves on: raised again after the ack
    gw.alarm("bus_unavailable", "again")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        (alarm,) = [a for a in live.request("GET", "/api/v1/hall", role="viewer")[1]["alarms"]
                    if a["name"] == "bus_unavailable"]
        if alarm["acked_at"] is None:
            break
        time.sleep(0.1)
    assert alarm["acked_at"] is None and alarm["count"] == 2


def test_registry_keeps_since_when_a_device_is_online_and_its_wifi_signal():
    now = [1000.0]
    reg = Registry([{"id": "ev-1", "window": "A01", "key": "ab" * 32}], clock=lambda: now[0])
    dev = reg.get("ev-1")
    assert dev.since == 0.0 and dev.rssi is None
    now[0] = 1010.0
    reg.seen("ev-1")
    assert dev.since == 1010.0
    now[0] = 1020.0
    reg.seen("ev-1")                   # still online: since stays
    assert dev.since == 1010.0 and dev.last_seen == 1020.0
    reg.status_report("ev-1", {"rssi_neg": 61, "outbox": 2})
    assert dev.rssi == -61 and reg.snapshot()[0]["rssi"] == -61
    now[0] = 1030.0
    reg.set_offline("ev-1")
    assert dev.since == 1030.0 and reg.snapshot()[0]["since"] == 1030.0


def test_a_stream_ends_when_its_session_is_logged_out(live):
    live.gw.users.add("李工", "technician", "technician-pass-1")
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    conn.request("POST", "/api/v1/session", body=json.dumps({"user": "李工", "password": "technician-pass-1"}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    session = json.loads(resp.read())
    cookie = resp.getheader("Set-Cookie").split(";")[0]
    conn.close()
    assert resp.status == 200 and session["role"] == "technician"
    stream = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    stream.request("GET", "/api/v1/events", headers={"Cookie": cookie})
    events = stream.getresponse()
    try:
        assert events.status == 200 and "windows" in sse_next(events, "hall")
        conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
        conn.request("DELETE", "/api/v1/session", headers={"Cookie": cookie, "X-CSRF-Token": session["csrf"]})
        assert conn.getresponse().status in (200, 204)
        conn.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and events.readline():
            pass                       # the stream closes within a tick
        assert time.monotonic() < deadline and events.readline() == b""
    finally:
        stream.close()


def test_a_failing_store_ends_streams_and_answers_409_never_5xx(live, monkeypatch):
    conn, resp = sse_open(live, "operator")
    try:
        sse_next(resp, "hall")

        def broken():
            raise OSError("disk I/O error")
        monkeypatch.setattr(live.gw.console, "build", broken)
        monkeypatch.setattr(console_api, "RESEND_S", 0.0)    # the next tick must build again
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and resp.readline():
            pass                       # a broken chunked encoding would raise here
        assert time.monotonic() < deadline                    # the stream ended, it did not hang
    finally:
        conn.close()
    for path in ("/api/v1/hall", "/api/v1/events"):           # a new stream: 409, not a broken one
        status, answer = live.request("GET", path, role="viewer")
        assert status == 409 and answer["error"] == "store_unavailable", path


def test_an_rs485_bus_that_will_not_open_shows_closed_with_its_alarm(mosquitto_broker, tmp_path):
    url = "socket://127.0.0.1:%d" % free_port()          # nobody listens: the bus cannot open
    cfg = config_mod.from_dict({
        "gateway": {"hall": HALL, "data_dir": str(tmp_path / "gw")},
        "mqtt": {"host": mosquitto_broker.host, "port": mosquitto_broker.port, "client_id": "gw-bus"},
        "http": {"host": "127.0.0.1", "port": 0},
        "rs485": [{"url": url}],
        "devices": [{"id": "ev-9", "window": "A09", "key": "ab" * 32, "transport": "rs485",
                     "bus": 0, "address": 9}]})
    with LiveGateway(cfg) as live:
        deadline = time.monotonic() + 10
        alarms = []
        while time.monotonic() < deadline and not alarms:
            status, view = live.request("GET", "/api/v1/hall", role="viewer")
            assert status == 200
            alarms = [a for a in view["alarms"] if a["name"] == "bus_unavailable"]
            time.sleep(0.1)
        assert alarms and url in alarms[0]["detail"] and alarms[0]["acked_at"] is None
        (bus,) = view["gateway"]["buses"]
        assert bus["url"] == url and bus["open"] is False and bus["errors"] == 0
        (a09,) = view["windows"]
        assert a09["device"]["transport"] == "rs485" and a09["device"]["online"] is False
