"""What the broker lockdown tests share (tests/test_broker_*.py): a paho probe client, login
attempts, the gateway's config on a locked-down broker, and a live simulated hall on a loop
thread of its own (the `live_hall` fixture)."""

import asyncio
import io
import os
import queue
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway import config as config_mod
from gateway import mosquitto_acl
from hall_simulator import hall as hall_mod
from protocol import codec, schema, topics

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


def gateway_config(tmp_path, broker, files_dir, login, devices):
    return config_mod.from_dict({
        "gateway": {"hall": HALL, "data_dir": str(tmp_path / "gw")},
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "gw-lockdown",
                 "username": login[0], "password": login[1], "keepalive": 10,
                 "broker_files": str(files_dir), "broker_pid_file": broker.pid_file},
        "http": {"host": "127.0.0.1", "port": 0},
        "devices": devices,
    })



def receive_acks(client, device, n, timeout=WAIT_S):
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

