"""The gateway's JSON log lines (gateway.logjson): one object a line with ISO time and zone, the
fields passed by `extra=`, tracebacks as one field, UTF-8 kept; never the rater's identity, not
even when a caller passes it; the format chosen by flag, config, journald or terminal."""

import asyncio
import datetime
import io
import json
import logging

import aiohttp
import pytest

from gateway import cli, logjson
from gateway.app import Gateway
from gw_live import gateway_config
from gw_support import FakeDevice, make_rating
from protocol import vocab

APPLICANT = {"name": "𠈌丽华", "id_number": "44030119900101123X", "phone": "13912345678"}
STAFF = "王䶮明"


@pytest.fixture
def lines():
    """Root logging through logjson's JSON handler into a buffer; the parsed lines."""
    buffer = io.StringIO()
    root = logging.getLogger()
    handler = logjson.handler("json", buffer)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)

    def parsed():
        text = buffer.getvalue()
        out = [json.loads(line) for line in text.splitlines()]
        assert len(out) == text.count("\n")          # one object a line, nothing in between
        return out
    parsed.text = buffer.getvalue
    yield parsed
    root.removeHandler(handler)
    root.setLevel(level)


def test_a_line_is_one_object_with_iso_time_fields_and_utf8(lines):
    log = logging.getLogger("gateway.test")
    log.warning("窗口 %s 的评价器离线\nsecond line", "A01",
                extra={"device": "dev-a", "window": "A01", "case": 17, "kind": "device_offline"})
    try:
        raise ValueError("坏了")
    except ValueError:
        log.exception("failed", extra={"device": "dev-b"})
    first, second = lines()
    assert first["event"] == "窗口 A01 的评价器离线\nsecond line"
    assert (first["level"], first["logger"]) == ("WARNING", "gateway.test")
    assert (first["device"], first["window"], first["case"], first["kind"]) == \
        ("dev-a", "A01", 17, "device_offline")
    when = datetime.datetime.fromisoformat(first["time"])
    assert when.utcoffset() is not None               # with its zone
    assert abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) < 60
    assert "窗口" in lines.text()                      # UTF-8 as it is, not \\u escapes
    assert second["exc"].startswith("Traceback") and "ValueError: 坏了" in second["exc"]
    assert second["device"] == "dev-b" and "exc_info" not in second


def test_identity_never_reaches_a_line_even_when_passed(lines):
    log = logging.getLogger("gateway.test")
    log.info("case for %s", APPLICANT["id_number"],
             extra={"applicant": APPLICANT, "case": {"id": 3, "applicant": APPLICANT,
                                                     "window": "A01"},
                    "note": "call " + APPLICANT["phone"]})
    log.info("odd text \udc80 %s", STAFF)             # a lone surrogate: escaped, not lost
    first, second = lines()
    text = lines.text()
    for value in APPLICANT.values():
        assert value not in text
    assert "applicant" not in first and first["case"] == {"id": 3, "window": "A01"}
    assert first["event"].startswith("case for 440301") and first["note"].startswith("call 139")
    assert second["event"] == "odd text \udc80 " + STAFF


def test_text_format_stays_available():
    buffer = io.StringIO()
    logger = logging.getLogger("gateway.test.text")
    handler = logjson.handler("text", buffer)
    logger.addHandler(handler)
    try:
        logger.warning("身份证 %s", APPLICANT["id_number"], extra={"applicant": APPLICANT})
    finally:
        logger.removeHandler(handler)
    line = buffer.getvalue()
    assert "WARNING gateway.test.text: 身份证 440301" in line
    assert APPLICANT["id_number"] not in line and APPLICANT["name"] not in line


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_the_format_is_chosen_by_flag_config_journald_or_terminal():
    terminal, pipe = _Stream(True), _Stream(False)
    assert logjson.choose(None, "auto", {}, terminal) == "text"
    assert logjson.choose(None, "auto", {}, pipe) == "json"
    assert logjson.choose(None, "auto", {"JOURNAL_STREAM": "8:1234"}, terminal) == "json"
    assert logjson.choose(None, "text", {"JOURNAL_STREAM": "8:1234"}, pipe) == "text"
    assert logjson.choose("json", "text", {}, terminal) == "json"
    with pytest.raises(ValueError):
        logjson.choose("xml")


def test_the_cli_sets_up_json_logging_from_the_config(tmp_path, capsys):
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nhall = "h-1"\nlog_format = "json"\n', encoding="utf-8")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert cli.main(["check", "--offline", "--config", str(config)]) == 0
        formatter = root.handlers[0].formatter
        assert isinstance(formatter, logjson.JsonFormatter)
        assert cli.main(["check", "--offline", "--config", str(config), "--log-format", "text"]) == 0
        assert not isinstance(root.handlers[0].formatter, logjson.JsonFormatter)
        config.write_text('[gateway]\nhall = "h-1"\nlog_format = "yaml"\n', encoding="utf-8")
        assert cli.main(["check", "--offline", "--config", str(config)]) == 2
        assert "log_format" in capsys.readouterr().err
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_a_rating_through_the_gateway_logs_no_identity(mosquitto_broker, tmp_path, lines):
    """Sign-in, a case with the applicant's identity, a bad rating pressed on the device, its
    replay with other content (a dead letter): every log line parses, none holds any part of the identity."""
    device = FakeDevice(mosquitto_broker, "dev-a")
    case_ids = []

    async def scenario():
        gw = Gateway(gateway_config(mosquitto_broker, tmp_path / "gw"))
        await gw.start()
        try:
            await asyncio.to_thread(gw.bridge.connected.wait, 10)
            headers = {"Authorization": "Bearer " + gw.credentials["queue"]}
            base = "http://127.0.0.1:%d" % gw.http_port
            async with aiohttp.ClientSession(headers=headers) as http:
                async with http.post(base + "/api/v1/windows/A01/sign-in",
                                     json={"staff_id": "1001", "staff_name": STAFF}) as resp:
                    assert resp.status == 200
                body = {"window": "A01", "node": "completion", "success": True, "serials": ["SN1"],
                        "matter_code": "440300-0001", "matter_name": "居住证签注",
                        "applicant": APPLICANT}
                async with http.post(base + "/api/v1/cases", json=body) as resp:
                    case = await resp.json()
                    assert resp.status == 201, case
                case_ids.append(case["case_id"])
                async with http.post(base + "/api/v1/cases", data=json.dumps(
                        dict(body, node="approval")).encode()) as resp:
                    assert resp.status == 400          # a refused request is logged too
            rating = make_rating("dev-a", 1, level=vocab.VERY_DISSATISFIED,
                                 case_id=case["case_id"], serials=["SN1"])
            device.rate(rating)
            assert (await asyncio.to_thread(device.ack))["result"] == vocab.ACK_STORED
            device.rate(make_rating("dev-a", 1, case_id=case["case_id"], serials=["SN1"]))
            assert (await asyncio.to_thread(device.ack))["result"] == vocab.ACK_DEAD_LETTER
        finally:
            await gw.stop()

    try:
        asyncio.run(scenario())
    finally:
        device.close()
    parsed = lines()
    assert len(parsed) >= 3 and all({"time", "level", "logger", "event"} <= set(p) for p in parsed)
    assert any(p["logger"] == "gateway" and "up" in p["event"] for p in parsed)
    opened = [p for p in parsed if p.get("kind") == "case_opened"]
    assert [(p["case"], p["window"]) for p in opened] == [(case_ids[0], "A01")]
    assert any(p.get("kind") == "rejected" and p["where"] == "http" for p in parsed)
    text = lines.text()
    for value in APPLICANT.values():
        assert value not in text, value
