"""Rejected input: every rejection is counted by (where, reason), logged at most once per interval
per kind (with the number suppressed meanwhile), and the serious ones raise an alarm."""

import logging
import threading
import time

from protocol import errors

log = logging.getLogger("gateway.rejects")

# Reasons that mean someone may be attacking or a device is misconfigured: an operator must look.
ALARMING = (errors.R_UNKNOWN_DEVICE, errors.R_BAD_MAC, errors.R_REPLAY)


class Throttle:
    """Per key: the first event passes, then at most one per `interval_s`. allow() returns None for
    an event held back, else how many were held back since the last one that passed."""

    def __init__(self, interval_s, clock=time.monotonic):
        self.interval_s = interval_s
        self.clock = clock
        self._last = {}
        self._held = {}
        self._lock = threading.Lock()

    def allow(self, key):
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._held.pop(key, 0)


class Rejections:
    def __init__(self, alarm=None, interval_s=10.0, clock=time.monotonic):
        self.counts = {}          # (where, reason name) -> n
        self.alarm = alarm
        self.interval_s = interval_s
        self.clock = clock
        self._last = {}           # (where, reason) -> last log time
        self._suppressed = {}
        self._lock = threading.Lock()   # paho's thread, the bus threads and the loop all reject

    def total(self):
        with self._lock:
            return sum(self.counts.values())

    def snapshot(self):
        """{(where, reason name): n}, a copy (other threads add keys meanwhile)."""
        with self._lock:
            return dict(self.counts)

    def count(self, where, reason):
        return self.counts.get((where, errors.REASON_NAMES.get(reason, str(reason))), 0)

    def reject(self, where, reason, detail, device=None):
        """Count one rejection. `detail` must never hold a rater's identity."""
        name = errors.REASON_NAMES.get(reason, str(reason))
        key = (where, name)
        now = self.clock()
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            last = self._last.get(key)
            more = None
            if last is None or now - last >= self.interval_s:
                more = self._suppressed.pop(key, 0)
                self._last[key] = now
            else:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
        if more is not None:
            log.warning("rejected %s from %s (%s): %s%s", name, where, device or "?", detail,
                        " (+%d similar suppressed)" % more if more else "",
                        extra={"kind": "rejected", "device": device, "where": where, "reason": name})
        if reason in ALARMING and self.alarm is not None:
            self.alarm(name, "%s from %s via %s: %s" % (name, device or "?", where, detail))
