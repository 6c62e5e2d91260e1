"""The gateway's rating intake from MQTT: a connection of its own to the hall's Mosquitto that
subscribes to hall/<hall>/dev/+/rating and nothing else (paho keeps the control plane:
gateway.mqtt_bridge).

Why not paho here: the ingest benchmark found paho 2.2 spending more CPU per rating than all our
own work on it (decode, MAC, commit, ACK), in about ten system calls per message (one-byte reads of
each header, a wake-up byte per queued packet, a send per packet): docs/ingest-performance.md.
This connection makes four or five per group, however big: poll, read, send the PUBACKs, read
again until nothing is waiting, send the ACKs.

One thread, a non-blocking socket waited on with poll. Each read appends to a buffer; every whole
packet in it is split out (protocol.mqtt_wire) and each PUBLISH goes to on_publish(topic, payload);
then the broker gets their PUBACKs at once, so it goes on sending while this thread commits; what
else the socket holds by then is read without waiting and joins the group. Then on_group() commits
the group (one transaction, one fsync) and queues its ACKs through send(), sent all at once.
A group that has more than one rating but fewer than LINGER_GROUP waits up to LINGER_MS for more
input: under load that makes the groups, and so the commits, several times cheaper (SQLite's cost
per transaction is most of a small group's), and a lone rating never waits.
A device learns its rating is stored only from the ACK, after the commit; a rating PUBACKed and
lost in a crash before its commit is still in the device's outbox, which sends it again. (A PUBACK
held back until the commit would cap each group at the broker's max_inflight_messages, 20 by
default, and stop the broker during every fsync; group size is what makes a commit cheap.)
- Keepalive: a PINGREQ after keepalive/2 s without sending, or without hearing from the broker; no
  answer within keepalive s and the connection is dropped (a half-open TCP link tells nothing).
- A PUBLISH longer than max_packet is read past, not buffered, and PUBACKed; on_oversize(topic,
  length, first HEAD_BYTES of the payload) is told, so the caller can dead-letter it and release
  the device: one junk message must not come back on every reconnect and stall the hall.
- An exception from on_publish or on_oversize loses that message to the caller (counted as
  failed), not the ones behind it; one from on_group, on_up or on_down is counted as an error
  and logged with its traceback, and the connection is dropped and opened again: a caller's bug
  never ends the intake thread. Any broken packet, a refused CONNECT or SUBSCRIBE: the connection
  is dropped and opened again after a capped, jittered backoff; on_down() runs on this thread
  before it is.
"""

import logging
import select
import socket
import threading
import time

from gateway.backoff import Backoff
from gateway.intake import HEAD_BYTES  # of an oversized payload: what the intake keeps as evidence
from protocol import mqtt_wire as wire
from protocol.mqtt_wire import MqttError

log = logging.getLogger("gateway.mqtt.ingest")

READ_BYTES = 65536
MAX_PACKET = 65536        # a rating's JSON is under 4 KiB; anything near this is junk
CONNECT_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 10.0     # a broker that takes nothing for this long is gone
LINGER_GROUP = 64        # a group smaller than this, with more than one rating, waits ...
LINGER_MS = 2            # ... this long for more input before it commits
_SUBSCRIBE_PID = 1


INGEST_SUFFIX = "-ingest"


def ingest_username(username):
    """The ingest connection's own login: the broker runs with use_username_as_clientid (a device
    presenting the gateway's client id must not evict it), so two connections under one user name
    would evict each other. Same password; its own, narrower ACL (gateway.mosquitto_acl)."""
    return username + INGEST_SUFFIX if username else username


class Refused(MqttError):
    """The broker said no (CONNACK code, SUBACK 0x80): counted as refused, not as a broken packet."""


class IngestConnection:
    def __init__(self, cfg, topic_filter, on_publish, on_group, on_up=None, on_down=None,
                 on_oversize=None, max_packet=MAX_PACKET, max_group=512,
                 connect=socket.create_connection, clock=time.monotonic, backoff=None):
        self.cfg = cfg
        self.client_id = (cfg.client_id or "gateway") + INGEST_SUFFIX
        self.topic_filter = topic_filter
        self.on_publish = on_publish
        self.on_group = on_group
        self.on_up = on_up
        self.on_down = on_down
        self.on_oversize = on_oversize
        self.max_packet = max_packet
        self.max_group = max_group
        self.connect = connect
        self.clock = clock
        self.backoff = backoff or Backoff(base=0.2, cap=5.0)
        self.connected = threading.Event()
        self.stats = {"connects": 0, "drops": 0, "publishes": 0, "pubacks": 0, "groups": 0,
                      "pings": 0, "oversize": 0, "refused": 0, "broken": 0, "failed": 0,
                      "errors": 0}
        self._stopping = threading.Event()
        self._thread = None
        self._sock = None
        self._out = bytearray()     # ACKs queued by on_group (this thread only)
        self._skip = 0              # bytes of an oversized PUBLISH still to read past

    # --- life cycle -----------------------------------------------------------------------
    def start(self):
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="mqtt-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout=5.0):
        """Leave: what is read and not yet committed is committed by on_down, but its ACKs are not
        sent; the devices send those ratings again (duplicates, ACKed as such). True once the
        thread has ended."""
        self._stopping.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)     # wakes its poll or read at once
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def send(self, data):
        """Queue bytes to go out after the current group (call from on_group, on this thread)."""
        self._out += data

    # --- the thread -----------------------------------------------------------------------
    def _run(self):
        while not self._stopping.is_set():
            try:
                sock, buf = self._open()
            except (OSError, MqttError, ValueError) as e:
                # ValueError: a configured value CONNECT cannot carry (no UTF-8, keepalive > 65535)
                log.warning("ingest: cannot connect to %s:%d: %s", self.cfg.host, self.cfg.port, e)
                self._stopping.wait(self.backoff.failure())
                continue
            try:
                self._serve(sock, buf)
            except (OSError, MqttError) as e:
                if not self._stopping.is_set():
                    log.warning("ingest: connection lost: %s", e)
            except Exception:
                # Catch-all by design: on_group and on_up are the caller's code, and whatever they
                # raise must cost a reconnect, never the intake thread.
                self.stats["errors"] += 1
                log.exception("ingest: connection dropped after an error")
            finally:
                self._close(sock)
            if not self._stopping.is_set():
                self._stopping.wait(self.backoff.failure())

    def _open(self):
        sock = self.connect((self.cfg.host, self.cfg.port), CONNECT_TIMEOUT_S)
        self._sock = sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(wire.connect_packet(self.client_id, self.cfg.keepalive,
                                             user=ingest_username(self.cfg.username) or None,
                                             password=self.cfg.password or None, clean=False))
            buf = bytearray()
            while True:                         # CONNACK is the broker's first packet
                got = wire.parse_packet(buf, 0, 4)
                if got is not None:
                    break
                data = sock.recv(64)
                if not data:
                    raise MqttError("closed before CONNACK")
                buf += data
            first, start, end = got
            if first != wire.CONNACK or end - start != 2:
                raise MqttError("expected CONNACK, got 0x%02x" % first)
            if buf[start + 1]:
                self.stats["refused"] += 1     # 4: bad user name or password, 5: not authorised
                raise Refused("connection refused, code %d" % buf[start + 1])
            sock.sendall(wire.subscribe_packet(_SUBSCRIBE_PID, [(self.topic_filter, 1)]))
        except BaseException:
            self._close(sock, was_up=False)
            raise
        self.stats["connects"] += 1
        del buf[:end]
        return sock, buf

    def _close(self, sock, was_up=True):
        up = self.connected.is_set()
        self.connected.clear()
        self._sock = None
        self._skip = 0
        try:
            sock.close()
        except OSError:
            pass
        if not was_up:
            return
        self.stats["drops"] += 1
        if self.on_down is not None:
            try:
                self.on_down()
            except Exception:                   # the caller's code: it must not end the thread
                self.stats["errors"] += 1
                log.exception("ingest: on_down failed")
        self._out = bytearray()
        if up:
            log.info("ingest: disconnected")

    def _serve(self, sock, buf):
        keepalive = self.cfg.keepalive
        half = keepalive / 2.0
        # Non-blocking and waited on with poll: reading what is already there returns at once (a
        # group's "anything more?"), and the wait wakes for the keepalive.
        sock.setblocking(False)
        readable = self._readable = select.poll()
        readable.register(sock, select.POLLIN)
        now = self.clock()
        self._last_rx = self._last_tx = now
        self._ping_out = False
        while buf and self._packets(sock, buf):
            pass
        while not self._stopping.is_set():
            data = None
            if readable.poll(half * 1000 if keepalive else None):
                try:
                    data = sock.recv(READ_BYTES)
                except BlockingIOError:
                    pass
            now = self.clock()
            if data is not None:
                if not data:
                    raise MqttError("closed by the broker")
                self._last_rx = now
                buf += self._past_oversize(data)
                while self._packets(sock, buf):
                    pass
            if keepalive:
                if self._ping_out and now - self._last_rx > keepalive:
                    raise MqttError("broker silent for %.0f s" % (now - self._last_rx))
                if not self._ping_out and (now - self._last_tx >= half or now - self._last_rx >= half):
                    self._send(sock, wire.PINGREQ_PACKET)
                    self._ping_out = True
                    self.stats["pings"] += 1

    def _send(self, sock, data):
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view):]
                continue
            except BlockingIOError:
                pass
            writable = select.poll()
            writable.register(sock, select.POLLOUT)
            if not writable.poll(SEND_TIMEOUT_S * 1000):
                raise MqttError("the broker took nothing for %.0f s" % SEND_TIMEOUT_S)
        self._last_tx = self.clock()

    def _packets(self, sock, buf):
        """Handle every whole packet in buf, and in what else the socket holds right now (read
        without waiting), then commit and answer the group; leaves an incomplete rest in buf.
        True when the group filled up (max_group) before buf ran out of whole packets."""
        published = 0
        closed = False
        try:
            while True:
                pids = []
                published += self._take(buf, pids, self.max_group - published)
                if pids:
                    self._puback(sock, pids)
                if published >= self.max_group:
                    break
                try:                            # more already here? then it joins this group
                    data = sock.recv(READ_BYTES)
                except BlockingIOError:
                    if not 1 < published < LINGER_GROUP or not self._readable.poll(LINGER_MS):
                        break
                    continue
                if not data:
                    closed = True               # commit what came before the close, then drop
                    break
                buf += self._past_oversize(data)
        except MqttError as e:
            if not isinstance(e, Refused):
                self.stats["broken"] += 1
            raise
        if published:
            self._group(sock)
        if closed:
            raise MqttError("closed by the broker")
        return published >= self.max_group

    def _take(self, buf, pids, room):
        """Hand up to `room` PUBLISH packets from buf to on_publish, or on_oversize (their packet
        ids go to pids), and handle the other whole packets before them; what is done leaves buf.
        How many."""
        published = 0
        pos = 0
        try:
            while published < room:
                got = wire.header(buf, pos)
                if got is None:
                    break
                first, length, start = got
                end = start + length
                if length > self.max_packet:
                    pid = self._oversize(first, buf, start, end, length)
                    if pid is None:
                        break                   # its topic and packet id are not all in yet
                    if pid:
                        pids.append(pid)
                    published += 1              # handed over (on_oversize): its group commits
                    pos = min(end, len(buf))
                    continue
                if end > len(buf):
                    break
                kind = first & 0xF0
                if kind == wire.PUBLISH:
                    topic, pid, at = wire.publish_fields(first, buf, start, end)
                    try:
                        self.on_publish(topic, bytes(buf[at:end]))
                    except Exception:           # the caller's bug: this message is lost to it,
                        self.stats["failed"] += 1   # not the ones behind it (nor the thread)
                        log.exception("ingest: handling a message on %s failed", topic)
                    published += 1
                    if pid:
                        pids.append(pid)
                elif kind == wire.PINGRESP:
                    self._ping_out = False
                elif kind == wire.SUBACK:
                    self._suback(buf, start, end)
                elif kind != wire.PUBACK:       # we publish at QoS 0 only: nothing else comes
                    raise MqttError("unexpected packet 0x%02x" % first)
                pos = end
        finally:
            del buf[:pos]
            self.stats["publishes"] += published
        return published

    def _past_oversize(self, data):
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            return data[skipped:]
        return data

    def _puback(self, sock, pids):
        self._send(sock, b"".join([wire.puback_packet(pid) for pid in pids]))
        self.stats["pubacks"] += len(pids)

    def _group(self, sock):
        self.stats["groups"] += 1
        self.on_group()
        out, self._out = self._out, bytearray()
        if out:
            self._send(sock, out)

    def _oversize(self, first, buf, start, end, length):
        """Read past a PUBLISH too long to keep: its packet id (to PUBACK it), or None while its
        variable header and the first HEAD_BYTES of its payload are not in yet."""
        if first & 0xF0 != wire.PUBLISH:
            raise MqttError("packet of %d bytes" % length)
        have = len(buf)
        if have - start < 2 or have - start < 4 + ((buf[start] << 8) | buf[start + 1]):
            return None                         # at most 64 KiB of topic: buf stays bounded
        topic, pid, at = wire.publish_fields(first, buf, start, min(end, have))
        head = min(end, at + HEAD_BYTES)
        if have < head:
            return None
        self._skip = max(0, end - have)
        self.stats["oversize"] += 1
        if self.on_oversize is not None:
            try:
                self.on_oversize(topic, length, bytes(buf[at:head]))
            except Exception:                   # the caller's code, as for on_publish in _take
                self.stats["failed"] += 1
                log.exception("ingest: handling an oversized message on %s failed", topic)
        return pid

    def _suback(self, buf, start, end):
        if wire.packet_id(buf, start, end) != _SUBSCRIBE_PID:
            return
        if end - start < 3 or buf[start + 2] & 0x80:
            self.stats["refused"] += 1
            raise Refused("subscription to %s refused" % self.topic_filter)
        if not self.connected.is_set():
            self.connected.set()
            self.backoff.success()
            log.info("ingest: subscribed to %s as %s", self.topic_filter, self.client_id)
            if self.on_up is not None:
                self.on_up()

