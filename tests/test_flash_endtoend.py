"""End to end: a virtual evaluator on a pty is provisioned by flash.py, verified, boots the real
firmware with the config it was given, the real gateway (MQTT bridge, registry file written by
provisioning, durable store) accepts a rating pressed on it, checking its MAC with the key
provisioning registered, and the gateway's uplink delivers it to the reference central API."""

import asyncio
import json
import time

from gateway.config import MqttConfig
from gateway.mqtt_bridge import MqttBridge
from gateway.registry import Registry
from gateway.rejects import Rejections
from gateway.committer import GroupCommitter
from gateway.store import Store
from gateway.upstream_auth import HmacAuth
from gateway.uplink import Uplink
from hall_simulator.central_api import CentralServer
from hall_simulator.central_store import CentralStore
from hall_simulator.virtual_board import FirmwareApp
from protocol import vocab
from tests.flash_support import bundle_dir, run, virtual_device

HALL = "hall-sz01"
WAIT = 15.0


def _until(cond, timeout=WAIT):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_provisioned_virtual_device_boots_and_its_rating_is_accepted_by_the_gateway(mosquitto_broker, tmp_path):
    reg = str(tmp_path / "registry.json")
    app = FirmwareApp()
    with virtual_device(tmp_path, app_runner=app) as srv:
        code, out = run("provision", "--port", srv.path, "--bundle", bundle_dir(), "--board", "five_button",
                        "--transport", "mqtt", "--hall", HALL, "--window", "07", "--mqtt-host", mosquitto_broker.host,
                        "--mqtt-port", mosquitto_broker.port, "--registry", reg, "--new-registry", "--timeout", "2")
        assert code == 0, out
        assert app.booted.wait(WAIT), "the firmware did not boot after the reset"
        device_id = app.device.cfg["device"]
        code, out = run("verify", "--port", srv.path, "--bundle", bundle_dir(), "--registry", reg)
        assert code == 0, out  # verify interrupted the running app (Ctrl-C) to reach the REPL
        assert _until(lambda: not app.booted.is_set())
        with srv.device.lock:
            srv.device.power_on()  # unplug and plug in again: it boots from its files
        assert app.booted.wait(WAIT) and app.boots == 2

        store = Store(str(tmp_path / "outbox.db"))
        committer = GroupCommitter(store)
        rated = []
        bridge = MqttBridge(MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port, client_id="gw-e2e"),
                            HALL, Registry(path=reg), committer, Rejections(), store=store,
                            enrich=lambda r: {"matter_code": "440300-001", "staff_id": "1001"},
                            on_rating=lambda r, res, enrichment: rated.append((r, res)))
        bridge.start()
        try:
            assert bridge.connected.wait(WAIT)
            bridge.publish_context(device_id, {"case_id": 77, "node": 3, "serials": ["SZ2026-0077"],
                                               "staff_name": "李堃", "matter_name": "居住证签注", "window": "07"})
            assert _until(lambda: app.device is not None and app.device.app.state == "case"), "no case on screen"
            time.sleep(0.7)  # past the misuse guard
            with srv.device.lock:
                app.board.press(0)  # K1: 非常满意
            assert _until(lambda: rated), "the gateway got no rating"
            rating, (result, _reason) = rated[0]
            assert result == vocab.ACK_STORED  # MAC checked against the key provisioning registered
            assert rating["device"] == device_id and rating["case_id"] == 77
            first_id = "%s:%d" % (device_id, app.device.cfg["counter_floor"] + 1)  # the first above the floor
            (item,) = store.upload_batch(10)
            assert item["record"]["rating_id"] == first_id and item["record"]["hall"] == HALL
            assert _until(lambda: app.device.outbox.depth == 0)  # the device got its ACK
            received = asyncio.run(_uplink_to_central(store, tmp_path))
            assert [r["rating_id"] for r in received] == [first_id]
            assert received[0]["level"] == vocab.VERY_SATISFIED and received[0]["case_key"] == "SZ2026-0077#3"
            assert store.backlog()["ratings"] == 0
        finally:
            bridge.stop()
            committer.close()
            store.close()
        with open(reg) as f:
            assert json.load(f)["devices"][0]["id"] == device_id


async def _uplink_to_central(store, tmp_path):
    central = CentralStore(tmp_path / "central.db")
    server = CentralServer(central, secrets={"*": "e2e-secret"})
    await server.start()
    try:
        async with Uplink(store, server.url, "gw-e2e", HALL, auth=HmacAuth("gw-e2e", "e2e-secret")) as uplink:
            await uplink.drain()
        return central.ratings(limit=10)
    finally:
        await server.stop()
        central.close()
