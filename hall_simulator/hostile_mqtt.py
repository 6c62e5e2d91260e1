"""The hostile campaign's attacks on the hall's MQTT broker (hall_simulator.hostile: mqtt_*)."""

import json
import os
import threading
import time

from hall_simulator.hostile_targets import LOOPBACK, counters, genuine_ratings, junk_rating, loopback
from protocol import auth, codec, schema, topics, vocab

MQTT_WAIT_S = 5.0
LOG_WAIT_S = 2.0           # for the broker's log line of a login


class _Mqtt:
    """A paho client for the attacker: connect, publish (counting PUBACKs), collect."""

    def __init__(self, host, port, client_id, username=None, password=None):
        import paho.mqtt.client as mqtt
        self.mqtt = mqtt
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.refused = None
        self.received = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, flags, rc, props: self.connected.clear()
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        # The broker names a client by its login: the insider's connection and its own device's
        # take the one session from each other, so come back quickly and wait for it in publish.
        self.client.reconnect_delay_set(0.05, 0.5)
        self.host, self.port = loopback(host), port

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.refused = str(reason_code)
        else:
            self.connected.set()
        self.answered.set()

    def open(self):
        """True when the broker accepted the login; None when it did not answer."""
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError:
            return None
        self.client.loop_start()
        if not self.answered.wait(MQTT_WAIT_S):
            return None
        return self.connected.is_set()

    def publish(self, topic, payload, qos=1):
        """1 when the broker took it (PUBACK, or written at QoS 0), else 0."""
        if self.refused is not None or not self.connected.wait(MQTT_WAIT_S):
            return 0
        try:
            info = self.client.publish(topic, payload, qos=qos)
            info.wait_for_publish(MQTT_WAIT_S)
            return 1 if info.is_published() else 0
        except (RuntimeError, ValueError, OSError):
            return 0

    def close(self):
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


def attack_mqtt(ledger, hall, targets, rng, flood, deadline):
    broker = hall.broker
    hall_id = _hall_id(hall)
    victim = targets.mqtt_victim
    # a stranger: no login at all
    anon = _Mqtt(broker.host, broker.port, "rogue-anon-%d" % rng.randrange(10 ** 6))
    accepted = anon.open()
    if accepted is not None:
        ledger.hit("mqtt_anonymous")
    if accepted:
        ledger.breach("mqtt_anonymous", "the broker accepted an anonymous login")
        junk = junk_rating(rng, victim, counters(hall, victim)[0], targets.windows[victim])
        ledger.hit("mqtt_anonymous", anon.publish(topics.device_topic(hall_id, victim, "rating"),
                                                  codec.to_json(schema.RATING, junk)))
    anon.close()
    if targets.insider is None or time.monotonic() > deadline:
        return
    # the insider: one evaluator's own login (its key read out of its flash)
    me = targets.insider
    key = bytes.fromhex(_device_key(hall, me))
    takeover(ledger, broker, me, auth.mqtt_password(key),
             ("hall-" + victim, "gateway-" + hall_id, "gateway-%s-ingest" % hall_id))
    ins = _Mqtt(broker.host, broker.port, "rogue-%s" % me, me, auth.mqtt_password(key))
    if not ins.open():
        ins.close()
        return
    try:
        mine = topics.device_topic(hall_id, me, "rating")
        theirs = topics.device_topic(hall_id, victim, "rating")
        # another device's topics: its status and availability
        for kind, payload in (("status", json.dumps({"device": victim, "firmware": "rogue"})),
                              ("availability", topics.OFFLINE)):
            ledger.hit("mqtt_foreign_topic", ins.publish(topics.device_topic(hall_id, victim, kind),
                                                         payload))
        # junk on our own and the victim's rating topic
        for topic in (mine, theirs):
            for payload in (b"\x00\xff junk", b"{\"device\": 7}", os.urandom(64)):
                ledger.hit("mqtt_junk", ins.publish(topic, payload))
        # bad MACs: the victim's id and counters (its outbox head and the next ones), and ours
        head, high = counters(hall, victim)
        for counter in sorted({head, high + 1, high + 2}):
            forged = junk_rating(rng, victim, counter, targets.windows[victim])
            ledger.hit("mqtt_bad_mac", ins.publish(theirs, codec.to_json(schema.RATING, forged)))
            ledger.hit("mqtt_bad_mac", ins.publish(mine, codec.to_json(schema.RATING, forged)))
        _, my_high = counters(hall, me)
        forged = junk_rating(rng, me, my_high + 1, targets.windows[me])
        ledger.hit("mqtt_bad_mac", ins.publish(mine, codec.to_json(schema.RATING, forged)))
        # forged ACKs: release the victims' outbox heads (stored, duplicate, dead letter)
        for target in targets.victims[:3]:
            t_head, _ = counters(hall, target)
            for result in (vocab.ACK_STORED, vocab.ACK_DUPLICATE, vocab.ACK_DEAD_LETTER):
                ack = {"device": target, "counter": t_head, "result": result, "mac": os.urandom(16)}
                ledger.hit("mqtt_forged_ack", ins.publish(topics.device_topic(hall_id, target, "ack"),
                                                          codec.to_json(schema.ACK, ack)))
        # a bounded flood of junk on our own rating topic, QoS 0
        sent = 0
        for i in range(flood):
            if time.monotonic() > deadline:
                break
            if i % 500 == 499:        # now and then wait for the socket: paho's queue stays small
                sent += ins.publish(mine, b"flood %d" % i, qos=0)
            else:
                sent += _fire(ins, mine, i)
        ledger.hit("mqtt_flood", sent)
        # replays of genuine ratings: ours on our topic and the victim's; the victim's on both
        # (last, waiting while neither device has rated anything yet)
        genuine = []
        while True:
            genuine = genuine_ratings(hall, me) + genuine_ratings(hall, victim)
            if genuine or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        for rating in genuine:
            text = codec.to_json(schema.RATING, rating)
            ledger.hit("mqtt_replay", ins.publish(mine, text))
            ledger.hit("mqtt_replay", ins.publish(theirs, text))
            crossed = dict(rating, device=victim, counter=counters(hall, victim)[0])
            ledger.hit("mqtt_replay", ins.publish(theirs, codec.to_json(schema.RATING, crossed)))
    finally:
        ins.close()


def takeover(ledger, broker, user, password, stolen):
    """Our own login under someone else's client id, one at a time: a hit per CONNECT answered,
    a breach when the broker's log shows it let us in under that id (it would have disconnected
    its holder; with use_username_as_clientid it names us by our login instead)."""
    for client_id in stolen:
        thief = _Mqtt(broker.host, broker.port, client_id, user, password)
        since = len(broker.log_text())
        accepted = thief.open()
        try:
            if accepted is None:
                continue
            ledger.hit("mqtt_clientid_takeover")
            if accepted and _logged_in_as(broker, thief, since) == client_id:
                ledger.breach("mqtt_clientid_takeover", "the broker let %s in as %s" % (user, client_id))
        finally:
            thief.close()


def _logged_in_as(broker, client, since):
    """The client id the broker's log (after offset `since`) gives the connection from client's
    port, or None."""
    try:
        port = client.client.socket().getsockname()[1]
    except (AttributeError, OSError):
        return None
    mark = "New client connected from %s:%d as " % (LOOPBACK, port)
    deadline = time.monotonic() + LOG_WAIT_S
    while time.monotonic() < deadline:
        for line in broker.log_text()[since:].splitlines():
            if mark in line:
                return line.split(mark, 1)[1].split(" ", 1)[0]
        time.sleep(0.05)
    return None


def _fire(client, topic, i):
    """QoS 0 without waiting for the socket (the flood)."""
    try:
        info = client.client.publish(topic, b"flood %d" % i, qos=0)
        return 1 if info.rc == 0 else 0
    except (RuntimeError, ValueError):
        return 0


def _hall_id(hall):
    from hall_simulator import hall as hall_mod
    return hall_mod.HALL_ID


def _device_key(hall, device):
    from hall_simulator import hall as hall_mod
    return hall_mod.device_key(hall.seed, device)

