"""Screen words per window (gateway.window_words): an English window for foreigners and a Chinese
one get different CONFIGs; the evaluator at the English window shows English words, and shows the
built-in Chinese again once moved to the other window (under CPython and real MicroPython); the
gateway sends each device its window's CONFIG, and the new one when it moves."""

import asyncio
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fw_words_support  # noqa: E402

from gateway import config as config_mod  # noqa: E402
from gateway.window_words import WindowWords  # noqa: E402
from protocol import codec, schema, supplement  # noqa: E402

TAGS = [{"code": 701, "label": "等待时间长", "indicator": 1},
        {"code": 702, "label": "其他原因", "indicator": 7}]
ENGLISH = {   # every word of the evaluator's screens (firmware/ui/ui.py keys), for foreigners
    "prompt": "Please rate our service", "prompt_receipt": "Please rate the staff",
    "idle": "Welcome", "window": "Window %s", "thanks": "Thank you", "not_rated": "Not rated",
    "no_case": "Nothing to rate now", "storage_full": "Storage full, please wait",
    "busy": "Too fast, please wait", "provisioning": "Setting up", "error": "Out of service",
    "tags_title": "Choose a reason", "serial": "No.", "batch": "%d items", "staff": "Staff",
    "ind_overall": "Overall", "ind_business": "Process", "ind_service": "Service",
    "submit": "Submit", "back": "Back", "confirm": "OK", "prev": "Prev", "next": "Next",
    "qr": "Scan to rate", "level1": "Very satisfied", "level2": "Satisfied", "level3": "Fair",
    "level4": "Dissatisfied", "level5": "Very dissatisfied", "maint_hint": "Please ask the staff",
    "code": "Code %s", "left": "%d s left", "scan": "Scan to rate later", "on_duty": "On duty"}
HALL_CONFIG = {"version": 4, "rating_timeout_s": 30, "tags": TAGS, "volume": 4,
               "idle_text": "欢迎光临福田", "texts": {"thanks": "谢谢您的评价！"}}
WINDOWS = {"E01": {"texts": ENGLISH, "tag_labels": {"701": "Long wait", "702": "Other"},
                   "volume": 8, "large_text": True},
           "A01": {"volume": 2}}


def words():
    return WindowWords(HALL_CONFIG, WINDOWS)


def test_two_windows_get_different_configs():
    w = words()
    en, zh, hall = w.config_for("E01"), w.config_for("A01"), w.config_for("Z99")
    assert hall == w.config_for(None) and hall is not en and en != zh
    for record in (en, zh, hall):                       # each fits one record, both transports
        assert len(codec.encode(schema.CONFIG, record)) <= schema.MAX_RECORD_BYTES
        assert codec.from_json(schema.CONFIG, codec.to_json(schema.CONFIG, record)) == \
            codec.decode(schema.CONFIG, codec.encode(schema.CONFIG, record))
        assert 0 < record["version"] < 2 ** 32 and record["rating_timeout_s"] == 30
    assert len({en["version"], zh["version"], hall["version"]}) == 3    # each its own tag list/words
    en_texts = dict((t["key"], t.get("text", "")) for t in en["texts"])
    assert en_texts == dict(ENGLISH, thanks="Thank you")   # the window's word over the hall's
    assert "idle_text" not in en and "idle_text" not in zh   # sent as the text "idle"
    assert [t["label"] for t in en["tags"]] == ["Long wait", "Other"]
    assert [t["code"] for t in en["tags"]] == [701, 702] and [t["indicator"] for t in en["tags"]] == [1, 7]
    assert supplement.volume_level(en["volume"], None) == 8 and en["large_text"] == schema.LARGE_TEXT_ON
    # the Chinese window names every English key without a text (back to the built-in word),
    # keeps the hall's own words, its labels, its own volume, and large text off
    zh_texts = dict((t["key"], t.get("text")) for t in zh["texts"])
    assert set(zh_texts) == set(ENGLISH) and zh_texts.pop("thanks") == "谢谢您的评价！"
    assert zh_texts.pop("idle") == "欢迎光临福田"
    assert set(zh_texts.values()) == {None}
    assert [t["label"] for t in zh["tags"]] == ["等待时间长", "其他原因"]
    assert supplement.volume_level(zh["volume"], None) == 2
    assert supplement.large_text_on(zh["large_text"], True) is False
    assert supplement.volume_level(hall["volume"], None) == 4


def test_bad_window_tables_are_refused_at_start_naming_the_window():
    hall = {"gateway": {"hall": "h1"}, "device_config": HALL_CONFIG}
    bad = [({"E01": {"colour": "red"}}, "colour"),
           ({"E01": {"tag_labels": {"999": "x"}}}, "999"),
           ({"E01": {"volume": 11}}, "volume"),
           ({"E01": {"volume": True}}, "volume"),
           ({"E01": {"large_text": 1}}, "large_text"),
           ({"E01": {"texts": {"bad key": "x"}}}, "bad key"),
           ({"E01": {"texts": {"prompt": ""}}}, "prompt"),
           ({"E01": {"texts": {"prompt": "x" * 41}}}, "E01"),     # over the 40-character text limit
           ({"E 1": {}}, "E 1"),
           ({"E01": {"tag_labels": {"701": "a label far too long"}}}, "E01"),
           ({"E01": {"texts": dict(("k%02d" % i, "字" * 40) for i in range(12))}}, "E01")]   # > 1,024 bytes
    for windows, named in bad:
        with pytest.raises(config_mod.ConfigError) as info:
            config_mod.from_dict(dict(hall, windows=windows))
        assert named in str(info.value), (windows, str(info.value))
    config_mod.from_dict(dict(hall, windows=WINDOWS))      # the good one passes


def test_no_device_config_no_config_as_before():
    assert WindowWords({}, {}).config_for("A01") is None


def _hex(record):
    return codec.encode(schema.CONFIG, record).hex()


def _expect(got):
    en_case, en_tags, en_labels = got["english"]
    assert en_case["prompt"] == "Please rate our service", en_case
    assert en_tags["tags_title"] == "Choose a reason" and en_labels == ["Long wait", "Other"]
    assert got["volume_en"] == supplement.volume_wire(8) and got["large_en"] == schema.LARGE_TEXT_ON
    for moved in (got["chinese"], got["rebooted"]):           # moved, then after a reboot
        case, tags, labels = moved
        assert case["prompt"] == "请评价" and tags["tags_title"] == "请选择原因", moved
        assert labels == ["等待时间长", "其他原因"]
        assert set(case) == set(en_case)                      # the same screen, other words
    assert got["volume_zh"] == supplement.volume_wire(2)


def test_the_english_window_shows_english_words(tmp_path):
    w = words()
    got = fw_words_support.check(_hex(w.config_for("E01")), _hex(w.config_for("A01")), str(tmp_path))
    _expect(got)


MP_SCRIPT = """
import sys, json
sys.path.insert(0, "/repo/tests")
import fw_words_support
got = fw_words_support.check(%r, %r)
print("GOT " + json.dumps(got))
"""


def test_the_english_window_shows_english_words_under_micropython(micropython):
    w = words()
    r = micropython(MP_SCRIPT % (_hex(w.config_for("E01")), _hex(w.config_for("A01"))),
                    trees=("protocol", "firmware", "tests"), timeout=300).check()
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("GOT ")][-1]
    got = json.loads(line[4:])
    _expect(dict((k, tuple(v) if isinstance(v, list) else v) for k, v in got.items()))


def test_the_gateway_sends_each_window_its_config_and_a_new_one_on_a_move(mosquitto_broker, tmp_path):
    from gw_support import FakeDevice, device_key
    from test_gw_api import Rig
    extra = {"device_config": HALL_CONFIG, "windows": WINDOWS,
             "devices": [{"id": "dev-en", "window": "E01", "key": device_key("dev-en").hex()},
                         {"id": "dev-zh", "window": "A01", "key": device_key("dev-zh").hex()}]}
    en, zh = FakeDevice(mosquitto_broker, "dev-en"), FakeDevice(mosquitto_broker, "dev-zh")

    def config_of(device, predicate=lambda c: True):
        payload = device.wait_for("config", lambda p: bool(p) and predicate(codec.from_json(schema.CONFIG, p)))
        return codec.from_json(schema.CONFIG, payload)

    async def scenario():
        async with Rig(mosquitto_broker, tmp_path, extra=extra) as rig:
            w = rig.gw.words
            got_en = await asyncio.to_thread(config_of, en)
            got_zh = await asyncio.to_thread(config_of, zh)
            assert got_en == codec.decode(schema.CONFIG, codec.encode(schema.CONFIG, w.config_for("E01")))
            assert got_zh == codec.decode(schema.CONFIG, codec.encode(schema.CONFIG, w.config_for("A01")))
            assert got_en != got_zh
            # the English device moves to window A01: it is sent A01's CONFIG
            status, _ = await rig.call("PATCH", "/api/v1/devices/dev-en", {"window": "A01"})
            assert status == 200
            moved = await asyncio.to_thread(
                config_of, en, lambda c: c.get("volume") == supplement.volume_wire(2))
            assert moved == got_zh
    try:
        asyncio.run(scenario())
    finally:
        en.close()
        zh.close()


def test_the_device_keeps_several_config_messages_key_by_key_over_a_reboot(tmp_path):
    """SPEC 3.5: content over one record comes as several CONFIGs; texts replace only the keys
    they name, a key without text goes back to the built-in word, and what the device kept is
    what it has after a reboot (the merged config is saved, not the last message)."""
    import fw_support
    rig = fw_support.Rig("five_button", font=fw_words_support.FONT, base=str(tmp_path))
    for part in ({"texts": [{"key": "prompt", "text": "Rate us"}, {"key": "thanks", "text": "Ta"}]},
                 {"texts": [{"key": "tags_title", "text": "Why?"}], "volume": supplement.volume_wire(3)}):
        fw_words_support.configure(rig, _hex(part))
    rig.reboot()
    case, tags, _labels = fw_words_support.words_at(rig, None, 61)
    assert case["prompt"] == "Rate us" and tags["tags_title"] == "Why?"
    assert rig.dev.app.cfg["volume"] == supplement.volume_wire(3)
    assert rig.dev.app.cfg["tags"] == fw_support.TAGS          # Rig's first CONFIG, kept too
    fw_words_support.configure(rig, _hex({"texts": [{"key": "prompt"}]}))
    rig.reboot()
    case, tags, _labels = fw_words_support.words_at(rig, None, 62)
    assert case["prompt"] == "请评价" and tags["tags_title"] == "Why?"
