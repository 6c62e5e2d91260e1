"""Health: a wrap-safe uptime, error counters, safe mode after repeated failed boots, and the
STATUS heartbeat (firmware version, uptime, free heap, outbox depth, error counters).

Safe mode (as ESPHome does it): every boot adds one to `boot_attempts` in the store before
anything risky runs; a boot that stays up `STABLE_MS` sets it back to 0. When a boot finds
SAFE_MODE_AFTER attempts or more, the device runs in safe mode: no UI, only the transport, so
the outbox still drains and the gateway sees safe_mode=1 in STATUS.
"""

FIRMWARE_VERSION = "1.0.0"
try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

SAFE_MODE_AFTER = const(10)
STABLE_MS = const(60000)
_TICKS_PERIOD = const(1 << 30)   # MicroPython's ticks_ms() wraps here; the host's never reaches it
_MAX_STATUS_COUNTERS = const(16)


class Uptime:
    """Milliseconds since boot from a wrapping ticks_ms(): call now() at least every 6 days."""

    def __init__(self, ticks_ms):
        self.ticks_ms = ticks_ms
        self.last = ticks_ms()
        self.ms = 0

    def now(self):
        t = self.ticks_ms()
        self.ms += (t - self.last) % _TICKS_PERIOD
        self.last = t
        return self.ms


class Health:
    def __init__(self, store, board_profile, device, uptime, free_heap):
        self.store = store
        self.board = board_profile
        self.device = device
        self.uptime = uptime
        self.free_heap = free_heap
        self.errors = {}
        self.boots = 0
        self.safe_mode = False
        self._stable = False

    def count(self, name, n=1):
        self.errors[name] = self.errors.get(name, 0) + n

    def boot(self):
        """Record this boot attempt; True when the device must run in safe mode."""
        attempts = self.store.get("boot_attempts", 0) + 1
        self.boots = self.store.get("boots", 0) + 1
        self.store.set("boot_attempts", attempts)
        self.store.set("boots", self.boots)
        self._save()
        self.safe_mode = attempts > SAFE_MODE_AFTER
        return self.safe_mode

    def check_stable(self):
        """Call from the main loop: after STABLE_MS up, this boot counts as a good one."""
        if not self._stable and self.uptime.now() >= STABLE_MS:
            self._stable = True
            self.store.set("boot_attempts", 0)
            self._save()
        return self._stable

    def _save(self):
        # A full or failing flash must not stop the device: the boot counters are only health
        # data, and a raise here would reboot-loop it with ratings still waiting in the outbox.
        try:
            self.store.save()
        except OSError:
            self.count("flash_error")

    def status(self, outbox, counter, case_id, rssi_neg=0, custody_oldest=0):
        names = sorted(self.errors)[:_MAX_STATUS_COUNTERS]
        return {
            "device": self.device, "firmware": FIRMWARE_VERSION, "board": self.board,
            "uptime_s": self.uptime.now() // 1000, "heap_free": max(0, int(self.free_heap())),
            "outbox": outbox.depth, "outbox_capacity": outbox.capacity, "counter": counter,
            "case_id": case_id, "boots": self.boots, "safe_mode": 1 if self.safe_mode else 0,
            "errors": [{"name": n[:16], "count": min(self.errors[n], 0xFFFFFFFF)} for n in names],
            "rssi_neg": rssi_neg, "custody": outbox.kept, "custody_oldest": custody_oldest,
        }
