"""gateway.mqtt_ingest.IngestConnection against a scripted broker (tests/mqtt_ingest_support.py):
what it reads and sends. Tested: the CONNECT and SUBSCRIBE the connection sends; that PUBLISHes
split across reads are reassembled and each reaches on_publish once, in order; PUBACKs for each
QoS 1 id exactly once, before the bytes on_group queues; groups capped at max_group with nothing
left in the buffer; oversized PUBLISHes read past and PUBACKed. Every wait is on a condition with
a timeout, never a sleep. Faults and reconnects: test_gw_mqtt_ingest_faults.py.
"""

import collections
import json
import time

import pytest

from protocol import mqtt_wire as wire
from tests.mqtt_ingest_support import rig  # noqa: F401 (a fixture)
from tests.mqtt_ingest_support import (FILTER, TEXT, TOPIC, WAIT, assert_markers_after_pubacks,
                                       parse_connect, parse_subscribe, puback_pids, suback, up)


# --- 1. CONNECT and SUBSCRIBE ------------------------------------------------------------------
@pytest.mark.parametrize("user, password, client_id, flags", [
    ("gw-user", "秘密-pw", "gw-7", 0xC0),
    ("", "", "", 0x00),
], ids=["user-password", "anonymous-default-id"])
def test_connect_and_subscribe_then_connected_only_after_suback(rig, user, password, client_id, flags):
    broker, conn, calls, _ = rig(suback=(None,), cfg={"username": user, "password": password,
                                                     "client_id": client_id, "keepalive": 45})
    s = broker.session(0)
    broker.wait(lambda: len(s.packets) >= 2, "CONNECT and SUBSCRIBE")
    (f1, connect, _), (f2, subscribe, _) = s.packets[:2]
    assert f1 == wire.CONNECT and f2 == wire.SUBSCRIBE
    assert parse_connect(connect) == {
        "protocol": "MQTT", "level": 4, "flags": flags, "keepalive": 45,
        "client_id": (client_id or "gateway") + "-ingest",
        "username": user + "-ingest" if user else None,     # a login of its own, same password
        "password": password or None}
    assert not parse_connect(connect)["flags"] & 0x02, "clean_session must be 0 (persistent session)"
    assert parse_subscribe(subscribe) == (1, [(FILTER, 1)])

    # A PUBLISH PUBACKed proves the client is past CONNACK and reading; still not "connected".
    s.send(wire.publish_packet(TOPIC, TEXT, qos=1, pid=9))
    broker.wait(lambda: puback_pids(s) == [9], "PUBACK 9")
    assert not conn.connected.is_set(), "connected before the SUBACK"
    assert calls.count("up") == 0

    s.send(suback(1, 1))
    assert conn.connected.wait(WAIT)
    broker.wait(lambda: calls.count("up") == 1 and len(s.packets) == 4, "on_up and the marker")
    assert calls.published() == [(TOPIC, TEXT.encode())]
    assert [f for f, _, _ in s.packets] == [wire.CONNECT, wire.SUBSCRIBE, wire.PUBACK, wire.PUBLISH]
    assert conn.stats["connects"] == 1 and conn.stats["drops"] == 0


# --- 2. byte-by-byte PUBLISHes ---------------------------------------------------------------
def test_publishes_fed_byte_by_byte_are_reassembled_in_order_and_pubacked_once(rig):
    broker, conn, calls, reads = rig()
    s = up(broker, conn)
    rating = json.dumps({"counter": 3, "matter": "营业执照变更", "staff": "李堃", "x": "𠀀"},
                        ensure_ascii=False).encode()
    items = [  # (topic, payload, qos, pid, dup)
        (TOPIC, TEXT.encode(), 1, 11, False),
        ("hall/市民中心/dev/窗口-4/rating", rating, 0, 0, False),
        (TOPIC, b"", 1, 12, True),                       # empty payload, DUP flag set
        (TOPIC, b"\x00\x30\x02\xff" + TEXT.encode(), 1, 300, False),   # header-like bytes
        ("hall/市民中心/dev/窗口-5/rating", rating, 1, 65535, False),
    ]
    data = b"".join(wire.publish_packet(t, p, qos=q, pid=i, dup=d) for t, p, q, i, d in items)
    del reads[:]
    s.send_slowly(data)

    broker.wait(lambda: calls.grouped() == len(items) and len(s.kinds(wire.PUBACK)) == 4
                and len(s.kinds(wire.PUBLISH)) == len(calls.groups), "all groups and their markers")
    assert calls.published() == [(t, p) for t, p, _, _, _ in items]
    assert all(type(p) is bytes for _, p in calls.published())
    assert collections.Counter(puback_pids(s)) == {11: 1, 12: 1, 300: 1, 65535: 1}
    assert all(calls.groups), "on_group without a PUBLISH"
    assert_markers_after_pubacks(s, calls, {(t, p): i for t, p, _, i, _ in items})
    # The bytes really came in more reads than packets, so some packet was split across reads.
    got = [n for n in reads if n]
    assert sum(got) == len(data) and len(got) > len(items)
    assert conn.stats["publishes"] == 5 and conn.stats["pubacks"] == 4
    assert conn.stats["broken"] == 0 and conn.stats["drops"] == 0


# --- 3. a burst bigger than max_group ----------------------------------------------------------
def test_burst_is_split_into_groups_of_max_group_and_last_partial_group_committed(rig):
    broker, conn, calls, _ = rig(conn={"max_group": 100})
    s = up(broker, conn)
    items = [("hall/市民中心/dev/d%d/rating" % (i % 7), ("%s #%d" % (TEXT, i)).encode(), i)
             for i in range(1, 251)]
    s.send(b"".join(wire.publish_packet(t, p, qos=1, pid=i) for t, p, i in items))

    # No further input: the last 50 must still be grouped and committed.
    broker.wait(lambda: calls.grouped() == 250 and len(s.kinds(wire.PUBACK)) == 250
                and len(s.kinds(wire.PUBLISH)) == len(calls.groups), "250 handled")
    assert calls.published() == [(t, p) for t, p, _ in items]
    sizes = [len(g) for g in calls.groups]
    assert max(sizes) == 100 and min(sizes) >= 1 and sum(sizes) == 250, sizes
    assert sorted(puback_pids(s)) == list(range(1, 251))
    assert_markers_after_pubacks(s, calls, {(t, p): i for t, p, i in items})
    assert conn.stats["groups"] == len(sizes) and conn.stats["pubacks"] == 250


# --- 4. oversize ------------------------------------------------------------------------------
def _oversize_then_normal():
    over = wire.publish_packet(TOPIC, b"\xee" * 5000, qos=1, pid=7)
    length = 2 + len(TOPIC.encode()) + 2 + 5000
    normal = wire.publish_packet(TOPIC, TEXT, qos=1, pid=8)
    return over, length, normal


@pytest.mark.parametrize("pieces", ["split", "one_read"])
def test_oversize_publish_is_skipped_pubacked_and_reported(rig, pieces):
    broker, conn, calls, _ = rig(conn={"max_packet": 1024})
    s = up(broker, conn)
    over, length, normal = _oversize_then_normal()
    if pieces == "split":
        # header split mid remaining-length, topic split, body in pieces, and the oversized
        # packet's tail in the same send as the next PUBLISH (the skip must end exactly there)
        cuts = [0, 2, 5, 20, 1020, 2020, 3020, 4020, len(over) - 100]
        for a, b in zip(cuts, cuts[1:]):
            s.send(over[a:b])
            time.sleep(0.005)
        s.send(over[cuts[-1]:] + normal)
    else:
        s.send(over + normal)

    broker.wait(lambda: len(s.kinds(wire.PUBACK)) == 2 and calls.grouped() == 1, "both PUBACKs")
    assert puback_pids(s) == [7, 8]
    assert [e for e in calls.events if e[0] == "oversize"] == [("oversize", TOPIC, length)]
    assert calls.heads == [b"\xee" * 2048]          # the start of its payload, for the dead letter
    assert calls.published() == [(TOPIC, TEXT.encode())]
    assert conn.stats["oversize"] == 1 and conn.stats["broken"] == 0
    assert conn.stats["drops"] == 0 and broker.connects() == 1 and calls.count("down") == 0


def test_publish_of_exactly_max_packet_is_kept_one_byte_more_is_oversize(rig):
    broker, conn, calls, _ = rig(conn={"max_packet": 1024})
    s = up(broker, conn)
    room = 1024 - 2 - len(TOPIC.encode()) - 2
    fits = wire.publish_packet(TOPIC, b"a" * room, qos=1, pid=1)
    over = wire.publish_packet(TOPIC, b"b" * (room + 1), qos=1, pid=2)
    s.send(fits + over)
    broker.wait(lambda: len(s.kinds(wire.PUBACK)) == 2, "two PUBACKs")
    assert calls.published() == [(TOPIC, b"a" * room)]
    assert [e for e in calls.events if e[0] == "oversize"] == [("oversize", TOPIC, 1025)]


def test_oversize_cut_by_a_reconnect_does_not_eat_the_next_connection_bytes(rig):
    broker, conn, calls, _ = rig(conn={"max_packet": 1024})
    s0 = up(broker, conn)
    over, length, normal = _oversize_then_normal()
    s0.send(over[:1500])            # not yet: on_oversize waits for 2 KiB of the payload
    s0.send(over[1500:3000])
    broker.wait(lambda: calls.count("oversize") == 1, "on_oversize")
    s0.half_close()                 # ~2000 bytes of it never come
    s1 = up(broker, conn, 1)
    s1.send(normal)
    broker.wait(lambda: calls.grouped() == 1 and s1.kinds(wire.PUBACK), "the PUBLISH after it")
    assert calls.published() == [(TOPIC, TEXT.encode())]
    assert puback_pids(s1) == [8] and conn.stats["broken"] == 0
