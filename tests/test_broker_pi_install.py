"""The Pi install (docs/mosquitto/hall-gateway.conf): Mosquitto as Debian runs it (root, then
user mosquitto) reads the files the gateway's own user writes (0640, group mosquitto), and the
systemd path unit's steps reload it."""

import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from broker_lockdown_support import HALL, ROOT, login, login_within  # noqa: E402

# The `acl` command runs in a child as user nobody, who may not be able to read this
# interpreter's standard library (a pyenv under /root): what it imports lazily, loaded first.
from gateway import alerts, mosquitto_acl, registry  # noqa: E402,F401
from gateway.cli import main as cli_main  # noqa: E402
from hall_simulator.broker import find_mosquitto, free_port  # noqa: E402
from protocol.auth import mqtt_password  # noqa: E402


def _unit_values(path, key):
    return [line.split("=", 1)[1].strip() for line in Path(path).read_text().splitlines()
            if line.startswith(key + "=")]


def _as_user(uid, gid, fn):
    """Run fn() in a forked child under uid/gid (no supplementary groups); its return code."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            code = fn()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run Mosquitto as Debian does (user mosquitto)")
def test_the_pi_install_debian_mosquitto_reads_what_the_gateway_user_writes():
    docs = ROOT / "docs"
    snippet = (docs / "mosquitto" / "hall-gateway.conf").read_text()
    etc_dir = "/etc/mosquitto/hall"
    # the shipped pieces name one directory and one flag
    assert re.search(r"^allow_anonymous false$", snippet, re.M)
    assert re.search(r"^use_username_as_clientid true$", snippet, re.M)
    assert re.search(r"^password_file %s/passwords$" % etc_dir, snippet, re.M)
    assert re.search(r"^acl_file %s/acl$" % etc_dir, snippet, re.M)
    assert _unit_values(docs / "mosquitto" / "hall-broker-reload.path", "PathExists") == [
        os.path.join(etc_dir, mosquitto_acl.RELOAD_FLAG)]
    steps = _unit_values(docs / "mosquitto" / "hall-broker-reload.service", "ExecStart")
    assert steps == ["/bin/rm -f %s/reload" % etc_dir,
                     "/bin/systemctl try-reload-or-restart mosquitto.service"]
    assert etc_dir in " ".join(_unit_values(docs / "hall-gateway.service", "ReadWritePaths"))

    nobody = pwd.getpwnam("nobody")
    mosquitto_gid = grp.getgrnam("mosquitto").gr_gid
    mosquitto_uid = pwd.getpwnam("mosquitto").pw_uid
    base = Path(tempfile.mkdtemp(prefix="hall-pi-"))
    try:
        os.chmod(base, 0o755)
        hall_dir = base / "hall"                    # /etc/mosquitto/hall as the README makes it
        hall_dir.mkdir()
        os.chown(hall_dir, nobody.pw_uid, mosquitto_gid)
        os.chmod(hall_dir, 0o2750)
        run_dir = base / "run"                      # /run/mosquitto and /var/lib/mosquitto
        run_dir.mkdir()
        os.chown(run_dir, mosquitto_uid, mosquitto_gid)
        gw_dir = base / "gw"                        # the gateway's config and registry
        gw_dir.mkdir()
        os.chown(gw_dir, nobody.pw_uid, nobody.pw_gid)
        toml = gw_dir / "gateway.toml"
        toml.write_text('[gateway]\nhall = "%s"\n\n[mqtt]\nusername = "gateway"\npassword = "gw-秘密"\n'
                        'broker_files = "%s"\n\n[[devices]]\nid = "ev-a"\nwindow = "A01"\n'
                        'transport = "mqtt"\nkey = "%s"\n' % (HALL, hall_dir, "a1" * 32), encoding="utf-8")
        registry = gw_dir / "registry.json"

        def write_as_gateway_user():
            return _as_user(nobody.pw_uid, nobody.pw_gid,
                            lambda: cli_main(["acl", "--config", str(toml)]))
        assert write_as_gateway_user() == 0
        for name in ("passwords", "acl"):
            st = os.stat(hall_dir / name)
            assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (nobody.pw_uid, mosquitto_gid, 0o640)
        assert (hall_dir / "reload").exists()       # for hall-broker-reload.path
        port = free_port()
        (base / "conf.d").mkdir()
        (base / "conf.d" / "hall-gateway.conf").write_text(
            snippet.replace(etc_dir, str(hall_dir)).replace("listener 1883", "listener %d 127.0.0.1" % port))
        # Debian's /etc/mosquitto/mosquitto.conf, with its paths moved here
        (base / "mosquitto.conf").write_text(
            "pid_file %s/mosquitto.pid\npersistence true\npersistence_location %s/\n"
            "log_dest file %s/mosquitto.log\ninclude_dir %s/conf.d\n" % (run_dir, run_dir, run_dir, base))
        proc = subprocess.Popen([find_mosquitto(), "-c", str(base / "mosquitto.conf")],
                                stderr=subprocess.PIPE)
        broker = types.SimpleNamespace(host="127.0.0.1", port=port)
        try:
            assert login_within(broker, "gateway", "gw-秘密", want_ok=True) is not None, \
                proc.stderr.read1().decode() if proc.poll() is not None else "no login"
            assert login(broker, None, None).is_failure
            assert not login(broker, "ev-a", mqtt_password(bytes.fromhex("a1" * 32))).is_failure
            # a device registered while running: the gateway's user rewrites, the path unit's
            # steps (flag off, then Debian's ExecReload: SIGHUP) let it in
            os.unlink(hall_dir / "reload")
            registry.write_text('{"devices": [{"id": "ev-b", "window": "A02", "transport": "mqtt", '
                                '"key": "%s"}]}' % ("b2" * 32), encoding="utf-8")
            assert write_as_gateway_user() == 0
            assert (hall_dir / "reload").exists()
            os.unlink(hall_dir / "reload")
            os.kill(proc.pid, signal.SIGHUP)
            assert login_within(broker, "ev-b", mqtt_password(bytes.fromhex("b2" * 32)),
                                want_ok=True) is not None
            log = (run_dir / "mosquitto.log").read_text()
            assert "Error" not in log and "Warning" not in log, log
        finally:
            proc.terminate()
            proc.wait(10)
            proc.stderr.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)

