"""MQTT side of the gateway (paho-mqtt 2.x, CallbackAPIVersion.VERSION2) to the hall's Mosquitto.

In:  hall/<hall>/dev/<id>/rating        RATING JSON -> gateway.intake (registry, rules, MAC) ->
                                         group commit -> ACK JSON on .../ack, only after the commit
     hall/<hall>/dev/<id>/status        STATUS JSON -> registry live state
     hall/<hall>/dev/<id>/availability  "online" | "offline" -> registry
Out: .../context and .../config retained (kept here and republished on every reconnect, since a
     broker without persistence forgets them); gateway/state retained "online", with the last will
     "offline"; gateway/devices retained registry (no keys); gateway/event alarms (QoS 0).
Updates (gateway.rollout, `updates`): the device publishes UPDATE_STATE on .../update_state and
the gateway answers on .../update (QoS 1, not retained) with what it asks for, at most
rollout.WINDOW chunks ahead of what it has, and `pump_updates` (the gateway's loop, every
UPDATE_PUMP_S) sends at most UPDATE_BURST records a call across the hall: paced, on the control
connection, never the ingest connection the ratings and their ACKs use.
What a rating gets (dead letter, ACK_REJECTED, the ACK's MAC) is gateway.intake's, the one path
for every transport; this module moves the bytes: a rating's payload (or an oversized one's head)
in, under the topic's device, and the intake's signed ACK out as JSON on that device's ack topic.
Two connections, one login apart: ratings come in on the ingest connection
(gateway.mqtt_ingest: user "<username>-ingest", client id "<client_id>-ingest"), everything else
through paho ("<username>", "<client_id>"); the broker keys clients on user names
(use_username_as_clientid), so one login must never hold two connections. Each rating (or dead
letter) joins the ingest connection's group, which is committed in one transaction (one fsync) once
every whole packet of its reads is handled; the ACKs (QoS 0: a device republishes until it has
one, and a repeated ACK is harmless) go out right after the commit, from that same thread. No
hand-over to another thread and back per rating: on CPython that hop (queue, wake-up, GIL) cost as
much as the rating's own work. Both sessions are persistent (clean_session False), so QoS 1
ratings sent while the gateway restarts wait in the broker; the device's own outbox covers the rest.
`connected` is set while both connections are up. Threads: the ingest thread alone touches the
pending group and sends ACKs; paho's thread handles status and availability; the registry locks.
"""

import json
import logging
import threading
import time

import paho.mqtt.client as mqtt

from gateway import fastcodec
from gateway.intake import Intake, generation_of
from gateway.mqtt_ingest import IngestConnection
from gateway import ota as ota_mod
from protocol import codec, errors, mqtt_wire, schema, topics
from protocol import ota as proto_ota

log = logging.getLogger("gateway.mqtt")

_CONTROL_KINDS = ("status", "availability", "update_state")
UPDATE_PUMP_S = 0.2
UPDATE_BURST = 16       # update records a pump sends across the hall (~12 KB: paced Wi-Fi)
_TOPIC_CACHE = 4096   # parsed topics kept (a flood of strangers' topics only empties it)


class MqttBridge:
    def __init__(self, cfg, hall, registry, committer, rejections, store=None, enrich=None,
                 on_rating=None, clock=time.time, max_batch=512, intake=None):
        self.cfg = cfg
        self.hall = hall
        self.registry = registry
        self.committer = committer
        self.rejections = rejections
        self.store = store
        # on_rating: called (rating, (ack, reason)) after the commit
        self.intake = intake or Intake(hall, registry, rejections, enrich, on_rating, clock,
                                       generation=generation_of(committer))
        self.clock = clock
        self.connected = threading.Event()
        self.stats = {"messages": 0, "ratings": 0, "acks": 0, "status": 0, "availability": 0,
                      "ignored": 0, "connects": 0, "disconnects": 0}
        self._retained = {}             # topic -> payload, republished on reconnect
        self._ack_topics = {}           # device id -> its ack topic, encoded (built once)
        self._pending = []              # [(item, done)] of the next group commit (ingest thread)
        self._topics = {}               # topic -> topics.parse(topic): its checks loop over characters
        self._control_up = False
        self._lock = threading.Lock()
        self._links = threading.Lock()  # connected follows both links, set and cleared in order
        self._control = {"status": self._status, "availability": self._availability,
                         "update_state": self._update_state}
        self.updates = None             # gateway.rollout.Rollouts, when the hall rolls out updates
        self.custody = None             # gateway.custody.Custody, when custody is on
        self._update_lock = threading.Lock()
        self._intake = {"rating": self._rating}
        self.client = self._make_client()
        self.ingest = IngestConnection(cfg, topics.gateway_subscriptions(hall, ("rating",))[0],
                                       on_publish=self._on_ingest, on_group=self._on_group,
                                       on_up=self._links_changed, on_down=self._on_ingest_down,
                                       on_oversize=self._on_oversize, max_group=max_batch)

    def _make_client(self):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.cfg.client_id,
                        clean_session=False, protocol=mqtt.MQTTv311)
        if self.cfg.username:
            c.username_pw_set(self.cfg.username, self.cfg.password or None)
        c.will_set(topics.gateway_topic(self.hall, "state"), topics.OFFLINE, qos=1, retain=True)
        # No cap on our QoS 1 messages in flight (retained context and config, the registry): a
        # hall's worth of them after a reconnect must not wait behind one another.
        c.max_inflight_messages_set(0)
        c.reconnect_delay_set(0.2, 5)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        return c

    # --- life cycle -----------------------------------------------------------------------
    def start(self):
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        self.client.loop_start()
        self.ingest.start()

    def stop(self):
        """Clean stop: say offline (retained) before leaving, as the will would (a clean
        DISCONNECT suppresses the will: so even while the ingest link is down)."""
        if self._control_up:
            info = self.client.publish(topics.gateway_topic(self.hall, "state"), topics.OFFLINE,
                                       qos=1, retain=True)
            try:
                info.wait_for_publish(2)
            except (RuntimeError, ValueError):
                pass
        ended = self.ingest.stop()
        self.client.disconnect()
        self.client.loop_stop()
        if not ended:
            log.error("the MQTT ingest thread did not stop; its pending group is left to it")
        elif self._pending:             # the ingest thread is gone: nothing else touches it now
            self._flush()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        self.stats["connects"] += 1
        # Ratings are the ingest link's. A session kept from a gateway before it (clean_session
        # False) may still hold paho's old subscription to them: every rating would come twice.
        client.unsubscribe(topics.gateway_subscriptions(self.hall, ("rating",)))
        client.subscribe([(t, 1) for t in topics.gateway_subscriptions(self.hall, _CONTROL_KINDS)])
        client.publish(topics.gateway_topic(self.hall, "state"), topics.ONLINE, qos=1, retain=True)
        with self._lock:
            retained = list(self._retained.items())
        for topic, payload in retained:
            client.publish(topic, payload, qos=1, retain=True)
        self.publish_devices()
        self._control_up = True
        self._links_changed()
        log.info("connected to %s:%d", self.cfg.host, self.cfg.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._control_up = False
        self._links_changed()
        self.stats["disconnects"] += 1
        log.warning("disconnected from the broker (%s); paho reconnects", reason_code)

    def _links_changed(self):
        with self._links:
            if self._control_up and self.ingest.connected.is_set():
                self.connected.set()
            else:
                self.connected.clear()

    def _on_ingest_down(self):
        """The ingest connection dropped (its thread): commit what it read; those ACKs are lost
        with the socket, so the devices send the ratings again (duplicates, ACKed as such)."""
        self._links_changed()
        if self._pending:
            self._flush()

    # --- out ------------------------------------------------------------------------------
    def _publish_retained(self, topic, payload):
        with self._lock:
            self._retained[topic] = payload
        self.client.publish(topic, payload, qos=1, retain=True)

    def publish_context(self, device_id, context):
        """Show a case on a device (CONTEXT record), or withdraw it (None)."""
        payload = codec.to_json(schema.CONTEXT, context) if context else ""
        self._publish_retained(topics.device_topic(self.hall, device_id, "context"), payload)

    def publish_config(self, device_id, config):
        self._publish_retained(topics.device_topic(self.hall, device_id, "config"),
                               codec.to_json(schema.CONFIG, config))

    def publish_settle(self, device_id, settle):
        """A device's SETTLE (SPEC 3.11), retained: a device that connects learns the store's
        generation and its settled mark at once (gateway.custody decides when)."""
        self._publish_retained(topics.device_topic(self.hall, device_id, "settle"),
                               codec.to_json(schema.SETTLE, settle))

    def forget_device(self, device_id):
        """Clear the retained topics of a removed device."""
        for kind in ("context", "config", "settle"):
            topic = topics.device_topic(self.hall, device_id, kind)
            with self._lock:
                self._retained.pop(topic, None)
            self.client.publish(topic, b"", qos=1, retain=True)

    def publish_devices(self):
        payload = json.dumps(self.registry.snapshot(), ensure_ascii=False, separators=(",", ":"))
        self.client.publish(topics.gateway_topic(self.hall, "devices"), payload, qos=1, retain=True)

    def event(self, name, detail):
        payload = json.dumps({"event": name, "detail": detail, "time": int(self.clock())},
                             ensure_ascii=False)
        self.client.publish(topics.gateway_topic(self.hall, "event"), payload, qos=0)

    def _ack(self, ack):
        """Where the intake's answer goes: the signed ACK record, as JSON on its device's ack
        topic, queued on the ingest connection (called after the group's commit)."""
        device_id = ack["device"]
        topic = self._ack_topics.get(device_id)
        if topic is None:
            topic = topics.device_topic(self.hall, device_id, "ack")
            topic = self._ack_topics[device_id] = mqtt_wire.text(topic)
        payload = fastcodec.ack_json(ack).encode()
        self.ingest.send(mqtt_wire.packet(mqtt_wire.PUBLISH, topic + payload))
        self.stats["acks"] += 1

    # --- group commit on the ingest thread -------------------------------------------------
    def _queue(self, pending):
        if pending is not None:
            self._pending.append(pending)

    def _flush(self):
        batch, self._pending = self._pending, []
        self.committer.commit_batch(batch)

    def _on_group(self):
        if self._pending:
            self._flush()

    # --- in -------------------------------------------------------------------------------
    def _on_message(self, client, userdata, message):
        """paho: status and availability."""
        self.stats["messages"] += 1
        self._handle(message.topic, message.payload, self._control)

    def _on_ingest(self, topic, payload):
        self._handle(topic, payload, self._intake)

    def _on_oversize(self, topic, length, head):
        """A rating too long to read: a dead letter from its first HEAD_BYTES, ACKed if they show
        its counter, so the device moves on to its next rating."""
        def oversized(device_id, head):
            self._queue(self.intake.from_head("mqtt", device_id, head, length, self._ack))
        self._handle(topic, head, {"rating": oversized})

    def _handle(self, topic, payload, handlers):
        parsed = self._topics.get(topic)
        if parsed is None:
            try:
                parsed = topics.parse(topic)
            except errors.ProtocolError as e:
                self.rejections.reject("mqtt", e.reason, e.detail)
                return
            if len(self._topics) >= _TOPIC_CACHE:
                self._topics.clear()
            self._topics[topic] = parsed
        hall, device_id, kind = parsed
        if hall != self.hall or device_id is None:
            self.rejections.reject("mqtt", errors.R_MALFORMED, "topic %s" % topic)
            return
        handler = handlers.get(kind)
        if handler is None:     # not subscribed on this connection: a broker's mistake
            self.stats["ignored"] += 1
            return
        try:
            handler(device_id, payload)
        except Exception:
            log.exception("handling %s failed", topic)

    def _rating(self, device_id, payload):
        self.stats["ratings"] += 1
        self._queue(self.intake.from_json("mqtt", device_id, payload, self._ack))

    def _device_record(self, kind, msg_type, device_id, payload):
        """A registered device's own JSON record of `msg_type` on its `kind` topic, or None (the
        refusal counted): unknown device, undecodable, or naming another device."""
        if self.registry.get(device_id) is None:
            self.rejections.reject("mqtt", errors.R_UNKNOWN_DEVICE, kind, device_id)
            return None
        try:
            record = codec.from_json(msg_type, payload)
        except errors.ProtocolError as e:
            self.rejections.reject("mqtt", e.reason, "%s: %s" % (kind, e.detail), device_id)
            return None
        if record["device"] != device_id:
            self.rejections.reject("mqtt", errors.R_MALFORMED, "%s names %s" % (kind, record["device"]),
                                   device_id)
            return None
        return record

    def _status(self, device_id, payload):
        self.stats["status"] += 1
        status = self._device_record("status", schema.STATUS, device_id, payload)
        if status is not None:
            self.registry.status_report(device_id, status)
            if self.custody is not None:
                self.custody.status(device_id, status)

    def _availability(self, device_id, payload):
        self.stats["availability"] += 1
        if self.registry.get(device_id) is None:
            if payload:  # an empty retained message is a cleanup, not a device
                self.rejections.reject("mqtt", errors.R_UNKNOWN_DEVICE, "availability", device_id)
            return
        text = bytes(payload).decode("utf-8", "replace")
        if text == topics.ONLINE:
            self.registry.seen(device_id)
        elif text == topics.OFFLINE:
            self.registry.set_offline(device_id)
        else:
            self.rejections.reject("mqtt", errors.R_MALFORMED, "availability %r" % text[:20], device_id)

    # --- updates ---------------------------------------------------------------------------
    def _update_state(self, device_id, payload):
        self.stats.setdefault("update_states", 0)
        self.stats["update_states"] += 1
        state = self._device_record("update_state", schema.UPDATE_STATE, device_id, payload)
        if state is None:
            return
        if self.updates is not None and ota_mod.report(self.updates, device_id, state):
            self.pump_updates((device_id,))        # it asked for bytes: answer now

    def pump_updates(self, device_ids=None):
        """Publish what the rollout has for the MQTT devices (all, or `device_ids`): at most
        UPDATE_BURST records. The number sent."""
        if self.updates is None or not self.connected.is_set():
            return 0
        if device_ids is None:
            device_ids = [d.id for d in self.registry.all() if d.transport == "mqtt"]
        sent = 0
        with self._update_lock:           # paho's thread (a state) and the loop (the pump)
            for device_id in device_ids:
                while sent < UPDATE_BURST:
                    step = self.updates.next_step(device_id, proto_ota.CHUNK_MAX,
                                                  window=ota_mod.MQTT_WINDOW)
                    if step is None:
                        break
                    msg_type, record = ota_mod.request(step)
                    self.client.publish(topics.device_topic(self.hall, device_id, "update"),
                                        proto_ota.update_json(msg_type, record), qos=1)
                    sent += 1
                    if step[0] != "chunk":
                        break
        self.stats["update_records"] = self.stats.get("update_records", 0) + sent
        return sent
