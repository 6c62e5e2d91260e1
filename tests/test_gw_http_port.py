"""The gateway's HTTP port held at start (the old process's last moments after a crash and an
immediate restart, another program's passing socket): the gateway tries again for a while rather
than exiting, and fails with the port named if it stays taken."""

import errno
import socket
import threading
import time
import urllib.request

import pytest

from conftest import free_port
from gateway import app as app_mod
from gw_live import LiveGateway, gateway_config


def _hold(port):
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    return sock


def test_a_start_waits_for_a_port_held_a_moment(mosquitto_broker, tmp_path):
    port = free_port()
    holder = _hold(port)
    threading.Timer(1.0, holder.close).start()
    began = time.monotonic()
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw", http={"port": port})) as live:
        assert live.port == port
        assert time.monotonic() - began >= 0.9          # it did wait for the holder to let go
        with urllib.request.urlopen("http://127.0.0.1:%d/status" % port, timeout=5) as resp:
            assert resp.status == 200


def test_a_port_held_for_good_fails_with_its_error(mosquitto_broker, tmp_path, monkeypatch):
    monkeypatch.setattr(app_mod, "BIND_RETRY_S", 0.6)
    port = free_port()
    holder = _hold(port)
    try:
        live = LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw", http={"port": port}))
        began = time.monotonic()
        with pytest.raises(OSError) as failed:
            live.__enter__()
        assert failed.value.errno == errno.EADDRINUSE
        assert 0.5 <= time.monotonic() - began < 10
    finally:
        holder.close()
        live.__exit__(None, None, None)          # stops what the failed start had begun
