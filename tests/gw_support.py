"""Helpers shared by the gateway tests: keys and signed ratings as a device would make them."""

import hashlib

from protocol import auth, vocab

HALL = "futian-1"


def device_key(device):
    """A deterministic 32-byte key per device id (tests only)."""
    return hashlib.sha256(("test-key/" + device).encode()).digest()


def make_rating(device, counter, level=vocab.SATISFIED, source=vocab.SRC_PRESS, sign=True, **extra):
    rating = {"device": device, "counter": counter, "case_id": 7, "serials": ["SN20240001"],
              "node": vocab.NODE_COMPLETION, "source": source, "window": "A01", "staff_id": "1001",
              "uptime_ms": 1000 + counter}
    if source == vocab.SRC_PRESS:
        rating["overall"] = level
        if vocab.is_bad(level):
            rating["tags"] = [501]
    rating.update(extra)
    if sign:
        rating = auth.sign(device_key(device), rating)
    return rating
