"""The real gateway process (`python -m gateway.cli run`) is killed with SIGKILL at random instants
while devices keep sending ratings over a real Mosquitto and the uplink to the reference central
API flaps (outages, 5xx). At the end every rating a device was told was recorded (ACK stored or
duplicate) is at the central API exactly once, and nothing else is there.
The normal tier kills it 6 times; the slow tier (-m slow) 50 times."""

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from conftest import free_port
from gw_support import HALL, device_key, make_rating
from protocol import codec, schema, topics, vocab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = ("ev-1", "ev-2", "ev-3")


class DeviceThread(threading.Thread):
    """Sends ratings one at a time like the firmware's outbox: the same rating again until ACKed."""

    def __init__(self, broker, device_id, stop):
        super().__init__(daemon=True)
        self.device_id, self.stop = device_id, stop
        self.acks = queue.Queue()
        self.acked, self.dead = [], []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="kl-" + device_id)
        self.client.on_message = lambda c, u, m: self.acks.put(codec.from_json(schema.ACK, m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topics.device_topic(HALL, device_id, "ack"), qos=1)
        self.client.loop_start()
        self.counter = 1
        self.drained = threading.Event()
        self.pause = threading.Event()

    def run(self):
        topic = topics.device_topic(HALL, self.device_id, "rating")
        while not self.stop.is_set():
            if self.pause.is_set():          # no new ratings: only finish the one in flight
                if self.drained.is_set():
                    time.sleep(0.05)
                    continue
            level = vocab.LEVELS[self.counter % 5]
            rating = make_rating(self.device_id, self.counter, level=level,   # one case per rating
                                 serials=["SN-%s-%d" % (self.device_id, self.counter)])
            self.client.publish(topic, codec.to_json(schema.RATING, rating), qos=1)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                try:
                    ack = self.acks.get(timeout=0.05)
                except queue.Empty:
                    continue
                if ack["counter"] != self.counter:
                    continue                     # a late answer to an earlier send
                result = ack.get("result", vocab.ACK_STORED)
                if result == vocab.ACK_RETRY:
                    break
                if result == vocab.ACK_DEAD_LETTER:
                    self.dead.append((self.counter, ack.get("reason")))
                else:
                    self.acked.append("%s:%d" % (self.device_id, self.counter))
                self.counter += 1
                if self.pause.is_set():
                    self.drained.set()
                break

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def _get(url):
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.loads(resp.read().decode())


def _post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=2) as resp:
        return json.loads(resp.read().decode())


def _config(tmp_path, broker, http_port, central_url):
    lines = ['[gateway]', 'hall = "%s"' % HALL, 'data_dir = "%s"' % (tmp_path / "gw"),
             '[mqtt]', 'host = "%s"' % broker.host, 'port = %d' % broker.port, 'keepalive = 5',
             '[http]', 'port = %d' % http_port,
             '[uplink]', 'url = "%s"' % central_url, 'profile = "gbt39046"', 'gateway_id = "gw-kl"']
    for d in DEVICES:
        lines += ['[[devices]]', 'id = "%s"' % d, 'window = "W%s"' % d[-1], 'key = "%s"' % device_key(d).hex()]
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _central(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hall_simulator.central_api", "--port", str(port),
                             "--db", str(tmp_path / "central.db"), "--close-interval", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert b"listening" in proc.stdout.readline()
    return proc, "http://127.0.0.1:%d" % port


def _gateway(config):
    err = open(os.path.join(os.path.dirname(config), "gateway-stderr.txt"), "ab")
    with err:   # kept so that a start that fails says why
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", config,
                                 "--log-level", "ERROR"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=err)


def _wait_up(gw, http_port, timeout=30.0):
    """Until the gateway answers /status connected to the broker: a kill before that would test
    only the start-up (on a loaded machine the interpreter alone may take longer than the delay)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and gw.poll() is None:
        try:
            if _get("http://127.0.0.1:%d/status" % http_port)["mqtt"]["connected"]:
                return
        except OSError:
            pass
        time.sleep(0.05)
    path = os.path.join(os.path.dirname(gw.args[-3]), "gateway-stderr.txt")
    with open(path, "rb") as f:
        tail = f.read()[-2000:].decode("utf-8", "replace")
    raise AssertionError("the gateway did not come up (exit %s): %s" % (gw.poll(), tail))


def _central_ids(central_url):
    ids, after = [], 0
    while True:
        rows = _get("%s/v1/ratings?after=%d&limit=10000" % (central_url, after))["ratings"]
        if not rows:
            return ids
        ids += [r["rating_id"] for r in rows]
        after = rows[-1]["seq"] if "seq" in rows[-1] else after + len(rows)


@pytest.mark.parametrize("kills", [6, pytest.param(50, marks=pytest.mark.slow)])
def test_sigkill_at_random_instants_loses_and_duplicates_nothing(kills, mosquitto_broker, tmp_path):
    rnd = random.Random(kills)
    central, central_url = _central(tmp_path)
    http_port = free_port()
    config = _config(tmp_path, mosquitto_broker, http_port, central_url)
    stop = threading.Event()
    devices = [DeviceThread(mosquitto_broker, d, stop) for d in DEVICES]
    for d in devices:
        d.start()
    try:
        for n in range(kills):
            gw = _gateway(config)
            _wait_up(gw, http_port)
            if n % 3 == 1:   # the uplink flaps: a short outage or a run of 5xx answers
                fault = {"outage_s": 0.5} if rnd.random() < 0.5 else {"fail_next": 3}
                try:
                    _post(central_url + "/v1/admin/faults", fault)
                except OSError:
                    pass
            time.sleep(rnd.uniform(0.0, 1.2))
            gw.send_signal(signal.SIGKILL)
            gw.wait()
        # Last run: the devices finish what they have in flight, the uplink drains everything.
        for d in devices:
            d.pause.set()
        gw = _gateway(config)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    outbox = _get("http://127.0.0.1:%d/status" % http_port)["outbox"]
                except OSError:
                    outbox = None
                if outbox and all(d.drained.is_set() for d in devices) and outbox["ratings"] == 0:
                    break
                time.sleep(0.1)
            assert outbox is not None and outbox["ratings"] == 0, outbox
        finally:
            gw.send_signal(signal.SIGTERM)
            gw.wait(10)
        stop.set()
        acked = [rid for d in devices for rid in d.acked]
        assert not [x for d in devices for x in d.dead]
        at_central = _central_ids(central_url)
        assert len(at_central) == len(set(at_central))                 # once
        assert set(acked) <= set(at_central), sorted(set(acked) - set(at_central))[:5]
        sent = set("%s:%d" % (d.device_id, c) for d in devices for c in range(1, d.counter + 1))
        assert set(at_central) <= sent                                  # nothing invented
        assert len(acked) >= kills
    finally:
        stop.set()
        for d in devices:
            d.close()
        central.send_signal(signal.SIGTERM)
        central.wait(10)
