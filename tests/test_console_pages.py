"""The hall console in a real headless Chromium against a real gateway (real Mosquitto, ratings
over MQTT through the real intake): log in through the form; a rating appears live in the hall
view within 2 s without a reload; viewers and technicians see no level anywhere, neither on the
page nor in their API answers (rules Art. 4); the phone layout has no horizontal scroll.
With HALL_CONSOLE_SHOTS=docs/console the pages are saved as PNG at laptop and phone sizes."""

import json
import os
import re
import time

import pytest

from alert_receivers import Receivers
from console_browser import (LAPTOP, PHONE, browser, click, css, login, no_horizontal_scroll, shot, text,  # noqa: F401
                             viewport, wait_for)
from gateway import config as config_mod
from gw_live import LiveGateway
from gw_support import HALL, FakeDevice, device_key, make_rating
from hall_simulator.broker import Broker
from protocol import codec, schema, vocab

LEVEL_NAMES = ("非常满意", "满意", "基本满意", "不满意", "非常不满意")
LIVE_S = 2.0
USERS = {"operator": ("张䶮主任", "operator-pass-1"), "technician": ("李工", "technician-pass-1"),
         "viewer": ("大厅屏", "viewer-pass-1")}
STAFF = {"A01": ("1001", "王䶮明"), "A02": ("1002", "𠈌丽"), "A03": ("1003", "李娜"),
         "A04": ("1004", "赵磊")}
MQTT_DEVICES = {"ev-a01": "A01", "ev-a02": "A02", "ev-a03": "A03", "ev-a04": "A04"}
RS485_DEVICES = {"ev-a05": ("A05", 5), "ev-a06": ("A06", 6)}


def hall_config(broker, data_dir, channels=()):
    devices = [{"id": d, "window": w, "name": "%s 号窗评价器" % w[1:], "key": device_key(d).hex(),
                "board": "touch" if i % 2 else "five_button"}
               for i, (d, w) in enumerate(MQTT_DEVICES.items())]
    devices += [{"id": d, "window": w, "name": "%s 号窗评价器" % w[1:], "key": device_key(d).hex(),
                 "transport": "rs485", "bus": 0, "address": a, "board": "five_button"}
                for d, (w, a) in RS485_DEVICES.items()]
    return config_mod.from_dict({
        "gateway": {"hall": HALL, "data_dir": str(data_dir), "privacy_key": "11" * 32},
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "gw-console-" + os.urandom(3).hex()},
        "http": {"host": "127.0.0.1", "port": 0},
        "device_config": {"version": 2, "rating_timeout_s": 30, "tags": [
            {"code": 501, "label": "等待时间长", "indicator": 4},
            {"code": 502, "label": "服务态度差", "indicator": 4}]},
        "alerts": {"channels": list(channels)},
        "devices": devices})


class Hall:
    """The gateway, its evaluators (paho clients posting as the devices) and a counter per device."""

    def __init__(self, live, broker):
        self.live = live
        self.base = "http://127.0.0.1:%d" % live.port
        self.devices = dict((d, FakeDevice(broker, d)) for d in MQTT_DEVICES)
        self.counters = dict((d, 0) for d in MQTT_DEVICES)

    def rate(self, device, level, text=""):
        """A case at the device's window, rated `level` by the device over MQTT; returns when the
        gateway has acknowledged it (stored)."""
        window = MQTT_DEVICES[device]
        staff_id, staff_name = STAFF[window]
        self.counters[device] += 1
        n = self.counters[device]
        status, case = self.live.request("POST", "/api/v1/cases", {
            "window": window, "node": "completion", "serials": ["SN-%s-%d" % (device, n)],
            "matter_code": "11440300MB2C3" + window, "matter_name": "企业开办登记",
            "staff_id": staff_id, "staff_name": staff_name}, role="queue")
        assert status == 201, case
        extra = {"text": text} if text else {}
        self.devices[device].rate(make_rating(device, n, level=level, case_id=case["case_id"],
                                              serials=["SN-%s-%d" % (device, n)], window=window,
                                              staff_id=staff_id, **extra))
        ack = self.devices[device].ack()
        assert ack["counter"] == n and ack.get("result", 0) == vocab.ACK_STORED
        return time.monotonic()

    def close(self):
        for d in self.devices.values():
            d.close()


@pytest.fixture(scope="module")
def hall(tmp_path_factory):
    folder = tmp_path_factory.mktemp("console")
    broker = Broker(folder / "mosquitto").start()
    try:
        with Receivers() as receivers, \
                LiveGateway(hall_config(broker, folder / "gw", receivers.channels(email=False))) as live:
            for role, (name, password) in USERS.items():
                live.gw.users.add(name, role, password)
            for window, (staff_id, name) in STAFF.items():
                assert live.request("POST", "/api/v1/windows/%s/sign-in" % window,
                                    {"staff_id": staff_id, "staff_name": name}, role="queue")[0] == 200
            h = Hall(live, broker)
            h.receivers = receivers
            try:
                for i, d in enumerate(MQTT_DEVICES):
                    h.devices[d].publish("status", codec.to_json(schema.STATUS, {
                        "device": d, "firmware": "1.3.%d" % i, "board": "five_button", "uptime_s": 3600,
                        "outbox": i % 2, "outbox_capacity": 512, "counter": 0, "rssi_neg": 52 + 7 * i}))
                for d, levels in (("ev-a01", (1, 1, 2, 1)), ("ev-a02", (2, 3, 1)),
                                  ("ev-a03", (1, 2, 2)), ("ev-a04", (3, 1))):
                    for level in levels:
                        h.rate(d, level)
                h.rate("ev-a02", vocab.DISSATISFIED, text="等候时间太长，窗口无人")
                live.gw.alarm("bus_unavailable", "RS-485 bus socket://127.0.0.1:9: connection refused")
                yield h
            finally:
                h.close()
    finally:
        broker.stop()


def page(driver, name):
    driver.execute_script("location.hash = arguments[0]", "#/" + name)
    wait_for(lambda: driver.execute_script("return document.getElementById('view').dataset.page") == name,
             what="the %s page" % name)


def settled(driver, selector):
    """Wait until the page's data has arrived (its `selector` is there and nothing says 读取中)."""
    return wait_for(lambda: css(driver, selector), what=selector)


def fetch(driver, method, path, headers=None):
    """(status, body text) of a request made by the page itself (its cookie, no CSRF unless given)."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(arguments[0], {method: arguments[1], headers: arguments[2] || {}, credentials: 'same-origin'})
          .then(async (r) => done([r.status, await r.text()])).catch((e) => done([0, String(e)]));
    """, path, method, headers)


def test_operator_logs_in_and_a_rating_appears_live(hall, browser):
    browser.get(hall.base + "/")
    wait_for(lambda: css(browser, "#login-form")[0].is_displayed(), what="the login form")
    for name, size in (("login-phone", PHONE), ("login-laptop", LAPTOP)):
        viewport(browser, size)
        assert no_horizontal_scroll(browser)
        shot(browser, name, size)
    login(browser, hall.base, *USERS["operator"])
    wait_for(lambda: "on" in css(browser, "#live")[0].get_attribute("class"), what="the live stream")
    card = '.win-card[data-window="A03"]'
    assert "王䶮明" in text(browser) and "𠈌丽" in text(browser)       # staff names: operator only
    browser.execute_script("window.notReloaded = true")
    committed = hall.rate("ev-a03", vocab.VERY_DISSATISFIED)
    wait_for(lambda: "flash" in css(browser, card)[0].get_attribute("class")
             and "非常不满意" in css(browser, card + " .last-rating")[0].text,
             timeout=LIVE_S, what="the rating in the live hall view")
    assert time.monotonic() - committed < LIVE_S
    assert browser.execute_script("return window.notReloaded") is True
    settled(browser, '#alarms .alarm[data-alarm="bus_unavailable"] button.ack')
    shot(browser, "operator-hall-laptop", LAPTOP)
    click(browser, '#alarms .alarm[data-alarm="bus_unavailable"] button.ack')
    wait_for(lambda: "已由" in css(browser, '#alarms .alarm[data-alarm="bus_unavailable"]')[0].text,
             what="the alarm acknowledged")
    assert hall.live.gw.console.acks.get("bus_unavailable")["by"] == USERS["operator"][0]

    page(browser, "ratings")
    settled(browser, "#rating-totals")
    settled(browser, "#chart-hours svg.chart rect")
    assert "满意率" in text(browser) and css(browser, "#by-window tbody tr")
    shot(browser, "operator-ratings-laptop", LAPTOP)
    click(browser, "#period-week")
    click(browser, "#by-tab-staff")
    wait_for(lambda: css(browser, "#by-staff") and "王䶮明" in css(browser, "#by-staff")[0].text
             and "𠈌丽" in css(browser, "#by-staff")[0].text, what="the week by staff")
    click(browser, "#period-custom")
    browser.execute_script("document.getElementById('period-from').value = '2020-01-01';"
                           "document.getElementById('period-to').value = '2020-01-02';")
    click(browser, "#period-apply")                          # a period without ratings
    wait_for(lambda: css(browser, "#rating-totals .tile-value")[0].text == "0", what="an empty period")
    page(browser, "bad")
    settled(browser, ".bad-item")
    (item,) = [i for i in css(browser, ".bad-item") if "等候时间太长" in i.text]
    assert "不满意" in item.text and "𠈌丽" in item.text and "等待时间长" in item.text
    shot(browser, "operator-bad-laptop", LAPTOP)
    rating_id = item.get_attribute("data-rating")
    card = '.bad-item[data-rating="%s"]' % rating_id
    css(browser, card + " textarea.note")[0].send_keys("已与窗口核实，增开窗口")
    click(browser, card + " button.verify")               # 核实: it leaves the pending list
    wait_for(lambda: not css(browser, card), what="the verified rating off the pending list")
    click(browser, "#bad-state-verified")
    wait_for(lambda: css(browser, card) and "已核实" in css(browser, card)[0].text
             and USERS["operator"][0] in css(browser, card)[0].text, what="the verified rating")
    page(browser, "devices")
    settled(browser, 'tr[data-device="ev-a05"]')
    shot(browser, "operator-devices-laptop", LAPTOP)
    # the bad ratings' alerts reached the hall's WeCom and DingTalk robots (the receivers check
    # the documented JSON and DingTalk's signature), and the alerts page lists them as sent
    hall.receivers.wait("wecom", 2)
    hall.receivers.wait("dingtalk", 2)
    page(browser, "alerts")
    settled(browser, '#alert-channels li[data-channel="企业微信值班群"]')
    wait_for(lambda: int(css(browser, "#alert-counts .tile-value")[1].text) >= 4
             and "差评提醒" in css(browser, "#alert-recent")[0].text, what="the sent alerts listed")
    shot(browser, "operator-alerts-laptop", LAPTOP)

    viewport(browser, PHONE)
    for name in ("hall", "ratings", "bad", "devices", "alerts"):
        page(browser, name)
        time.sleep(0.2)
        wait_for(lambda: no_horizontal_scroll(browser), timeout=3, what="no horizontal scroll on %s" % name)
        shot(browser, "operator-%s-phone" % name, PHONE)
    viewport(browser, LAPTOP)
    # every page ran under the gateway's CSP (no inline script or style) without a violation
    problems = [e["message"] for e in browser.get_log("browser")
                if "Content Security Policy" in e["message"] or "Uncaught" in e["message"]]
    assert problems == []


def assert_no_level(browser, role):
    body = text(browser)
    source = browser.execute_script("return document.documentElement.outerHTML")
    for name in LEVEL_NAMES:
        assert name not in body and name not in source, (role, name)
    for staff_id, name in STAFF.values():
        assert name not in body, (role, name)
    for path in ("/api/v1/hall", "/api/v1/devices", "/api/v1/alerts", "/status"):
        status, answer = fetch(browser, "GET", path)
        assert status in (200, 403, 404), (role, path, status)
        assert '"level' not in answer and not any(n in answer for n in LEVEL_NAMES), (role, path)
    assert fetch(browser, "GET", "/api/v1/ratings/summary?from=2026-01-01&to=2026-01-02&by=window")[0] == 403
    assert fetch(browser, "GET", "/api/v1/ratings/bad?from=2026-01-01&to=2026-01-02")[0] == 403


@pytest.mark.parametrize("role", ["viewer", "technician"])
def test_viewers_and_technicians_see_no_level_anywhere(hall, browser, role):
    viewport(browser, LAPTOP)
    login(browser, hall.base, *USERS[role])
    wait_for(lambda: "on" in css(browser, "#live")[0].get_attribute("class"), what="the live stream")
    nav = [a.text for a in css(browser, "#nav a") if a.is_displayed()]
    assert nav == ([] if role == "viewer" else ["大厅", "设备", "告警"])
    card = '.win-card[data-window="A04"]'
    hall.rate("ev-a04", vocab.VERY_DISSATISFIED)            # arrives live, without its level
    wait_for(lambda: "flash" in css(browser, card)[0].get_attribute("class"), timeout=LIVE_S,
             what="the rating flash")
    assert_no_level(browser, role)
    browser.execute_script("location.hash = '#/ratings'")   # not theirs: back to the hall
    wait_for(lambda: browser.execute_script("return location.hash") == "#/hall", what="the hall")
    if role == "viewer":
        assert "lobby" in browser.find_element("tag name", "body").get_attribute("class")
        assert not css(browser, "#alarms button.ack")
        shot(browser, "viewer-lobby-laptop", LAPTOP)
        viewport(browser, PHONE)
        time.sleep(0.2)
        assert no_horizontal_scroll(browser)
        shot(browser, "viewer-lobby-phone", PHONE)
        viewport(browser, LAPTOP)
    else:
        for name in ("devices", "alerts"):
            page(browser, name)
            settled(browser, 'tr[data-device="ev-a01"]' if name == "devices" else "#alerts-body > *")
            assert_no_level(browser, role)
        add_and_rekey(browser, hall.live.gw)
        # a write without the session's CSRF token is refused, with it accepted
        hall.live.gw.alarm("store_fill", "outbox 81% full")
        assert json.loads(fetch(browser, "POST", "/api/v1/alarms/store_fill/ack")[1])["error"] == "csrf"
        csrf = json.loads(fetch(browser, "GET", "/api/v1/session")[1])["csrf"]
        assert fetch(browser, "POST", "/api/v1/alarms/store_fill/ack", {"X-CSRF-Token": csrf})[0] == 200


def add_and_rekey(browser, gw):
    """A technician adds an evaluator and re-keys it: each time the key is shown once, is the
    registry's, and is never served back."""
    page(browser, "devices")
    settled(browser, 'tr[data-device="ev-a01"]')
    for field, value in (("dev-id", "ev-a07"), ("dev-name", "七号窗评价器"), ("dev-window", "A07"),
                         ("dev-address", "7")):
        box = browser.find_element("id", field)
        box.clear()
        box.send_keys(value)
    click(browser, "#dev-add")
    keys = []
    for rekey in (False, True):
        if rekey:
            click(browser, 'tr[data-device="ev-a07"] button.rekey')
            wait_for(lambda: browser.switch_to.alert, what="the re-key confirmation").accept()
        key = wait_for(lambda: css(browser, "#key-once .key") and css(browser, "#key-once .key")[0].text
                       not in keys and css(browser, "#key-once .key")[0].text, what="the key, once")
        assert re.fullmatch("[0-9a-f]{64}", key) and gw.registry.get("ev-a07").key.hex() == key
        assert "A07" in css(browser, "#key-once")[0].text
        if not rekey:
            shot(browser, "technician-devices-key-laptop", LAPTOP)
        assert key not in fetch(browser, "GET", "/api/v1/devices")[1]
        click(browser, "#key-done")
        wait_for(lambda: key not in browser.execute_script("return document.documentElement.outerHTML"),
                 what="the key gone from the page")
        keys.append(key)
    assert gw.registry.get("ev-a07").address == 7 and gw.registry.get("ev-a07").transport == "rs485"
