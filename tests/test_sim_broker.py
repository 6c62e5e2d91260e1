"""The simulator's private Mosquitto: real broker, real paho-mqtt clients."""

import os
import queue
import socket
import time

import paho.mqtt.client as mqtt
import pytest

from hall_simulator.broker import Broker, password_line

ACL = """
user gw-王喆
topic readwrite #

user dev1
topic write hall/dev1/#
"""


def connect(broker, user=None, password=None):
    """(reason code of CONNACK, client); the client runs its network loop in a thread."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-%s" % os.urandom(4).hex())
    if user is not None:
        client.username_pw_set(user, password)
    got = queue.Queue()
    client.on_connect = lambda c, u, flags, rc, props: got.put(rc)
    client.on_message = lambda c, u, msg: got.put(msg)
    client.connect(broker.host, broker.port)
    client.loop_start()
    rc = got.get(timeout=5)
    client.inbox = got
    if rc.is_failure:
        client.loop_stop()
        client.disconnect()
    return rc, client


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_password_line_matches_mosquitto_format():
    salt = bytes(range(12))
    line = password_line("alice", "secret", salt)
    user, _, hashed = line.partition(":")
    assert user == "alice"
    _, kind, iterations, salt_b64, digest_b64 = hashed.split("$")
    assert kind == "7" and iterations == "101" and salt_b64 == "AAECAwQFBgcICQoL"
    assert len(digest_b64) == 88                    # 64-byte PBKDF2-SHA512, base64
    assert password_line("alice", "secret", salt) == line
    assert password_line("alice", "other", salt) != line


def test_users_and_acl_are_enforced():
    with Broker(users={"gw-王喆": "s3cret", "dev1": "d1"}, acl=ACL) as broker:
        assert "s3cret" not in open(os.path.join(broker.workdir, "passwords")).read()
        rc, _ = connect(broker)
        assert rc.is_failure                              # no anonymous clients
        rc, _ = connect(broker, "dev1", "wrong")
        assert rc.is_failure
        rc, gw = connect(broker, "gw-王喆", "s3cret")
        assert not rc.is_failure
        rc, dev = connect(broker, "dev1", "d1")
        assert not rc.is_failure
        gw.subscribe("#", qos=1)
        time.sleep(0.2)
        dev.publish("other/dev1", b"not allowed", qos=1).wait_for_publish(5)
        dev.publish("hall/dev1/rating", "非常满意".encode(), qos=1).wait_for_publish(5)
        msg = gw.inbox.get(timeout=5)
        assert msg.topic == "hall/dev1/rating" and msg.payload.decode() == "非常满意"
        time.sleep(0.2)
        assert gw.inbox.empty()                           # the denied publish never arrived
        for c in (gw, dev):
            c.loop_stop()
            c.disconnect()


def test_restart_keeps_port_and_kill_closes_it():
    broker = Broker()
    workdir = broker.workdir
    try:
        broker.start()
        port, pid = broker.port, broker.pid
        broker.restart()
        assert broker.port == port and broker.pid != pid and broker.starts == 2
        rc, client = connect(broker)
        assert not rc.is_failure
        client.loop_stop()
        client.disconnect()
        broker.kill()
        assert not broker.running and not listening(port)
        broker.start()
        assert listening(port)
        assert "persistence false" in open(broker.config_path).read()
    finally:
        broker.close()
    assert not os.path.exists(workdir)


def test_a_broken_config_is_reported():
    broker = Broker(extra_config="no_such_option 1")
    with pytest.raises(RuntimeError, match="no_such_option|exited"):
        broker.start()
    broker.close()


def _login_within(broker, user, password, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rc, client = connect(broker, user, password)
        if not rc.is_failure:
            client.loop_stop()
            client.disconnect()
            return True
        time.sleep(0.05)
    return False


def test_kept_password_and_acl_files_are_reread_on_reload_and_never_rewritten(tmp_path):
    """hall-sim's broker uses the files the gateway writes: anonymous clients are refused, the
    pid file names the broker (the gateway SIGHUPs it), reload() and restart() re-read the files
    as they are now."""
    pw, acl = tmp_path / "passwords", tmp_path / "acl"
    pw.write_text(password_line("gw", "g-秘密") + "\n", encoding="utf-8")
    acl.write_text("user gw\ntopic readwrite hall/#\n", encoding="utf-8")
    broker = Broker(tmp_path / "b", password_file=str(pw), acl_file=str(acl))
    with pytest.raises(ValueError):
        Broker(tmp_path / "c", users={"x": "y"}, password_file=str(pw))
    try:
        broker.start()
        assert "allow_anonymous false" in open(broker.config_path).read()
        assert int(open(broker.pid_file).read()) == broker.pid
        assert connect(broker)[0].is_failure
        assert connect(broker, "dev1", "d1")[0].is_failure
        pw.write_text(password_line("gw", "g-秘密") + "\n" + password_line("dev1", "d1") + "\n",
                      encoding="utf-8")
        broker.reload()
        assert _login_within(broker, "dev1", "d1")
        broker.restart()
        assert "dev1:" in pw.read_text() and _login_within(broker, "dev1", "d1")
    finally:
        broker.close()
    assert pw.exists() and acl.exists()              # they were not the broker's to remove
