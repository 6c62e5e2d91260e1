"""Who and what the hostile campaign (hall_simulator.hostile) aims at: the loopback-only guard,
the targets drawn from the seed, a device's outbox counters and genuine ratings as an attacker
learns them, and forged ratings under a key that is not the device's."""

from protocol import auth, codec, schema, vocab

LOOPBACK = "127.0.0.1"


def loopback(host):
    if host not in (LOOPBACK, "localhost"):
        raise RuntimeError("the attacker only targets %s, not %s" % (LOOPBACK, host))
    return LOOPBACK


class Targets:
    """Who is attacked, drawn from the seed: the compromised MQTT device (the insider's), the
    victims (other devices), the RS-485 victim (a device on the bus)."""

    def __init__(self, hall, rng):
        rs, mq = hall.device_ids()
        self.all = rs + mq
        self.insider = rng.choice(mq) if mq else None
        others = [d for d in self.all if d != self.insider]
        rng.shuffle(others)
        self.victims = others or list(self.all)
        self.mqtt_victim = next((d for d in self.victims if d in mq), self.victims[0])
        self.bus_victim = rng.choice(rs) if rs else None
        self.windows = {d: d[1:] for d in self.all}
        self.address = {d: i + 1 for i, d in enumerate(rs)}


def counters(hall, device):
    """(head, high) of a device's flash outbox as the sim sees it: the counters a forged rating
    or ACK aims at (an attacker learns them by watching the traffic)."""
    ev = hall.evaluators.get(device)
    dev = ev.device if ev is not None else None
    if dev is None:
        return 1, 0
    live = list(dev.outbox.counters)        # no file read: the device may be writing
    high = dev.outbox.high
    return (live[0] if live else high + 1), high


def genuine_ratings(hall, device, n=3):
    """The newest `n` genuine ratings (as the firmware signed them) in a device's flash log,
    released ones included until a compaction drops them: the insider reads its own device; for
    another device they stand for what its unencrypted Wi-Fi traffic showed."""
    from firmware.outbox import KIND_RATING, read_records
    ev = hall.evaluators.get(device)
    dev = ev.device if ev is not None else None
    if dev is None:
        return []
    found = []
    try:
        f = dev.outbox.fs.open(dev.outbox.path, "rb")
        try:
            for kind, _, payload in read_records(f):
                if kind == KIND_RATING:
                    found.append(bytes(payload))
                    del found[:-n]
        finally:
            f.close()
    except (OSError, AttributeError):
        return []
    out = []
    for payload in found:
        i = 0
        while payload[i] & 0x80:      # the record's varint counter, then the RATING
            i += 1
        try:
            out.append(codec.decode(schema.RATING, payload[i + 1:]))
        except Exception:      # a record the codec refuses is no use for a replay
            pass
    return out


def junk_rating(rng, device, counter, window):
    """A well-formed rating for `device` under a key that is not its own (a bad MAC)."""
    rating = {"device": device, "counter": counter, "case_id": rng.randrange(1, 1 << 30),
              "serials": ["ROGUE%06d" % rng.randrange(10 ** 6)], "node": vocab.NODE_COMPLETION,
              "source": vocab.SRC_PRESS, "window": window, "staff_id": "X9999",
              "uptime_ms": rng.randrange(1 << 20), "overall": vocab.VERY_DISSATISFIED,
              "tags": [501]}
    return auth.sign(bytes(rng.randrange(256) for _ in range(32)), rating)

