"""The console's ratings routes (gateway.ratings_api) on a real gateway over loopback HTTP: the
figures of a known set, the bad list and its follow-ups, the spreadsheet export, strict
parameters, and nobody but the operator ever reaching a level (rules Art. 4)."""

import csv
import http.client
import io
import json
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway import http_auth
from gw_live import STAFF, STAFF_2, LiveGateway, gateway_config
from test_console_auth import Browser, admin_password
from gw_support import make_rating
from protocol import vocab

ROUTES = [("GET", "/api/v1/ratings/summary?by=window", None), ("GET", "/api/v1/ratings/bad", None),
          ("GET", "/api/v1/ratings/export", None),
          ("PUT", "/api/v1/ratings/dev-a:10/follow-up", {"state": "handled", "note": "x"})]
LEVEL_WORDS = ("非常满意", "基本满意", "不满意", "非常不满意")


def fill(gw):
    """A known day at two windows: A01 (王䶮明) 6x1, 2x2, 1x4, 1x5 and 2 not rated; A02 (𠈌丽)
    1x3 and 1x5 with a formula planted in its text."""
    now = int(gw.clock())
    plan = [("dev-a", "A01", STAFF, "1001", lv) for lv in [1] * 6 + [2] * 2 + [4, 5]]
    plan += [("dev-a", "A01", STAFF, "1001", None)] * 2
    plan += [("dev-b", "A02", STAFF_2, "1002", 3), ("dev-b", "A02", STAFF_2, "1002", 5)]
    counters = {}
    for device, window, staff, staff_id, level in plan:
        counters[device] = counters.get(device, 0) + 1
        extra = {"window": window, "staff_id": staff_id}
        if level is None:
            rating = make_rating(device, counters[device], source=vocab.SRC_NOT_RATED, **extra)
        else:
            rating = make_rating(device, counters[device], level=level, **extra)
            if device == "dev-b" and level == 5:
                rating["text"] = "=HYPERLINK(\"http://x\")"
        rating["gateway_time"] = now - 60 + counters[device]
        gw.history.record(rating, {"staff_name": staff, "matter_code": "440300-0001",
                                   "matter_name": "企业开办", "window": window,
                                   "applicant": "sealed-token"})
    assert gw.history.flush()
    return gw.history.today()


@pytest.fixture
def live(mosquitto_broker, tmp_path):
    cfg = gateway_config(mosquitto_broker, tmp_path / "gw")
    cfg.device_config["tags"] = [{"code": 501, "label": "等待时间长", "indicator": 7}]
    with LiveGateway(cfg) as gateway:
        gateway.today = fill(gateway.gw)
        yield gateway


def raw_request(live, method, path, body=None, token=None):
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    headers = {"Authorization": "Bearer " + token} if token else {}
    try:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                     headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_the_summary_of_a_known_day(live):
    status, data = live.request("GET", "/api/v1/ratings/summary?by=window", role="operator")
    assert status == 200 and data["from"] == data["to"] == live.today and data["by"] == "window"
    a01, a02 = data["rows"]
    assert a01 == {"key": "A01", "label": "A01", "counts": {"1": 6, "2": 2, "3": 0, "4": 1, "5": 1},
                   "rated": 10, "not_rated": 2, "satisfaction_rate": 80.0, "score": 79.0,
                   "grade": "一般"}
    assert a02["counts"] == {"1": 0, "2": 0, "3": 1, "4": 0, "5": 1} and a02["score"] == 30.0
    assert a02["grade"] == "较差" and a02["satisfaction_rate"] == 50.0
    total = data["total"]
    assert total["rated"] == 12 and total["not_rated"] == 2 and total["score"] == 70.8
    assert total["grade"] == "一般"
    status, data = live.request("GET", "/api/v1/ratings/summary?by=staff&from=%s" % live.today,
                                role="operator")
    assert [(r["key"], r["label"], r["rated"]) for r in data["rows"]] == [
        ("1001", STAFF, 10), ("1002", STAFF_2, 2)]
    status, data = live.request("GET", "/api/v1/ratings/summary?by=matter", role="operator")
    assert [(r["key"], r["label"]) for r in data["rows"]] == [("440300-0001", "企业开办")]
    status, data = live.request("GET", "/api/v1/ratings/summary?by=hour", role="operator")
    assert all(len(r["key"]) == 2 and r["label"] == r["key"] + ":00" for r in data["rows"])
    assert sum(r["rated"] for r in data["rows"]) == 12
    status, data = live.request("GET", "/api/v1/ratings/summary?by=day&from=2025-01-01&to=2025-01-07",
                                role="operator")
    assert status == 200 and data["rows"] == [] and data["total"]["score"] is None


def test_the_bad_list_and_its_follow_ups(live):
    status, data = live.request("GET", "/api/v1/ratings/bad", role="operator")
    assert status == 200
    assert [(i["window"], i["level"]) for i in data["items"]] == [("A01", 5), ("A01", 4), ("A02", 5)]
    item = data["items"][0]
    assert item["staff_name"] == STAFF and item["level_name"] == "非常不满意"
    assert item["tags"] == [{"code": 501, "label": "等待时间长"}]
    assert item["follow_up"] == {"state": "pending", "note": "", "by": None, "at": None}
    assert "applicant" not in json.dumps(data) and "sealed-token" not in json.dumps(data)
    rid = item["rating_id"]
    path = "/api/v1/ratings/%s/follow-up" % rid
    status, done = live.request("PUT", path, {"state": "verified", "note": "已电话回访王䶮明的窗口"},
                                role="operator")
    assert status == 200 and done["follow_up"]["state"] == "verified"
    assert done["follow_up"]["by"] == "operator" and done["follow_up"]["at"]
    # refused, and nothing changed: back to pending, bad input, a good rating, no such rating
    for body, target, expected in (({"state": "pending"}, path, 409),
                                   ({"state": "closed"}, path, 400),
                                   ({"state": "handled", "note": "x" * 501}, path, 400),
                                   ({"state": "handled", "extra": 1}, path, 400),
                                   ({"state": "handled", "note": 5}, path, 400),
                                   (["handled"], path, 400),
                                   ({"state": "handled"}, "/api/v1/ratings/dev-a:1/follow-up", 409),
                                   ({"state": "handled"}, "/api/v1/ratings/dev-z:1/follow-up", 404),
                                   ({"state": "handled"}, "/api/v1/ratings/dev-a/follow-up", 400)):
        status, answer = live.request("PUT", target, body, role="operator")
        assert status == expected and set(answer) == {"error", "detail"}, (body, target, answer)
    assert live.gw.history.item(rid)["follow_up"] == done["follow_up"]
    status, _ = live.request("PUT", path, {"state": "handled", "note": "已整改"}, role="operator")
    assert status == 200
    status, data = live.request("GET", "/api/v1/ratings/bad?state=pending", role="operator")
    assert rid not in [i["rating_id"] for i in data["items"]] and len(data["items"]) == 2
    status, data = live.request("GET", "/api/v1/ratings/bad?state=handled&window=A01",
                                role="operator")
    assert [i["rating_id"] for i in data["items"]] == [rid]
    status, data = live.request("GET", "/api/v1/ratings/bad?level=4&staff_id=1001", role="operator")
    assert [i["level"] for i in data["items"]] == [4]


def test_the_export_is_a_spreadsheet_safe_csv(live):
    status, headers, body = raw_request(live, "GET", "/api/v1/ratings/export",
                                        token=live.token("operator"))
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert "attachment" in headers["Content-Disposition"]
    assert body.startswith(b"\xef\xbb\xbf")                      # BOM: Excel reads it as UTF-8
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert len(rows) == 14 and rows[0]["staff_name"] == STAFF
    assert {r["staff_name"] for r in rows} == {STAFF, STAFF_2}
    planted = [r for r in rows if r["device"] == "dev-b" and r["level"] == "5"][0]
    assert planted["text"] == "'=HYPERLINK(\"http://x\")"     # never a live formula
    assert planted["tags"] == "等待时间长" and planted["follow_up_state"] == "pending"
    assert "sealed-token" not in body.decode("utf-8")


@pytest.mark.parametrize("query", [
    "from=2025-13-01", "from=2025-1-01", "to=yesterday", "from=2025-12-03&to=2025-12-01",
    "from=2024-01-01&to=2025-12-31", "from=0001-01-01", "to=9999-12-31", "by=applicant", "by=window&by=staff", "colour=red",
    "limit=0", "limit=99999", "level=3", "state=closed", "window=%01A"])
def test_bad_parameters_are_refused(live, query):
    route = "bad" if query.split("=")[0] in ("limit", "level", "state", "window") else "summary"
    status, answer = live.request("GET", "/api/v1/ratings/%s?%s" % (route, query), role="operator")
    assert status == 400 and set(answer) == {"error", "detail"}, answer


def test_nobody_but_the_operator_reaches_a_rating(live):
    others = [r for r in http_auth.ROLES if r != "operator"]
    before = live.gw.history.item("dev-a:10")
    for method, path, body in ROUTES:
        status, answer = live.request(method, path, body)
        assert status == 401
        for role in others:
            status, headers, raw = raw_request(live, method, path, body, token=live.token(role))
            text = raw.decode("utf-8")
            assert status == 403 and json.loads(text)["error"] == "forbidden", (role, path)
            assert not any(word in text for word in LEVEL_WORDS) and STAFF not in text
            assert '"level' not in text
    assert live.gw.history.item("dev-a:10") == before


def test_a_follow_up_from_the_console_names_its_user_and_needs_the_csrf_token(live):
    browser = Browser(live)
    assert browser.login("admin", admin_password(live))[0] == 200
    path = "/api/v1/ratings/dev-b:2/follow-up"
    status, _, answer = browser.call("PUT", path, {"state": "handled", "note": "无CSRF"}, csrf=False)
    assert status == 403 and answer["error"] == "csrf"
    assert live.gw.history.item("dev-b:2")["follow_up"]["state"] == "pending"
    status, _, answer = browser.call("PUT", path, {"state": "handled", "note": "已回访"})
    assert status == 200 and answer["follow_up"]["by"] == "admin"
    assert live.gw.history.item("dev-b:2")["follow_up"]["note"] == "已回访"


NASTY = ["\ud800", "\x00", "\n", "\x7f", "\x85", "䶮", "𠈌", "0", "4", "-"]
WORDS = ["2025-12-03", "2024-02-30", "-1", "99999", "window", "handled", "verified", "pending"]
TEXT = st.one_of(st.text(alphabet=st.one_of(st.characters(), st.sampled_from(NASTY)), max_size=20),
                 st.sampled_from(WORDS))
QUERY = st.dictionaries(st.sampled_from(["from", "to", "by", "state", "window", "staff_id", "level",
                                         "limit", "x"]), TEXT, max_size=4).map(lambda q: "?" + urlencode(q, errors="surrogatepass") if q else "")
BODY = st.one_of(st.dictionaries(st.sampled_from(["state", "note", "by", "at"]),
                                 st.one_of(TEXT, st.integers(), st.none(), st.booleans()), max_size=3),
                 st.lists(TEXT, max_size=2), TEXT)
FUZZ = st.one_of(
    st.tuples(st.just("GET"), st.sampled_from(["summary", "bad", "export"]), QUERY, st.none()),
    st.tuples(st.just("PUT"), st.one_of(st.sampled_from(["dev-a:10", "dev-a:1", "dev-b:2"]), TEXT),
              st.just(""), BODY))


def test_no_ratings_route_answers_5xx_and_a_refused_follow_up_changes_nothing(live):
    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(FUZZ)
    def one(request):
        method, name, query, body = request
        if method == "GET":
            path = "/api/v1/ratings/%s%s" % (name, query)
            raw = None
        else:
            path = "/api/v1/ratings/%s/follow-up" % quote(name, safe="", errors="surrogatepass")
            raw = json.dumps(body).encode("ascii")
        before = [live.gw.history.item(r)["follow_up"] for r in ("dev-a:10", "dev-b:2")]
        status, answer = live.request(method, path, raw=raw, role="operator")
        assert status < 500, (path, raw, answer)
        if status >= 400:
            assert isinstance(answer, dict) and answer.get("error"), (path, answer)
            assert [live.gw.history.item(r)["follow_up"] for r in ("dev-a:10", "dev-b:2")] == before
    one()
