"""A rogue client on the hall's LAN and RS-485 bus: the chaos kind `hostile`.

One campaign (`campaign(hall, ...)`) tries, once each, what a stranger with a laptop on the hall's
network, or an insider holding ONE evaluator (its key read out of its flash), can do:
  http_*        unauthenticated writes to the gateway's API: add a device with our key, re-key
                and move real devices, delete one, a fake case event, a staff sign-in; reads of
                /status, /metrics and /api/v1/windows looking for staff names and rating levels;
                with the queueing system's credential (under-privileged: cases and sign-ins
                only), device writes and a look for levels in /status
  mqtt_*        an anonymous MQTT login and publish; with the compromised device's login:
                publishing on another device's topics, junk / bad-MAC / replayed genuine ratings
                on our own and on a victim's rating topic (the victim's id and counters), a
                bounded flood of junk, forged ACKs on victims' ack topics; and logins under the
                client id of a victim's firmware and of the gateway's two connections (a broker
                that took it would disconnect them: a breach, read from the broker's log)
  bus_rogue     a node on the RS-485 bus answering in a victim's poll slot with a junk RATING
Targets are only 127.0.0.1 (the hall's own gateway and broker) and the hall's own virtual bus.
Everything is bounded: `flood` messages at most, `limit_s` seconds per campaign (an attack
that finds the gateway away, killed by another fault, tries again until then).

Hits are operations the system under attack actually answered or took (an HTTP answer, a
broker's PUBACK, a frame sent in a victim's poll slot): attempts that reached it, whatever the
outcome. What got through is recorded in the hall's Ledger as a breach: a 2xx to a write, an
anonymous MQTT login accepted, a staff name or level in an unauthenticated read. The report adds
what only the end of the run shows (`figures`): ratings at the central API that no device's
firmware issued, ratings a citizen was thanked for that a device released without the central
API ever getting them, and registry entries the simulator did not make.
"""

import asyncio
import json
import logging
import os
import random
import socket
import threading
import time

from protocol import auth, codec, schema, topics, vocab
from protocol.frame import FrameDecoder, encode_frame

log = logging.getLogger("hall_simulator.hostile")

ATTACKS = ("http_add_device", "http_rekey", "http_move", "http_delete", "http_case",
           "http_sign_in", "http_read", "http_queue_role", "mqtt_anonymous", "mqtt_foreign_topic", "mqtt_junk",
           "mqtt_bad_mac", "mqtt_replay", "mqtt_flood", "mqtt_forged_ack", "mqtt_clientid_takeover",
           "bus_rogue")
LOOPBACK = "127.0.0.1"
HTTP_TIMEOUT_S = 5.0
MQTT_WAIT_S = 5.0
LOG_WAIT_S = 2.0           # for the broker's log line of a login
ROGUE_ANSWERS = 4          # junk RATINGs the bus node sends per campaign at most
LEVEL_WORDS = tuple(vocab.LEVEL_NAMES.values())     # 非常满意 ... 非常不满意


class Ledger:
    """What the attacks hit and what got through, over every campaign of a run."""

    def __init__(self):
        self.hits = dict.fromkeys(ATTACKS, 0)
        self.breaches = []          # (attack, detail): things that should have been refused
        self.campaigns = 0

    def hit(self, attack, n=1):
        self.hits[attack] += n

    def breach(self, attack, detail):
        log.warning("hostile %s got through: %s", attack, detail)
        self.breaches.append((attack, detail))


def _loopback(host):
    if host not in (LOOPBACK, "localhost"):
        raise RuntimeError("the attacker only targets %s, not %s" % (LOOPBACK, host))
    return LOOPBACK


class _Targets:
    """Who is attacked, drawn from the seed: the compromised MQTT device (the insider's), the
    victims (other devices), the RS-485 victim (a device on the bus)."""

    def __init__(self, hall, rng):
        rs, mq = hall.device_ids()
        self.all = rs + mq
        self.insider = rng.choice(mq) if mq else None
        others = [d for d in self.all if d != self.insider]
        rng.shuffle(others)
        self.victims = others or list(self.all)
        self.mqtt_victim = next((d for d in self.victims if d in mq), self.victims[0])
        self.bus_victim = rng.choice(rs) if rs else None
        self.windows = {d: d[1:] for d in self.all}
        self.address = {d: i + 1 for i, d in enumerate(rs)}


def _counters(hall, device):
    """(head, high) of a device's flash outbox as the sim sees it: the counters a forged rating
    or ACK aims at (an attacker learns them by watching the traffic)."""
    ev = hall.evaluators.get(device)
    dev = ev.device if ev is not None else None
    if dev is None:
        return 1, 0
    live = list(dev.outbox.counters)        # no file read: the device may be writing
    high = dev.outbox.high
    return (live[0] if live else high + 1), high


def _genuine(hall, device, n=3):
    """The newest `n` genuine ratings (as the firmware signed them) in a device's flash log,
    released ones included until a compaction drops them: the insider reads its own device; for
    another device they stand for what its unencrypted Wi-Fi traffic showed."""
    from firmware.outbox import KIND_RATING, read_records
    ev = hall.evaluators.get(device)
    dev = ev.device if ev is not None else None
    if dev is None:
        return []
    found = []
    try:
        f = dev.outbox.fs.open(dev.outbox.path, "rb")
        try:
            for kind, _, payload in read_records(f):
                if kind == KIND_RATING:
                    found.append(bytes(payload))
                    del found[:-n]
        finally:
            f.close()
    except (OSError, AttributeError):
        return []
    out = []
    for payload in found:
        i = 0
        while payload[i] & 0x80:      # the record's varint counter, then the RATING
            i += 1
        try:
            out.append(codec.decode(schema.RATING, payload[i + 1:]))
        except Exception:      # a record the codec refuses is no use for a replay
            pass
    return out


def _junk_rating(rng, device, counter, window):
    """A well-formed rating for `device` under a key that is not its own (a bad MAC)."""
    rating = {"device": device, "counter": counter, "case_id": rng.randrange(1, 1 << 30),
              "serials": ["ROGUE%06d" % rng.randrange(10 ** 6)], "node": vocab.NODE_COMPLETION,
              "source": vocab.SRC_PRESS, "window": window, "staff_id": "X9999",
              "uptime_ms": rng.randrange(1 << 20), "overall": vocab.VERY_DISSATISFIED,
              "tags": [501]}
    return auth.sign(bytes(rng.randrange(256) for _ in range(32)), rating)


# --- HTTP ------------------------------------------------------------------------------------------
async def _http(ledger, hall, targets, rng, hall_staff, deadline):
    import aiohttp
    base = hall.gateway.http_url.rstrip("/")
    _loopback(base.split("//", 1)[1].rsplit(":", 1)[0])
    key = bytes(rng.randrange(256) for _ in range(32)).hex()
    victims = targets.victims
    rogue_id = "rogue%04d" % rng.randrange(10000)
    writes = [
        ("http_add_device", "POST", "/api/v1/devices",
         {"id": rogue_id, "window": targets.windows[victims[0]], "transport": "mqtt", "key": key}),
        ("http_move", "PATCH", "/api/v1/devices/%s" % victims[-1], {"window": "99"}),
        ("http_rekey", "PATCH", "/api/v1/devices/%s" % victims[0], {"key": key}),
        ("http_case", "POST", "/api/v1/cases",
         {"window": targets.windows[victims[0]], "staff_id": "X9999", "staff_name": "冒名顶替",
          "serials": ["ROGUE%06d" % rng.randrange(10 ** 6)], "matter_code": "X",
          "matter_name": "伪造事项", "node": "completion", "success": True}),
        ("http_sign_in", "POST", "/api/v1/windows/%s/sign-in" % targets.windows[victims[-1]],
         {"staff_id": "X9999", "staff_name": "冒名顶替"}),
        ("http_delete", "DELETE", "/api/v1/devices/%s" % victims[len(victims) // 2], None),
    ]
    reads = [("http_read", "GET", path, None) for path in ("/status", "/metrics", "/api/v1/windows")]
    queue_token = getattr(hall, "queue_token", None)
    as_queue = [("http_queue_role", method, path, body) for _, method, path, body in writes
                if "/devices" in path] + [("http_queue_role", "GET", "/status", None)]
    if not queue_token:
        as_queue = []
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for attack, method, path, body in writes + reads + as_queue:
            headers = {"Authorization": "Bearer %s" % queue_token} if attack == "http_queue_role" else {}
            while True:
                try:
                    async with session.request(method, base + path, json=body,
                                               headers=headers) as resp:
                        text = (await resp.read()).decode("utf-8", "replace")
                        status = resp.status
                    break
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    status = None     # the gateway is away (a kill): not a hit; try again
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
            if status is None:
                continue
            ledger.hit(attack)
            if not 200 <= status < 300:
                continue
            who = "with the queue role's credential" if headers else "without credentials"
            if method != "GET":
                ledger.breach(attack, "%s %s answered %d %s" % (method, path, status, who))
            else:
                # the queueing system sends the staff names itself: only levels are news to it
                leaked = _leaks(text, () if headers else hall_staff)
                if leaked:
                    ledger.breach(attack, "GET %s %s shows %s" % (path, who, ", ".join(leaked)))


def _leaks(text, staff):
    """Staff names, rating levels or level words found in an unauthenticated answer."""
    found = ["staff name %s" % n for n in staff if n in text]
    found += ["level word %s" % w for w in LEVEL_WORDS if w in text]
    if '"level":' in text or '"level": ' in text:
        found.append('field "level"')
    return found


# --- MQTT ------------------------------------------------------------------------------------------
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
        self.host, self.port = _loopback(host), port

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


def _mqtt_attacks(ledger, hall, targets, rng, flood, deadline):
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
        junk = _junk_rating(rng, victim, _counters(hall, victim)[0], targets.windows[victim])
        ledger.hit("mqtt_anonymous", anon.publish(topics.device_topic(hall_id, victim, "rating"),
                                                  codec.to_json(schema.RATING, junk)))
    anon.close()
    if targets.insider is None or time.monotonic() > deadline:
        return
    # the insider: one evaluator's own login (its key read out of its flash)
    me = targets.insider
    key = bytes.fromhex(_device_key(hall, me))
    _takeover(ledger, broker, me, auth.mqtt_password(key),
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
        head, high = _counters(hall, victim)
        for counter in sorted({head, high + 1, high + 2}):
            forged = _junk_rating(rng, victim, counter, targets.windows[victim])
            ledger.hit("mqtt_bad_mac", ins.publish(theirs, codec.to_json(schema.RATING, forged)))
            ledger.hit("mqtt_bad_mac", ins.publish(mine, codec.to_json(schema.RATING, forged)))
        _, my_high = _counters(hall, me)
        forged = _junk_rating(rng, me, my_high + 1, targets.windows[me])
        ledger.hit("mqtt_bad_mac", ins.publish(mine, codec.to_json(schema.RATING, forged)))
        # forged ACKs: release the victims' outbox heads (stored, duplicate, dead letter)
        for target in targets.victims[:3]:
            t_head, _ = _counters(hall, target)
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
            genuine = _genuine(hall, me) + _genuine(hall, victim)
            if genuine or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        for rating in genuine:
            text = codec.to_json(schema.RATING, rating)
            ledger.hit("mqtt_replay", ins.publish(mine, text))
            ledger.hit("mqtt_replay", ins.publish(theirs, text))
            crossed = dict(rating, device=victim, counter=_counters(hall, victim)[0])
            ledger.hit("mqtt_replay", ins.publish(theirs, codec.to_json(schema.RATING, crossed)))
    finally:
        ins.close()


def _takeover(ledger, broker, user, password, stolen):
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


# --- RS-485 ----------------------------------------------------------------------------------------
def _bus_rogue(ledger, hall, targets, rng, deadline):
    """A node on the bus that answers requests to the victim's address at once, before the real
    device (which waits the guard time), with a junk RATING under the request's seq."""
    victim = targets.bus_victim
    if victim is None or hall.bus is None:
        return
    host, port = hall.bus.url.split("//", 1)[1].rsplit(":", 1)
    address = targets.address[victim]
    decoder = FrameDecoder()
    answered = 0
    end = deadline          # no polls while the gateway is away: listen until the campaign ends
    with socket.create_connection((_loopback(host), int(port)), timeout=2.0) as sock:
        sock.settimeout(0.05)
        while answered < ROGUE_ANSWERS and time.monotonic() < end:
            try:
                data = sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                break
            decoder.receive_data(data)
            while True:
                frame = decoder.next_frame()
                if frame is None:
                    break
                if frame.addr != address or schema.from_device(frame.type) or frame.type != schema.POLL:
                    continue
                head, high = _counters(hall, victim)
                junk = _junk_rating(rng, victim, rng.choice((head, high + 1)), targets.windows[victim])
                sock.sendall(encode_frame(address, schema.RATING, frame.seq,
                                          codec.encode(schema.RATING, junk)))
                answered += 1
    ledger.hit("bus_rogue", answered)


# --- one campaign ----------------------------------------------------------------------------------
async def campaign(hall, flood=2000, seed=0, limit_s=30.0):
    """Every attack once against the running hall; {attack: hits} of this campaign."""
    from hall_simulator import queue_sim
    if hall.hostile is None:
        hall.hostile = Ledger()
    ledger = hall.hostile
    before = dict(ledger.hits)
    rng = random.Random("hostile/%s" % seed)
    targets = _Targets(hall, rng)
    deadline = time.monotonic() + limit_s
    staff = [name for _, name in queue_sim.STAFF]
    ledger.campaigns += 1
    bus = asyncio.ensure_future(asyncio.to_thread(_bus_rogue, ledger, hall, targets, rng, deadline))
    try:
        await asyncio.wait_for(_http(ledger, hall, targets, rng, staff, deadline),
                               max(1.0, deadline - time.monotonic() + HTTP_TIMEOUT_S))
    except asyncio.TimeoutError:
        pass
    await asyncio.to_thread(_mqtt_attacks, ledger, hall, targets, rng, flood, deadline)
    await bus
    return {a: ledger.hits[a] - before[a] for a in ATTACKS if ledger.hits[a] - before[a]}


# --- after the run ---------------------------------------------------------------------------------
def registry_changes(hall):
    """Registry entries (the gateway's registry file) the simulator did not make."""
    from gateway import config
    try:
        cfg = config.load(hall.gateway.config_path)      # what the simulator configured
        with open(cfg.registry_path, encoding="utf-8") as f:
            held = {d["id"]: d for d in json.load(f).get("devices", ())}
    except (OSError, ValueError, KeyError, AttributeError):
        return []
    made = {d["id"]: d for d in cfg.devices}
    out = []
    for dev_id in sorted(set(held) | set(made)):
        h, m = held.get(dev_id), made.get(dev_id)
        if h is None:
            out.append("%s removed" % dev_id)
        elif m is None:
            out.append("%s added" % dev_id)
        else:
            for name in ("window", "transport", "key", "address"):
                if name in m and m[name] != h.get(name):
                    out.append("%s %s changed" % (dev_id, name))
    return out


def figures(hall, ledger, confirmations, central, acked_at, issued_high):
    """The report's hostile figures (see report.forged and report.destroyed for the first two)."""
    from hall_simulator import report
    breaches = list(ledger.breaches) if ledger is not None else []
    changes = registry_changes(hall)
    forged_ids = report.forged(confirmations, central, issued_high)
    destroyed_ids = report.destroyed(confirmations, central, acked_at)
    out = {"forged_accepted": len(forged_ids), "ratings_destroyed": len(destroyed_ids),
           "unauthorised_changes": len(breaches) + len(changes),
           "attack_hits": dict(ledger.hits) if ledger is not None else {}}
    if ledger is not None:
        out["attack_campaigns"] = ledger.campaigns
    if forged_ids:
        out["forged_ids"] = forged_ids[:20]
    if destroyed_ids:
        out["destroyed_ids"] = destroyed_ids[:20]
    if breaches or changes:
        out["unauthorised"] = ["%s: %s" % b for b in breaches][:40] + [
            "registry: %s" % c for c in changes][:20]
    return out
