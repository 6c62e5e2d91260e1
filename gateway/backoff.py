"""Capped exponential backoff with full jitter: delay = uniform(0, min(cap, base * 2**failures)).

Full jitter spreads the retries of many halls after a central outage instead of having them return
in lockstep. Randomness is injected (`rng` with .uniform), so tests are exact. The 60 s cap bounds
the extra delay after the central side comes back (30 s on average, 60 s at worst) while a gateway
still asks at most about twice a minute during an outage.
"""

import random
import re


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
    """Seconds from a Retry-After header (delta seconds or an HTTP date); None if unusable.

    Unusable is anything but a non-negative number of seconds or a date not yet past: "-5",
    "nan", "inf", "soon", a date already gone. The caller falls back to its own backoff then,
    so a broken or hostile header can never make it ask again at once."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA.match(value):
        return float(value)
    from email.utils import parsedate_to_datetime
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None or now is None:
        return None
    delta = moment.timestamp() - now
    return delta if delta >= 0 else None


_DELTA = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,6})?$")   # RFC 9110 delta-seconds (a fraction tolerated)
