"""Shared fixtures: a real Mosquitto broker per test (the simulator's own launcher,
hall_simulator/broker.py), free ports, real MicroPython."""

from __future__ import annotations

import logging

import pytest

from hall_simulator import broker as broker_module
from hall_simulator.broker import Broker, BrokerError
from tools.mpy_runner import MicroPythonUnavailable, ensure_available, run_micropython


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    return broker_module.free_port(host)


@pytest.fixture
def mosquitto_factory(tmp_path):
    """Start extra or specially configured brokers: ``mosquitto_factory(extra_config=...)``."""
    brokers: list[Broker] = []

    def make(**options) -> Broker:
        try:
            broker = Broker(tmp_path / f"mosquitto-{len(brokers)}", **options)
        except BrokerError as exc:  # no mosquitto binary: a failure, never a skip
            pytest.fail(str(exc), pytrace=False)
        brokers.append(broker)
        return broker.start()

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto_broker(mosquitto_factory) -> Broker:
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


@pytest.fixture(autouse=True)
def _root_logging_kept():
    """A CLI run in-process (cli.main) sets up root logging on the stream pytest captures for that
    test; put it back, or every later test's log line meets a closed file."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
