"""`hall-gateway reload` / SIGHUP on a running gateway (a child process, as systemd runs it): the
devices' config is applied live and reaches a device; a broken file keeps the running config
(one log line, alarm config_reload_failed); a changed port is reported as needing a restart."""

import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import free_port  # noqa: E402
from gw_support import FakeDevice, device_key  # noqa: E402

from gateway import cli  # noqa: E402
from protocol import codec, schema  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "operator-token-1234"


@pytest.fixture(autouse=True)
def _root_logging_kept():
    """cli.main sets up root logging; other tests' logging stays as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def toml(tmp_path, broker, http_port, timeout_s, window_volume=None, broken=False):
    text = ('[gateway]\nhall = "futian-1"\ndata_dir = "%s"\n[http]\nport = %d\noperator_token = "%s"\n'
            '[mqtt]\nhost = "127.0.0.1"\nport = %d\nclient_id = "gw-reload"\n'
            '[device_config]\nrating_timeout_s = %d\ntags = [{code = 701, label = "等待时间长", indicator = 1}]\n'
            '[[devices]]\nid = "dev-a"\nwindow = "A01"\nkey = "%s"\n'
            % (tmp_path / "data", http_port, TOKEN, broker.port, timeout_s, device_key("dev-a").hex()))
    if window_volume is not None:
        text += '[windows.A01]\nvolume = %d\n' % window_volume
    if broken:
        text += "[windows.A01\n"
    (tmp_path / "gateway.toml").write_text(text, encoding="utf-8")
    return str(tmp_path / "gateway.toml")


def until(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    return None


def status(port):
    req = urllib.request.Request("http://127.0.0.1:%d/status" % port,
                                 headers={"Authorization": "Bearer " + TOKEN})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def test_reload_applies_device_config_live_and_keeps_the_running_one_on_errors(tmp_path, mosquitto_broker, capsys):
    port = free_port()
    path = toml(tmp_path, mosquitto_broker, port, 30)
    device = FakeDevice(mosquitto_broker, "dev-a")
    log = open(tmp_path / "gw.log", "wb")
    child = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", path,
                              "--log-format", "text"], cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT)
    try:
        assert until(lambda: status(port)), (tmp_path / "gw.log").read_text()
        first = codec.from_json(schema.CONFIG, device.wait_for("config"))
        assert first["rating_timeout_s"] == 30
        # a good change: the window's volume and the hall's timeout, no restart
        toml(tmp_path, mosquitto_broker, port, 45, window_volume=2)
        assert cli.main(["reload", "--config", path]) == 0
        assert "sent SIGHUP" in capsys.readouterr().out
        new = codec.from_json(schema.CONFIG, device.wait_for(
            "config", lambda p: codec.from_json(schema.CONFIG, p)["rating_timeout_s"] == 45))
        assert new["volume"] == 3 and new["version"] != first["version"]     # wire value: 1 + 2
        assert until(lambda: status(port)["config"]["applied"] == 1)
        # a broken file: refused, the running config stays, the alarm says why
        toml(tmp_path, mosquitto_broker, port, 50, broken=True)
        os.kill(child.pid, 1)                                                # SIGHUP itself
        st = until(lambda: (lambda s: s if s["config"]["refused"] == 1 else None)(status(port)))
        assert st["alarms"].get("config_reload_failed") == 1 and "not TOML" in st["config"]["error"]
        # a port change needs a restart: reported, not applied; the device config still is
        toml(tmp_path, mosquitto_broker, free_port(), 55, window_volume=2)
        assert cli.main(["reload", "--config", path]) == 0
        st = until(lambda: (lambda s: s if s["config"]["applied"] == 2 else None)(status(port)))
        assert st["config"]["restart_needed"] == ["http"]
        device.wait_for("config", lambda p: codec.from_json(schema.CONFIG, p)["rating_timeout_s"] == 55)
        assert child.poll() is None
    finally:
        child.terminate()
        child.wait(10)
        log.close()
        device.close()
    text = (tmp_path / "gw.log").read_text()
    assert "Traceback" not in text
    assert sum("reload refused" in ln for ln in text.splitlines()) == 1
    assert "[http] changed and need a restart" in text
    assert not (tmp_path / "data" / "hall-gateway.pid").exists()             # removed at stop
    # no gateway running now: reload says so in one line
    assert cli.main(["reload", "--config", path]) == 2
    assert "no running gateway" in capsys.readouterr().err
