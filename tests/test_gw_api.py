"""The whole gateway (gateway.app.Gateway) with a real Mosquitto and its real aiohttp server on
loopback: the queueing-system rules, callbacks, device changes at run time, /status and /metrics."""

import asyncio
import json
import logging
import sys
import threading
import time
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gateway import config as config_mod
from gateway.app import Gateway
from gateway.privacy import Sealer
from gateway.registry import Registry
from gw_support import HALL, FakeDevice, device_key, make_rating
from protocol import codec, schema, vocab

PRIVACY_KEY = "11" * 32
TOKEN = "queue-secret"
APPLICANT = {"name": "李堃", "id_number": "440301199001011234", "phone": "13800138000"}


def make_config(broker, tmp_path, callback_url, token="", extra=None):
    return config_mod.from_dict(dict({
        "gateway": {"hall": HALL, "data_dir": str(tmp_path / "gw"), "privacy_key": PRIVACY_KEY},
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "gw-api-test"},
        "http": {"host": "127.0.0.1", "port": 0, "callback_url": callback_url, "token": token},
        "device_config": {"version": 2, "rating_timeout_s": 30},
        "devices": [{"id": "dev-a", "window": "A01", "key": device_key("dev-a").hex()}],
    }, **(extra or {})))


class Rig:
    """The gateway, an HTTP client, and a callback server standing in for the queueing system."""

    def __init__(self, broker, tmp_path, token="", callback_status=200, extra=None, role="operator"):
        self.broker, self.tmp_path, self.token, self.extra = broker, tmp_path, token, extra
        self.role = role                           # whose credential the client sends (None: none)
        self.callback_status = callback_status     # what the queueing system answers
        self.callbacks = []

    async def __aenter__(self):
        app = web.Application()

        async def callback(request):
            self.callbacks.append(await request.json())
            return web.json_response({"ok": True}, status=self.callback_status)
        app.router.add_post("/cb", callback)
        self.cb_runner = web.AppRunner(app)
        await self.cb_runner.setup()
        site = web.TCPSite(self.cb_runner, "127.0.0.1", 0)
        await site.start()
        cb_port = self.cb_runner.addresses[0][1]
        self.cfg = make_config(self.broker, self.tmp_path, "http://127.0.0.1:%d/cb" % cb_port, self.token,
                               self.extra)
        self.gw = Gateway(self.cfg)
        await self.gw.start()
        await asyncio.to_thread(self.gw.bridge.connected.wait, 10)
        self.base = "http://127.0.0.1:%d" % self.gw.http_port
        headers = {"Authorization": "Bearer " + self.gw.credentials[self.role]} if self.role else {}
        self.http = aiohttp.ClientSession(headers=headers)
        return self

    async def __aexit__(self, *exc):
        await self.http.close()
        await self.gw.stop()
        await self.cb_runner.cleanup()

    async def call(self, method, path, body=None, raw=None):
        kwargs = {"data": raw} if raw is not None else ({"json": body} if body is not None else {})
        async with self.http.request(method, self.base + path, **kwargs) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def until(self, predicate, what):
        for _ in range(500):
            if predicate():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("timed out waiting for " + what)


def case_body(**extra):
    body = {"window": "A01", "node": "completion", "success": True, "serials": ["SN1", "SN2"],
            "matter_code": "440300-0001", "matter_name": "企业开办", "applicant": APPLICANT}
    body.update(extra)
    return body


def test_queue_rules_rating_and_callbacks(mosquitto_broker, tmp_path, caplog):
    device = FakeDevice(mosquitto_broker, "dev-a")

    async def scenario():
        async with Rig(mosquitto_broker, tmp_path) as rig:
            # Nobody signed in: refused.
            status, answer = await rig.call("POST", "/api/v1/cases", case_body())
            assert status == 409 and answer["error"] == "bad_state"
            assert (await rig.call("POST", "/api/v1/windows/A01/sign-in",
                                   {"staff_id": "1001", "staff_name": "王喆"}))[0] == 200
            # A failed receipt or acceptance opens no rating; a failed completion (refusal) does.
            for node in ("receipt", "acceptance"):
                status, answer = await rig.call("POST", "/api/v1/cases",
                                                case_body(node=node, success=False, serials=["F-" + node]))
                assert status == 200 and answer["rating"] is False
            assert rig.gw.store.backlog()["cases"] == 0
            # Bad requests: each refused with a reason and counted.
            bad = [(None, b"{not json"), ({"window": "A01", "node": "completion", "matter_name": "x"}, None),
                   (case_body(node="approval"), None), (case_body(serials=["SN\u00071"]), None),
                   (case_body(items=[{"code": "x"}] * 9), None), (["a list"], None)]
            for body, raw in bad:
                status, answer = await rig.call("POST", "/api/v1/cases", body, raw=raw)
                assert status == 400, (body, answer)
            assert rig.gw.rejections.total() == 1 + len(bad)
            # A batch completion opens one case; its context reaches the window's device.
            status, case = await rig.call("POST", "/api/v1/cases", case_body())
            assert status == 201 and case["devices"] == ["dev-a"] and case["rating"] is True
            ctx_payload = await asyncio.to_thread(device.wait_for, "context", lambda p: b"SN2" in p)
            ctx = codec.from_json(schema.CONTEXT, ctx_payload)
            assert ctx["case_id"] == case["case_id"] and ctx["staff_name"] == "王喆"
            assert ctx["indicators"] == vocab.NODE_INDICATORS[vocab.NODE_COMPLETION]
            assert ctx["deadline"] - int(time.time()) in range(7 * 86400 - 5, 7 * 86400 + 1)
            assert b"440301" not in ctx_payload and "李堃".encode() not in ctx_payload
            # The same event again: the same case, nothing new.
            status, again = await rig.call("POST", "/api/v1/cases", case_body())
            assert status == 200 and again["case_id"] == case["case_id"] and again["repeated"]
            # The citizen rates on the device: committed, ACKed, the queueing system told (no level).
            device.rate(make_rating("dev-a", 1, level=vocab.DISSATISFIED, case_id=case["case_id"],
                                    serials=["SN1", "SN2"]))
            ack = await asyncio.to_thread(device.ack)
            assert ack["result"] == vocab.ACK_STORED
            await rig.until(lambda: rig.callbacks, "the rated callback")
            cb = rig.callbacks[0]
            assert cb["event"] == "rated" and cb["case_id"] == case["case_id"]
            assert cb["serials"] == ["SN1", "SN2"] and cb["rating_id"] == "dev-a:1"
            assert not {"overall", "level", "business", "service"} & set(cb)
            await asyncio.to_thread(device.wait_for, "context", lambda p: p == b"")
            # The outbox: the case record and the enriched rating with the sealed applicant.
            items = dict((i["item_id"], i) for i in rig.gw.store.upload_batch(10))
            case_rec = items["SN1#%d" % vocab.NODE_COMPLETION]["record"]
            assert case_rec["matter_name"] == "企业开办" and case_rec["staff_name"] == "王喆"
            assert case_rec["deadline"] - case_rec["completed_at"] == 7 * 86400
            rating_rec = items["dev-a:1"]["record"]
            assert rating_rec["matter_code"] == "440300-0001" and rating_rec["staff_name"] == "王喆"
            assert Sealer(PRIVACY_KEY, context=HALL).open(rating_rec["applicant"]) == APPLICANT
            # After the rating, the same event opens nothing (one rating per case and node).
            rig.gw.cases.expire()
            status, answer = await rig.call("POST", "/api/v1/cases", case_body())
            assert status == 200 and answer["rating"] is False
            # A receipt rates the service only; the device timing out tells the queueing system.
            status, receipt = await rig.call("POST", "/api/v1/cases", case_body(node="receipt", serials=["SN9"]))
            ctx = codec.from_json(schema.CONTEXT, await asyncio.to_thread(
                device.wait_for, "context", lambda p: b"SN9" in p))
            assert ctx["indicators"] == vocab.IND_SERVICE
            device.rate(make_rating("dev-a", 2, source=vocab.SRC_NOT_RATED, case_id=receipt["case_id"]))
            await rig.until(lambda: len(rig.callbacks) == 2, "the not_rated callback")
            assert rig.callbacks[1]["event"] == "not_rated"
            # Sign-out; status and metrics.
            assert (await rig.call("POST", "/api/v1/windows/A01/sign-out"))[0] == 200
            assert (await rig.call("POST", "/api/v1/windows/A01/sign-out"))[0] == 409
            status, st = await rig.call("GET", "/status")
            assert status == 200 and st["hall"] == HALL and st["outbox"]["ratings"] == 2
            assert st["devices"]["total"] == 1 and st["mqtt"]["connected"]
            assert st["mqtt"]["ingest"]["publishes"] == 2 and st["mqtt"]["ingest"]["broken"] == 0
            rig.gw.metrics["uplink_extra"] = lambda: 7
            status, text = await rig.call("GET", "/metrics")
            samples = dict(((s.name, tuple(sorted(s.labels.items()))), s.value)
                           for f in text_string_to_metric_families(text) for s in f.samples)
            assert samples["hall_gateway_outbox_items", (("kind", "rating"),)] == 2
            assert samples["hall_gateway_rejections_total",
                           (("reason", "malformed"), ("where", "http"))] == 2
            assert samples["hall_gateway_uplink_extra", ()] == 7
            assert samples["hall_gateway_mqtt_ingest_events_total", (("event", "publishes"),)] == 2
    try:
        asyncio.run(scenario())
    finally:
        device.close()
    logged = caplog.text
    assert "440301199001011234" not in logged and "李堃" not in logged and "13800138000" not in logged


def test_callbacks_wait_in_the_store_across_a_restart(mosquitto_broker, tmp_path):
    device = FakeDevice(mosquitto_broker, "dev-a")

    async def rate_while_the_queueing_system_fails():
        async with Rig(mosquitto_broker, tmp_path, callback_status=503) as rig:
            rig.gw.callbacks.base_s = 0.05
            await rig.call("POST", "/api/v1/windows/A01/sign-in", {"staff_id": "1001", "staff_name": "王喆"})
            status, case = await rig.call("POST", "/api/v1/cases", case_body())
            device.rate(make_rating("dev-a", 1, case_id=case["case_id"], serials=["SN1", "SN2"]))
            assert (await asyncio.to_thread(device.ack))["result"] == vocab.ACK_STORED
            await rig.until(lambda: len(rig.callbacks) >= 2, "two refused attempts")
            assert rig.gw.status()["callbacks"]["pending"] == 1
            return case

    async def restart_with_it_answering():
        async with Rig(mosquitto_broker, tmp_path) as rig:
            await rig.until(lambda: rig.callbacks, "the callback after the restart")
            await rig.until(lambda: rig.gw.status()["callbacks"]["pending"] == 0, "settled")
            return rig.callbacks

    try:
        case = asyncio.run(rate_while_the_queueing_system_fails())
        delivered = asyncio.run(restart_with_it_answering())
    finally:
        device.close()
    assert [(c["event"], c["case_id"], c["rating_id"]) for c in delivered] == [
        ("rated", case["case_id"], "dev-a:1")]


def test_a_refused_callback_is_given_up_and_the_next_goes_through(mosquitto_broker, tmp_path):
    device = FakeDevice(mosquitto_broker, "dev-a")

    async def scenario():
        async with Rig(mosquitto_broker, tmp_path, callback_status=404) as rig:
            await rig.call("POST", "/api/v1/windows/A01/sign-in", {"staff_id": "1001", "staff_name": "王喆"})
            for n, serial in ((1, "SN1"), (2, "SN2")):
                status, case = await rig.call("POST", "/api/v1/cases", case_body(serials=[serial]))
                device.rate(make_rating("dev-a", n, case_id=case["case_id"], serials=[serial]))
                assert (await asyncio.to_thread(device.ack))["result"] == vocab.ACK_STORED
                await rig.until(lambda: len(rig.callbacks) == n, "callback %d" % n)
                rig.callback_status = 200
            await rig.until(lambda: rig.gw.callbacks.stats["sent"] == 1, "the second one sent")
            stats = rig.gw.status()["callbacks"]
            assert stats["failed"] == 1 and stats["pending"] == 0
    try:
        asyncio.run(scenario())
    finally:
        device.close()


def test_devices_added_and_moved_at_run_time(mosquitto_broker, tmp_path):
    newcomer = FakeDevice(mosquitto_broker, "dev-c")

    async def scenario():
        async with Rig(mosquitto_broker, tmp_path, token=TOKEN) as rig:
            async with aiohttp.ClientSession() as anon:
                async with anon.get(rig.base + "/api/v1/devices") as resp:
                    assert resp.status == 401
            await rig.call("POST", "/api/v1/windows/A02/sign-in", {"staff_id": "2002", "staff_name": "朱镕"})
            status, case = await rig.call("POST", "/api/v1/cases", case_body(window="A02", serials=["Q1"]))
            assert status == 201 and case["devices"] == []
            spec = {"id": "dev-c", "window": "A02", "key": device_key("dev-c").hex(), "name": "二号窗"}
            status, dev = await rig.call("POST", "/api/v1/devices", spec)
            assert status == 201 and dev["name"] == "二号窗" and "key" not in dev
            assert (await rig.call("POST", "/api/v1/devices", spec))[0] == 400   # exists
            # A new device gets its config and the case open at its window.
            cfg = codec.from_json(schema.CONFIG, await asyncio.to_thread(newcomer.wait_for, "config"))
            assert cfg["version"] == rig.gw.live_config.version_for(rig.gw.registry.get("dev-c")) > 0
            ctx = codec.from_json(schema.CONTEXT, await asyncio.to_thread(newcomer.wait_for, "context"))
            assert ctx["case_id"] == case["case_id"]
            # Its ratings are accepted at once (its key is known).
            newcomer.rate(make_rating("dev-c", 1, case_id=case["case_id"]))
            assert (await asyncio.to_thread(newcomer.ack))["result"] == vocab.ACK_STORED
            # Moved to an empty window: its screen is cleared. Renamed: kept.
            status, dev = await rig.call("PATCH", "/api/v1/devices/dev-c", {"window": "A09", "name": "九号窗"})
            assert status == 200 and dev["window"] == "A09"
            await asyncio.to_thread(newcomer.wait_for, "context", lambda p: p == b"")
            assert (await rig.call("PATCH", "/api/v1/devices/dev-c", {"id": "other"}))[0] == 400
            assert (await rig.call("PATCH", "/api/v1/devices/nope", {"window": "A1"}))[0] == 404
            status, listing = await rig.call("GET", "/api/v1/devices")
            assert [d["id"] for d in listing] == ["dev-a", "dev-c"]
            status, dead = await rig.call("GET", "/api/v1/dead-letters")
            assert status == 200 and dead == []
    try:
        asyncio.run(scenario())
    finally:
        newcomer.close()
    # The change survives a restart: the registry file holds it.
    saved = Registry([], str(tmp_path / "gw" / "registry.json"))
    assert saved.get("dev-c").window == "A09" and saved.get("dev-c").name == "九号窗"


def test_panel_shows_the_last_rating_and_commits_run_off_the_loop(mosquitto_broker, tmp_path,
                                                                   monkeypatch, caplog):
    """[display] with a PNG off a Pi and [leds] on the NullGpio: the screen is redrawn on a rating
    (refresh_s is long, so only the rating can explain the new frame), /status names window, level
    and time but nobody's identity; committing HTTP handlers run in the executor."""
    from PIL import Image
    from gateway import status_display
    monkeypatch.setitem(sys.modules, "RPi", None)           # off a Pi, whatever is installed
    png = tmp_path / "gw" / "oled.png"
    extra = {"display": {"png_path": "oled.png", "refresh_s": 3600}, "leds": {"blink_s": 0.05}}
    device = FakeDevice(mosquitto_broker, "dev-a")
    committing_threads = []

    def bottom_line(image):
        return image.crop((0, 48, 128, 64)).convert("1").tobytes()

    async def scenario():
        async with Rig(mosquitto_broker, tmp_path, extra=extra) as rig:
            gw, loop_thread = rig.gw, threading.get_ident()
            for name in ("commit_case", "state_put", "next_case_id"):
                real = getattr(gw.store, name)

                def spy(*args, _real=real, **kwargs):
                    committing_threads.append(threading.get_ident())
                    return _real(*args, **kwargs)
                monkeypatch.setattr(gw.store, name, spy)
            await rig.until(lambda: png.exists(), "the first frame")
            assert gw.panel.leds.gpio.levels == {17: 1, 27: 0, 22: 0}   # run on, uplink idle, no alarm
            assert (await rig.call("POST", "/api/v1/windows/A01/sign-in",
                                   {"staff_id": "1001", "staff_name": "王喆"}))[0] == 200
            status, case = await rig.call("POST", "/api/v1/cases", case_body())
            assert status == 201
            assert committing_threads and loop_thread not in committing_threads
            device.rate(make_rating("dev-a", 1, level=vocab.DISSATISFIED, case_id=case["case_id"],
                                    serials=["SN1", "SN2"], window=None))
            assert (await asyncio.to_thread(device.ack))["result"] == vocab.ACK_STORED
            status, st = await rig.call("GET", "/status")
            last = st["last_rating"]
            assert last["window"] == "A01" and last["level"] == vocab.DISSATISFIED
            assert last["level_name"] == "不满意" and abs(last["time"] - time.time()) < 60
            text = json.dumps(st, ensure_ascii=False)
            assert "李堃" not in text and "440301" not in text and "13800138000" not in text
            expected = bottom_line(status_display.render(gw.display_snapshot()))
            assert expected != bottom_line(status_display.render(
                dict(gw.display_snapshot(), last_rating=None)))
            await rig.until(lambda: bottom_line(Image.open(png).resize((128, 64))) == expected,
                            "the rating on the screen")
            gw.alarm("store_fill", "outbox 80% full")
            await rig.until(lambda: gw.panel.leds.gpio.levels[22] == 1, "the alarm LED")
    try:
        asyncio.run(scenario())
    finally:
        device.close()
    assert "李堃" not in caplog.text


def test_a_full_store_alarm_is_logged_once_a_minute_and_counted_each_time(tmp_path, caplog):
    now = [1718000000.0]
    cfg = config_mod.from_dict({"gateway": {"hall": HALL, "data_dir": str(tmp_path), "capacity": 1}})
    gw = Gateway(cfg, clock=lambda: now[0])
    try:
        caplog.set_level(logging.ERROR)
        assert gw.store.commit_ratings([(make_rating("dev-a", 1), None)])[0][0] == vocab.ACK_STORED
        for n in range(2, 8):
            assert gw.store.commit_ratings([(make_rating("dev-a", n), None)])[0][0] == vocab.ACK_RETRY
        lines = [r.getMessage() for r in caplog.records if "ALARM store_full" in r.getMessage()]
        assert len(lines) == 1 and gw.alarms["store_full"] == 6 and gw.alarms_active()
        now[0] += 61
        gw.store.commit_ratings([(make_rating("dev-a", 9), None)])
        lines = [r.getMessage() for r in caplog.records if "ALARM store_full" in r.getMessage()]
        assert len(lines) == 2 and "(+5 more" in lines[1] and gw.alarms["store_full"] == 7
    finally:
        gw.committer.close()
        gw.store.close()


def test_the_misuse_guard_is_press_guard_ms_and_its_older_name_still_reads():
    base = {"gateway": {"hall": HALL}}
    for key in ("press_guard_ms", "guard_ms"):
        cfg = config_mod.from_dict(dict(base, device_config={key: 1500}))
        assert cfg.device_config == {"press_guard_ms": 1500}
        assert Gateway._device_config(cfg.device_config)["press_guard_ms"] == 1500
    with pytest.raises(config_mod.ConfigError):
        config_mod.from_dict(dict(base, device_config={"guard_ms": 1, "press_guard_ms": 2}))


def test_panel_config_is_checked():
    base = {"gateway": {"hall": HALL}}
    cfg = config_mod.from_dict(base)
    assert not cfg.display.enabled and not cfg.leds.enabled
    cfg = config_mod.from_dict(dict(base, display={"i2c_address": 0x3D}, leds={"pins": {"alarm": 5}}))
    assert cfg.display.enabled and cfg.display.i2c_address == 0x3D
    assert cfg.leds.enabled and cfg.leds.pins == {"run": 17, "uplink": 27, "alarm": 5}
    for bad in ({"display": {"colour": "red"}}, {"display": {"refresh_s": 0}},
                {"leds": {"pins": {"run": 17, "uplink": 17}}}, {"leds": {"pins": {"buzzer": 4}}},
                {"display": {"i2c_address": 300}}):
        with pytest.raises(config_mod.ConfigError):
            config_mod.from_dict(dict(base, **bad))


def test_a_rated_case_closes_in_the_ratings_own_commit(tmp_path):
    """No transaction of its own for closing (one fsync less per rating), and a power cut right
    after the rating's commit finds the case closed, its window free and its callback queued."""
    from gateway.cases import Cases
    from gateway.store import Store
    path = str(tmp_path / "outbox.db")
    registry = Registry([{"id": "dev-a", "window": "A01", "key": device_key("dev-a").hex()}])

    def open_cases(store):
        cases = Cases(HALL, store, registry, lambda device, ctx: None, notify=lambda cb: None,
                      rating_days=7)
        store.case_closer = cases
        return cases
    store = Store(path)
    cases = open_cases(store)
    cases.sign_in("A01", {"staff_id": "1001", "staff_name": "王喆"})
    opening = []
    real_guarded = store._guarded
    store._guarded = lambda work: opening.append(1) or real_guarded(work)
    first = cases.event(case_body(applicant=None))[1]
    assert len(opening) == 1                          # opening a case: one transaction, not four
    second = cases.event(case_body(applicant=None, serials=["SN3"]))[1]     # now current at A01
    del store._guarded
    rating = make_rating("dev-a", 1, case_id=second["case_id"])
    assert store.commit_ratings([(rating, None)]) == [(vocab.ACK_STORED, 0)]
    store.close()                                     # power cut: on_rating never ran
    store = Store(path)
    cases = open_cases(store)
    assert sorted(cases.cases) == [first["case_id"]] and cases.windows["A01"]["case_id"] == 0
    (cb,) = store.callbacks_due()[0:1]
    assert cb[1]["event"] == "rated" and cb[1]["rating_id"] == "dev-a:1" and store.callbacks_pending() == 1
    # In a running gateway: the rating's commit closed it, on_rating only follows in memory.
    rating = make_rating("dev-a", 2, case_id=first["case_id"], source=vocab.SRC_NOT_RATED)
    writes = []
    real = store._guarded
    store._guarded = lambda work: writes.append(1) or real(work)
    result = store.commit_ratings([(rating, None)])
    cases.on_rating(rating, result[0])
    assert len(writes) == 1 and cases.closing == {"in_commit": 1, "alone": 0}
    assert cases.cases[first["case_id"]]["status"] == "not_rated" and store.state_items("case:") == []
    assert [c[1]["event"] for c in store.callbacks_due()] == ["rated", "not_rated"]
    # A closing that fails half done never costs the ratings: they commit, and on_rating closes
    # on its own. (The callback cannot be written: the case's state went first.)
    third = cases.event(case_body(applicant=None, serials=["SN4"]))[1]
    store.case_closer = SimpleNamespace(closings=lambda ratings: [(third["case_id"], {"x": object()})])
    rating = make_rating("dev-a", 3, case_id=third["case_id"])
    result = store.commit_ratings([(rating, None)])
    assert result == [(vocab.ACK_STORED, 0)] and [n for n, _ in store.state_items("case:")] == [
        "case:%d" % third["case_id"]]                  # the hook's work was rolled back
    cases.on_rating(rating, result[0])
    assert cases.closing == {"in_commit": 1, "alone": 1} and store.state_items("case:") == []
    assert store.callbacks_pending() == 3
    store.close()


def test_openapi_document_matches_the_routes():
    import os
    import yaml
    from gateway import alerts_api, config_api, console_api, ota_api, qr_api, ratings_api, session_api
    from gateway.queue_api import make_app

    class Stub:
        cfg = config_mod.from_dict({"gateway": {"hall": HALL}})
        sessions = object()                        # the console's login routes are documented too
        http_routes = [session_api.add_routes, ratings_api.add_routes, qr_api.add_routes,
                       console_api.add_routes, config_api.add_routes, alerts_api.add_routes,
                       ota_api.add_routes]
    doc_path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "queue-api.yaml")
    with open(doc_path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops
                  if m in ("get", "post", "put", "patch", "delete")}
    routed = {(r.method, r.resource.canonical) for r in make_app(Stub()).router.routes() if r.method != "HEAD"}
    assert documented == routed


@pytest.mark.parametrize("name", ["queue-api.yaml", "upstream-api.yaml"])
def test_openapi_documents_are_valid(name):
    """Both OpenAPI documents pass openapi-spec-validator (a comma in an unquoted flow-style
    description silently turned into a key before)."""
    import os
    import yaml
    from openapi_spec_validator import validate
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", name)
    with open(path, encoding="utf-8") as f:
        validate(yaml.safe_load(f))
