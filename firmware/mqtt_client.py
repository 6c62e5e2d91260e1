"""A small MQTT 3.1.1 client of our own, for MicroPython and CPython alike.

No threads, no blocking reads: the main loop calls step(), which reads what the socket has,
handles whole packets, keeps the connection alive and retransmits. The socket comes from an
injected factory (host, port) -> connected socket; we only use setblocking, send, recv, close.

What it does: CONNECT with a last will (clean session), QoS 0 and QoS 1 PUBLISH (PUBACK,
retransmission with DUP after RETRY_MS and after every reconnect), SUBSCRIBE (again after
every reconnect), incoming QoS 0/1 PUBLISH (answered with PUBACK), PINGREQ keepalive, and
reconnect with exponential backoff (BACKOFF_MIN_MS doubling to BACKOFF_MAX_MS).
What it does not: QoS 2, persistent sessions, MQTT 5. The application's outbox is the
persistent queue; this client keeps at most MAX_INFLIGHT unacknowledged publishes in RAM.
RAM: one receive buffer (<= MAX_PACKET), one send buffer, the in-flight table.
The packets themselves are protocol.mqtt_wire's (shared with the gateway's ingest connection).
"""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

from protocol import mqtt_wire as wire
from protocol.mqtt_wire import MqttError, connect_packet, publish_packet  # noqa: F401 (API)

_MAX_PACKET = const(8192)
_RX_ROOM = const(8197)          # the longest packet: its body and a 5-byte fixed header
_MAX_INFLIGHT = const(8)
_RETRY_MS = const(5000)
_CONNACK_TIMEOUT_MS = const(10000)
_BACKOFF_MIN_MS = const(500)
_BACKOFF_MAX_MS = const(30000)

DOWN = "down"
CONNECTING = "connecting"
UP = "up"


class MqttClient:
    def __init__(self, socket_factory, host, port, client_id, clock, keepalive_s=30, will=None,
                 user=None, password=None, on_message=None, on_connect=None):
        self.socket_factory = socket_factory
        self.host = host
        self.port = port
        self.client_id = client_id
        self.clock = clock              # () -> ms, monotonic
        self.keepalive_ms = keepalive_s * 1000
        self.keepalive_s = keepalive_s
        self.will = will
        self.user = user
        self.password = password
        self.on_message = on_message
        self.on_connect = on_connect
        self.state = DOWN
        self.sock = None
        self.rx = bytearray()
        self.tx = bytearray()
        self.inflight = {}              # pid -> [topic, payload, retain, sent_at]
        self.subscriptions = []         # (topic, qos), sent again after each reconnect
        self.next_pid = 1
        self.backoff = _BACKOFF_MIN_MS
        self.retry_at = 0
        self.since = 0                  # when CONNECT went out
        self.last_tx = 0
        self.last_rx = 0
        self.ping_out = False
        self.stats = {"connects": 0, "drops": 0, "published": 0, "acked": 0, "resent": 0,
                      "received": 0, "pings": 0, "refused": 0}

    # --- public -------------------------------------------------------------------------------
    @property
    def connected(self):
        return self.state == UP

    def subscribe(self, topic, qos=1):
        self.subscriptions.append((topic, qos))
        if self.state == UP:
            self._send_subscribe([(topic, qos)])

    def publish(self, topic, payload, qos=0, retain=False):
        """Send a message. QoS 1: returns its packet id, kept and resent until PUBACK. Returns
        None when it cannot be sent now (not connected, or too many in flight)."""
        if self.state != UP:
            return None
        if qos == 0:
            self._queue(publish_packet(topic, payload, 0, retain))
            self.stats["published"] += 1
            return 0
        if len(self.inflight) >= _MAX_INFLIGHT:
            return None
        pid = self._pid()
        self.inflight[pid] = [topic, payload, retain, self.clock()]
        self._queue(publish_packet(topic, payload, 1, retain, pid))
        self.stats["published"] += 1
        return pid

    def is_acked(self, pid):
        return pid not in self.inflight

    def step(self):
        now = self.clock()
        if self.state == DOWN:
            if now >= self.retry_at:
                self._open(now)
            return
        try:
            closed = self._read()
            self._handle(now)                # what came before a close still counts (a refusal)
            if closed:
                raise MqttError("closed by the broker")
            if self.state == CONNECTING and now - self.since > _CONNACK_TIMEOUT_MS:
                raise MqttError("no CONNACK")
            if self.state == UP:
                self._keepalive(now)
                self._retransmit(now)
            self._flush()
        except (OSError, MqttError):
            self.drop()

    def drop(self):
        """Close the connection; step() reconnects after the backoff."""
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
            self.stats["drops"] += 1
        self.state = DOWN
        self.rx = bytearray()
        self.tx = bytearray()
        self.retry_at = self.clock() + self.backoff
        self.backoff = min(self.backoff * 2, _BACKOFF_MAX_MS)

    def disconnect(self):
        if self.sock is not None and self.state == UP:
            try:
                self.sock.send(wire.DISCONNECT_PACKET)
            except OSError:
                pass
        self.drop()

    # --- inside -------------------------------------------------------------------------------
    def _pid(self):
        while True:
            pid = self.next_pid
            self.next_pid = pid % 0xFFFF + 1
            if pid not in self.inflight:
                return pid

    def _open(self, now):
        try:
            sock = self.socket_factory(self.host, self.port)
        except OSError:
            self.drop()
            return
        self.sock = sock
        sock.setblocking(False)
        self.state = CONNECTING
        self.since = now
        self.last_rx = now
        self.ping_out = False
        self.rx = bytearray()
        self.tx = bytearray()
        self._queue(connect_packet(self.client_id, self.keepalive_s, self.will, self.user,
                                   self.password))
        try:
            self._flush()
        except OSError:
            self.drop()

    def _queue(self, data):
        self.tx.extend(data)
        self.last_tx = self.clock()

    def _flush(self):
        sock = self.sock
        if sock is None:
            return
        while self.tx:
            try:
                n = sock.send(self.tx)
            except OSError as e:
                if _would_block(e):
                    return
                raise
            if not n:
                return
            self.tx = self.tx[n:]

    def _read(self):
        """Take what the socket has, at most one whole packet's worth beyond what the buffer
        holds: a burst of packets (update chunks) waits in the socket, TCP's flow control holding
        the broker back, until the packets before it are handled. True when the broker closed
        the connection. A packet longer than _MAX_PACKET is refused by parse_packet."""
        sock = self.sock
        if sock is None:
            return False
        while True:
            room = _RX_ROOM - len(self.rx)
            if room <= 0:
                return False
            try:
                data = sock.recv(room if room < 1024 else 1024)
            except OSError as e:
                if _would_block(e):
                    return False
                raise
            if data is None:
                return False
            if not data:
                return True
            self.rx.extend(data)

    def _handle(self, now):
        rx = self.rx
        pos = 0
        try:
            while True:
                got = wire.parse_packet(rx, pos, _MAX_PACKET)
                if got is None:
                    return
                first, start, pos = got
                self.last_rx = now
                kind = first & 0xF0
                if kind == wire.CONNACK:
                    if pos - start < 2 or rx[start + 1] != 0:
                        self.stats["refused"] += 1  # 4: bad user name or password, 5: not authorised
                        raise MqttError("connection refused: %r" % (bytes(rx[start:pos]),))
                    self._up()
                elif kind == wire.PUBACK:
                    if self.inflight.pop(wire.packet_id(rx, start, pos), None) is not None:
                        self.stats["acked"] += 1
                elif kind == wire.PUBLISH:
                    self._incoming(first, rx, start, pos)
                elif kind == wire.PINGRESP:
                    self.ping_out = False
                # SUBACK and anything else: nothing to do
                if self.rx is not rx:           # a callback dropped the connection: the rest
                    return                      # of this buffer belongs to the old one
        finally:
            if pos and self.rx is rx:
                self.rx = rx[pos:]

    def _up(self):
        self.state = UP
        self.backoff = _BACKOFF_MIN_MS
        self.stats["connects"] += 1
        if self.subscriptions:
            self._send_subscribe(self.subscriptions)
        now = self.clock()
        for pid in self.inflight:                # clean session: the broker forgot them
            m = self.inflight[pid]
            self._queue(publish_packet(m[0], m[1], 1, m[2], pid, dup=True))
            m[3] = now
            self.stats["resent"] += 1
        if self.on_connect is not None:
            self.on_connect()

    def _send_subscribe(self, subs):
        self._queue(wire.subscribe_packet(self._pid(), subs))

    def _incoming(self, first, rx, start, end):
        topic, pid, pos = wire.publish_fields(first, rx, start, end)
        if pid:
            self._queue(wire.puback_packet(pid))
        self.stats["received"] += 1
        if self.on_message is not None:
            self.on_message(topic, bytes(rx[pos:end]), bool(first & 1))

    def _keepalive(self, now):
        if not self.keepalive_ms:
            return
        # silence is judged by what we receive: our own resends keep last_tx fresh, and a
        # half-open TCP connection swallows them without a word
        half = self.keepalive_ms // 2
        if self.ping_out and now - self.last_rx > self.keepalive_ms:
            raise MqttError("broker silent")
        if not self.ping_out and (now - self.last_tx >= half or now - self.last_rx >= half):
            self._queue(wire.PINGREQ_PACKET)
            self.ping_out = True
            self.stats["pings"] += 1

    def _retransmit(self, now):
        for pid in self.inflight:
            m = self.inflight[pid]
            if now - m[3] >= _RETRY_MS:
                self._queue(publish_packet(m[0], m[1], 1, m[2], pid, dup=True))
                m[3] = now
                self.stats["resent"] += 1


def _would_block(e):
    code = e.args[0] if e.args else None
    return code in (11, 35, 115, 119) or e.__class__.__name__ in ("BlockingIOError",)
