"""/metrics of the whole gateway (real Mosquitto, real HTTP on loopback), as Prometheus reads it
(prometheus_client.parser): evaluators going online and offline, a pending rating whose age grows
with the gateway's clock, RS-485 errors from a noisy line, no level / staff name / identity; and
the shipped Grafana dashboard, alert rules and scrape config name only what /metrics exposes."""

import asyncio
import json
import pathlib
import re
import shutil
import time

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway import config as config_mod
from gateway.app import Gateway
from gateway.store import Store
from gw_live import gateway_config
from gw_support import HALL, FakeDevice, device_key, make_rating
from protocol import codec, schema, vocab
from protocol.frame import encode_frame
from tests.uplink_support import fill

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
STAFF = "王䶮明"
APPLICANT = {"name": "𠈌丽华", "id_number": "44030119900101123X", "phone": "13912345678"}
# Every label /metrics may carry: ids, codes and states. A new label must be added here on purpose.
LABELS = {"kind", "result", "where", "reason", "name", "event", "outcome", "state", "device",
          "window", "transport", "bus", "generation"}
PROMETHEUS_OWN = {"up"}      # what Prometheus adds per target


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


def parse(text):
    """({(sample name, labels tuple): value}, {family name: family})"""
    families = dict((f.name, f) for f in text_string_to_metric_families(text))
    samples = dict(((s.name, tuple(sorted(s.labels.items()))), s.value)
                   for f in families.values() for s in f.samples)
    return samples, families


async def scrape(gw, token=None):
    headers = {"Authorization": "Bearer " + token} if token else {}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get("http://127.0.0.1:%d/metrics" % gw.http_port) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=")
            return await resp.text()


async def until(predicate, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def device_labels(device, window, transport="mqtt"):
    return (("device", device), ("transport", transport), ("window", window))


def test_devices_backlog_age_and_privacy(mosquitto_broker, tmp_path):
    clock = Clock()
    device = FakeDevice(mosquitto_broker, "dev-a")

    async def scenario():
        cfg = gateway_config(mosquitto_broker, tmp_path / "gw")
        # an alert channel that is down: the bad rating's alert waits in the queue
        cfg.raw["alerts"] = {"channels": [{"type": "webhook", "url": "http://127.0.0.1:9/alerts"}],
                             "retry_base_s": 600}
        gw = Gateway(cfg, clock=clock)
        await gw.start()
        try:
            await asyncio.to_thread(gw.bridge.connected.wait, 10)
            samples, families = parse(await scrape(gw))
            a = device_labels("dev-a", "A01")
            assert samples["hall_gateway_device_online", a] == 0
            assert ("hall_gateway_device_last_seen_timestamp_seconds", a) not in samples  # never heard
            assert samples["hall_gateway_uplink_state", (("state", "off"),)] == 1
            assert sum(v for (n, _), v in samples.items() if n == "hall_gateway_uplink_state") == 1
            assert samples["hall_gateway_oldest_pending_age_seconds", ()] == 0
            assert samples["hall_gateway_alert_queue_depth", ()] == 0
            free = shutil.disk_usage(gw.cfg.data_dir).free
            assert abs(samples["hall_gateway_disk_free_bytes", ()] - free) < 256e6
            assert families["hall_gateway_bus_errors"].type == "counter"

            # The evaluator reports its status: online, heard at the gateway's time, its outbox.
            # Sent again until heard: "connected" can come before the gateway's subscriptions
            # are in place, and a status sent in between reaches nobody.
            async def online():
                device.publish("status", codec.to_json(schema.STATUS, {
                    "device": "dev-a", "firmware": "1.4.0", "outbox": 4, "counter": 0}))
                s, _ = parse(await scrape(gw))
                return s if s["hall_gateway_device_online", a] == 1 else None
            samples = await until(online, "dev-a online")
            assert samples["hall_gateway_device_last_seen_timestamp_seconds", a] == \
                pytest.approx(clock.now)
            assert samples["hall_gateway_device_outbox", a] == 4
            assert samples["hall_gateway_devices_online", ()] == 1
            assert samples["hall_gateway_device_online", device_labels("dev-b", "A02")] == 0

            # A bad rating with the applicant's identity in its case, pending (no uplink).
            token = gw.credentials["queue"]
            async with aiohttp.ClientSession(headers={"Authorization": "Bearer " + token}) as http:
                base = "http://127.0.0.1:%d" % gw.http_port
                async with http.post(base + "/api/v1/windows/A01/sign-in",
                                     json={"staff_id": "1001", "staff_name": STAFF}) as resp:
                    assert resp.status == 200
                async with http.post(base + "/api/v1/cases", json={
                        "window": "A01", "node": "completion", "success": True,
                        "serials": ["SN1"], "matter_code": "440300-0001",
                        "matter_name": "居住证签注", "applicant": APPLICANT}) as resp:
                    case = await resp.json()
            device.rate(make_rating("dev-a", 1, level=vocab.VERY_DISSATISFIED, tags=[501],
                                    case_id=case["case_id"], serials=["SN1"]))
            assert (await asyncio.to_thread(device.ack))["result"] == vocab.ACK_STORED

            async def alert_queued():
                text = await scrape(gw)
                return text if parse(text)[0]["hall_gateway_alert_queue_depth", ()] == 1 else None
            await until(alert_queued, "the bad rating's alert queued")
            text = await scrape(gw)
            samples, _ = parse(text)
            assert samples["hall_gateway_outbox_items", (("kind", "rating"),)] == 1
            assert samples["hall_gateway_store_events_total", (("result", "stored"),)] == 1
            assert samples["hall_gateway_oldest_pending_age_seconds", ()] == 0
            clock.now += 125.0
            samples, _ = parse(await scrape(gw))
            assert samples["hall_gateway_oldest_pending_age_seconds", ()] == pytest.approx(125.0)
            clock.now += 60.0
            samples, _ = parse(await scrape(gw, gw.credentials["viewer"]))   # a token changes nothing
            assert samples["hall_gateway_oldest_pending_age_seconds", ()] == pytest.approx(185.0)
            assert_nothing_private(text)

            # Its availability goes offline (its will, or the bus gave up on it).
            device.publish("availability", b"offline")

            async def offline():
                s, _ = parse(await scrape(gw))
                return s if s["hall_gateway_device_online", a] == 0 else None
            samples = await until(offline, "dev-a offline")
            assert samples["hall_gateway_devices_online", ()] == 0
            heard = samples["hall_gateway_device_last_seen_timestamp_seconds", a]
            assert heard == pytest.approx(clock.now - 185.0)     # at the rating: offline is no sighting
        finally:
            await gw.stop()

    try:
        asyncio.run(scenario())
    finally:
        device.close()


def assert_nothing_private(text):
    for word in [STAFF, "不满意", "非常不满意"] + list(APPLICANT.values()):
        assert word not in text, word
    _, families = parse(text)
    for family in families.values():
        for sample in family.samples:
            assert set(sample.labels) <= LABELS, (sample.name, sample.labels)


class NoisyLine:
    """A TCP 'RS-485 line' (pyserial's socket://) on which every request is answered by a frame
    with a broken CRC: noise where the device's reply should be."""

    async def start(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = "socket://127.0.0.1:%d" % self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader, writer):
        try:
            while await reader.read(256):
                frame = bytearray(encode_frame(3, schema.IDLE, 1, b""))
                frame[-1] ^= 0xFF
                writer.write(bytes(frame))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def close(self):
        self.server.close()
        await self.server.wait_closed()


def test_bus_errors_are_the_masters_own_counters(mosquitto_broker, tmp_path):
    async def scenario():
        line = await NoisyLine().start()
        cfg = gateway_config(mosquitto_broker, tmp_path / "gw")
        cfg.buses = [config_mod.BusConfig(url=line.url, retries=1, slow_after=100)]
        cfg.devices.append({"id": "dev-r", "window": "B01", "transport": "rs485", "bus": 0,
                            "address": 3, "key": device_key("dev-r").hex()})
        gw = Gateway(cfg)
        await gw.start()
        bus = gw.buses[0]
        errors = lambda s, kind: s["hall_gateway_bus_errors_total", (("bus", line.url), ("kind", kind))]
        try:
            async def noisy():
                s, _ = parse(await scrape(gw))
                return s if errors(s, "bad_crc") >= 3 and errors(s, "timeout") >= 3 else None
            samples = await until(noisy, "bad CRCs and timeouts on the bus")
            assert samples["hall_gateway_bus_open", (("bus", line.url),)] == 1
            await asyncio.to_thread(bus.stop)             # the counters hold still
            samples, _ = parse(await scrape(gw))
            assert errors(samples, "bad_crc") == bus.bus.decoder.stats["bad_crc"]
            assert errors(samples, "timeout") == sum(p.stats["timeouts"] for p in bus.peers.values())
            assert errors(samples, "gave_up") == bus.bus.channels[3].stats["gave_up"] > 0
            assert samples["hall_gateway_bus_rounds_total", (("bus", line.url),)] == bus.rounds
            assert samples["hall_gateway_device_online", device_labels("dev-r", "B01", "rs485")] == 0
        finally:
            await gw.stop()
            await line.close()

    asyncio.run(scenario())


# --- the shipped dashboard, rules and scrape config --------------------------------------------
def exposed_names(mosquitto_broker, tmp_path):
    """Every sample and family name a gateway with an uplink, a bus, devices heard from and an
    alarm exposes: {name: set of label names}."""
    clock = Clock()

    async def scenario():
        cfg = gateway_config(mosquitto_broker, tmp_path / "gw")
        cfg.raw["uplink"] = {"url": "http://127.0.0.1:9", "hmac_secret": "s" * 32}
        cfg.buses = [config_mod.BusConfig(url="socket://127.0.0.1:9")]
        gw = Gateway(cfg, clock=clock)
        await gw.start()
        try:
            gw.registry.seen("dev-a")
            gw.alarm("test_alarm", "a test")
            gw.uplink.status.last_ok_at = clock.now
            return await scrape(gw)
        finally:
            await gw.stop()

    _, families = parse(asyncio.run(scenario()))
    names = {}
    for family in families.values():
        kinds = [family.name] + ([family.name + "_total"] if family.type == "counter" else [])
        for sample in family.samples:
            kinds.append(sample.name)
        for name in kinds:
            names.setdefault(name, set()).update(s for sample in family.samples
                                                 for s in sample.labels)
    return names


METRIC = re.compile(r"\b(hall_[a-z0-9_]+|up)\b(\{[^}]*\})?")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def check_expression(expr, names, where):
    """Every metric an expression names is exposed, with the label names it matches on (plus the
    target labels the scrape config adds)."""
    found = METRIC.findall(expr)
    assert found, "%s names no metric: %s" % (where, expr)
    for name, selector in found:
        if name in PROMETHEUS_OWN:
            continue
        assert name in names, "%s: %s is not in /metrics" % (where, name)
        used = set(MATCHER.findall(selector or ""))
        assert used <= names[name] | {"hall", "district", "job", "instance"}, (where, name, used)


def test_dashboard_rules_and_scrape_config_name_only_what_metrics_exposes(mosquitto_broker, tmp_path):
    names = exposed_names(mosquitto_broker, tmp_path)
    dashboard = json.loads((DOCS / "grafana" / "hall-dashboard.json").read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"]
    variables = dict((v["name"], v) for v in dashboard["templating"]["list"])
    assert variables["datasource"]["type"] == "datasource"
    check_expression(variables["hall"]["definition"], names, "variable hall")
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            check_expression(target["expr"], names, panel["title"])
            if not target["expr"].startswith("up{"):
                assert 'hall=~"$hall"' in target["expr"], panel["title"]
    shown = " ".join(t["expr"] for p in panels for t in p["targets"])
    for needed in ("hall_gateway_devices_online", "hall_gateway_uplink_state",
                   "hall_gateway_oldest_pending_age_seconds", "hall_gateway_outbox_fill_ratio",
                   "hall_gateway_bus_errors_total", "hall_gateway_alert_queue_depth",
                   'hall_gateway_store_events_total{hall=~"$hall",result="stored"}'):
        assert needed in shown, needed

    rules = yaml.safe_load((DOCS / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            check_expression(rule["expr"], names, rule["alert"])
            assert "$labels.hall" in rule["annotations"]["summary"]

    scrape_cfg = yaml.safe_load((DOCS / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    assert scrape_cfg["rule_files"] == ["alerts.yml"]
    job = scrape_cfg["scrape_configs"][0]
    assert job["job_name"] == "hall-gateway" and job["metrics_path"] == "/metrics"
    halls = [entry["labels"]["hall"] for entry in job["static_configs"]]
    assert len(halls) > 1 and len(set(halls)) == len(halls)


def test_a_panel_naming_a_metric_that_is_gone_fails_the_check():
    names = {"hall_gateway_devices_online": set(), "hall_gateway_device_online": {"device"}}
    check_expression('hall_gateway_devices_online{hall=~"$hall"}', names, "ok")
    for expr in ('hall_gateway_devices_offline{hall=~"$hall"}',
                 'hall_gateway_device_online{level="5"}', "sum(rate(x[5m]))"):
        with pytest.raises(AssertionError):
            check_expression(expr, names, "rotten")


def test_the_collector_is_per_gateway(tmp_path):
    """Two gateways in one process (the simulator, tests) each expose their own state."""
    def gateway(name, devices):
        return Gateway(config_mod.from_dict({
            "gateway": {"hall": HALL, "data_dir": str(tmp_path / name)},
            "http": {"port": 0},
            "devices": [{"id": d, "window": "A01", "key": device_key(d).hex()} for d in devices]}))
    one, two = gateway("one", ["dev-a"]), gateway("two", ["dev-a", "dev-b", "dev-c"])
    try:
        assert parse(one.metrics_text())[0]["hall_gateway_devices", ()] == 1
        assert parse(two.metrics_text())[0]["hall_gateway_devices", ()] == 3
    finally:
        asyncio.run(one.stop())
        asyncio.run(two.stop())


def test_the_oldest_pending_time_follows_the_outbox(tmp_path):
    """backlog()["oldest_at"]: when the oldest item still pending was stored; it moves on when
    that item is settled, stays on a retry, and survives a restart (read back from the file)."""
    clock = Clock()
    t0 = clock.now
    store = Store(tmp_path / "outbox.db", clock=clock)
    try:
        assert store.backlog()["oldest_at"] is None
        fill(store, "win-1", [1])
        clock.now += 30
        fill(store, "win-1", [2])
        store.commit_case({"case_key": "c-1", "case_id": 1})
        assert store.backlog()["oldest_at"] == t0
        store.settle([("win-1:1", "retry", "HTTP 503")])
        assert store.backlog()["oldest_at"] == t0
        store.settle([("win-1:1", "accepted", None)])
        assert store.backlog()["oldest_at"] == t0 + 30
        store.settle([("win-1:2", "rejected", "bad"), ("c-1", "accepted", None)])
        assert store.backlog()["oldest_at"] is None
        clock.now += 30
        fill(store, "win-1", [3])
        assert store.backlog()["oldest_at"] == t0 + 60
    finally:
        store.close()
    store = Store(tmp_path / "outbox.db", clock=clock)
    try:
        assert store.backlog()["oldest_at"] == t0 + 60
    finally:
        store.close()
