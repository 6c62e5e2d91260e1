"""The console's login, sessions and CSRF protection as an attacker meets them (gateway.http_guard,
gateway.session_api): a real gateway on loopback, called with plain HTTP as a browser would
(cookie, X-CSRF-Token, Origin). Each test fails when its protection is removed."""

import http.client
import json
import logging

from hypothesis import HealthCheck, given, settings, strategies as st

from gw_live import STAFF, LiveGateway, gateway_config, state
from test_gw_api_auth import assert_nothing_private, rated_gateway

from gateway import console_users
from gateway.http_guard import SECURITY_HEADERS

TECH, VIEWER = "技术员王䶮明", "大厅屏幕𠈌"
PASSWORD = "一个足够长的密码-1"
NEW_DEVICE = {"id": "dev-new", "window": "A03", "key": "ab" * 32}


class Browser:
    """One browser: keeps the hall_session cookie, sends the csrf token when told to."""

    def __init__(self, live, address="127.0.0.1"):
        self.live, self.address = live, address
        self.cookie = None
        self.csrf = None

    def call(self, method, path, body=None, csrf=True, origin=None, headers=None, raw=None):
        """(status, headers, parsed JSON or text)."""
        h = {"Content-Type": "application/json"}
        if self.cookie:
            h["Cookie"] = "hall_session=" + self.cookie
        if csrf and self.csrf:
            h["X-CSRF-Token"] = csrf if isinstance(csrf, str) else self.csrf
        if origin:
            h["Origin"] = origin
        h.update(headers or {})
        if raw is None and body is not None:
            raw = json.dumps(body).encode("utf-8")
        conn = http.client.HTTPConnection("127.0.0.1", self.live.port, timeout=30,
                                          source_address=(self.address, 0))
        try:
            conn.request(method, path, body=raw, headers=h)
            resp = conn.getresponse()
            data = resp.read().decode("utf-8")
            got = resp.headers
        finally:
            conn.close()
        try:
            data = json.loads(data)
        except ValueError:
            pass
        return resp.status, got, data

    def login(self, user, password, **kw):
        status, headers, answer = self.call("POST", "/api/v1/session", {"user": user, "password": password}, **kw)
        cookie = headers.get("Set-Cookie")
        if status == 200:
            self.cookie = cookie.split(";", 1)[0].split("=", 1)[1]
            self.csrf = answer["csrf"]
        return status, headers, answer


def admin_password(live):
    with open("%s/%s" % (live.gw.cfg.data_dir, console_users.INITIAL_PASSWORD_FILE)) as f:
        return f.read().strip()


def test_wrong_passwords_get_no_cookie_then_429_and_one_alarm(mosquitto_broker, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw")) as live:
        password = admin_password(live)
        b = Browser(live)
        for i in range(5):
            status, headers, answer = b.login("admin", "guess-%d-%s" % (i, password[:3]))
            assert status == 401 and answer["error"] == "unauthorized" and "Set-Cookie" not in headers
        status, _, answer = b.login("no-such-user", "whatever-1")     # the address is limited
        assert status == 429 and answer["error"] == "rate_limited"
        status, headers, answer = b.login("admin", password)       # even the right password now
        assert status == 429 and answer["error"] == "rate_limited" and "Set-Cookie" not in headers
        assert 1 <= int(headers["Retry-After"]) <= 60
        assert live.gw.alarms.get("console_login_flood") == 1
        assert live.gw.rejections.snapshot()[("http", "rate_limited")] == 2
        # one name tried from other addresses (127.0.0.0/8 is all loopback) is limited too ...
        live.gw.users.add(TECH, "technician", PASSWORD)
        live.gw.users.add(VIEWER, "viewer", PASSWORD)
        for i in range(5):
            assert Browser(live, "127.0.0.%d" % (10 + i)).login(TECH, "wrong-%d" % i)[0] == 401
        assert Browser(live, "127.0.0.20").login(TECH, PASSWORD)[0] == 429
        # ... while another user logs in from another address
        assert Browser(live, "127.0.0.21").login(VIEWER, PASSWORD)[0] == 200
        assert live.gw.alarms.get("console_login_flood") == 2
        assert password not in caplog.text and PASSWORD not in caplog.text


def test_the_session_cookie_its_flags_and_the_security_headers(mosquitto_broker, tmp_path):
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw")) as live:
        b = Browser(live)
        status, headers, answer = b.login("admin", admin_password(live))
        assert status == 200 and answer["user"] == "admin" and answer["role"] == "operator"
        flags = [f.strip().lower() for f in headers["Set-Cookie"].split(";")]
        assert {"httponly", "samesite=strict", "path=/"} <= set(flags) and "secure" not in flags
        assert headers["Cache-Control"] == "no-store"
        assert b.call("GET", "/api/v1/session")[2] == answer
        # the cookie is a credential: the operator's view, with staff names
        assert b.call("GET", "/api/v1/dead-letters")[0] == 200
        for path in ("/api/v1/session", "/status", "/no-such-page", "/api/v1/dead-letters/export"):
            got = b.call("GET", path)[1]
            for name, value in SECURITY_HEADERS.items():
                assert got[name] == value, (path, name)
        live.gw.sessions.secure_cookies = True             # [console] secure_cookies = true
        status, headers, _ = Browser(live).login("admin", admin_password(live))
        assert "secure" in [f.strip().lower() for f in headers["Set-Cookie"].split(";")]
        # logout needs the csrf token; then the cookie is worthless
        assert b.call("DELETE", "/api/v1/session", csrf=False)[0] == 403
        assert b.call("GET", "/api/v1/session")[0] == 200
        status, headers, _ = b.call("DELETE", "/api/v1/session")
        assert status == 200 and "hall_session=" in headers["Set-Cookie"]
        assert b.call("GET", "/api/v1/session")[0] == 401
        assert b.call("GET", "/api/v1/dead-letters")[0] == 401
        # bodies: JSON only (a plain HTML form cannot log in), exactly user and password
        nobody = Browser(live)
        for raw, ctype in ((b"user=admin&password=x", "application/x-www-form-urlencoded"),
                           (b'{"user":"admin","password":"x"}', "text/plain"),
                           (b'{"user":"admin"}', "application/json"),
                           (b'{"user":"admin","password":1}', "application/json"),
                           (b'{"user":"a\\u0000","password":"x"}', "application/json"),
                           (b"[1,2]", "application/json")):
            status, headers, answer = nobody.call("POST", "/api/v1/session", raw=raw,
                                                  headers={"Content-Type": ctype})
            assert status in (400, 415) and "Set-Cookie" not in headers, (raw, answer)


def test_a_cookie_request_without_the_csrf_token_or_from_another_site_changes_nothing(
        mosquitto_broker, tmp_path):
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw")) as live:
        b = Browser(live)
        assert b.login("admin", admin_password(live))[0] == 200
        before = state(live.gw)
        here = "http://127.0.0.1:%d" % live.port
        for csrf, origin in ((False, None), ("a-guessed-csrf-token", None), (True, "http://evil.example"),
                             (True, "null"), (True, "http://127.0.0.1:1"),
                             (True, "http://localhost:%d" % live.port)):
            for method, path, body in (("POST", "/api/v1/devices", NEW_DEVICE),
                                       ("PATCH", "/api/v1/devices/dev-a", {"window": "A09"}),
                                       ("DELETE", "/api/v1/devices/dev-b", None),
                                       ("POST", "/api/v1/windows/A01/sign-in", {"staff_id": "6"}),
                                       ("DELETE", "/api/v1/dead-letters", None)):
                status, _, answer = b.call(method, path, body, csrf=csrf, origin=origin)
                assert status == 403 and answer["error"] == "csrf", (csrf, origin, method, path, answer)
        assert state(live.gw) == before and live.gw.registry.get("dev-new") is None
        assert live.gw.rejections.snapshot()[("http", "csrf")] == 30
        # a login posted from another site is refused as well (login CSRF)
        status, headers, _ = Browser(live).login("admin", admin_password(live), origin="http://evil.example")
        assert status == 403 and "Set-Cookie" not in headers
        # the page of this gateway, with its token, may
        status, _, answer = b.call("POST", "/api/v1/devices", NEW_DEVICE, origin=here)
        assert status == 201 and live.gw.registry.get("dev-new") is not None
        assert b.call("DELETE", "/api/v1/devices/dev-new")[0] == 200
        # a bearer credential is no ambient credential: no csrf token needed
        assert live.request("PATCH", "/api/v1/devices/dev-a", {"name": "一号"}, role="operator")[0] == 200


def test_the_technician_manages_devices_and_sees_no_level_the_viewer_only_looks(mosquitto_broker, tmp_path):
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw")) as live:
        rated_gateway(live, mosquitto_broker)
        live.gw.users.add(TECH, "technician", PASSWORD)
        live.gw.users.add(VIEWER, "viewer", PASSWORD)
        tech, viewer = Browser(live), Browser(live, "127.0.0.2")
        assert tech.login(TECH, PASSWORD)[2]["role"] == "technician"
        assert viewer.login(VIEWER, PASSWORD)[2]["role"] == "viewer"
        before = state(live.gw)
        for method, path, body in (("POST", "/api/v1/devices", NEW_DEVICE),
                                   ("PATCH", "/api/v1/devices/dev-a", {"window": "A09"}),
                                   ("DELETE", "/api/v1/devices/dev-b", None)):
            status, _, answer = viewer.call(method, path, body)
            assert status == 403 and answer["error"] == "forbidden", (method, path)
        for method, path, body in (("POST", "/api/v1/windows/A01/sign-in", {"staff_id": "6", "staff_name": "x"}),
                                   ("POST", "/api/v1/cases", {"window": "A01"}), ("GET", "/api/v1/cases/1", None),
                                   ("GET", "/api/v1/dead-letters", None), ("DELETE", "/api/v1/dead-letters", None)):
            assert tech.call(method, path, body)[0] == 403, (method, path)
            assert live.request(method, path, body, role="technician")[0] == 403, (method, path)
        assert state(live.gw) == before
        status, _, added = tech.call("POST", "/api/v1/devices", NEW_DEVICE)
        assert status == 201 and added["window"] == "A03" and "key" not in added
        assert tech.call("PATCH", "/api/v1/devices/dev-new", {"name": "三号窗评价器"})[0] == 200
        assert live.request("PATCH", "/api/v1/devices/dev-new", {"window": "A04"}, role="technician")[0] == 200
        for who in (tech, viewer):
            for path in ("/status", "/api/v1/windows", "/api/v1/devices", "/api/v1/devices/dev-a"):
                status, _, answer = who.call("GET", path)
                assert status == 200, path
                assert_nothing_private(json.dumps(answer, ensure_ascii=False), answer)
        assert STAFF in json.dumps(live.request("GET", "/api/v1/windows", role="operator")[1], ensure_ascii=False)
        assert tech.call("DELETE", "/api/v1/devices/dev-new")[0] == 200


def test_idle_sessions_expire_and_a_removed_user_is_logged_out(mosquitto_broker, tmp_path, monkeypatch, capsys):
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw")) as live:
        now = [5000.0]
        live.gw.sessions.clock = lambda: now[0]
        live.gw.users.add(TECH, "technician", PASSWORD)
        b = Browser(live)
        assert b.login(TECH, PASSWORD)[0] == 200
        now[0] += 29 * 60
        assert b.call("GET", "/api/v1/session")[0] == 200
        now[0] += 29 * 60
        assert b.call("PATCH", "/api/v1/devices/dev-a", {"name": "仍然有效"})[0] == 200
        now[0] += 31 * 60
        assert b.call("GET", "/api/v1/session")[0] == 401
        status, _, answer = b.call("PATCH", "/api/v1/devices/dev-a", {"name": "过期"})
        assert status == 401 and live.gw.registry.get("dev-a").name == "仍然有效"
        # removed with the CLI (another process, the same file): the session ends at once
        assert b.login(TECH, PASSWORD)[0] == 200
        from gateway import cli, config as config_mod
        monkeypatch.setattr(config_mod, "load", lambda path: live.cfg)
        assert cli.main(["user", "remove", TECH, "--config", str(tmp_path / "gateway.toml")]) == 0
        assert b.call("GET", "/api/v1/session")[0] == 401
        assert b.call("POST", "/api/v1/devices", NEW_DEVICE)[0] == 401
        assert live.gw.registry.get("dev-new") is None


visible = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80)
login_bodies = st.one_of(
    st.binary(max_size=120),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                             max_size=3),
                 max_leaves=8).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"user": st.sampled_from(["admin", TECH, ""]), "password": st.text(max_size=40)}).map(
        lambda v: json.dumps(v).encode()))


def test_any_login_body_cookie_or_token_is_answered_4xx_and_opens_no_session(mosquitto_broker, tmp_path):
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw")) as live:
        @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
        @given(method=st.sampled_from(["POST", "GET", "DELETE"]), raw=login_bodies, cookie=visible,
               csrf=visible, ctype=st.sampled_from(["application/json", "text/plain",
                                                    "application/json; charset=utf-8"]))
        def fuzz(method, raw, cookie, csrf, ctype):
            b = Browser(live)
            b.cookie, b.csrf = cookie, csrf
            status, headers, answer = b.call(method, "/api/v1/session", raw=raw if method == "POST" else None,
                                             headers={"Content-Type": ctype})
            assert status < 500 and (status != 200 or method == "DELETE"), (status, answer)
            assert status == 200 or answer["error"] in ("malformed", "oversize", "out_of_range", "unauthorized",
                                                        "rate_limited", "csrf")
        fuzz()
        assert len(live.gw.sessions) == 0
