"""MQTT over Wi-Fi: topics from protocol.topics, JSON from protocol.jsonform.

- availability: "online" retained at each connect; the last will says "offline".
- context / ack / config / settle are subscribed (QoS 1). A retained empty context means "no
  case". A SETTLE (retained, SPEC 3.11) goes to the device, which marks custody copies for
  re-offer; head() then offers them first, their JSON carrying "reoffer": 1.
- the oldest unacknowledged rating is published (QoS 1) and published again every RESEND_MS
  until an ACK for its counter arrives on .../ack: a PUBACK only says the broker has it, the
  ACK says the gateway committed it. The gateway dedupes by rating id (device:counter).
- status (QoS 0) when due.
- update (SPEC 3.10): UPDATE_* records on .../update are answered with UPDATE_STATE on
  .../update_state, which is also published when the update has news; connecting (availability
  published) confirms a release on trial. One UPDATE_STATE in flight at a time: while it waits
  for its PUBACK, newer answers replace one another and the latest goes when it is acknowledged.
  So a burst of chunks never fills the client's in-flight table, which the rating needs, nor
  gets the gateway to answer each stale state with chunks of its own.
- Wi-Fi loss: the connection is dropped and Wi-Fi reconnected, at most every WIFI_RETRY_MS.
- login (SPEC 6.2): user = the device id, password = protocol.auth.mqtt_password(device key), the
  pair the gateway's Mosquitto password file holds (gateway/mosquitto_acl.py); mqtt.user and
  mqtt.password in the device config override them.
A transport as firmware/device.py describes it. The rating it publishes is the device's head();
its JSON is built from the stored bytes once per head and kept until the head changes, so a
resend (or a turn that sends nothing) costs neither a flash read nor a re-encoding.
"""

from protocol import jsonform, schema, topics
from protocol.auth import mqtt_password
from protocol.errors import ProtocolError
from firmware.mqtt_client import MqttClient

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_RESEND_MS = const(15000)
_WIFI_RETRY_MS = const(5000)


class MqttTransport:
    def __init__(self, device, net, hall, mqtt_cfg, clock):
        self.device = device
        self.net = net
        self.clock = clock
        dev_id = device.cfg["device"]
        self.t = {}
        for kind in topics.DEVICE_TO_GATEWAY + topics.GATEWAY_TO_DEVICE:
            self.t[kind] = topics.device_topic(hall, dev_id, kind)
        self.client = MqttClient(
            net.socket_factory, mqtt_cfg["host"], mqtt_cfg.get("port", 1883), "hall-" + dev_id,
            clock, mqtt_cfg.get("keepalive", 30),
            will=(self.t["availability"], topics.OFFLINE, 1, True),
            user=mqtt_cfg.get("user") or dev_id,
            password=mqtt_cfg.get("password") or mqtt_password(device.cfg["key_bytes"]),
            on_message=self._message, on_connect=self._connected)
        for kind in topics.GATEWAY_TO_DEVICE:
            self.client.subscribe(self.t[kind], topics.QOS[kind])
        self.sent_counter = 0
        self.sent_at = 0
        self._json = None                        # (stored bytes, JSON text) of the head
        self._state_pid = None                   # the UPDATE_STATE in flight (QoS 1 packet id)
        self._state = None                       # the latest UPDATE_STATE not yet published
        self.wifi_at = None
        self.stats = {"ratings_sent": 0, "bad_messages": 0, "wifi_reconnects": 0}

    def step(self):
        now = self.clock()
        if not self.net.isconnected():
            if self.client.state != "down":
                self.client.drop()
            if self.wifi_at is None or now - self.wifi_at >= _WIFI_RETRY_MS:
                self.wifi_at = now
                self.stats["wifi_reconnects"] += 1
                try:
                    self.net.connect()
                except OSError:
                    pass
            return
        self.client.step()
        if self.client.connected:
            self._send_rating(now)
            if self.device.update_news():        # after the rating: ratings first (SPEC 3.10)
                self._state = self.device.update_state()
            self._send_update_state()
            if self.device.status_due():
                self.client.publish(self.t["status"], jsonform.to_json(schema.STATUS,
                                                                   self.device.status()), 0)

    def _send_rating(self, now):
        head = self.device.head()
        if head is None:
            self._json = None
            return
        counter = head[0]
        if counter == self.sent_counter and now - self.sent_at < _RESEND_MS:
            return
        # keyed by the head's bytes, not its counter: a rating acknowledged and then offered
        # again from custody has the same counter and other bytes (reoffer = 1)
        if self._json is None or self._json[0] is not head[1]:
            self._json = None                    # the old head's text is garbage before the new
            self._json = (head[1], jsonform.to_json(schema.RATING, self.device.next_rating()))
        if self.client.publish(self.t["rating"], self._json[1], 1) is not None:
            self.sent_counter = counter
            self.sent_at = now
            self.stats["ratings_sent"] += 1

    def _connected(self):
        if self.client.publish(self.t["availability"], topics.ONLINE, 1, True) is not None:
            self.device.on_online()              # a release on trial is confirmed
        self.sent_counter = 0                    # send the oldest rating again at once

    def _send_update_state(self):
        """The latest UPDATE_STATE, once the one before it is acknowledged (the client resends
        that one after a reconnect)."""
        if self._state_pid:
            if not self.client.is_acked(self._state_pid):
                return
            self._state_pid = None
        if self._state is None:
            return
        pid = self.client.publish(self.t["update_state"],
                                  jsonform.to_json(schema.UPDATE_STATE, self._state), 1)
        if pid is not None:
            self._state_pid = pid
            self._state = None

    def _message(self, topic, payload, retained):
        dev = self.device
        try:
            kind = topics.parse(topic)[2]
            if kind == "context":
                if not payload:
                    cid = dev.app.case_id()
                    if cid:
                        dev.on_clear({"case_id": cid})
                else:
                    dev.on_context(jsonform.from_json(schema.CONTEXT, payload))
            elif kind == "ack":
                if dev.on_ack(jsonform.from_json(schema.ACK, payload)):
                    self.sent_counter = 0
            elif kind == "config":
                if payload:
                    dev.on_config(jsonform.from_json(schema.CONFIG, payload))
            elif kind == "settle":                   # retained: the current one at each connect
                if payload:
                    dev.on_settle(jsonform.from_json(schema.SETTLE, payload))
            elif kind == "update":
                from protocol.ota import parse_update_json
                msg_type, record = parse_update_json(payload)
                self._state = dev.on_update(msg_type, record)
                self._send_update_state()
        except ProtocolError:
            self.stats["bad_messages"] += 1
            dev.health.count("bad_message")


def rating_id_of(json_text):
    """The dedupe id of a published rating (tests and tools)."""
    from protocol import rating
    return rating.rating_id(jsonform.from_json(schema.RATING, json_text))


def make(device, board, cfg):
    """The transport of a device whose config says mqtt: the board's Wi-Fi."""
    return MqttTransport(device, board.net, cfg["hall"], cfg["mqtt"], device.uptime.now)
