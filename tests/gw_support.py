"""Helpers shared by the gateway tests: keys and signed ratings as a device would make them."""

import hashlib
import json
import queue
import threading
import time

import paho.mqtt.client as mqtt

from protocol import auth, codec, errors, schema, topics, vocab

WAIT = 10.0

HALL = "futian-1"


def device_key(device):
    """A deterministic 32-byte key per device id (tests only)."""
    return hashlib.sha256(("test-key/" + device).encode()).digest()


def make_rating(device, counter, level=vocab.SATISFIED, source=vocab.SRC_PRESS, sign=True, **extra):
    rating = {"device": device, "counter": counter, "case_id": 7, "serials": ["SN20240001"],
              "node": vocab.NODE_COMPLETION, "source": source, "window": "A01", "staff_id": "1001",
              "uptime_ms": 1000 + counter}
    if source == vocab.SRC_PRESS:
        rating["overall"] = level
        if vocab.is_bad(level):
            rating["tags"] = [501]
    rating.update(extra)
    if sign:
        rating = auth.sign(device_key(device), rating)
    return rating


class FakeDevice:
    """A paho client that publishes as device `device_id` and collects what the gateway sends it."""

    def __init__(self, broker, device_id):
        self.device_id = device_id
        self.acks = queue.Queue()
        self.forged = []            # ACKs whose MAC did not verify under this device's key
        self.macs = {}              # counter -> MACs of the ratings published under it (SPEC 7.5)
        self.messages = {}
        self.history = []
        self.got = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev-" + device_id)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        subs = [(t, 1) for t in topics.device_subscriptions(HALL, device_id)]
        subs.append((topics.gateway_topic(HALL, "state"), 1))
        subs.append((topics.gateway_topic(HALL, "devices"), 1))
        self.client.subscribe(subs)[1]

    def _on_message(self, client, userdata, message):
        kind = message.topic.rsplit("/", 1)[1]
        if kind == "ack":
            ack = codec.from_json(schema.ACK, message.payload)
            key = device_key(self.device_id)
            if not any(auth.verify_ack(key, self.device_id, ack, m)
                       for m in self.macs.get(ack["counter"], ())):
                self.forged.append(ack)   # a device ignores it (SPEC 7.5): the test waits in vain
                return
            ack.setdefault("result", vocab.ACK_STORED)   # zero fields are not sent
            ack.setdefault("reason", errors.R_OK)
            self.acks.put(ack)
        else:
            self.messages[kind] = message.payload
            self.history.append((kind, message.payload))
            self.got.set()

    def publish(self, kind, payload):
        if kind == "rating":
            self._remember(payload)
        self.client.publish(topics.device_topic(HALL, self.device_id, kind), payload, qos=1).wait_for_publish(WAIT)

    def _remember(self, payload):
        """Note the counter and MAC a rating payload carries, as far as they can be read."""
        try:
            obj = json.loads(payload)
            mac = bytes.fromhex(obj["mac"])
            counter = obj["counter"]
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        self.macs.setdefault(counter, []).append(mac)

    def rate(self, rating):
        self.publish("rating", codec.to_json(schema.RATING, rating))

    def ack(self):
        return self.acks.get(timeout=WAIT)

    def wait_for(self, kind, predicate=lambda payload: True):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if kind in self.messages and predicate(self.messages[kind]):
                return self.messages[kind]
            time.sleep(0.01)
        raise AssertionError("no %s message" % kind)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
