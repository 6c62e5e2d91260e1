"""gateway.mqtt_ingest's remaining catch-alls guard the caller's callbacks: a raise from on_group,
on_up or on_down is logged with its traceback and counted (stats["errors"]), the connection is
opened again, and the intake thread lives on; the connect path catches only what it raises (a
configured value CONNECT cannot carry is a ValueError: warned, retried, the thread lives on)."""

import logging
import time

from test_gw_mqtt_ingest import TOPIC, WAIT, puback_pids, rig, up  # noqa: F401 (rig: fixture)
from protocol import mqtt_wire as wire


def _raises_once(real, what):
    left = [1]

    def callback(*args):
        if left:
            left.pop()
            raise RuntimeError(what)
        return real(*args)
    return callback


def _logged_with_traceback(caplog, text):
    return [r for r in caplog.records
            if text in r.getMessage() and r.exc_info and r.exc_info[0] is RuntimeError]


def test_on_group_raising_costs_a_reconnect_counted_and_logged(rig, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.mqtt.ingest")
    broker, conn, calls, _ = rig()
    conn.on_group = _raises_once(calls.on_group, "a bug in on_group")
    s = up(broker, conn)
    s.send(wire.publish_packet(TOPIC, "一", qos=1, pid=7))
    s2 = up(broker, conn, 1)                    # dropped and opened again
    assert conn.stats["errors"] == 1 and conn.stats["drops"] == 1
    assert _logged_with_traceback(caplog, "connection dropped after an error")
    s2.send(wire.publish_packet(TOPIC, "二", qos=1, pid=8))
    broker.wait(lambda: puback_pids(s2) == [8] and calls.count("group") == 1, "the next group")
    assert conn._thread.is_alive() and conn.stats["errors"] == 1


def test_on_up_and_on_down_raising_are_counted_and_the_thread_lives(rig, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.mqtt.ingest")
    broker, conn, calls, _ = rig(start=False)
    conn.on_up = _raises_once(calls.on_up, "a bug in on_up")
    conn.on_down = _raises_once(calls.on_down, "a bug in on_down")
    conn.start()
    up(broker, conn, 1)                         # on_up raised: dropped (on_down raised), again
    broker.wait(lambda: calls.count("up") == 1, "on_up on the second connection")
    assert conn.stats["errors"] == 2 and conn.stats["drops"] == 1
    assert _logged_with_traceback(caplog, "connection dropped after an error")
    assert _logged_with_traceback(caplog, "on_down failed")
    assert conn._thread.is_alive()


def test_a_keepalive_connect_cannot_carry_is_warned_and_retried(rig, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.mqtt.ingest")
    broker, conn, _, _ = rig(cfg={"keepalive": 70000})
    deadline = time.monotonic() + WAIT
    while sum("cannot connect" in r.getMessage() for r in caplog.records) < 2:
        assert time.monotonic() < deadline, "timed out waiting for two warned attempts"
        time.sleep(0.01)                        # the log has no condition to wait on
    assert conn._thread.is_alive() and conn.stats["connects"] == 0
    assert all(r.exc_info is None for r in caplog.records if "cannot connect" in r.getMessage())
