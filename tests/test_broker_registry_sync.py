"""The gateway keeps the broker's password + ACL files in step with its registry at run time
(Registry.add / update / remove -> listener -> files -> SIGHUP), against real brokers: a new
device logs in at once, a re-keyed one only with its new key, a removed one not at all; the
files' modes, atomic writes and the reload flag; a device named like a gateway login."""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from broker_lockdown_support import (HALL, ROOT, WAIT_S, Client, gateway_config, login,  # noqa: E402
                                     login_within)
from gateway import config as config_mod  # noqa: E402
from gateway import mosquitto_acl  # noqa: E402
from gateway.app import Gateway  # noqa: E402
from gateway.registry import Registry  # noqa: E402
from hall_simulator.broker import Broker  # noqa: E402
from protocol import topics  # noqa: E402
from protocol.auth import mqtt_password  # noqa: E402


def test_devices_added_rekeyed_and_removed_at_run_time_reach_the_broker(tmp_path):
    files_dir = tmp_path / "broker-files"
    login_pair = ("gateway-lockdown", os.urandom(12).hex())
    first = [{"id": "dev-a", "window": "01", "transport": "mqtt", "key": "a1" * 32}]
    paths = mosquitto_acl.write_files(str(files_dir), HALL, Registry(first), *login_pair)
    broker = Broker(tmp_path / "broker", password_file=paths["password_file"],
                    acl_file=paths["acl_file"]).start()
    cfg = gateway_config(tmp_path, broker, files_dir, login_pair, first)
    figures = {}

    async def scenario():
        gw = Gateway(cfg)
        await gw.start()
        try:
            await asyncio.to_thread(gw.bridge.connected.wait, 10)
            await asyncio.to_thread(run_time_changes, gw)
        finally:
            await gw.stop()

    def run_time_changes(gw):
        # the broker takes the login as client id: a probe on the gateway's login would take its
        # place, so the gateway's own intake is the observer
        ingest = gw.bridge.ingest.stats
        key_new = bytes.fromhex("b2" * 32)
        assert login(broker, "dev-new", mqtt_password(key_new)).is_failure      # not yet known
        t0 = time.monotonic()
        gw.registry.add({"id": "dev-new", "window": "02", "transport": "mqtt", "key": key_new.hex()})
        waited = login_within(broker, "dev-new", mqtt_password(key_new), want_ok=True)
        assert waited is not None, "a device added at run time could not log in within %.0f s" % WAIT_S
        figures["add_to_login_s"] = time.monotonic() - t0
        dev = Client(broker, "dev-new", mqtt_password(key_new), name="dev-new")
        assert dev.ok
        seen = ingest["publishes"] + ingest["oversize"]
        dev.publish(topics.device_topic(HALL, "dev-new", "rating"), "非常满意".encode())
        deadline = time.monotonic() + WAIT_S
        while ingest["publishes"] + ingest["oversize"] == seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ingest["publishes"] == seen + 1, "dev-new's rating did not reach the gateway"
        # a rename changes no login and no topic: the files are not rewritten, the broker not reloaded
        writes = gw.broker_files.writes
        gw.registry.update("dev-new", {"name": "二号窗口"})
        assert gw.broker_files.writes == writes
        # re-keyed: the old password is refused (its connection dropped), the new one works
        key_2 = bytes.fromhex("c3" * 32)
        gw.registry.update("dev-new", {"key": key_2.hex()})
        assert login_within(broker, "dev-new", mqtt_password(key_2), want_ok=True) is not None
        assert login(broker, "dev-new", mqtt_password(key_new)).is_failure
        deadline = time.monotonic() + WAIT_S
        while dev.c.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not dev.c.is_connected(), "the old key's connection outlived the re-key"
        dev.close()
        # removed: refused from then on, and an open connection is dropped
        dev2 = Client(broker, "dev-new", mqtt_password(key_2), name="dev-new-2")
        assert dev2.ok
        gw.registry.remove("dev-new")
        assert login_within(broker, "dev-new", mqtt_password(key_2), want_ok=False) is not None
        deadline = time.monotonic() + WAIT_S
        while dev2.c.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not dev2.c.is_connected(), "a removed device stayed connected"
        dev2.close()
        # dev-a (from the config) was never disturbed, and the gateway still reaches the broker
        assert not login(broker, "dev-a", mqtt_password(bytes.fromhex("a1" * 32))).is_failure
        assert "dev-new" not in Path(paths["acl_file"]).read_text()
        assert ingest["drops"] == 0 and ingest["connects"] == 1

    try:
        asyncio.run(scenario())
    finally:
        broker.close()
    print("figures:", figures)



def test_a_device_registered_under_a_gateway_login_gets_no_login_of_its_own(tmp_path):
    """A device whose id is the gateway's user or its intake's ("<user>-ingest") would be named
    like the gateway by the broker (and give that login a second password): left out of both
    files, while every other device and the gateway's two logins work with their own ACLs."""
    clash = {"gw": "c1" * 32, "gw-ingest": "c2" * 32}
    reg = Registry([{"id": d, "window": "%02d" % i, "transport": "mqtt", "key": k}
                    for i, (d, k) in enumerate(sorted(dict(clash, **{"ev-a": "a1" * 32}).items()))])
    paths = mosquitto_acl.write_files(str(tmp_path / "files"), HALL, reg, "gw", "gw-秘密")
    pw = Path(paths["password_file"]).read_text(encoding="utf-8")
    assert [line.split(":")[0] for line in pw.splitlines()] == ["gw", "gw-ingest", "ev-a"]
    assert Path(paths["acl_file"]).read_text().count("user gw-ingest\n") == 1
    broker = Broker(tmp_path / "broker", password_file=paths["password_file"],
                    acl_file=paths["acl_file"]).start()
    try:
        for device, key in clash.items():
            assert login(broker, device, mqtt_password(bytes.fromhex(key))).is_failure
        assert not login(broker, "gw", "gw-秘密").is_failure
        assert not login(broker, "gw-ingest", "gw-秘密").is_failure
        assert not login(broker, "ev-a", mqtt_password(bytes.fromhex("a1" * 32))).is_failure
        # the intake's login reads ratings and nothing else of the hall
        ingest = Client(broker, "gw-ingest", "gw-秘密", name="ingest")
        codes = ingest.subscribe(topics.gateway_subscriptions(HALL, ("rating",))[0],
                                 topics.device_topic(HALL, "ev-a", "status"))
        ev = Client(broker, "ev-a", mqtt_password(bytes.fromhex("a1" * 32)), name="ev-a")
        ev.publish(topics.device_topic(HALL, "ev-a", "status"), b"status-of-ev-a")
        ev.publish(topics.device_topic(HALL, "ev-a", "rating"), b"rating-of-ev-a")
        got = ingest.drain(until=b"rating-of-ev-a")
        assert codes[0].value == 1 and [p for _, p in got] == [b"rating-of-ev-a"], (codes, got)
        ingest.close()
        ev.close()
    finally:
        broker.close()


def test_broker_files_modes_atomic_writes_and_the_reload_flag(tmp_path):
    folder = tmp_path / "hall"
    folder.mkdir()
    os.chmod(folder, 0o2750)
    reg = Registry([{"id": "dev-a", "window": "01", "transport": "mqtt", "key": "a1" * 32}])
    alarms = []
    files = mosquitto_acl.BrokerFiles(str(folder), HALL, reg, "gw", "gw-秘密-pw",
                                      alarm=lambda name, detail: alarms.append(name))
    assert files.sync(force=True) and not files.sync()          # unchanged: not written again
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["acl", "passwords", "reload"]              # no temp file left behind
    for name in ("acl", "passwords"):
        st = os.stat(folder / name)
        assert st.st_mode & 0o777 == 0o640 and st.st_gid == os.stat(folder).st_gid
    assert "秘密" not in (folder / "passwords").read_text(encoding="utf-8")
    # the systemd unit removed the flag and reloaded; a new device writes both files and a new flag
    (folder / "reload").unlink()
    reg.add({"id": "dev-b", "window": "02", "transport": "mqtt", "key": "b2" * 32})
    assert files.sync() and (folder / "reload").exists()
    assert "user dev-b" in (folder / "acl").read_text()
    # with a pid file the gateway signals the broker itself and leaves no flag; a stale pid file
    # (not a mosquitto) is refused, not signalled
    (folder / "reload").unlink()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "stale.pid").write_text("%d\n" % sleeper.pid)
        files.pid_file = str(tmp_path / "stale.pid")
        assert files.request_reload() is False
        assert sleeper.poll() is None                           # SIGHUP would have ended it
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not (folder / "reload").exists()
    # an unwritable directory: an alarm, never an exception into the registry's caller
    files.directory = str(tmp_path / "no" / "such" / "dir")
    open(tmp_path / "no", "w").close()
    reg.add({"id": "dev-c", "window": "03", "transport": "mqtt", "key": "c3" * 32})
    assert files.sync() is False and alarms == ["broker_files"]


def test_config_needs_the_gateways_login_for_broker_files():
    with pytest.raises(config_mod.ConfigError, match="broker_files"):
        config_mod.from_dict({"gateway": {"hall": "h"}, "mqtt": {"broker_files": "/tmp/x"}})
    example = config_mod.load(str(ROOT / "docs" / "gateway.example.toml"))
    assert example.mqtt.broker_files == "/etc/mosquitto/hall" and not example.mqtt.broker_pid_file

