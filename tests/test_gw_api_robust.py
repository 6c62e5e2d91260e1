"""Every route of the gateway's HTTP API answers 2xx or 4xx with a reason, never 5xx, and a refused
request changes nothing: lone surrogates, control characters, deep nesting, huge numbers, bools
for numbers, wrong types; a registry save that fails is undone (409 store_unavailable) and leaves
no temp file holding keys. A real gateway on loopback, called with valid credentials."""

import json
import os
import shutil
import sqlite3
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, settings, strategies as st

from gateway.registry import Registry, RegistryError
from gw_live import STAFF, STAFF_2, LiveGateway, gateway_config, state, temp_files
from gw_support import device_key

NEW_KEY = "ab" * 32


def valid_case(**extra):
    return dict({"window": "A01", "node": "completion", "serials": ["SN-1"], "matter_name": "企业开办",
                 "staff_id": "1001", "staff_name": STAFF}, **extra)


def assert_refused_and_unchanged(live, before, method, path, body=None, raw=None):
    status, answer = live.request(method, path, body, raw=raw, role="operator")
    assert 400 <= status < 500 and isinstance(answer, dict) and answer.get("error"), (path, status, answer)
    assert state(live.gw) == before, (method, path)
    assert not temp_files(live.gw)
    return answer


def test_the_findings_answer_4xx_and_change_nothing(mosquitto_broker, tmp_path):
    """Issue "Secure by default", item 5: each of these was a 500, some half applied."""
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw")) as live:
        assert live.request("POST", "/api/v1/windows/A01/sign-in", {"staff_id": "1001", "staff_name": STAFF},
                            role="operator")[0] == 200
        before = state(live.gw)
        deep = b"[" * 10000 + b"]" * 10000
        deep_object = b'{"a":' * 10000 + b"1" + b"}" * 10000
        for method, path, body, raw in [
                ("POST", "/api/v1/devices", {"id": "dev-x", "key": NEW_KEY, "name": "窗\ud800"}, None),
                ("PATCH", "/api/v1/devices/dev-a", {"name": "\udc00"}, None),
                ("PATCH", "/api/v1/devices/dev-a", {"board": "five\x00button"}, None),
                ("POST", "/api/v1/devices", {"id": ["dev-x"], "key": NEW_KEY}, None),
                ("POST", "/api/v1/devices", {"id": "dev-x", "key": NEW_KEY, "address": True}, None),
                ("POST", "/api/v1/devices", None, deep),
                ("POST", "/api/v1/cases", None, deep),
                ("POST", "/api/v1/cases", None, deep_object),
                ("POST", "/api/v1/windows/A02/sign-in", None, deep_object),
                ("POST", "/api/v1/cases", valid_case(matter_name="企业\ud800开办"), None),
                ("POST", "/api/v1/cases", valid_case(staff_name="王\udfff"), None),
                ("POST", "/api/v1/cases", valid_case(applicant={"name": "\ud83d"}), None),
                ("POST", "/api/v1/cases", valid_case(completed_at=1e20), None),
                ("POST", "/api/v1/cases", valid_case(completed_at=10 ** 20), None),
                ("POST", "/api/v1/cases", valid_case(completed_at=True), None),
                ("POST", "/api/v1/cases", valid_case(completed_at=-5), None),
                ("POST", "/api/v1/cases", None, b'{"window":"A01","node":"completion","serials":["S"],'
                                                b'"matter_name":"x","completed_at":NaN}'),
                ("POST", "/api/v1/cases", None, b'{"window":"A01","serials":["S"],"completed_at":'
                                                + b"9" * 5000 + b"}"),
                ("POST", "/api/v1/windows/A02/sign-in", {"staff_id": "1002", "staff_name": "\ud800"}, None),
                ("POST", "/api/v1/windows/A02/sign-in", {"staff_id": "1002", "staff_name": "a\u0085b"}, None),
                ("POST", "/api/v1/windows/A02/sign-in", None, b"\xff\xfe{}"),
                ("GET", "/api/v1/cases/" + "9" * 5000, None, None)]:
            assert_refused_and_unchanged(live, before, method, path, body, raw)
        # and everything still works afterwards
        for path in ("/status", "/api/v1/devices", "/api/v1/windows", "/metrics"):
            assert live.request("GET", path, role="operator")[0] == 200, path
        status, dev = live.request("POST", "/api/v1/devices", {"id": "dev-x", "key": NEW_KEY, "name": STAFF_2},
                                   role="operator")
        assert status == 201 and dev["name"] == STAFF_2
        saved = Registry([], live.gw.cfg.registry_path)
        assert saved.get("dev-x").name == STAFF_2


def test_a_registry_save_that_fails_is_undone(mosquitto_broker, tmp_path):
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw")) as live:
        gw = live.gw
        assert live.request("POST", "/api/v1/devices", {"id": "dev-c", "key": NEW_KEY}, role="operator")[0] == 201
        real_path = gw.registry.path
        in_the_way = tmp_path / "gw" / "registry-dir"          # os.replace onto a directory fails
        in_the_way.mkdir()
        (in_the_way / "x").write_text("x")
        gw.registry.path = str(in_the_way)
        before = state(gw)
        for method, path, body in [
                ("POST", "/api/v1/devices", {"id": "dev-d", "window": "A01", "key": NEW_KEY}),
                ("PATCH", "/api/v1/devices/dev-a", {"key": NEW_KEY, "window": "A07", "name": "新名"}),
                ("DELETE", "/api/v1/devices/dev-c", None)]:
            answer = assert_refused_and_unchanged(live, before, method, path, body)
            assert answer["error"] == "store_unavailable"
        assert gw.registry.get("dev-a").key == device_key("dev-a") and gw.registry.get("dev-a").window == "A01"
        gw.registry.path = str(tmp_path / "gone" / "registry.json")   # the folder is missing
        answer = assert_refused_and_unchanged(live, before, "POST", "/api/v1/devices",
                                              {"id": "dev-d", "key": NEW_KEY})
        assert answer["error"] == "store_unavailable"
        gw.registry.path = real_path
        assert live.request("GET", "/status", role="operator")[0] == 200
        assert live.request("DELETE", "/api/v1/devices/dev-c", role="operator")[0] == 200
        assert Registry([], real_path).get("dev-c") is None


def test_a_failing_store_or_an_unexpected_error_is_a_4xx_and_logs_no_values(mosquitto_broker, tmp_path,
                                                                           caplog):
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw")) as live:
        gw = live.gw
        assert live.request("POST", "/api/v1/windows/A01/sign-in", {"staff_id": "1001", "staff_name": STAFF},
                            role="operator")[0] == 200
        before = state(gw)

        def disk_error(*args, **kwargs):
            raise sqlite3.OperationalError("disk I/O error")
        gw.store.commit_case = disk_error
        gw.store.state_put = disk_error
        answer = assert_refused_and_unchanged(live, before, "POST", "/api/v1/cases", valid_case())
        assert answer["error"] == "store_unavailable"
        answer = assert_refused_and_unchanged(live, before, "POST", "/api/v1/windows/A02/sign-in",
                                              {"staff_id": "1002", "staff_name": "李四"})
        assert answer["error"] == "store_unavailable"

        def bug(body):
            raise KeyError(body["applicant"]["name"])      # a bug whose message holds a value
        gw.cases.event = bug
        answer = assert_refused_and_unchanged(live, before, "POST", "/api/v1/cases",
                                              valid_case(applicant={"name": "李堃"}))
        assert answer["error"] == "unprocessable"
    assert "KeyError" in caplog.text and "李堃" not in caplog.text


def test_registry_checks_text_before_it_changes_anything(tmp_path):
    registry = Registry([{"id": "dev-a", "key": device_key("dev-a").hex()}], str(tmp_path / "r.json"))
    for change in ({"name": "\ud800"}, {"firmware": "1.0\n"}, {"window": "A 1"}, {"bus": True},
                   {"address": 1.5}, {"key": "zz"}):
        try:
            registry.update("dev-a", change)
        except RegistryError:
            pass
        else:
            raise AssertionError(change)
    for spec in ({"id": {"x": 1}, "key": NEW_KEY}, {"id": "dev-b", "key": NEW_KEY, "name": "\x7f"}):
        try:
            registry.add(spec)
        except RegistryError:
            pass
        else:
            raise AssertionError(spec)
    assert [d["id"] for d in registry.snapshot()] == ["dev-a"] and not os.path.exists(tmp_path / "r.json")


# --- every route, generated bodies ---------------------------------------------------------------
NASTY = ["\ud800", "\udfff", "\x00", "\n", "\x1f", "\x7f", "\x85", "\u2028", "\ufeff", "䶮", "𠈌", "A",
         "-", " ", "0"]
TEXT = st.text(alphabet=st.one_of(st.characters(), st.sampled_from(NASTY)), max_size=70)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                   st.sampled_from([0, -1, 1, 247, 248, 2 ** 31, 2 ** 63, 10 ** 20, 946684800, 4102444801]),
                   st.floats(allow_nan=True, allow_infinity=True), TEXT)
JSON = st.recursive(SCALAR, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                   st.dictionaries(TEXT, kids, max_size=4)), max_leaves=10)
VALID = {
    "sign-in": {"staff_id": "1001", "staff_name": STAFF},
    "case": valid_case(items=[{"code": "T1", "name": "主题"}], applicant={"name": "李堃"},
                       completed_at=1767225600),
    "device": {"id": "dev-n", "window": "A03", "key": NEW_KEY, "name": "三号", "transport": "rs485",
               "address": 9, "bus": 0, "board": "five_button", "firmware": "1.0"},
}


def mutated(valid):
    """A valid body with some fields (or one more) replaced by anything."""
    return st.dictionaries(st.sampled_from(sorted(valid) + ["extra"]), JSON, max_size=3).map(
        lambda changes: dict(valid, **changes))


def deep(n):
    return st.sampled_from([b"[" * n + b"]" * n, b'{"a":' * n + b"0" + b"}" * n, b"[" * n])


def encoded(bodies):
    return st.one_of(bodies.map(lambda b: json.dumps(b).encode("ascii")),      # NaN, \ud800 escapes
                     st.binary(max_size=200), st.integers(1, 30000).flatmap(deep), st.just(b""))


def path_part(valid):
    return st.one_of(st.just(valid), TEXT).map(lambda s: quote(s, safe="", errors="surrogatepass") or "x")


def query(names):
    return st.dictionaries(st.sampled_from(names), st.one_of(TEXT, st.integers(-2 ** 70, 2 ** 70).map(str)),
                           max_size=3).map(lambda q: "?" + urlencode(q, errors="surrogatepass") if q else "")


REQUESTS = st.one_of(
    st.tuples(st.just("POST"), path_part("A01").map("/api/v1/windows/{}/sign-in".format),
              encoded(st.one_of(mutated(VALID["sign-in"]), JSON))),
    st.tuples(st.just("POST"), path_part("A01").map("/api/v1/windows/{}/sign-out".format), encoded(JSON)),
    st.tuples(st.just("POST"), st.just("/api/v1/cases"), encoded(st.one_of(mutated(VALID["case"]), JSON))),
    st.tuples(st.just("GET"), path_part("1").map("/api/v1/cases/{}".format), st.just(None)),
    st.tuples(st.just("POST"), st.just("/api/v1/devices"), encoded(st.one_of(mutated(VALID["device"]), JSON))),
    st.tuples(st.just("PATCH"), path_part("dev-a").map("/api/v1/devices/{}".format),
              encoded(st.one_of(mutated(dict((k, v) for k, v in VALID["device"].items() if k != "id")),
                                JSON))),
    st.tuples(st.just("DELETE"), path_part("dev-zz").map("/api/v1/devices/{}".format), st.just(None)),
    st.tuples(st.sampled_from(["GET", "DELETE"]), query(["device", "before_id", "limit", "up_to_id"]).map(
        "/api/v1/dead-letters{}".format), st.just(None)),
    st.tuples(st.just("GET"), query(["device"]).map("/api/v1/dead-letters/export{}".format), st.just(None)),
    st.tuples(st.sampled_from(["GET", "PUT", "POST"]),
              st.sampled_from(["/status", "/metrics", "/healthz", "/api/v1/windows", "/api/v1/devices"]),
              st.one_of(st.none(), encoded(JSON))),
)


def test_no_route_answers_5xx_and_a_refusal_changes_nothing(mosquitto_broker, tmp_path):
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw")) as live:
        assert live.request("POST", "/api/v1/windows/A01/sign-in", VALID["sign-in"], role="operator")[0] == 200
        seen = {}

        @settings(max_examples=400, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(REQUESTS)
        def one_request(request):
            method, path, raw = request
            before = state(live.gw)
            status, answer = live.request(method, path, raw=raw, role="operator")
            seen[status // 100] = seen.get(status // 100, 0) + 1
            assert status < 500, (method, path, raw and raw[:200], status, answer)
            if status >= 400:
                assert isinstance(answer, dict) and answer.get("error"), (path, status, answer)
                assert state(live.gw) == before, (method, path, raw and raw[:200], answer)
            assert not temp_files(live.gw)
        one_request()
        assert seen.get(2) and seen.get(4), seen         # both kinds were exercised
        for path in ("/status", "/api/v1/devices", "/api/v1/windows"):
            assert live.request("GET", path, role="operator")[0] == 200
    shutil.rmtree(tmp_path / "gw", ignore_errors=True)
