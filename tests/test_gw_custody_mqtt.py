"""Custody over MQTT, end to end (SPEC 3.11): the whole gateway on a real Mosquitto with its uplink
to the reference central API, and a Wi-Fi evaluator keeping custody as the SPEC says.

- A device's copies are released only once the central API accepted its ratings: not while the
  uplink is down, at once (a retained SETTLE, within 2 s) when it drained.
- A blank replacement gateway (a fresh data directory) loses nothing: its new generation makes the
  device re-offer what it holds; the copies the central API already had are answered `duplicate`,
  and the central API ends with every rating once.
- /status, the console's hall view (technician) and /metrics show what each device keeps and how
  old the oldest copy is; custody off sends no SETTLE.
"""

import time

from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port
from gateway import config as config_mod
from gateway.backoff import Backoff
from gw_custody_support import CentralThread, CustodyDevice, until
from gw_live import LiveGateway
from gw_support import HALL, device_key, make_rating
from protocol import auth, codec, schema, topics, vocab
from tests.uplink_support import SECRET

T_PRESS = 1_718_000_000


def config(broker, data_dir, central_url, **custody):
    return config_mod.from_dict({
        "gateway": {"hall": HALL, "data_dir": str(data_dir)},
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "gw-custody-%s" % data_dir.name},
        "http": {"host": "127.0.0.1", "port": 0},
        "devices": [{"id": "dev-a", "window": "A01", "key": device_key("dev-a").hex()}],
        "uplink": {"url": central_url, "gateway_id": "gw-futian", "hmac_secret": SECRET},
        "custody": custody,
    })


def ratings(first, last):
    """One case each (the central API takes one rating a case)."""
    return [make_rating("dev-a", c, device_time=T_PRESS + c, serials=["SN2024%04d" % c])
            for c in range(first, last + 1)]


def quick_uplink(live):
    live.gw.uplink.backoff = Backoff(base=0.2, cap=0.5)


def test_custody_is_released_after_the_central_api_has_it_and_a_blank_gateway_loses_nothing(
        mosquitto_broker, tmp_path):
    central = CentralThread(tmp_path / "central.db", free_port())     # not listening yet
    device = None
    try:
        with LiveGateway(config(mosquitto_broker, tmp_path / "gw1", central.url)) as first:
            quick_uplink(first)
            generation = first.gw.store.generation
            device = CustodyDevice(mosquitto_broker, "dev-a")
            until(lambda: device.generation == generation, "the retained SETTLE of the gateway")
            for rating in ratings(1, 3):
                device.press(rating)
            assert device.deliver() == [vocab.ACK_STORED] * 3
            time.sleep(3)                       # the uplink is down: nothing may be released
            assert device.held() == [1, 2, 3]
            device.status(counter=3)
            until(lambda: first.gw.registry.get("dev-a").custody == 3, "the device's STATUS")
            _, status = first.request("GET", "/status")
            (entry,) = status["device_list"]
            assert entry["custody"] == 3 and entry["custody_oldest"] == T_PRESS + 1
            assert status["custody"]["enabled"] and status["custody"]["generation"] == generation
            _, hall = first.request("GET", "/api/v1/hall", role="technician")
            (window,) = hall["windows"]
            assert window["device"]["custody"] == 3
            _, text = first.request("GET", "/metrics")
            samples = dict(((s.name, s.labels.get("device") or s.labels.get("generation")), s.value)
                           for f in text_string_to_metric_families(text) for s in f.samples)
            assert samples[("hall_gateway_device_custody", "dev-a")] == 3
            assert samples[("hall_gateway_store_generation_info", "%016x" % generation)] == 1
            assert samples[("hall_gateway_device_custody_oldest_age_seconds", "dev-a")] > 0

            central.start()                     # the central API takes them: released
            until(lambda: device.held() == [], "custody released after the upload")
            assert sorted(central.rating_ids()) == ["dev-a:%d" % c for c in (1, 2, 3)]
            assert device.settles[-1]["settled"] == 4

            # 4..6 reach the central API but the device does not hear the SETTLE (deaf); 7..8
            # wait in this gateway's store when it is lost
            device.deaf = True
            for rating in ratings(4, 6):
                device.press(rating)
            device.deliver()
            until(lambda: len(central.rating_ids()) == 6, "4..6 at the central API")
            central.stop()
            for rating in ratings(7, 8):
                device.press(rating)
            device.deliver()
            assert first.gw.store.backlog()["ratings"] == 2
        assert device.held() == [4, 5, 6, 7, 8]

        central.start()
        device.deaf = False
        # the replacement: a blank data directory
        with LiveGateway(config(mosquitto_broker, tmp_path / "gw2", central.url)) as second:
            quick_uplink(second)
            assert second.gw.store.generation != generation
            until(lambda: device.generation == second.gw.store.generation, "the new generation")
            assert device.deliver() == [vocab.ACK_STORED] * 5      # the re-offers
            until(lambda: device.held() == [], "custody released by the new gateway")
            assert second.gw.store.stats["reoffered"] == 5
        ids = central.rating_ids()
        assert sorted(ids) == sorted("dev-a:%d" % c for c in range(1, 9))   # each once
        assert central.report()["retransmissions"] >= 3    # its permanent dedupe: 4..6 again
    finally:
        if device is not None:
            device.close()
        central.close()


def test_custody_off_publishes_no_settle_and_takes_the_flag_as_absent(mosquitto_broker, tmp_path):
    central = CentralThread(tmp_path / "central.db", free_port())
    device = None
    try:
        with LiveGateway(config(mosquitto_broker, tmp_path / "gw", central.url, enabled=False)) as gw:
            device = CustodyDevice(mosquitto_broker, "dev-a")
            for rating in ratings(1, 2):
                device.press(rating)
            assert device.deliver() == [vocab.ACK_STORED] * 2
            time.sleep(1.5)
            assert "settle" not in device.messages and device.generation == 0
            assert gw.request("GET", "/status")[1]["custody"]["enabled"] is False
    finally:
        if device is not None:
            device.close()
        central.close()


def test_the_retained_settle_is_signed_for_its_device(mosquitto_broker, tmp_path):
    central = CentralThread(tmp_path / "central.db", free_port())
    device = None
    try:
        with LiveGateway(config(mosquitto_broker, tmp_path / "gw", central.url)):
            device = CustodyDevice(mosquitto_broker, "dev-a")
            payload = device.wait_for("settle")
            settle = codec.from_json(schema.SETTLE, payload)
            assert auth.verify_settle(device_key("dev-a"), "dev-a", settle)
            assert not auth.verify_settle(device_key("dev-b"), "dev-b", dict(settle, device="dev-b"))
            assert settle["settled"] == 1 and topics.device_topic(HALL, "dev-a", "settle")
    finally:
        if device is not None:
            device.close()
        central.close()
