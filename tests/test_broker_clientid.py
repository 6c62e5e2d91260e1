"""Client ids on a locked-down broker (use_username_as_clientid), against real brokers: the
intake's persistent session is keyed on its own login, a device presenting another's client id
disconnects nobody, and the hostile campaign's takeover attack tells the two kinds of broker
apart."""

import asyncio
import os
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from broker_lockdown_support import HALL, Client, gateway_config, receive_acks  # noqa: E402
from gw_support import device_key, make_rating  # noqa: E402

from gateway import mosquitto_acl  # noqa: E402
from gateway.app import Gateway  # noqa: E402
from gateway.registry import Registry  # noqa: E402
from hall_simulator import hostile, hostile_mqtt  # noqa: E402
from hall_simulator.broker import Broker  # noqa: E402
from protocol import auth, codec, schema, topics, vocab  # noqa: E402
from protocol.auth import mqtt_password  # noqa: E402


def test_ratings_sent_while_the_gateway_is_away_wait_for_its_intake_on_a_locked_down_broker(tmp_path):
    """With the login as client id, the intake's persistent session is keyed on its own user
    ("<username>-ingest"): QoS 1 ratings published while the gateway is stopped wait in the
    broker and are delivered, committed and ACKed when it is back."""
    files_dir = tmp_path / "broker-files"
    login_pair = ("gateway-lockdown", os.urandom(12).hex())
    devices = [{"id": "dev-b", "window": "A02", "transport": "mqtt", "key": device_key("dev-b").hex()}]
    paths = mosquitto_acl.write_files(str(files_dir), HALL, Registry(devices), *login_pair)
    broker = Broker(tmp_path / "broker", password_file=paths["password_file"],
                    acl_file=paths["acl_file"]).start()
    cfg = gateway_config(tmp_path, broker, files_dir, login_pair, devices)
    dev = Client(broker, "dev-b", mqtt_password(device_key("dev-b")), client_id="hall-dev-b")
    ratings = {n: make_rating("dev-b", n, window="A02") for n in (1, 2, 3, 4)}

    def rate(n):
        dev.publish(topics.device_topic(HALL, "dev-b", "rating"),
                    codec.to_json(schema.RATING, ratings[n]))

    async def run_gateway(during):
        gw = Gateway(cfg)
        await gw.start()
        try:
            assert await asyncio.to_thread(gw.bridge.connected.wait, 10)
            return await asyncio.to_thread(during, gw)
        finally:
            await gw.stop()

    def first(gw):
        rate(1)
        return [a["counter"] for a in receive_acks(dev, "dev-b", 1)]

    def second(gw):
        acks = receive_acks(dev, "dev-b", 3)
        return sorted(a["counter"] for a in acks), dict(gw.bridge.ingest.stats)

    try:
        assert dev.ok
        dev.subscribe(topics.device_topic(HALL, "dev-b", "ack"))
        assert asyncio.run(run_gateway(first)) == [1]
        for n in (2, 3, 4):                   # nobody is there to read them but the broker
            rate(n)
        counters, stats = asyncio.run(run_gateway(second))
        assert counters == [2, 3, 4], counters
        assert stats["connects"] == 1 and stats["publishes"] == 3, stats
        assert "gateway-lockdown-ingest" in broker.log_text()     # the intake's own login
    finally:
        dev.close()
        broker.close()


def test_a_device_presenting_another_client_id_disconnects_neither_it_nor_the_gateway(tmp_path):
    """An evaluator with a valid login (dev-a) CONNECTs under the client id of another device
    (its firmware's "hall-dev-b") and of each of the gateway's connections. The broker takes the
    login as the client id (use_username_as_clientid), so it takes over nobody's session: the
    victim stays connected and its next rating is stored and ACKed, the gateway's intake and
    control plane stay up."""
    files_dir = tmp_path / "broker-files"
    login_pair = ("gateway-lockdown", os.urandom(12).hex())
    devices = [{"id": d, "window": w, "transport": "mqtt", "key": device_key(d).hex()}
               for d, w in (("dev-a", "A01"), ("dev-b", "A02"))]
    paths = mosquitto_acl.write_files(str(files_dir), HALL, Registry(devices), *login_pair)
    broker = Broker(tmp_path / "broker", password_file=paths["password_file"],
                    acl_file=paths["acl_file"]).start()
    cfg = gateway_config(tmp_path, broker, files_dir, login_pair, devices)
    stolen = ["hall-dev-b", cfg.mqtt.client_id + "-ingest", cfg.mqtt.client_id]

    async def scenario():
        gw = Gateway(cfg)
        await gw.start()
        try:
            assert await asyncio.to_thread(gw.bridge.connected.wait, 10)
            await asyncio.to_thread(takeovers, gw)
        finally:
            await gw.stop()

    def takeovers(gw):
        ingest = gw.bridge.ingest.stats
        victim = Client(broker, "dev-b", mqtt_password(device_key("dev-b")), client_id="hall-dev-b")
        assert victim.ok
        victim.subscribe(topics.device_topic(HALL, "dev-b", "ack"))
        gateway_down = []                     # moments the gateway saw a link of its own down
        watching = threading.Event()
        watching.set()

        def watch():
            while watching.is_set():
                if not gw.bridge.connected.is_set():
                    gateway_down.append(time.monotonic())
                time.sleep(0.005)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            for client_id in stolen:
                attacker = Client(broker, "dev-a", mqtt_password(device_key("dev-a")),
                                  client_id=client_id)
                assert attacker.ok, "dev-a's own login was refused"
                time.sleep(0.5)               # an eviction, and paho's reconnect, happen in this
                attacker.close()
        finally:
            watching.clear()
            watcher.join(5)
        assert victim.drops == [] and victim.c.is_connected(), \
            "the victim was disconnected: %r" % victim.drops
        assert gateway_down == [], "the gateway lost a link %d times" % len(gateway_down)
        assert (ingest["connects"], ingest["drops"]) == (1, 0), ingest
        rating = make_rating("dev-b", 1, window="A02")
        victim.publish(topics.device_topic(HALL, "dev-b", "rating"),
                       codec.to_json(schema.RATING, rating))
        acks = receive_acks(victim, "dev-b", 1)
        assert acks, "the victim's rating was not ACKed"
        ack = acks[0]
        assert ack["counter"] == 1 and ack.get("result", vocab.ACK_STORED) == vocab.ACK_STORED
        assert auth.verify_ack(device_key("dev-b"), "dev-b", ack, rating["mac"])
        assert victim.drops == []
        victim.close()

    try:
        asyncio.run(scenario())
    finally:
        broker.close()


@pytest.mark.parametrize("locked", [True, False], ids=["login-as-client-id", "anonymous-broker"])
def test_the_hostile_takeover_attack_tells_a_broker_that_hands_out_client_ids(tmp_path, locked):
    """hall_simulator.hostile's mqtt_clientid_takeover against a real broker: where the login is
    the client id, each CONNECT is a hit and nothing a breach, and the holder stays connected;
    where the broker gives out the client id asked for, each one is a breach."""
    users = {"w01": "p-01", "w02": "p-02"} if locked else None
    broker = Broker(tmp_path / "broker", users=users).start()
    try:
        holder = Client(broker, "w02", "p-02", client_id="hall-w02")
        assert holder.ok
        ledger = hostile.Ledger()
        hostile_mqtt.takeover(ledger, broker, "w01", "p-01", ("hall-w02", "gateway-x-ingest"))
        assert ledger.hits["mqtt_clientid_takeover"] == 2
        if locked:
            assert ledger.breaches == [] and holder.drops == []
        else:
            assert [d for _, d in ledger.breaches] == ["the broker let w01 in as hall-w02",
                                                       "the broker let w01 in as gateway-x-ingest"]
            assert holder.drops, "the holder of hall-w02 was not disconnected"
        holder.close()
    finally:
        broker.close()

