"""Driving firmware parts on the host against real sockets: a millisecond clock for the device
and a loop that steps them until a condition holds (CPython only)."""

import time


def now_ms():
    return int(time.monotonic() * 1000)


def run_until(cond, steps, timeout=8.0):
    """Call every step in turn until cond() is true (True) or `timeout` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for s in steps:
            s()
        if cond():
            return True
        time.sleep(0.005)
    return False
