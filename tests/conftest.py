"""Shared fixtures: a real Mosquitto broker per test, free ports, real MicroPython."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tools.mpy_runner import MicroPythonUnavailable, ensure_available, run_micropython

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
BROKER_START_TIMEOUT = 10.0
BROKER_STOP_TIMEOUT = 5.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def find_mosquitto() -> str:
    found = shutil.which("mosquitto") or next((p for p in MOSQUITTO_CANDIDATES if os.access(p, os.X_OK)), None)
    if not found:
        pytest.fail("mosquitto binary not found; run `sudo bash scripts/setup`", pytrace=False)
    return found


class MosquittoBroker:
    """A real mosquitto process on 127.0.0.1:<port>, configured from a generated file.

    ``extra_config`` is appended verbatim (e.g. ``password_file /x`` or ``acl_file /y``);
    ``persistence=True`` keeps a database in ``workdir`` across ``restart()``.
    """

    def __init__(self, workdir: Path, *, port: int | None = None, allow_anonymous: bool = True,
                 persistence: bool = False, extra_config: str = ""):
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.allow_anonymous = allow_anonymous
        self.persistence = persistence
        self.extra_config = extra_config
        self._binary = find_mosquitto()
        self._proc: subprocess.Popen | None = None

    def config_text(self) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"persistence {'true' if self.persistence else 'false'}",
            "log_dest file " + str(self.log_path),
            "log_type all",
            "connection_messages true",
        ]
        if self.persistence:
            lines.append(f"persistence_location {self.workdir}/")
        if os.geteuid() == 0:
            # Otherwise mosquitto drops to user "mosquitto", who cannot write our 0700 tmp dir.
            lines.append(f"user {getpass.getuser()}")
        return "\n".join(lines) + "\n" + self.extra_config.strip() + "\n"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "MosquittoBroker":
        if self.running:
            raise RuntimeError("broker already running")
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        self._proc = subprocess.Popen(
            [self._binary, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + BROKER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                stderr = self._proc.stderr.read().decode(errors="replace")
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}:\n{stderr}\n{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {BROKER_START_TIMEOUT} s\n{self.log_text()}")

    def stop(self) -> None:
        """Graceful stop (SIGTERM); with persistence on, the database is saved."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Crash (SIGKILL): nothing is saved."""
        self._end(signal.SIGKILL)

    def _end(self, sig: int) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(BROKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stderr.close()

    def restart(self) -> "MosquittoBroker":
        """Stop, then start again on the same port with the same config."""
        self.stop()
        return self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def mosquitto_factory(tmp_path):
    """Start extra or specially configured brokers: ``mosquitto_factory(extra_config=...)``."""
    brokers: list[MosquittoBroker] = []

    def make(**options) -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path / f"mosquitto-{len(brokers)}", **options)
        brokers.append(broker)
        return broker.start()

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto_broker(mosquitto_factory) -> MosquittoBroker:
    """A fresh anonymous broker per test (no state leaks between tests)."""
    return mosquitto_factory()


@pytest.fixture(scope="session")
def micropython():
    """The ``run_micropython`` callable; fails (never skips) when MicroPython is missing."""
    try:
        ensure_available()
    except MicroPythonUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    return run_micropython
