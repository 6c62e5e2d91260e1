"""Custody end to end over MQTT with the real firmware (SPEC 3.11): a virtual Wi-Fi evaluator
(firmware, sim board, citizen in front) and the whole gateway on a real Mosquitto, its uplink to
the reference central API.

- the device keeps what it was told is committed until the central API has it (the uplink is
  down first: nothing is released), and /status shows the count from the device's STATUS;
- the gateway is lost with ratings the central API never got; a blank replacement's retained
  SETTLE names a new generation, the device re-offers what it holds, and the central API ends
  with every rating once.
"""

import time

from conftest import free_port
from gateway import config as config_mod
from gateway.backoff import Backoff
from gw_custody_support import CentralThread, until
from gw_live import LiveGateway
from gw_support import HALL
from hall_simulator import citizens
from hall_simulator.clock import SimClock
from hall_simulator.evaluator import Evaluator, Spec
from protocol import vocab
from tests.uplink_support import SECRET

KEY = "5a" * 32


def config(broker, data_dir, central_url):
    return config_mod.from_dict({
        "gateway": {"hall": HALL, "data_dir": str(data_dir)},
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "gw-%s" % data_dir.name},
        "http": {"host": "127.0.0.1", "port": 0},
        "device_config": {"version": 1, "rating_timeout_s": 20, "thanks_s": 1,
                          "status_interval_s": 1},
        "devices": [{"id": "w01", "window": "A01", "key": KEY}],
        "uplink": {"url": central_url, "gateway_id": "gw-futian", "hmac_secret": SECRET},
    })


def case(cid):
    return {"case_id": cid, "window": "A01", "staff_id": "A0101", "matter_code": "M-7",
            "matter_name": "居民身份证换领", "serials": ["SZ%06d" % cid],
            "node": vocab.NODE_COMPLETION, "time": int(time.time())}


def held(ev):
    return ev.device.outbox.kept      # the firmware outbox's count of custody copies


def rate(live, ev, cid, confirmed):
    before = len(confirmed)
    live.gw.bridge.publish_context("w01", case(cid))
    until(lambda: len(confirmed) > before and ev.outbox_depth() == 0, "case %d rated" % cid)
    live.gw.bridge.publish_context("w01", None)


def test_the_real_wifi_firmware_keeps_custody_and_a_blank_gateway_loses_nothing(
        mosquitto_broker, tmp_path):
    central = CentralThread(tmp_path / "central.db", free_port())       # not listening yet
    confirmed = []
    mix = citizens.Mix(levels=(100, 0, 0, 0, 0), walk_away=0.0, double_tap=0.0, think_s=(0.3, 0.6))
    ev = Evaluator(Spec("w01", KEY, "A01", "mqtt", str(tmp_path / "w01"), hall=HALL,
                        mqtt={"host": mosquitto_broker.host, "port": mosquitto_broker.port,
                              "keepalive": 30}),
                   SimClock(speed=4), confirmed.append, mix=mix, seed=6)
    try:
        with LiveGateway(config(mosquitto_broker, tmp_path / "gw1", central.url)) as first:
            first.gw.uplink.backoff = Backoff(base=0.2, cap=0.5)
            ev.start()
            for cid in (1, 2):
                rate(first, ev, cid, confirmed)
            until(lambda: held(ev) == 2, "two copies in custody")
            until(lambda: first.gw.registry.get("w01").custody == 2, "its STATUS")
            (entry,) = first.request("GET", "/status")[1]["device_list"]
            assert entry["custody"] == 2 and entry["custody_oldest"]
            time.sleep(2.5)
            assert held(ev) == 2                          # the central API has nothing yet
            central.start()
            until(lambda: held(ev) == 0, "custody released once the central API has them")
            assert len(central.rating_ids()) == 2
            central.stop()                                # down again: 3 and 4 stay here
            for cid in (3, 4):
                rate(first, ev, cid, confirmed)
            until(lambda: held(ev) == 2, "3 and 4 in custody")
            assert first.gw.store.backlog()["ratings"] == 2
            generation = first.gw.store.generation
        central.start()
        with LiveGateway(config(mosquitto_broker, tmp_path / "gw2", central.url)) as blank:
            blank.gw.uplink.backoff = Backoff(base=0.2, cap=0.5)
            assert blank.gw.store.generation != generation
            until(lambda: blank.gw.store.stats["reoffered"] == 2, "3 and 4 re-offered")
            until(lambda: held(ev) == 0, "custody released by the blank gateway")
        ids = sorted(central.rating_ids())
        assert ids == sorted("w01:%d" % e["counter"] for e in confirmed) and len(ids) == 4
    finally:
        ev.stop()
        central.close()
