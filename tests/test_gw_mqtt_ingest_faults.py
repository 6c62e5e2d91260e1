"""gateway.mqtt_ingest.IngestConnection against a scripted broker (tests/mqtt_ingest_support.py):
faults. Tested: broken input, refused CONNACK / SUBACK, a handler that raises, a silent broker
(keepalive) and a broker closing all drop and reconnect (or go on); stop() is prompt, connected
or in backoff. Every wait is on a condition with a timeout, never a sleep.
"""

import threading
import time
import types

import pytest

from gateway.backoff import Backoff
from protocol import mqtt_wire as wire
from tests.mqtt_ingest_support import rig  # noqa: F401 (a fixture)
from tests.mqtt_ingest_support import TEXT, TOPIC, WAIT, puback_pids, up


# --- 5. broken input --------------------------------------------------------------------------
@pytest.mark.parametrize("junk", [
    b"\x50\x02\x00\x01",                              # PUBREC: never expected here
    b"\x30\xff\xff\xff\xff\x7f",                      # remaining length of five bytes
    b"\x30\x05\x00\x10abc",                           # topic length 16 in a 5-byte body
    wire.publish_packet(TOPIC, b"x", qos=1, pid=0),   # QoS 1 with packet id 0
    b"\x36\x03\x00\x01a",                             # QoS 3
    b"\x50" + wire.remaining_length(70000),           # not a PUBLISH, over max_packet
], ids=["pubrec", "bad-length", "short-topic", "pid-0", "qos-3", "big-non-publish"])
def test_broken_input_drops_and_reconnects(rig, junk):
    broker, conn, calls, _ = rig()
    s0 = up(broker, conn)
    s0.send(wire.publish_packet(TOPIC, "before", qos=1, pid=3) + junk)
    broker.wait(lambda: calls.count("down") == 1, "on_down")
    s1 = up(broker, conn, 1)
    s1.send(wire.publish_packet(TOPIC, TEXT, qos=1, pid=4))
    broker.wait(lambda: 4 in puback_pids(s1) and calls.count("publish") == 2, "PUBLISH after")

    kinds = [e[0] for e in calls.events if e[0] in ("publish", "down", "up")]
    assert kinds == ["up", "publish", "down", "up", "publish"]
    assert calls.published() == [(TOPIC, b"before"), (TOPIC, TEXT.encode())]
    assert conn.stats["broken"] == 1 and conn.stats["drops"] == 1
    assert conn.stats["connects"] == 2 and broker.connects() == 2 and conn.stats["refused"] == 0
    broker.wait(lambda: s0.eof_at is not None, "the broken connection closed by the client")


# --- 6. refusals ------------------------------------------------------------------------------
def test_refused_connack_is_counted_and_retried_until_accepted(rig):
    broker, conn, calls, _ = rig(connack=(5, 4, 0))
    s2 = up(broker, conn, 2)
    broker.wait(lambda: calls.count("up") == 1, "on_up")
    assert conn.stats["refused"] == 2 and conn.stats["connects"] == 1
    assert broker.connects() == 3
    # a refused CONNECT was never up: no drop, no on_down
    assert conn.stats["drops"] == 0 and calls.count("down") == 0 and calls.count("up") == 1
    for s in broker.sessions[:2]:
        assert [f for f, _, _ in s.packets] == [wire.CONNECT], "SUBSCRIBE after a refusal"
    broker.wait(lambda: all(s.eof_at for s in broker.sessions[:2]), "refused sockets closed")
    s2.send(wire.publish_packet(TOPIC, TEXT, qos=1, pid=5))
    broker.wait(lambda: puback_pids(s2) == [5], "PUBACK on the accepted connection")


def test_refused_suback_drops_and_retries(rig):
    broker, conn, calls, _ = rig(suback=(0x80, 1))
    s1 = up(broker, conn, 1)
    broker.wait(lambda: calls.count("up") == 1, "on_up")
    assert conn.stats["refused"] == 1 and conn.stats["connects"] == 2
    assert conn.stats["drops"] == 1 and calls.count("down") == 1 and calls.count("up") == 1
    broker.wait(lambda: broker.sessions[0].eof_at is not None, "refused connection closed")
    s1.send(wire.publish_packet(TOPIC, TEXT, qos=1, pid=5))
    broker.wait(lambda: puback_pids(s1) == [5] and calls.grouped() == 1, "PUBLISH after retry")


def test_refused_suback_is_not_counted_as_a_broken_packet(rig):
    # An ACL problem on the broker must read as a refusal, not as noise on the connection.
    broker, conn, _, _ = rig(suback=(0x80, 1))
    up(broker, conn, 1)
    assert conn.stats["refused"] == 1
    assert conn.stats["broken"] == 0, conn.stats


def test_a_message_whose_handler_raises_is_counted_and_the_rest_go_on(rig):
    """A bug in the caller's code on one message must not stall the hall: that message is lost
    to the caller (counted; the device sends it again), the ones behind it are handled, and the
    connection stays (a drop would bring the same message back first, for ever)."""
    broker, conn, calls, _ = rig()
    failing = [True]
    real = calls.on_publish

    def on_publish(topic, payload):
        if failing[0]:
            failing[0] = False
            raise RuntimeError("a bug in the handler")
        real(topic, payload)
    conn.on_publish = on_publish
    s = up(broker, conn)
    s.send(wire.publish_packet(TOPIC, "first", qos=1, pid=41) + wire.publish_packet(TOPIC, TEXT, qos=1, pid=42))
    broker.wait(lambda: puback_pids(s) == [41, 42] and calls.grouped() == 1, "both PUBACKed")
    assert calls.published() == [(TOPIC, TEXT.encode())]
    assert conn.stats["failed"] == 1 and conn.stats["drops"] == 0 and broker.connects() == 1


# --- 7. keepalive -----------------------------------------------------------------------------
def test_keepalive_pings_an_idle_connection_and_answered_pings_keep_it(rig):
    broker, conn, _, _ = rig(cfg={"keepalive": 1})
    s = up(broker, conn)
    # (the client counts a ping after sending it: wait for its count too)
    broker.wait(lambda: len(s.kinds(wire.PINGREQ)) >= 3 and conn.stats["pings"] >= 3,
                "three PINGREQs", timeout=6)
    # three answered pings span more than the keepalive: still the same connection
    assert s.kinds(wire.PINGREQ)[:3] == [b"", b"", b""]
    assert all(f in (wire.CONNECT, wire.SUBSCRIBE, wire.PINGREQ) for f, _, _ in s.packets)
    assert conn.stats["pings"] >= 3 and conn.stats["drops"] == 0
    assert s.eof_at is None and len(broker.sessions) == 1


def test_keepalive_unanswered_ping_drops_a_half_open_connection_and_reconnects(rig):
    broker, conn, calls, _ = rig(cfg={"keepalive": 1}, pingresp=False)
    s0 = up(broker, conn)
    broker.session(1, timeout=8)
    broker.wait(lambda: s0.eof_at is not None, "the silent connection closed")
    subscribed_at = s0.packets[1][2]
    pinged_at = [t for f, _, t in s0.packets if f == wire.PINGREQ]
    assert len(pinged_at) == 1, "a second PINGREQ while the first is unanswered"
    # dropped only once keepalive passed without a word from the broker, and not much later
    assert 1.0 < s0.eof_at - subscribed_at < 4.0, s0.eof_at - subscribed_at
    assert conn.stats["pings"] >= 1 and conn.stats["drops"] >= 1 and conn.stats["broken"] == 0
    assert calls.count("down") >= 1
    s1 = broker.sessions[1]
    broker.wait(lambda: s1.packets and s1.packets[0][0] == wire.CONNECT, "a second CONNECT")


# --- 8. stop ----------------------------------------------------------------------------------
def test_stop_while_connected_is_prompt_and_calls_on_down(rig):
    broker, conn, calls, _ = rig()          # keepalive 60: only the shutdown can wake the read
    s = up(broker, conn)
    t = time.monotonic()
    conn.stop()
    assert time.monotonic() - t < 2.0
    assert not conn._thread.is_alive()
    assert calls.count("down") == 1 and not conn.connected.is_set()
    broker.wait(lambda: s.eof_at is not None, "the broker to see the close", timeout=2)
    assert len(broker.sessions) == 1


def test_stop_during_backoff_is_prompt(rig):
    attempts = threading.Event()

    def refuse(addr, timeout):
        attempts.set()
        raise ConnectionRefusedError("no broker")

    backoff = Backoff(base=30, cap=30, rng=types.SimpleNamespace(uniform=lambda a, b: b))
    _, conn, calls, _ = rig(conn={"connect": refuse, "backoff": backoff})
    assert attempts.wait(WAIT)
    t = time.monotonic()
    conn.stop()
    assert time.monotonic() - t < 2.0 and not conn._thread.is_alive()
    assert calls.count("down") == 0 and conn.stats["connects"] == 0


# --- 9. broker closes after PUBLISHes; replay right after CONNACK -------------------------------
def test_broker_close_after_publishes_commits_the_group_before_on_down_then_reconnects(rig):
    broker, conn, calls, _ = rig()
    s0 = up(broker, conn)
    items = [(TOPIC, ("%s %d" % (TEXT, i)).encode(), i) for i in (21, 22, 23)]
    s0.send(b"".join(wire.publish_packet(t, p, qos=1, pid=i) for t, p, i in items))
    s0.half_close()
    s1 = up(broker, conn, 1)
    broker.wait(lambda: calls.count("up") == 2, "on_up again")
    kinds = [e[0] for e in calls.events]
    assert kinds == ["up", "publish", "publish", "publish", "group", "down", "up"], kinds
    assert calls.published() == [(t, p) for t, p, _ in items]
    assert conn.stats["drops"] == 1 and conn.stats["broken"] == 0
    s1.send(wire.publish_packet(TOPIC, TEXT, qos=1, pid=24))
    broker.wait(lambda: puback_pids(s1) == [24] and calls.grouped() == 4, "PUBLISH after reconnect")


def test_publishes_sent_with_the_connack_are_delivered(rig):
    # A persistent session: the broker replays stored QoS 1 messages right after CONNACK, before
    # the SUBACK; they come in the same segment, so partly in the CONNACK read (64 bytes).
    replay = [(TOPIC, b"r1", 31), (TOPIC, (TEXT * 3).encode(), 32)]
    data = b"".join(wire.publish_packet(t, p, qos=1, pid=i) for t, p, i in replay)
    broker, conn, calls, _ = rig(after_connack=data)
    s = up(broker, conn)
    broker.wait(lambda: calls.grouped() == 2 and len(s.kinds(wire.PUBACK)) == 2, "replayed two")
    assert calls.published() == [(t, p) for t, p, _ in replay]
    assert puback_pids(s) == [31, 32] and conn.stats["broken"] == 0
