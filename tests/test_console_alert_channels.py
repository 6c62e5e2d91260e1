"""Each alert channel (gateway.alert_channels) against a loopback server that checks what the
vendor documents (tests/alert_receivers.py): WeCom's markdown, DingTalk's and Feishu's signatures,
our signed webhook, e-mail over SMTP. A wrong secret is a failure, never "sent"; a bad-rating
alert carries no trace of the rater in any channel's bytes."""

import asyncio
import base64
import hashlib
import hmac
import json
import pathlib
import urllib.parse

import aiohttp
import pytest
from hypothesis import given, settings, strategies as st

from alert_receivers import Receivers, DINGTALK_SECRET, WEBHOOK_SECRET
from gateway import alert_channels
from gateway import config as config_mod
from gateway.alerts import Alerts, AlertConfigError
from gw_support import make_rating
from protocol import vocab

STAFF = "王䶮明"
APPLICANT_PARTS = ("𠈌小明", "440301199001011234")
APPLICANT = " ".join(APPLICANT_PARTS)
ENRICHMENT = {"matter_code": "440300-0001", "matter_name": "企业开办", "staff_name": STAFF,
              "window": "A01", "applicant": APPLICANT}
TAGS = [{"code": 501, "label": "等待时间长", "indicator": 4}, {"code": 502, "label": "服务态度差",
                                                          "indicator": 4}]


def bad_alert(tmp_path):
    alerts = Alerts({}, "futian-1", str(tmp_path), tags=TAGS)
    rating = make_rating("dev-a", 7, level=vocab.VERY_DISSATISFIED, tags=[501, 502],
                         serials=["SN20240001", "SN20240002"], text="态度很差", gateway_time=1764763200)
    return alerts.bad_rating_alert(rating, ENRICHMENT)


async def send_all(channels, alert):
    async with aiohttp.ClientSession() as session:
        return [await c.send(session, alert) for c in channels]


def test_a_bad_rating_alert_says_what_the_duty_manager_needs_and_nothing_of_the_rater(tmp_path):
    alert = bad_alert(tmp_path)
    text = alert_channels.plain(alert)
    for needed in ("差评提醒", "A01", "非常不满意", "等待时间长", "服务态度差", "企业开办", "440300-0001",
                   "SN20240001", "SN20240002", STAFF, "1001", "dev-a:7", "futian-1",
                   "2025-12-03T20:00:00+08:00"):
        assert needed in text, needed
    assert alert["data"]["staff_name"] == STAFF and alert["data"]["level"] == 5
    everything = json.dumps(alert, ensure_ascii=False)
    for part in APPLICANT_PARTS + (APPLICANT, "applicant", "态度很差"):
        assert part not in everything      # never the rater, nor their own words (they may name them)


def test_every_channel_delivers_in_its_documented_format(tmp_path):
    alert = bad_alert(tmp_path)
    with Receivers() as rx:
        channels = alert_channels.from_config(rx.channels())
        results = asyncio.run(send_all(channels, alert))
        assert results == [(True, "ok")] * 5
        wecom = rx.wait("wecom")[0]
        assert wecom["msgtype"] == "markdown" and wecom["markdown"]["content"].startswith("### 差评提醒")
        ding = rx.wait("dingtalk")[0]
        assert ding["markdown"]["title"] == alert["title"] and STAFF in ding["markdown"]["text"]
        assert "\n\n> 大厅：futian-1\n\n" in ding["markdown"]["text"]    # one paragraph a line
        feishu = rx.wait("feishu")[0]
        assert feishu["msg_type"] == "text" and "非常不满意" in feishu["content"]["text"]
        hook = rx.wait("webhook")[0]
        assert hook["kind"] == "bad_rating" and hook["hall"] == "futian-1" and hook["window"] == "A01"
        assert hook["id"] == "bad:dev-a:7" and hook["tags"] == ["等待时间长", "服务态度差"]
        assert hook["time"] == "2025-12-03T20:00:00+08:00" and hook["staff_id"] == "1001"
        mail = rx.wait("email")[0]
        assert mail["rcpt"] == ["duty@hall.example.cn"]
        assert mail["message"]["Subject"] == alert["title"]
        body = mail["message"].get_content()
        assert "企业开办" in body and STAFF in body
        for text in [raw.decode("utf-8", "replace") for raw in rx.raw]:
            assert not any(part in text for part in APPLICANT_PARTS + (APPLICANT,)), text


def test_a_wrong_secret_or_key_is_a_failure_with_the_channels_code(tmp_path):
    alert = bad_alert(tmp_path)
    with Receivers() as rx:
        specs = rx.channels(dingtalk_secret="SECwrong", feishu_secret="wrong", email=False)
        specs[0]["url"] = specs[0]["url"].replace("key=", "key=x")
        specs[3]["secret"] = "not-the-secret"
        results = asyncio.run(send_all(alert_channels.from_config(specs), alert))
        assert [ok for ok, _ in results] == [False] * 4
        assert "93000" in results[0][1] and "310000" in results[1][1] and "19021" in results[2][1]
        assert results[3][1] == "HTTP 401"
        assert all(rx.count(name) == 0 for name in ("wecom", "dingtalk", "feishu", "webhook"))
        rx.down.add("wecom")
        ok, detail = asyncio.run(send_all(alert_channels.from_config(rx.channels(email=False))[:1], alert))[0]
        assert not ok and detail == "HTTP 503"
        starttls = dict(rx.channels()[4], tls="starttls")    # the loopback SMTP offers no TLS
        ok, detail = asyncio.run(send_all(alert_channels.from_config([starttls]), alert))[0]
        assert not ok and "SMTP" in detail and rx.count("email") == 0
        rx.stop()          # nobody listening: an error answered, never raised
        results = asyncio.run(send_all(alert_channels.from_config(rx.channels(email=False)), alert))
        assert [ok for ok, _ in results] == [False] * 4
        rx.start()


def test_signatures_match_the_documented_examples():
    # DingTalk: quote_plus(base64(HMAC-SHA256(secret, ts + "\n" + secret)))
    ts = 1577262236757
    digest = hmac.new(b"this is secret", b"1577262236757\nthis is secret", hashlib.sha256).digest()
    assert alert_channels.dingtalk_sign("this is secret", ts) == urllib.parse.quote_plus(base64.b64encode(digest))
    # Feishu: the string is the key, the message empty
    digest = hmac.new(b"1599360473\ndemo", b"", hashlib.sha256).digest()
    assert alert_channels.feishu_sign("demo", 1599360473) == base64.b64encode(digest).decode()
    body = b'{"kind":"test"}'
    assert alert_channels.webhook_signature(WEBHOOK_SECRET, body) == \
        "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert DINGTALK_SECRET.startswith("SEC")


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=3000))
def test_wecom_content_never_passes_its_byte_limit(text):
    alert = {"title": "差评提醒", "lines": [["文字", text]]}
    clipped = alert_channels._clip(alert_channels.markdown(alert), alert_channels.WECOM_MAX_BYTES)
    assert len(clipped.encode("utf-8")) <= alert_channels.WECOM_MAX_BYTES
    assert clipped.startswith("### 差评提醒"[:len(clipped)]) or clipped.startswith("###")


@pytest.mark.parametrize("spec", [
    {"type": "sms", "url": "http://x"}, {"type": "wecom"}, {"type": "wecom", "url": "ftp://x"},
    {"type": "email", "host": "smtp"}, {"type": "webhook", "url": "http://x", "secret": 5},
    {"type": "wecom", "url": "http://x", "kinds": "bad_rating"}])
def test_a_bad_channel_entry_is_refused_when_the_config_is_read(tmp_path, spec):
    with pytest.raises(AlertConfigError):
        Alerts({"channels": [spec]}, "futian-1", str(tmp_path))
    with pytest.raises(config_mod.ConfigError, match="alerts"):
        config_mod.from_dict({"gateway": {"hall": "h"}, "alerts": {"channels": [spec]}})


@pytest.mark.parametrize("alerts", [{"device_offline_min": -1}, {"bad_rating": 1}, {"max_pending": 0},
                                    {"retry_cap_s": 1, "retry_base_s": 5}, {"offline_min": 5},
                                    {"channels": {"type": "wecom"}}, {"outbox_threshold": "half"}])
def test_bad_alert_settings_are_refused_when_the_config_is_read(alerts):
    with pytest.raises(config_mod.ConfigError, match="alerts"):
        config_mod.from_dict({"gateway": {"hall": "h"}, "alerts": alerts})


def test_the_example_config_names_working_channels(tmp_path):
    cfg = config_mod.load(str(pathlib.Path(__file__).parent.parent / "docs" / "gateway.example.toml"))
    cfg.data_dir = str(tmp_path)
    alerts = Alerts(cfg.raw["alerts"], cfg.hall, cfg.data_dir)
    assert [(c.type, c.name) for c in alerts.channels] == [("wecom", "值班群"), ("dingtalk", "dingtalk-2")]
    assert alerts.cfg["device_offline_min"] == 10 and not alerts.channels[1].wants("outbox_full")
    alerts.close()


def test_channels_show_no_url_or_secret(tmp_path):
    with Receivers() as rx:
        for channel in alert_channels.from_config(rx.channels()):
            shown = json.dumps(channel.public(), ensure_ascii=False)
            assert "http" not in shown and "SEC" not in shown and "秘密" not in shown
