"""Alerts to the duty manager (gateway.alerts, gateway.alert_queue, gateway.alerts_api): a bad
rating pressed on a device reaches the robots within seconds, exactly once, without the rater;
a channel that is down gets it when it is back; a restart sends what was pending, once; a device
offline, the uplink down and a full outbox each raise one alert per episode (an injected clock);
the queue is bounded, bad ratings kept longest. Real Mosquitto, a real gateway on loopback, real
loopback receivers checking each vendor's format and signature (tests/alert_receivers.py)."""

import asyncio
import json
import time
import urllib.parse
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings, strategies as st

from alert_receivers import Receivers
from gateway.alert_queue import AlertQueue
from gateway.alerts import Alerts
from gateway.registry import Registry
from gw_live import STAFF, LiveGateway, gateway_config
from gw_support import FakeDevice, device_key, make_rating
from protocol import vocab

APPLICANT = {"name": "李堃", "id_number": "440301199001011234", "phone": "13800138000"}
APPLICANT_PARTS = tuple(APPLICANT.values()) + ("1234",)     # the id's last digits, as a mask keeps
# the enrichment as the intake hands it on: the case's fields and its (here clear) applicant
ENRICHMENT = {"matter_code": "440300-0001", "matter_name": "企业开办", "staff_name": STAFF,
              "window": "A01", "applicant": "李堃 440301199001011234 13800138000"}
STORED = (vocab.ACK_STORED, 0)
FAST = {"retry_base_s": 0.05, "retry_cap_s": 0.2}


class Clock:
    def __init__(self, now=1_764_763_200.0):
        self.now = now

    def __call__(self):
        return self.now


def until(predicate, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


async def until_async(predicate, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def rows(alerts):
    return alerts.queue.call(alerts.queue.status, 100)["recent"]


def no_applicant(rx):
    for raw in rx.raw:
        text = raw.decode("utf-8", "replace")
        assert not any(part in text for part in APPLICANT_PARTS), text


# --- the whole gateway ------------------------------------------------------------------------
def test_a_bad_rating_reaches_the_robots_within_seconds_once_and_never_names_the_rater(
        mosquitto_broker, tmp_path):
    with Receivers() as rx:
        cfg = gateway_config(mosquitto_broker, tmp_path / "gw")
        cfg.raw["alerts"] = {"channels": rx.channels()}
        cfg.device_config["tags"] = [{"code": 501, "label": "等待时间长", "indicator": 4}]
        with LiveGateway(cfg) as live:
            assert live.request("POST", "/api/v1/windows/A01/sign-in",
                                {"staff_id": "1001", "staff_name": STAFF}, role="queue")[0] == 200
            status, case = live.request("POST", "/api/v1/cases", {
                "window": "A01", "node": "completion", "serials": ["SN-1"], "matter_code": "440300-0001",
                "matter_name": "企业开办", "applicant": APPLICANT}, role="queue")
            assert status == 201
            device = FakeDevice(mosquitto_broker, "dev-a")
            try:
                bad = make_rating("dev-a", 1, level=vocab.DISSATISFIED, case_id=case["case_id"],
                                  serials=["SN-1"], tags=[501])
                pressed = time.monotonic()
                device.rate(bad)
                assert device.ack()["result"] == vocab.ACK_STORED
                wecom = rx.wait("wecom")[0]
                ding = rx.wait("dingtalk")[0]
                assert time.monotonic() - pressed < 5.0
                content = wecom["markdown"]["content"]
                assert wecom["msgtype"] == "markdown" and content.startswith("### 差评提醒：A01窗口 不满意")
                for needed in ("不满意", "等待时间长", "企业开办", "SN-1", STAFF, "工号 1001", "dev-a:1", "+08:00"):
                    assert needed in content and needed in ding["markdown"]["text"], needed
                assert ding["msgtype"] == "markdown" and ding["markdown"]["title"].startswith("差评提醒")
                # a good rating raises nothing; the same bad rating again (a lost ACK) is a duplicate
                device.rate(make_rating("dev-a", 2, level=vocab.SATISFIED))
                assert device.ack()["result"] == vocab.ACK_STORED
                device.rate(bad)
                assert device.ack()["result"] == vocab.ACK_DUPLICATE
                device.rate(make_rating("dev-a", 3, level=vocab.VERY_DISSATISFIED, tags=[501]))
                assert device.ack()["result"] == vocab.ACK_STORED
            finally:
                device.close()
            # the marker (dev-a:3) came after the duplicate on the same intake: both robots have
            # exactly the two bad ratings, each once
            for name in ("wecom", "dingtalk", "feishu", "webhook", "email"):
                rx.wait(name, 2)
            hooks = rx.wait("webhook", 2)
            assert sorted(h["rating_id"] for h in hooks) == ["dev-a:1", "dev-a:3"]
            until(lambda: live.gw.alerts.depth() == 0, "the queue to drain")
            # raising it again (a replayed intake, a restart) adds nothing
            assert live.gw.alerts.queue.call(live.gw.alerts._raise,
                                             live.gw.alerts.bad_rating_alert(bad, ENRICHMENT)) == 0
            assert [rx.count(n) for n in ("wecom", "dingtalk", "feishu", "webhook", "email")] == [2] * 5
            no_applicant(rx)
            check_api(live, rx)


def check_api(live, rx):
    status, listed = live.request("GET", "/api/v1/alerts", role="operator")
    assert status == 200 and listed["sent"] == 10 and listed["pending"] == 0 and listed["failed"] == 0
    assert {c["type"] for c in listed["channels"]} == {"wecom", "dingtalk", "feishu", "webhook", "email"}
    assert "http" not in json.dumps(listed["channels"])               # a robot's key is in its URL
    first = [r for r in listed["recent"] if r["alert"] == "bad:dev-a:1"]
    assert len(first) == 5 and all(r["state"] == "sent" and r["window"] == "A01" for r in first)
    assert first[0]["level_name"] == "不满意" and first[0]["staff_name"] == STAFF
    status, listed = live.request("GET", "/api/v1/alerts", role="technician")
    assert status == 200 and listed["sent"] == 10
    text = json.dumps(listed, ensure_ascii=False)
    assert "满意" not in text and STAFF not in text and "level" not in text and "等待时间长" not in text
    assert listed["recent"] == [] and "bad" not in text and "dev-a" not in text   # not even that
    for role in ("viewer", "queue"):
        assert live.request("GET", "/api/v1/alerts", role=role)[0] == 403
    assert live.request("GET", "/api/v1/alerts")[0] == 401
    # a test alert to one channel, operator only
    assert live.request("POST", "/api/v1/alerts/test", {"channel": "dingtalk"}, role="technician")[0] == 403
    status, answer = live.request("POST", "/api/v1/alerts/test", {"channel": "dingtalk"}, role="operator")
    assert status == 200 and answer == {"channel": "dingtalk", "sent": True, "detail": "ok"}
    assert rx.wait("dingtalk", 3)[2]["markdown"]["title"].startswith("测试消息")
    for body, want in (({"channel": "nope"}, 404), ({}, 400), (["x"], 400), ({"channel": 5}, 400)):
        status, answer = live.request("POST", "/api/v1/alerts/test", body, role="operator")
        assert status == want and "error" in answer, (body, answer)
    for raw, want in ((b"{not json", 400), (b'{"channel": "\\ud800"}', 400), (b"[" * 100 + b"]" * 100, 400),
                      (b"\xff\xfe", 400), (b'{"channel": "' + b"x" * 5000 + b'"}', 413)):
        status, answer = live.request("POST", "/api/v1/alerts/test", raw=raw, role="operator")
        assert status == want and "error" in answer, (raw[:20], status, answer)
    # the technician sees the other alerts listed: a device offline
    alerts = live.gw.alerts
    alerts.queue.call(alerts._raise, alerts._alert("offline:dev-b:1", "device_offline", "评价器离线",
                                                   "A02", "dev-b", time.time(), []))
    until(lambda: alerts.depth() == 0, "the offline alert sent")
    status, listed = live.request("GET", "/api/v1/alerts", role="technician")
    assert {(r["kind"], r["device"], r["state"]) for r in listed["recent"]} == {
        ("device_offline", "dev-b", "sent")} and len(listed["recent"]) == 5 and listed["sent"] == 15



def test_a_gateway_restarted_with_an_alert_pending_sends_it_once(mosquitto_broker, tmp_path):
    with Receivers() as rx:
        cfg = gateway_config(mosquitto_broker, tmp_path / "gw")
        cfg.raw["alerts"] = dict(FAST, channels=rx.channels(email=False)[:1])      # WeCom
        rx.down.add("wecom")
        with LiveGateway(cfg) as live:
            device = FakeDevice(mosquitto_broker, "dev-a")
            try:
                device.rate(make_rating("dev-a", 1, level=vocab.VERY_DISSATISFIED))
                assert device.ack()["result"] == vocab.ACK_STORED
            finally:
                device.close()
            until(lambda: rows(live.gw.alerts) and rows(live.gw.alerts)[0]["attempts"] >= 2, "retries")
        assert rx.count("wecom") == 0
        rx.down.discard("wecom")
        with LiveGateway(cfg) as live:
            assert live.gw.alerts.depth() == 1
            rx.wait("wecom")
            until(lambda: live.gw.alerts.depth() == 0, "the pending alert sent")
        with LiveGateway(cfg) as live:      # and never again
            assert live.gw.alerts.depth() == 0 and [r["state"] for r in rows(live.gw.alerts)] == ["sent"]
        assert rx.count("wecom") == 1 and "非常不满意" in rx.got["wecom"][0]["markdown"]["content"]


# --- the queue: retries, restarts, bounds ---------------------------------------------------
def test_a_channel_down_gets_the_alert_once_it_is_back_and_a_restart_sends_pending_once(tmp_path):
    with Receivers() as rx:
        cfg = dict(FAST, channels=rx.channels(email=False)[:2])     # wecom, dingtalk
        rx.down.add("wecom")

        async def first_life():
            alerts = Alerts(cfg, "futian-1", str(tmp_path))
            task = asyncio.create_task(alerts.run())
            alerts.on_rating(make_rating("dev-a", 1, level=vocab.DISSATISFIED, gateway_time=1764763200),
                             STORED, ENRICHMENT)
            await asyncio.to_thread(rx.wait, "dingtalk")
            wecom_row = lambda: [r for r in rows(alerts) if r["channel"] != "dingtalk"][0]
            await until_async(lambda: asyncio.sleep(0, wecom_row()["attempts"] >= 3), "retries")
            assert wecom_row()["state"] == "pending" and "HTTP 503" in wecom_row()["error"]
            assert alerts.depth() == 1
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            alerts.close()
        asyncio.run(first_life())
        assert rx.count("wecom") == 0 and rx.count("dingtalk") == 1
        rx.down.discard("wecom")

        async def second_life():
            alerts = Alerts(cfg, "futian-1", str(tmp_path))
            assert alerts.depth() == 1
            task = asyncio.create_task(alerts.run())
            await asyncio.to_thread(rx.wait, "wecom")
            await until_async(lambda: asyncio.sleep(0, alerts.depth() == 0), "the queue to drain")
            # the same rating once more (re-delivered after the restart): nothing new
            alerts.on_rating(make_rating("dev-a", 1, level=vocab.DISSATISFIED, gateway_time=1764763200),
                             STORED, ENRICHMENT)
            await until_async(lambda: asyncio.sleep(0, alerts.queue.counters["duplicates"] == 2), "dedupe")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert {r["state"] for r in rows(alerts)} == {"sent"} and len(rows(alerts)) == 2
            alerts.close()
        asyncio.run(second_life())
        assert rx.count("wecom") == 1 and rx.count("dingtalk") == 1
        no_applicant(rx)


def test_a_wrong_dingtalk_secret_is_counted_as_failure_and_given_up_never_sent(tmp_path):
    alarms = []
    with Receivers() as rx:
        cfg = dict(FAST, max_age_h=0.5 / 3600, channels=rx.channels(dingtalk_secret="SECwrong")[1:2])

        async def scenario():
            alerts = Alerts(cfg, "futian-1", str(tmp_path), alarm=lambda *a: alarms.append(a))
            task = asyncio.create_task(alerts.run())
            alerts.on_rating(make_rating("dev-a", 1, level=vocab.VERY_DISSATISFIED), STORED, ENRICHMENT)
            await until_async(lambda: asyncio.sleep(0, rows(alerts)[0]["state"] == "failed"), "give-up")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            row = rows(alerts)[0]
            assert "310000" in row["error"] and row["attempts"] >= 2
            assert alerts.queue.counters["sent"] == 0 and alerts.queue.counters["failed"] == 1
            assert alerts.queue.counters["attempt_failures"] == row["attempts"]
            assert alerts.depth() == 0
            alerts.close()
        asyncio.run(scenario())
        assert rx.count("dingtalk") == 0 and rx.refused["dingtalk"][0]["errcode"] == 310000
        assert [a[0] for a in alarms] == ["alert_failed"]


def test_the_backoff_doubles_to_its_cap():
    class Top:      # the largest delay full jitter may draw
        def uniform(self, low, high):
            return high
    queue = AlertQueue(":memory:", backoff_base_s=2.0, backoff_cap_s=600.0, rng=Top())
    assert [queue._delay(n) for n in range(11)] == [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]
    queue.close()


def test_the_queue_is_bounded_and_drops_other_alerts_before_bad_ratings(tmp_path):
    clock, alarms = Clock(), []
    queue = AlertQueue(str(tmp_path / "q.sqlite"), max_pending=3, clock=clock,
                       alarm=lambda *a: alarms.append(a))

    def add(key, bad):
        clock.now += 1
        return queue.call(queue.add, {"key": key, "kind": "bad_rating" if bad else "device_offline",
                                      "bad": bad}, ["wecom"])
    for key, bad in (("bad1", True), ("off1", False), ("off2", False), ("bad2", True), ("off3", False),
                     ("bad3", True), ("bad4", True)):
        assert add(key, bad) == 1
    assert add("bad4", True) == 0                            # never doubled
    state = dict((r["alert"], r["state"]) for r in queue.call(queue.status)["recent"])
    assert state == {"off1": "dropped", "off2": "dropped", "off3": "dropped", "bad1": "dropped",
                     "bad2": "pending", "bad3": "pending", "bad4": "pending"}
    assert queue.depth() == 3 and queue.counters["dropped"] == 4 and alarms[0][0] == "alert_dropped"
    queue.close()
    again = AlertQueue(str(tmp_path / "q.sqlite"), max_pending=3, clock=clock)   # counts survive
    assert again.depth() == 3 and again.counters["dropped"] == 4 and again.counters["duplicates"] == 1
    again.close()


def test_only_a_stored_pressed_bad_rating_raises_an_alert(tmp_path):
    alerts = Alerts({"channels": [{"type": "webhook", "url": "http://127.0.0.1:9/x"}]}, "futian-1",
                    str(tmp_path))
    for rating, result in (
            (make_rating("dev-a", 1, level=vocab.DISSATISFIED), (vocab.ACK_DUPLICATE, 0)),
            (make_rating("dev-a", 2, level=vocab.DISSATISFIED), (vocab.ACK_DEAD_LETTER, 9)),
            (make_rating("dev-a", 3, level=vocab.BASICALLY_SATISFIED), STORED),
            (make_rating("dev-a", 4, source=vocab.SRC_NOT_RATED), STORED)):
        alerts.on_rating(rating, result, ENRICHMENT)
    alerts.on_rating(make_rating("dev-a", 5, level=vocab.SATISFIED,
                                 items=[{"code": "T-1", "level": vocab.VERY_DISSATISFIED}]), STORED, None)
    assert [r["alert"] for r in rows(alerts)] == ["bad:dev-a:5"]     # a theme item rated 非常不满意
    alerts.close()


# --- states that last: one alert per episode --------------------------------------------------
def test_a_device_offline_for_n_minutes_raises_one_alert_per_episode_even_across_a_restart(tmp_path):
    clock = Clock()
    spec = [{"id": "dev-a", "window": "A01", "name": "一号窗口", "key": device_key("dev-a").hex()},
            {"id": "spare", "key": device_key("spare").hex()}]     # at no window: never alerted
    cfg = {"device_offline_min": 10, "uplink_down_min": 0, "outbox_threshold": 0,
           "channels": [{"type": "webhook", "url": "http://127.0.0.1:9/x"}]}
    registry = Registry(spec, clock=clock)
    alerts = Alerts(cfg, "futian-1", str(tmp_path), registry=registry, clock=clock)
    check = lambda a: a.queue.call(a.check)
    kinds = lambda a: [(r["kind"], r["body"]["data"]["device"]) for r in reversed(rows(a))]
    registry.seen("dev-a")
    last_seen = clock.now
    clock.now += 60
    registry.set_offline("dev-a")
    clock.now = last_seen + 599
    check(alerts)
    assert kinds(alerts) == []
    clock.now = last_seen + 600
    check(alerts)
    clock.now += 3600
    check(alerts)
    assert kinds(alerts) == [("device_offline", "dev-a")]
    assert "离线时长" in json.dumps(rows(alerts)[0]["body"], ensure_ascii=False)
    alerts.close()
    # a restart: the registry forgets live state (never seen since start), the episode is kept
    registry = Registry(spec, clock=clock)
    alerts = Alerts(cfg, "futian-1", str(tmp_path), registry=registry, clock=clock)
    clock.now += 3600
    check(alerts)
    assert kinds(alerts) == [("device_offline", "dev-a")]
    registry.seen("dev-a")
    check(alerts)
    check(alerts)
    assert kinds(alerts) == [("device_offline", "dev-a"), ("device_recovered", "dev-a")]
    registry.set_offline("dev-a")        # a new episode: a new alert after ten minutes
    clock.now += 601
    check(alerts)
    assert kinds(alerts)[-1] == ("device_offline", "dev-a") and len(kinds(alerts)) == 3
    alerts.close()


def test_uplink_down_and_outbox_past_threshold_raise_one_alert_each_until_they_recover(tmp_path):
    clock = Clock()
    uplink = SimpleNamespace(status=SimpleNamespace(state="up"))
    backlog = {"ratings": 0, "cases": 0, "fill": 0.0}
    store = SimpleNamespace(backlog=lambda: dict(backlog))
    alerts = Alerts({"device_offline_min": 0, "uplink_down_min": 30, "outbox_threshold": 100,
                     "channels": [{"type": "webhook", "url": "http://127.0.0.1:9/x"}]}, "futian-1",
                    str(tmp_path), store=store, uplink=lambda: uplink, clock=clock)
    kinds = lambda: [r["kind"] for r in reversed(rows(alerts))]

    def at(offset, state=None, items=None):
        clock.now += offset
        if state:
            uplink.status.state = state
        if items is not None:
            backlog.update(ratings=items, fill=items / 1000)
        alerts.queue.call(alerts.check)
    at(0, "backoff")
    at(29 * 60, "down")
    assert kinds() == []
    at(60)
    at(600)
    assert kinds() == ["uplink_down"]
    at(0, items=100)
    at(5, items=95)                       # still above 90 % of the threshold: the same episode
    assert kinds() == ["uplink_down", "outbox_full"]
    at(5, "up", items=80)
    assert kinds() == ["uplink_down", "outbox_full", "uplink_recovered", "outbox_recovered"]
    at(5, "backoff", items=120)
    assert kinds()[-1] == "outbox_full" and kinds().count("uplink_down") == 1
    alerts.close()


def test_a_rating_after_the_queue_closed_is_alarmed_never_raised_into_the_intake(tmp_path):
    alarms = []
    alerts = Alerts({"channels": [{"type": "webhook", "url": "http://127.0.0.1:9/x"}]}, "futian-1",
                    str(tmp_path), alarm=lambda *a: alarms.append(a))
    alerts.close()
    alerts.on_rating(make_rating("dev-a", 1, level=vocab.DISSATISFIED), STORED, ENRICHMENT)
    assert [a[0] for a in alarms] == ["alert_store"] and "李堃" not in alarms[0][1]


def test_a_damaged_queue_file_is_set_aside_and_the_gateway_still_starts(tmp_path):
    (tmp_path / "alerts.sqlite").write_bytes(b"not a database at all" * 100)
    alarms = []
    alerts = Alerts({"channels": [{"type": "webhook", "url": "http://127.0.0.1:9/x"}]}, "futian-1",
                    str(tmp_path), alarm=lambda *a: alarms.append(a))
    alerts.on_rating(make_rating("dev-a", 1, level=vocab.DISSATISFIED), STORED, ENRICHMENT)
    until(lambda: alerts.depth() == 1, "the alert queued in the new file")
    alerts.close()
    assert [a[0] for a in alarms] == ["alert_store"] and "set aside" in alarms[0][1]
    assert [p.name for p in tmp_path.glob("alerts.sqlite.damaged-*")] != []



JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.sampled_from(["channel", "x"]), inner, max_size=2), max_leaves=8)


def test_the_alert_routes_answer_2xx_or_4xx_whatever_they_get(mosquitto_broker, tmp_path):
    cfg = gateway_config(mosquitto_broker, tmp_path / "gw")
    cfg.raw["alerts"] = {"channels": [{"name": "x", "type": "webhook", "url": "http://127.0.0.1:9/"}]}
    with LiveGateway(cfg) as live:
        @settings(max_examples=80, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(body=st.one_of(st.binary(max_size=300), JSONISH,
                              st.fixed_dictionaries({"channel": st.sampled_from(["x", "y", "", "𠈌"])})),
               query=st.text(max_size=30))
        def one_request(body, query):
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            status, answer = live.request("POST", "/api/v1/alerts/test", raw=raw, role="operator")
            assert 200 <= status < 500 and isinstance(answer, dict), (raw[:40], status, answer)
            assert (status == 200) == ("sent" in answer) and (status == 200) != ("error" in answer)
            if status == 200:      # nobody listens on port 9: answered, never raised
                assert answer["channel"] == "x" and answer["sent"] is False
            status, answer = live.request("GET", "/api/v1/alerts?" + urllib.parse.quote(query, safe="=&"),
                                          role="technician")
            assert status == 200 and answer["pending"] == 0
        one_request()


def test_without_channels_alerts_stay_off_and_write_nothing(tmp_path):
    alerts = Alerts({}, "futian-1", str(tmp_path))
    alerts.on_rating(make_rating("dev-a", 1, level=vocab.DISSATISFIED), STORED, ENRICHMENT)
    assert alerts.depth() == 0 and asyncio.run(alerts.status())["recent"] == []
    asyncio.run(alerts.run())          # returns at once
    alerts.close()
    assert list(tmp_path.iterdir()) == []


def test_an_alert_dropped_while_in_flight_keeps_the_counts_true(tmp_path):
    clock = Clock()
    queue = AlertQueue(str(tmp_path / "q.sqlite"), max_pending=1, clock=clock)
    queue.call(queue.add, {"key": "off1", "kind": "device_offline", "bad": False}, ["wecom"])
    [(key, attempts, created, _)] = queue.call(queue.due, "wecom")      # being sent ...
    clock.now += 1
    queue.call(queue.add, {"key": "bad1", "kind": "bad_rating", "bad": True}, ["wecom"])   # ... dropped
    assert queue.call(queue.settle, [(key, attempts, created, True, "ok")]) == (0, 0, 0)
    assert queue.depth() == 1 == queue.call(queue.status)["counts"]["pending"]
    assert queue.counters["sent"] == 0 and queue.counters["dropped"] == 1
    queue.close()
