"""pytest plugin (loaded by tests/test_protocol_vectors.py): a terminal-summary line showing how many
protocol vectors passed on each runtime, so the test output shows MicroPython ran them too."""

import pytest

RESULTS = pytest.StashKey()


def record(config, runtime, passed, total):
    config.stash.setdefault(RESULTS, {})[runtime] = (passed, total)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config.stash.get(RESULTS, {})
    if results:
        parts = ["%s: %d/%d" % (rt, p, t) for rt, (p, t) in sorted(results.items())]
        terminalreporter.write_line("protocol vectors passed -- " + ", ".join(parts))
