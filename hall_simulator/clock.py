"""Simulated time: real, or accelerated by `speed` for long runs (the 7-day rating window).

    clock = SimClock(speed=10)
    clock.time()          # unix seconds, running 10x faster than the wall from the moment of creation
    clock.ticks_ms()      # monotonic milliseconds on the same scale (for firmware boards)
    await clock.sleep(60) # returns after 6 real seconds
    clock.advance(7 * 86400)  # jump forward (both clocks) to reach a deadline at once

Both clocks derive from one real monotonic origin, so they never go backwards and never drift
apart. `spec()` / `SimClock.from_spec()` give another process (the gateway child) the same time:
CLOCK_MONOTONIC is system-wide on Linux. A jump by `advance()` after `spec()` is not carried over.
"""

import asyncio
import time


class SimClock:
    def __init__(self, speed=1.0, start_unix=None, _origin_mono=None, _offset=0.0):
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = float(speed)
        self._origin_mono = time.monotonic() if _origin_mono is None else _origin_mono
        self._origin_unix = time.time() if start_unix is None else float(start_unix)
        self._offset = float(_offset)   # simulated seconds added by advance()

    # --- reading ---------------------------------------------------------------------------------
    def elapsed(self):
        """Simulated seconds since the origin (including jumps)."""
        return (time.monotonic() - self._origin_mono) * self.speed + self._offset

    def time(self):
        """Simulated unix time in seconds (float)."""
        return self._origin_unix + self.elapsed()

    def monotonic(self):
        """Simulated monotonic seconds (float), starting at 0."""
        return self.elapsed()

    def ticks_ms(self):
        return int(self.elapsed() * 1000)

    def monotonic_ms(self):
        return self.ticks_ms()

    # --- waiting ---------------------------------------------------------------------------------
    def real_seconds(self, sim_seconds):
        return max(0.0, sim_seconds) / self.speed

    async def sleep(self, sim_seconds):
        await asyncio.sleep(self.real_seconds(sim_seconds))

    def sleep_sync(self, sim_seconds):
        time.sleep(self.real_seconds(sim_seconds))

    async def sleep_until(self, sim_unix):
        """Sleep until clock.time() >= sim_unix (a jump by advance() ends it early)."""
        while True:
            left = sim_unix - self.time()
            if left <= 0:
                return
            await asyncio.sleep(min(self.real_seconds(left), 0.5))

    # --- steering --------------------------------------------------------------------------------
    def advance(self, sim_seconds):
        if sim_seconds < 0:
            raise ValueError("time only moves forward")
        self._offset += sim_seconds

    def spec(self):
        """A string from which another process rebuilds this clock (same origin and speed)."""
        return "%r,%r,%r,%r" % (self.speed, self._origin_unix, self._origin_mono, self._offset)

    @classmethod
    def from_spec(cls, text):
        speed, origin_unix, origin_mono, offset = (float(x) for x in text.split(","))
        return cls(speed, start_unix=origin_unix, _origin_mono=origin_mono, _offset=offset)

    def __repr__(self):
        return "SimClock(speed=%g)" % self.speed
