"""Live configuration: per-hall, per-window and per-device levels (gateway.window_words), changed
through the operator API without a restart (gateway.config_api, gateway.live_config), and
tags_version end to end: the real gateway, the real firmware (CPython, MQTT over a real Mosquitto)."""

import asyncio
import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from fw_polling import now_ms, run_until  # noqa: E402
from fw_support import KEY_HEX, Rig as DeviceRig  # noqa: E402
from gw_support import HALL, device_key  # noqa: E402
from test_gw_api import Rig, case_body  # noqa: E402

from gateway import config as config_mod  # noqa: E402
from gateway.live_config import FILE_NAME, LiveConfig  # noqa: E402
from gateway.registry import Registry  # noqa: E402
from gateway.window_words import WindowWords  # noqa: E402
from protocol import schema, vocab  # noqa: E402

FONT = str(Path(__file__).resolve().parent.parent / "firmware" / "fonts" / "unifont16.bin")
TAGS = [{"code": 701, "label": "等待时间长", "indicator": vocab.IND_OVERALL},
        {"code": 702, "label": "其他原因", "indicator": 7}]
HALL_CONFIG = {"tags": TAGS, "rating_timeout_s": 60, "press_guard_ms": 1, "thanks_s": 1,
               "texts": {"prompt": "请评价"}}
NEW_OVERALL = {"overall": [{"code": 801, "label": "窗口排队久"}]}


def test_levels_override_tags_per_indicator_words_and_timings_and_versions_follow():
    w = WindowWords(HALL_CONFIG, {"A05": {"tags": NEW_OVERALL, "rating_timeout_s": 90,
                                          "texts": {"prompt": "Please rate"}}},
                    {"ev-1": {"volume": 0, "large_text": True, "tag_labels": {"801": "排队久"},
                              "texts": {"thanks": "谢谢 王䶮明"}}}, {"ev-1": "A05"})
    hall, window, dev = w.config_for(None), w.config_for("A05"), w.config_for("A05", "ev-1")
    with pytest.raises(config_mod.ConfigError):      # 801 is offered at A05 only: checked per window
        w.config_for("B01", "ev-1")
    assert [(t["code"], t["indicator"]) for t in window["tags"]] == [(702, 6), (801, 1)]
    assert window["rating_timeout_s"] == 90 and hall["rating_timeout_s"] == 60
    assert [t["label"] for t in dev["tags"]] == ["其他原因", "排队久"]
    texts = dict((t["key"], t.get("text")) for t in dev["texts"])
    assert texts == {"prompt": "Please rate", "thanks": "谢谢 王䶮明"}
    assert dict((t["key"], t.get("text")) for t in hall["texts"]) == {"prompt": "请评价", "thanks": None}
    assert len({hall["version"], window["version"], dev["version"]}) == 3
    # the same content gives the same version (a restart does not make devices look changed)
    again = WindowWords(HALL_CONFIG, {"A05": {"tags": NEW_OVERALL, "rating_timeout_s": 90,
                                              "texts": {"prompt": "Please rate"}}})
    assert again.config_for("A05")["version"] != window["version"]   # ev-1's thanks key is gone
    assert WindowWords(HALL_CONFIG).config_for(None) == WindowWords(HALL_CONFIG).config_for(None)
    src = w.sources("A05", "ev-1")
    assert src["volume"] == "device" and src["rating_timeout_s"] == "window"
    assert src["texts.prompt"] == "window" and src["press_guard_ms"] == "hall"


@pytest.mark.parametrize("bad, named", [
    ({"windows": {"A05": {"tags": {"everything": []}}}}, "A05"),
    ({"windows": {"A05": {"tag_labels": {"999": "x"}}}}, "999"),
    ({"devices_config": {"ev-1": {"colour": "red"}}}, "ev-1"),
    ({"devices_config": {"ev 1": {}}}, "ev 1"),
    ({"devices_config": {"ev-1": {"rating_timeout_s": 99999}}}, "ev-1"),
    ({"device_config": dict(HALL_CONFIG, tags=[{"code": 1, "label": "x" * 13, "indicator": 1}])},
     "device_config"),
])
def test_a_bad_level_is_refused_at_start_naming_it(bad, named):
    with pytest.raises(config_mod.ConfigError) as info:
        config_mod.from_dict(dict({"gateway": {"hall": HALL}, "device_config": HALL_CONFIG}, **bad))
    assert named in str(info.value)


def _live(tmp_path, devices=()):
    cfg = config_mod.from_dict({"gateway": {"hall": HALL, "data_dir": str(tmp_path)},
                                "device_config": HALL_CONFIG})
    registry = Registry(devices)
    sent = []
    return LiveConfig(cfg, registry.all, lambda d, r: sent.append((d.id, r["version"]))), sent


def test_a_bad_change_changes_nothing_and_a_good_one_is_kept_over_a_restart(tmp_path):
    devices = [{"id": "ev-a", "window": "A05", "key": device_key("ev-a").hex()},
               {"id": "ev-b", "window": "B01", "key": device_key("ev-b").hex()}]
    live, sent = _live(tmp_path, devices)
    for dev in live.devices():
        live.provision(dev)
    before = dict(sent)
    path = tmp_path / FILE_NAME
    for scope, name, table in (("windows", "A05", {"tags": {"overall": [{"code": 99999, "label": "x"}]}}),
                               ("hall", None, {"volume": 11}), ("devices", "ev-a", {"bogus": 1}),
                               ("windows", "A05", [1, 2]),
                               ("hall", None, {"texts": {"prompt": "长" * 41}})):
        with pytest.raises(config_mod.ConfigError):
            live.put(scope, name, table)
        assert not path.exists() and len(sent) == 2
    # a device-level table that breaks only at the device's window is refused too
    with pytest.raises(config_mod.ConfigError):
        live.put("devices", "ev-a", {"tag_labels": {"801": "x"}})
    assert live.put("windows", "A05", {"tags": NEW_OVERALL}) == ["ev-a"]     # only the device there
    assert sent[-1][0] == "ev-a" and sent[-1][1] != before["ev-a"]
    assert json.loads(path.read_text("utf-8"))["windows"]["A05"] == {"tags": NEW_OVERALL}
    view = live.view()
    (a,) = [d for d in view["devices"] if d["device"] == "ev-a"]
    assert a["source"]["tags"] == "window:live" and a["source"]["rating_timeout_s"] == "hall:file"
    assert a["version"] == sent[-1][1] == a["sent"]
    # a restart reads the file: the same version, nothing to resend
    again, sent2 = _live(tmp_path, devices)
    for dev in again.devices():                        # as Gateway.start does
        again.provision(dev)
    assert again.version_for(again.devices()[0]) == sent[-1][1]
    assert again.put("windows", "A05", {"tags": NEW_OVERALL}) == []
    # {} gives the window back to gateway.toml
    assert again.put("windows", "A05", {}) == ["ev-a"] and sent2[-1][1] == before["ev-a"]


def test_the_api_is_operator_only_for_changes_and_validates(mosquitto_broker, tmp_path):
    async def scenario():
        async with Rig(mosquitto_broker, tmp_path, extra={"device_config": HALL_CONFIG}) as rig:
            status, view = await rig.call("GET", "/api/v1/config")
            assert status == 200 and view["devices"][0]["device"] == "dev-a"
            for body, raw in (({"volume": "loud"}, None), ({"tags": 5}, None), (None, b"{"),
                              (None, b"[1]"), (None, "\ud800".encode("utf-8", "surrogatepass"))):
                status, err = await rig.call("PUT", "/api/v1/config/hall", body, raw=raw)
                assert status == 400 and err["error"] and err["detail"], (body, raw, err)
            assert (await rig.call("PUT", "/api/v1/config/windows/a%20b", {}))[0] == 400
            assert (await rig.call("GET", "/api/v1/config"))[1] == view      # nothing changed
            status, out = await rig.call("PUT", "/api/v1/config/devices/dev-a", {"volume": 2})
            assert status == 200 and out["sent"] == ["dev-a"]
            assert out["config"]["devices"][0]["source"]["volume"] == "device:live"
        async with Rig(mosquitto_broker, tmp_path, extra={"device_config": HALL_CONFIG},
                       role="technician") as rig:
            status, view = await rig.call("GET", "/api/v1/config")      # read only, and the
            assert status == 200 and view["live"]["devices"] == {"dev-a": {"volume": 2}}   # restart kept it
            assert (await rig.call("PUT", "/api/v1/config/hall", {"volume": 1}))[0] == 403
    asyncio.run(scenario())


def _stored_ratings(gw):
    return [i["record"] for i in gw.store.upload_batch(100) if i["kind"] == "rating"]


def test_a_tag_list_changed_through_the_api_reaches_the_device_and_its_ratings_carry_the_version(
        mosquitto_broker, tmp_path):
    """The real firmware over MQTT: rated under the old tag list, the rating keeps the old
    tags_version even when it arrives after the change; the next case offers the new list and its
    rating carries the new version."""
    extra = {"device_config": HALL_CONFIG,
             "devices": [{"id": "win07", "window": "07", "key": KEY_HEX, "transport": "mqtt"}]}
    mqtt = {"transport": "mqtt", "hall": HALL,
            "mqtt": {"host": mosquitto_broker.host, "port": mosquitto_broker.port, "keepalive": 5}}

    async def scenario():
        from firmware.main import attach_transport
        async with Rig(mosquitto_broker, tmp_path, extra=extra) as rig:
            device = rig.gw.registry.get("win07")
            old = rig.gw.live_config.version_for(device)
            dev = DeviceRig("five_button", base=str(tmp_path), clock=now_ms, net="tcp", font=FONT,
                            extra=mqtt)
            attach_transport(dev.dev, dev.board, dev.cfg)
            step = dev.dev.step

            def until(cond, timeout=10.0):
                return asyncio.to_thread(run_until, cond, [step], timeout)

            assert await until(lambda: dev.dev.app.cfg["version"] == old)
            await rig.call("POST", "/api/v1/windows/07/sign-in", {"staff_id": "S07", "staff_name": "朱镕"})

            async def rate_bad(serial):
                status, case = await rig.call("POST", "/api/v1/cases", case_body(window="07", serials=[serial]))
                assert status == 201
                assert await until(lambda: dev.state == "case" and
                                   dev.dev.app.ctx["case_id"] == case["case_id"])
                assert await until(lambda: now_ms() - dev.dev.app.case_since > 2)   # past the guard
                named = dev.dev.app.ctx.get("tags_version")  # the CONTEXT names the device's list
                dev.key(4)                                   # K5: 非常不满意 -> the tag choice
                assert dev.state == "tags"
                offered = [t["code"] for t in dev.dev.app.tags]
                dev.key(2)                                   # K3 chooses the first tag
                dev.key(4)                                   # K5 confirms
                assert dev.state == "thanks"
                return case, offered, named

            case1, offered1, named1 = await rate_bad("SN-OLD")
            assert offered1 == [701, 702] and named1 == old
            # the list changes before this rating reaches the gateway (the device is not stepped)
            status, out = await rig.call("PUT", "/api/v1/config/windows/07", {"tags": NEW_OVERALL})
            assert status == 200 and out["sent"] == ["win07"]
            new = rig.gw.live_config.version_for(device)
            assert new != old and rig.gw.alerts.tags[801] == "窗口排队久"    # a bad-rating alert names it
            assert await until(lambda: dev.dev.app.cfg["version"] == new)    # one publish cycle
            assert await until(lambda: dev.dev.outbox.depth == 0)
            await until(lambda: dev.state == "idle", timeout=8)
            case2, offered2, named2 = await rate_bad("SN-NEW")
            assert named2 == new
            assert offered2 == [801]              # the new overall list (702 keeps business, service)
            assert await until(lambda: dev.dev.outbox.depth == 0)
            stored = dict((r["case_id"], r) for r in _stored_ratings(rig.gw))
            assert stored[case1["case_id"]]["tags_version"] == old
            assert stored[case1["case_id"]]["tags"] == [701]
            assert stored[case2["case_id"]]["tags_version"] == new
            assert stored[case2["case_id"]]["tags"] == [801]
            # and the central platform is told (GB/T 39046 profile: tagsVersion)
            from gateway import profiles
            sent = profiles.get("gbt39046").map_record("rating", stored[case1["case_id"]])
            assert sent["tagsVersion"] == old and sent["tagCodes"] == "701"
    asyncio.run(scenario())


def test_over_rs485_the_new_config_is_the_devices_next_request(mosquitto_broker, tmp_path):
    """The master gives a changed CONFIG in the device's next poll slot (gateway.rs485_master)."""
    from test_gw_rs485 import FakeDevices

    class Recording(FakeDevices):
        def __init__(self, *a, **kw):
            self.configs = []
            super().__init__(*a, **kw)

        def _answer(self, address, link, req):
            if req.type == schema.CONFIG and req.record is not None:
                self.configs.append((len(self.heard[address]), req.record["version"]))
            return super()._answer(address, link, req)

    fake = Recording([5])
    extra = {"device_config": HALL_CONFIG, "rs485": [{"url": fake.url, "baud": 115200}],
             "devices": [{"id": "dev-5", "window": "W5", "transport": "rs485", "address": 5,
                          "key": device_key("dev-5").hex()}]}

    async def scenario():
        async with Rig(mosquitto_broker, tmp_path, extra=extra) as rig:
            device = rig.gw.registry.get("dev-5")
            old = rig.gw.live_config.version_for(device)
            assert await asyncio.to_thread(run_until, lambda: fake.configs[-1:] == [(0, old)], [])
            status, out = await rig.call("PUT", "/api/v1/config/windows/W5", {"tags": NEW_OVERALL})
            at = len(fake.heard[5])
            assert status == 200 and out["sent"] == ["dev-5"]
            new = rig.gw.live_config.version_for(device)
            assert await asyncio.to_thread(run_until, lambda: fake.configs[-1][1] == new, [])
            assert fake.configs[-1][0] <= at + 1       # the next request (one may have been on the wire)
    try:
        asyncio.run(scenario())
    finally:
        fake.close()


VALUES = {"volume": st.one_of(st.integers(-2, 12), st.booleans(), st.text(max_size=3)),
          "large_text": st.one_of(st.booleans(), st.integers(0, 2)),
          "rating_timeout_s": st.integers(-1, 4000), "thanks_s": st.integers(0, 70),
          "idle_text": st.one_of(st.text(max_size=45), st.integers()),
          "texts": st.dictionaries(st.sampled_from(["prompt", "thanks", "bad key", ""]),
                                   st.text(alphabet="谢王䶮𠈌ab\x00", max_size=42), max_size=3),
          "tags": st.one_of(st.dictionaries(st.sampled_from(["overall", "service", "nope"]),
                                            st.lists(st.fixed_dictionaries(
                                                {"code": st.integers(0, 10001),
                                                 "label": st.text(alphabet="排队久x", max_size=13)}),
                                                max_size=3), max_size=2),
                            st.integers()),
          "tag_labels": st.dictionaries(st.sampled_from(["701", "702", "801", "x"]),
                                        st.text(alphabet="长y", max_size=13), max_size=2),
          "colour": st.just("red")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.sampled_from([("hall", None), ("windows", "A05"), ("devices", "ev-a")]),
                                  st.dictionaries(st.sampled_from(sorted(VALUES)), st.none(), max_size=4)
                                  .flatmap(lambda keys: st.fixed_dictionaries(
                                      dict((k, VALUES[k]) for k in keys)))),
                        min_size=1, max_size=5))
def test_every_change_is_applied_whole_or_not_at_all_and_survives_a_restart(tmp_path_factory, changes):
    tmp_path = tmp_path_factory.mktemp("live")
    devices = [{"id": "ev-a", "window": "A05", "key": device_key("ev-a").hex()}]
    live, sent = _live(tmp_path, devices)
    live.provision(live.devices()[0])                  # as Gateway.start does
    path = tmp_path / FILE_NAME
    for (scope, name), table in changes:
        before = (json.dumps(live.live, sort_keys=True), live.version_for(live.devices()[0]),
                  path.read_bytes() if path.exists() else None, len(sent))
        try:
            live.put(scope, name, table)
        except config_mod.ConfigError:
            after = (json.dumps(live.live, sort_keys=True), live.version_for(live.devices()[0]),
                     path.read_bytes() if path.exists() else None, len(sent))
            assert after == before
            continue
        assert json.loads(path.read_text("utf-8")) == live.live
        version = live.version_for(live.devices()[0])
        assert (version != before[1]) == (len(sent) > before[3])   # sent exactly when it changed
        again, _ = _live(tmp_path, devices)
        assert again.version_for(again.devices()[0]) == version
