"""Capped exponential backoff with full jitter: delay = uniform(0, min(cap, base * 2**failures)).

Full jitter spreads the retries of many halls after a central outage instead of having them return
in lockstep. Randomness is injected (`rng` with .uniform), so tests are exact. The 60 s cap bounds
the extra delay after the central side comes back (30 s on average, 60 s at worst) while a gateway
still asks at most about twice a minute during an outage.
"""

import random


class Backoff:
    def __init__(self, base=1.0, cap=60.0, rng=None):
        self.base = base
        self.cap = cap
        self.rng = rng or random.Random()
        self.failures = 0

    def ceiling(self):
        """The largest delay the next failure may draw."""
        return min(self.cap, self.base * (2 ** min(self.failures, 62)))

    def failure(self):
        """Record a failure and return how long to wait (seconds) before the next try."""
        delay = self.rng.uniform(0, self.ceiling())
        self.failures += 1
        return delay

    def success(self):
        self.failures = 0


def parse_retry_after(value, now=None):
    """Seconds from a Retry-After header (delta seconds or an HTTP date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None or now is None:
        return None
    return max(0.0, moment.timestamp() - now)
