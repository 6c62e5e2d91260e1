"""Mosquitto locked down where the product runs it, against real brokers:
- the simulator's hall: no anonymous client, no device on another's topics (attacks on a live hall);
- the gateway keeps the broker's password + ACL files in step with its registry at run time
  (Registry.add / update / remove -> listener -> files -> SIGHUP): a new device logs in at once,
  a re-keyed one only with its new key, a removed one not at all;
- the Pi install (docs/mosquitto/hall-gateway.conf): Mosquitto as Debian runs it (root, then user
  mosquitto) reads the files the gateway's own user writes (0640, group mosquitto), and the
  systemd path unit's steps reload it;
- a whole hall-sim run on authenticated MQTT."""

import asyncio
import grp
import io
import os
import pwd
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import types
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from gw_support import device_key, make_rating  # noqa: E402
from hall_support import central, run_hall  # noqa: E402

from gateway import config as config_mod  # noqa: E402
from gateway import mosquitto_acl  # noqa: E402
from gateway.app import Gateway  # noqa: E402
from gateway.cli import main as cli_main  # noqa: E402
from gateway.registry import Registry  # noqa: E402
from hall_simulator import hall as hall_mod  # noqa: E402
from hall_simulator import hostile  # noqa: E402
from hall_simulator.broker import Broker, find_mosquitto, free_port  # noqa: E402
from protocol import auth, codec, schema, topics, vocab  # noqa: E402
from protocol.auth import mqtt_password  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HALL = hall_mod.HALL_ID
WAIT_S = 5.0


# --- MQTT helpers ---------------------------------------------------------------------------
class Client:
    """A paho client in its own thread: CONNACK code, received messages, SUBACK codes."""

    def __init__(self, broker, user=None, password=None, name="probe", client_id=None):
        self.inbox = queue.Queue()
        self.connacks = queue.Queue()
        self.subacks = queue.Queue()
        self.drops = []                        # reason codes of every disconnect seen
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=client_id or "%s-%s" % (name, os.urandom(3).hex()))
        if user is not None:
            self.c.username_pw_set(user, password)
        self.c.on_connect = lambda c, u, flags, rc, props: self.connacks.put(rc)
        self.c.on_disconnect = lambda c, u, flags, rc, props: self.drops.append(rc)
        self.c.on_message = lambda c, u, m: self.inbox.put((m.topic, m.payload))
        self.c.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put(codes)
        try:
            self.c.connect(broker.host, broker.port, keepalive=10)
        except OSError:                       # not listening (yet)
            self.rc = None
            return
        self.c.loop_start()
        try:
            self.rc = self.connacks.get(timeout=WAIT_S)
        except queue.Empty:
            self.rc = None
        if self.rc is None or self.rc.is_failure:
            self.close()

    @property
    def ok(self):
        return self.rc is not None and not self.rc.is_failure

    def subscribe(self, *topic_list):
        self.c.subscribe([(t, 1) for t in topic_list])
        return self.subacks.get(timeout=WAIT_S)

    def publish(self, topic, payload, retain=False):
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT_S)

    def drain(self, until=None, timeout=WAIT_S):
        """Everything received; waits until `until` (a payload) has arrived, then 0.3 s more."""
        got, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got.append(self.inbox.get(timeout=0.05))
            except queue.Empty:
                if until is None or any(p == until for _, p in got):
                    deadline = min(deadline, time.monotonic() + 0.3)
        return got

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def login(broker, user, password):
    """The CONNACK of one login attempt (None: no answer), the connection closed again."""
    probe = Client(broker, user, password)
    rc = probe.rc
    if probe.ok:
        probe.close()
    return rc


def login_within(broker, user, password, want_ok, timeout=WAIT_S):
    """Seconds until a login of user succeeds (want_ok) or is refused (not want_ok); None if never."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        rc = login(broker, user, password)
        if rc is not None and rc.is_failure != want_ok:
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def key_of(seed, device):
    return bytes.fromhex(hall_mod.device_key(seed, device))


# --- the gateway keeps the broker in step with its registry ----------------------------------
def _gateway_config(tmp_path, broker, files_dir, login, devices):
    return config_mod.from_dict({
        "gateway": {"hall": HALL, "data_dir": str(tmp_path / "gw")},
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "gw-lockdown",
                 "username": login[0], "password": login[1], "keepalive": 10,
                 "broker_files": str(files_dir), "broker_pid_file": broker.pid_file},
        "http": {"host": "127.0.0.1", "port": 0},
        "devices": devices,
    })


def test_devices_added_rekeyed_and_removed_at_run_time_reach_the_broker(tmp_path):
    files_dir = tmp_path / "broker-files"
    login_pair = ("gateway-lockdown", os.urandom(12).hex())
    first = [{"id": "dev-a", "window": "01", "transport": "mqtt", "key": "a1" * 32}]
    paths = mosquitto_acl.write_files(str(files_dir), HALL, Registry(first), *login_pair)
    broker = Broker(tmp_path / "broker", password_file=paths["password_file"],
                    acl_file=paths["acl_file"]).start()
    cfg = _gateway_config(tmp_path, broker, files_dir, login_pair, first)
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


def _acks(client, device, n, timeout=WAIT_S):
    """The first n ACKs (decoded) the client receives on the device's ack topic, fewer if none
    come within timeout."""
    ack_topic, acks = topics.device_topic(HALL, device, "ack"), []
    deadline = time.monotonic() + timeout
    while len(acks) < n and time.monotonic() < deadline:
        try:
            topic, payload = client.inbox.get(timeout=0.05)
        except queue.Empty:
            continue
        if topic == ack_topic:
            acks.append(codec.from_json(schema.ACK, payload))
    return acks


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
    cfg = _gateway_config(tmp_path, broker, files_dir, login_pair, devices)
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
        return [a["counter"] for a in _acks(dev, "dev-b", 1)]

    def second(gw):
        acks = _acks(dev, "dev-b", 3)
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
    cfg = _gateway_config(tmp_path, broker, files_dir, login_pair, devices)
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
        acks = _acks(victim, "dev-b", 1)
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
        hostile._takeover(ledger, broker, "w01", "p-01", ("hall-w02", "gateway-x-ingest"))
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


# --- the Pi install: Debian's Mosquitto as user mosquitto, the gateway as its own user ----------
def _unit_values(path, key):
    return [line.split("=", 1)[1].strip() for line in Path(path).read_text().splitlines()
            if line.startswith(key + "=")]


def _as_user(uid, gid, fn):
    """Run fn() in a forked child under uid/gid (no supplementary groups); its return code."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            code = fn()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run Mosquitto as Debian does (user mosquitto)")
def test_the_pi_install_debian_mosquitto_reads_what_the_gateway_user_writes():
    docs = ROOT / "docs"
    snippet = (docs / "mosquitto" / "hall-gateway.conf").read_text()
    etc_dir = "/etc/mosquitto/hall"
    # the shipped pieces name one directory and one flag
    assert re.search(r"^allow_anonymous false$", snippet, re.M)
    assert re.search(r"^use_username_as_clientid true$", snippet, re.M)
    assert re.search(r"^password_file %s/passwords$" % etc_dir, snippet, re.M)
    assert re.search(r"^acl_file %s/acl$" % etc_dir, snippet, re.M)
    assert _unit_values(docs / "mosquitto" / "hall-broker-reload.path", "PathExists") == [
        os.path.join(etc_dir, mosquitto_acl.RELOAD_FLAG)]
    steps = _unit_values(docs / "mosquitto" / "hall-broker-reload.service", "ExecStart")
    assert steps == ["/bin/rm -f %s/reload" % etc_dir,
                     "/bin/systemctl try-reload-or-restart mosquitto.service"]
    assert etc_dir in " ".join(_unit_values(docs / "hall-gateway.service", "ReadWritePaths"))

    nobody = pwd.getpwnam("nobody")
    mosquitto_gid = grp.getgrnam("mosquitto").gr_gid
    mosquitto_uid = pwd.getpwnam("mosquitto").pw_uid
    base = Path(tempfile.mkdtemp(prefix="hall-pi-"))
    try:
        os.chmod(base, 0o755)
        hall_dir = base / "hall"                    # /etc/mosquitto/hall as the README makes it
        hall_dir.mkdir()
        os.chown(hall_dir, nobody.pw_uid, mosquitto_gid)
        os.chmod(hall_dir, 0o2750)
        run_dir = base / "run"                      # /run/mosquitto and /var/lib/mosquitto
        run_dir.mkdir()
        os.chown(run_dir, mosquitto_uid, mosquitto_gid)
        gw_dir = base / "gw"                        # the gateway's config and registry
        gw_dir.mkdir()
        os.chown(gw_dir, nobody.pw_uid, nobody.pw_gid)
        toml = gw_dir / "gateway.toml"
        toml.write_text('[gateway]\nhall = "%s"\n\n[mqtt]\nusername = "gateway"\npassword = "gw-秘密"\n'
                        'broker_files = "%s"\n\n[[devices]]\nid = "ev-a"\nwindow = "A01"\n'
                        'transport = "mqtt"\nkey = "%s"\n' % (HALL, hall_dir, "a1" * 32), encoding="utf-8")
        registry = gw_dir / "registry.json"

        def write_as_gateway_user():
            return _as_user(nobody.pw_uid, nobody.pw_gid,
                            lambda: cli_main(["acl", "--config", str(toml)]))
        assert write_as_gateway_user() == 0
        for name in ("passwords", "acl"):
            st = os.stat(hall_dir / name)
            assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (nobody.pw_uid, mosquitto_gid, 0o640)
        assert (hall_dir / "reload").exists()       # for hall-broker-reload.path
        port = free_port()
        (base / "conf.d").mkdir()
        (base / "conf.d" / "hall-gateway.conf").write_text(
            snippet.replace(etc_dir, str(hall_dir)).replace("listener 1883", "listener %d 127.0.0.1" % port))
        # Debian's /etc/mosquitto/mosquitto.conf, with its paths moved here
        (base / "mosquitto.conf").write_text(
            "pid_file %s/mosquitto.pid\npersistence true\npersistence_location %s/\n"
            "log_dest file %s/mosquitto.log\ninclude_dir %s/conf.d\n" % (run_dir, run_dir, run_dir, base))
        proc = subprocess.Popen([find_mosquitto(), "-c", str(base / "mosquitto.conf")],
                                stderr=subprocess.PIPE)
        broker = types.SimpleNamespace(host="127.0.0.1", port=port)
        try:
            assert login_within(broker, "gateway", "gw-秘密", want_ok=True) is not None, \
                proc.stderr.read1().decode() if proc.poll() is not None else "no login"
            assert login(broker, None, None).is_failure
            assert not login(broker, "ev-a", mqtt_password(bytes.fromhex("a1" * 32))).is_failure
            # a device registered while running: the gateway's user rewrites, the path unit's
            # steps (flag off, then Debian's ExecReload: SIGHUP) let it in
            os.unlink(hall_dir / "reload")
            registry.write_text('{"devices": [{"id": "ev-b", "window": "A02", "transport": "mqtt", '
                                '"key": "%s"}]}' % ("b2" * 32), encoding="utf-8")
            assert write_as_gateway_user() == 0
            assert (hall_dir / "reload").exists()
            os.unlink(hall_dir / "reload")
            os.kill(proc.pid, signal.SIGHUP)
            assert login_within(broker, "ev-b", mqtt_password(bytes.fromhex("b2" * 32)),
                                want_ok=True) is not None
            log = (run_dir / "mosquitto.log").read_text()
            assert "Error" not in log and "Warning" not in log, log
        finally:
            proc.terminate()
            proc.wait(10)
            proc.stderr.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- a live simulated hall ------------------------------------------------------------------
class LiveHall:
    """hall_simulator.hall.Hall started (broker, gateway process, two MQTT evaluators), its event
    loop in a thread so the test can act while the hall runs."""

    SEED = 5

    def __init__(self, workdir):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.hall = hall_mod.Hall(0, 2, self.SEED, workdir=workdir, out=io.StringIO())
        self.call(self.hall.start())

    def call(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def gateway_login(self):
        """The gateway's MQTT login (on an anonymous broker: none, and anyone may observe)."""
        return getattr(self.hall, "mqtt_login", None) or (None, None)

    def observer_login(self):
        """A login of the tests' own that may read and write the whole hall. Not the gateway's:
        the broker takes the login as client id, so a probe on it would disconnect the gateway.
        Added to the files the gateway keeps (rewritten only when a device changes, which these
        tests do not do), then the broker reloaded."""
        if getattr(self, "_observer", None) is None:
            login = ("observer-" + os.urandom(3).hex(), os.urandom(12).hex())
            folder = Path(self.hall.broker_files)
            with open(folder / mosquitto_acl.PASSWORDS, "a", encoding="utf-8") as f:
                f.write("%s:%s\n" % (login[0], mosquitto_acl.hash_password(login[1])))
            with open(folder / mosquitto_acl.ACL, "a", encoding="utf-8") as f:
                f.write("\nuser %s\ntopic readwrite %s/%s/#\n" % (login[0], topics.ROOT, HALL))
            self.hall.broker.reload()
            assert login_within(self.hall.broker, *login, want_ok=True) is not None
            self._observer = login
        return self._observer

    def close(self):
        try:
            self.call(self.hall.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture(scope="module")
def live_hall(tmp_path_factory):
    live = LiveHall(str(tmp_path_factory.mktemp("live") / "hall"))
    yield live
    live.close()


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
