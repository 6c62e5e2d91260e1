"""A scripted MQTT broker (a real TCP server on 127.0.0.1) and the client-side recorders for
testing gateway.mqtt_ingest.IngestConnection: the broker records every packet the client sends
(split with protocol.mqtt_wire.parse_packet), answers CONNACK / SUBACK / PINGRESP as each test
scripts it, and pushes arbitrary bytes to the client, down to one byte per send. `rig` is the
fixture that wires one broker to one connection.
"""

import socket
import threading
import time
from typing import Any

import pytest

from gateway.backoff import Backoff
from gateway.config import MqttConfig
from gateway.mqtt_ingest import IngestConnection
from protocol import mqtt_wire as wire

WAIT = 8.0
FILTER = "hall/市民中心/dev/+/rating"
TOPIC = "hall/市民中心/dev/窗口-3/rating"
MARKER_TOPIC = "test/group"         # what the test's on_group queues through conn.send
TEXT = "营业执照变更 李堃 𠀀"


# --- the scripted broker ------------------------------------------------------------------
class Session:
    """One accepted client connection, as the broker sees it."""

    def __init__(self, sock, index):
        self.sock = sock
        self.index = index
        self.packets = []           # [(first byte, body bytes, monotonic time)]
        self.eof_at = None          # when the client closed its side
        self._send_lock = threading.Lock()

    def kinds(self, first):
        return [body for f, body, _ in self.packets if f == first]

    def send(self, data):
        with self._send_lock:
            self.sock.sendall(data)

    def send_slowly(self, data, chunk=1, pause=0.001):
        """Chunk by chunk with TCP_NODELAY and a pause, so the client's reads split packets."""
        for i in range(0, len(data), chunk):
            self.send(data[i:i + chunk])
            time.sleep(pause)

    def half_close(self):
        """FIN to the client; the broker still reads (no RST for PUBACKs already on their way)."""
        self.sock.shutdown(socket.SHUT_WR)


class ScriptedBroker:
    """connack / suback: codes per connection in accept order (the last one repeats);
    a suback code of None means no SUBACK is sent (the test sends it). pingresp can be switched."""

    def __init__(self, connack=(0,), suback=(1,), pingresp=True, after_connack=b""):
        self.connack = list(connack)
        self.suback = list(suback)
        self.pingresp = pingresp
        self.after_connack = after_connack
        self.sessions = []
        self.cond = threading.Condition()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def wait(self, predicate, what, timeout=WAIT):
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), "timed out waiting for " + what

    def session(self, index, timeout=WAIT):
        self.wait(lambda: len(self.sessions) > index, "connection %d" % index, timeout)
        return self.sessions[index]

    def connects(self):
        return sum(1 for s in self.sessions for f, _, _ in s.packets if f == wire.CONNECT)

    def stop(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)    # wakes accept() on Linux
        except OSError:
            pass
        self.listener.close()
        for s in list(self.sessions):
            try:
                s.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.sock.close()

    def _accept(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.cond:
                s = Session(sock, len(self.sessions))
                self.sessions.append(s)
                self.cond.notify_all()
            threading.Thread(target=self._read, args=(s,), daemon=True).start()

    def _read(self, s):
        buf = bytearray()
        try:
            while True:
                data = s.sock.recv(65536)
                if not data:
                    break
                buf += data
                while (got := wire.parse_packet(buf, 0, 1 << 20)) is not None:
                    first, start, end = got
                    body = bytes(buf[start:end])
                    del buf[:end]
                    self._handle(s, first, body)
        except (OSError, wire.MqttError):
            pass
        finally:
            with self.cond:
                s.eof_at = time.monotonic()
                self.cond.notify_all()

    def _handle(self, s, first, body):
        with self.cond:
            s.packets.append((first, body, time.monotonic()))
            self.cond.notify_all()
        pick = lambda codes: codes[min(s.index, len(codes) - 1)]  # noqa: E731
        try:
            if first == wire.CONNECT:
                s.send(bytes((wire.CONNACK, 2, 0, pick(self.connack))) + self.after_connack)
            elif first == wire.SUBSCRIBE and pick(self.suback) is not None:
                s.send(suback(wire.packet_id(body, 0, len(body)), pick(self.suback)))
            elif first == wire.PINGREQ and self.pingresp:
                s.send(b"\xd0\x00")
        except OSError:
            pass


def suback(pid, granted):
    return bytes((wire.SUBACK, 3, pid >> 8, pid & 0xFF, granted))


def parse_connect(body):
    pos = 0

    def text():
        nonlocal pos
        n = (body[pos] << 8) | body[pos + 1]
        pos += 2 + n
        return body[pos - n:pos].decode()

    fields = {"protocol": text(), "level": body[pos], "flags": body[pos + 1],
              "keepalive": (body[pos + 2] << 8) | body[pos + 3]}
    pos += 4
    fields["client_id"] = text()
    fields["username"] = text() if fields["flags"] & 0x80 else None
    fields["password"] = text() if fields["flags"] & 0x40 else None
    assert pos == len(body), "CONNECT has bytes after its fields"
    return fields


def parse_subscribe(body):
    pid, pos, subs = (body[0] << 8) | body[1], 2, []
    while pos < len(body):
        n = (body[pos] << 8) | body[pos + 1]
        subs.append((body[pos + 2:pos + 2 + n].decode(), body[pos + 2 + n]))
        pos += 3 + n
    return pid, subs


def puback_pids(session):
    for body in session.kinds(wire.PUBACK):
        assert len(body) == 2, "PUBACK body must be exactly the packet id"
    return [(b[0] << 8) | b[1] for b in session.kinds(wire.PUBACK)]


# --- the client's side ---------------------------------------------------------------------
class Calls:
    """Records the connection's callbacks in one ordered event list. on_group queues a marker
    PUBLISH (its payload: the group's number) through conn.send, as the bridge queues its ACKs."""

    def __init__(self, cond):
        self.cond = cond
        self.conn: Any = None       # the IngestConnection, set once it is made
        self.events = []            # ("publish", topic, payload) | ("group", n) | ("down",) ...
        self.groups = []            # [[(topic, payload), ...], ...]
        self.heads = []             # the payload heads on_oversize was given
        self._open = []

    def _log(self, *event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def on_publish(self, topic, payload):
        self._open.append((topic, payload))
        self._log("publish", topic, payload)

    def on_group(self):
        n = len(self.groups)
        self.groups.append(self._open)
        self._open = []
        self.conn.send(wire.publish_packet(MARKER_TOPIC, str(n)))
        self._log("group", n)

    def on_up(self):
        self._log("up")

    def on_down(self):
        self._log("down")

    def on_oversize(self, topic, length, head):
        self.heads.append(head)
        self._log("oversize", topic, length)

    def published(self):
        return [(e[1], e[2]) for e in self.events if e[0] == "publish"]

    def count(self, kind):
        return sum(1 for e in self.events if e[0] == kind)

    def grouped(self):
        return sum(len(g) for g in self.groups)


class RecordingSocket:
    """The real socket, with the size of every read kept (to prove packets were split)."""

    def __init__(self, sock, reads):
        self._sock = sock
        self._reads = reads

    def recv(self, n, flags=0):
        data = self._sock.recv(n, flags)
        self._reads.append(len(data))
        return data

    def __getattr__(self, name):
        return getattr(self._sock, name)


@pytest.fixture
def rig():
    """rig(broker kwargs..., conn=dict(IngestConnection kwargs), cfg=dict(MqttConfig kwargs))
    -> (broker, conn, calls, reads); everything is stopped afterwards."""
    made = []

    def make(conn=None, cfg=None, start=True, **broker_kw):
        broker = ScriptedBroker(**broker_kw)
        calls = Calls(broker.cond)
        reads = []
        config = MqttConfig(**{"host": "127.0.0.1", "port": broker.port, "client_id": "gw-7",
                               "keepalive": 60, **(cfg or {})})
        kw = {"on_up": calls.on_up, "on_down": calls.on_down, "on_oversize": calls.on_oversize,
              "backoff": Backoff(base=0.01, cap=0.05),
              "connect": lambda addr, t: RecordingSocket(socket.create_connection(addr, t), reads),
              **(conn or {})}
        c = IngestConnection(config, FILTER, calls.on_publish, calls.on_group, **kw)
        calls.conn = c
        made.append((broker, c))
        if start:
            c.start()
        return broker, c, calls, reads

    yield make
    for broker, c in made:
        c.stop(timeout=2.0)
        broker.stop()


def up(broker, conn, index=0):
    """Wait until connection `index` (in the broker's accept order) is subscribed; its session.
    The client holds one connection at a time and clears `connected` before it reconnects."""
    s = broker.session(index)
    broker.wait(lambda: conn.connected.is_set() and s.kinds(wire.SUBSCRIBE),
                "connection %d to be subscribed" % index)
    return s


def assert_markers_after_pubacks(session, calls, pid_of):
    """Each group's marker (queued in on_group) reaches the broker after the PUBACKs of every
    QoS 1 PUBLISH of that group, and each marker comes once, in group order."""
    order = []
    for first, body, _ in session.packets:
        if first == wire.PUBACK:
            order.append(("puback", (body[0] << 8) | body[1]))
        elif first & 0xF0 == wire.PUBLISH:
            topic, _, at = wire.publish_fields(first, body, 0, len(body))
            assert topic == MARKER_TOPIC
            order.append(("marker", int(body[at:])))
    markers = [m for k, m in order if k == "marker"]
    assert markers == list(range(len(calls.groups)))
    for n, group in enumerate(calls.groups):
        at = order.index(("marker", n))
        for item in group:
            pid = pid_of.get(item)
            if pid:
                assert order.index(("puback", pid)) < at, "group %d's marker before PUBACK %d" % (n, pid)
