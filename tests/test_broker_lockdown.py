"""Mosquitto locked down in the simulator's hall (attacks on a live hall): no anonymous or unknown
client, no device on another's topics or reading another's, and a whole hall-sim run on
authenticated MQTT. The gateway keeping the broker in step with its registry:
tests/test_broker_registry_sync.py; client ids: tests/test_broker_clientid.py; the Pi install:
tests/test_broker_pi_install.py."""

import os
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from broker_lockdown_support import HALL, Client, LiveHall, key_of, live_hall, login  # noqa: E402,F401 (live_hall: a fixture)
from hall_support import central, run_hall  # noqa: E402

from protocol import topics  # noqa: E402
from protocol.auth import mqtt_password  # noqa: E402


def test_the_halls_broker_refuses_anonymous_and_unknown_clients(live_hall):
    broker = live_hall.hall.broker
    rc = login(broker, None, None)
    assert rc is not None and rc.is_failure, "anonymous client accepted"
    rc = login(broker, "w01", "0" * 32)
    assert rc is not None and rc.is_failure, "w01 with a wrong password accepted"
    rc = login(broker, "intruder", "intruder")
    assert rc is not None and rc.is_failure, "an unknown user accepted"
    assert login(broker, "w01", mqtt_password(key_of(LiveHall.SEED, "w01"))).is_failure is False


def test_a_device_cannot_publish_on_another_devices_or_the_gateways_topics(live_hall):
    broker = live_hall.hall.broker
    observer = Client(broker, *live_hall.observer_login(), name="observer")
    assert observer.ok
    observer.subscribe("%s/%s/#" % (topics.ROOT, HALL))
    w01 = Client(broker, "w01", mqtt_password(key_of(LiveHall.SEED, "w01")), name="w01-attacker")
    assert w01.ok
    forged = []
    for kind in topics.DEVICE_TO_GATEWAY:            # w02's rating, status, availability
        forged.append((topics.device_topic(HALL, "w02", kind), b"forged-w02-" + kind.encode()))
    for kind in topics.GATEWAY_TO_DEVICE:            # even its own context, ack, config
        forged.append((topics.device_topic(HALL, "w01", kind), b"forged-w01-" + kind.encode()))
    for kind in ("state", "devices", "event"):       # the gateway's topics
        forged.append((topics.gateway_topic(HALL, kind), b"forged-gw-" + kind.encode()))
    forged.append(("hall/other-hall/dev/w01/rating", b"forged-elsewhere"))
    for topic, payload in forged:
        w01.publish(topic, payload)
    marker = b"w01-own-status-" + os.urandom(4).hex().encode()
    w01.publish(topics.device_topic(HALL, "w01", "status"), marker)   # allowed: arrives last
    got = observer.drain(until=marker)
    w01.close()
    observer.close()
    assert (topics.device_topic(HALL, "w01", "status"), marker) in got
    leaked = [(t, p) for t, p in got if p.startswith(b"forged")]
    assert leaked == [], "the broker let w01 publish: %r" % leaked


def test_a_device_cannot_read_another_devices_ack_context_or_config(live_hall):
    broker = live_hall.hall.broker
    gateway = Client(broker, *live_hall.observer_login(), name="gw-probe")
    assert gateway.ok
    w01 = Client(broker, "w01", mqtt_password(key_of(LiveHall.SEED, "w01")), name="w01-reader")
    assert w01.ok
    theirs = [topics.device_topic(HALL, "w02", kind) for kind in topics.GATEWAY_TO_DEVICE]
    w01.subscribe(*theirs, "%s/%s/#" % (topics.ROOT, HALL), "#",
                  topics.device_topic(HALL, "w01", "ack"))
    # the gateway published w02's config (retained) at start; now an ACK and a context for w02
    gateway.publish(topics.device_topic(HALL, "w02", "ack"), b"secret-ack-for-w02")
    gateway.publish(topics.device_topic(HALL, "w02", "context"), b"secret-context-for-w02")
    marker = b"ack-for-w01-" + os.urandom(4).hex().encode()
    gateway.publish(topics.device_topic(HALL, "w01", "ack"), marker)
    got = w01.drain(until=marker)
    w01.close()
    gateway.close()
    assert (topics.device_topic(HALL, "w01", "ack"), marker) in got
    leaked = [(t, p) for t, p in got if "/w02/" in t or t.startswith(topics.gateway_topic(HALL, "devices"))]
    assert leaked == [], "w01 read: %r" % leaked


# --- a whole hall-sim run on authenticated MQTT ------------------------------------------------
def test_a_hall_sim_run_uses_authenticated_mqtt_and_devices_deliver(tmp_path, live_hall):
    status, r, out = run_hall(tmp_path, rs485=0, mqtt=2, duration=60, speed=10, seed=9)
    assert r["confirmed"] > 0 and r["lost"] == 0 and r["duplicates"] == 0, out
    devices = {rid.split(":")[0] for (rid,) in central(tmp_path, "SELECT rating_id FROM ratings"
                                                                " WHERE source=1")}
    assert devices == {"w01", "w02"}, out               # both MQTT evaluators delivered
    conf = (tmp_path / "hall" / "broker" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "password_file " in conf and "acl_file " in conf
    assert "use_username_as_clientid true" in conf
    log = (tmp_path / "hall" / "broker" / "mosquitto.log").read_text()
    assert "u'w01'" in log and "u'w02'" in log          # the evaluators logged in by name
    toml_path = tmp_path / "hall" / "gateway.toml"
    assert os.stat(toml_path).st_mode & 0o777 == 0o600
    mqtt_cfg = tomllib.loads(toml_path.read_text(encoding="utf-8"))["mqtt"]
    assert mqtt_cfg["username"] and len(mqtt_cfg["password"]) >= 24
    assert mqtt_cfg["password"] != live_hall.gateway_login()[1]   # a new one every run
