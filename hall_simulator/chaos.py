"""Fault schedules for the virtual hall, as data: a list of (at_s, kind, params) decided up front
from the seed, then played by `Chaos.run()` against the hall's fault hooks.

Levels:
  none      nothing
  standard  every kind at least once when the run is long enough, a few more at random
  harsh     about three times as often, longer outages, noisier bus
  hostile   standard, plus a rogue LAN client's attack campaign every HOSTILE_GAP_S or so

Kinds and what the hook must do (hall.py provides them):
  gateway_kill    SIGKILL the gateway process, start it again after `down_s`
  broker_restart  stop Mosquitto, start it again on the same port after `down_s`
  uplink_outage   the central API stops answering for `seconds`: its port resets every
                  connection (hits: connections cut), longer (up to CAP_S) until one was cut
  uplink_5xx      the central API answers the next `count` batches with 500/503
  uplink_429      the central API answers the next `count` batches with 429 + Retry-After
  uplink_slow     the central API delays its next `count` answers by `delay_s`
                  (these three are incidents of the central side: armed until an answer was
                  altered or `cap_s` passed; after the first one altered, what is left of the
                  count is dropped `window_s` later)
  bus_noise       bit errors `ber` and byte drops `drop_rate` on the RS-485 bus for `seconds`,
                  longer (up to CAP_S) until a byte was hit (hits: bits flipped + bytes dropped)
  bus_cut         the whole bus (device None) or one device's drop cable is cut for `seconds`
                  (hits: bytes the cut kept off the line or from the device)
  power_cut       an evaluator loses power at a random instant, boots again after `down_s`
                  (hits: boots after it); gateway_kill, broker_restart, wifi_drop hit when the
                  gateway, broker or device's Wi-Fi was up
  wifi_drop       an MQTT evaluator loses Wi-Fi for `seconds`
  hostile         a rogue client on the hall's LAN and bus (hall_simulator.hostile) attacks once
  gateway_replaced  the gateway's SD card dies while the central API is down, and a spare Pi
                  takes over (hall_simulator.gateway_spare): the central API's port resets every
                  connection for `before_s` (longer, up to CAP_S, until the gateway's store holds
                  a rating waiting for it), the gateway is SIGKILLed, its data directory replaced
                  by one holding only the installed configuration, the gateway started again after
                  `down_s`; the central API stays down `outage_s` more, then comes back (hits:
                  ratings that were waiting in the dead store's upload queue). Never together with
                  gateway_kill or uplink_outage (EXCLUDES)
Times are real seconds since the run started. Faults stop at `quiet_tail` before the end, so the
drain at the end measures recovery, not a fault still in progress.

Truth in counting: a hook returns how many operations its fault actually hit (answers the
central API altered, bytes the bus corrupted or cut, boots after a power cut ...; the hostile
kind a dict per attack), and `Chaos.hits` adds them up, so a fault that met nothing is not
reported as tested. Kinds in SPAN never overlap themselves: the schedule drops an event that
starts before the previous one of its kind is over, and a hook raises Skipped when one still runs
(a gateway restart that took longer than planned).
"""

import asyncio
import heapq
import logging
import random

log = logging.getLogger("hall_simulator.chaos")

LEVELS = ("none", "standard", "harsh", "hostile")
KINDS = ("gateway_kill", "broker_restart", "uplink_outage", "uplink_5xx", "uplink_429",
         "uplink_slow", "bus_noise", "bus_cut", "power_cut", "wifi_drop", "hostile",
         "gateway_replaced")
# Mean real seconds between two faults of a kind at "standard" (harsh: a third of it).
MEAN_GAP_S = {"gateway_kill": 60, "broker_restart": 70, "uplink_outage": 50, "uplink_5xx": 40,
              "uplink_429": 45, "uplink_slow": 55, "bus_noise": 35, "bus_cut": 40, "power_cut": 15,
              "wifi_drop": 30, "hostile": 600, "gateway_replaced": 300}
HOSTILE_GAP_S = 25.0   # mean real seconds between attack campaigns at the "hostile" level
WINDOW_S = 3.0     # how long a central-side incident lasts after its first hit, standard
CAP_S = 20.0       # how long a fault waits for something to hit at most (armed incidents ...)
KILL_START_S = 10.0    # what a gateway start may take: a kill is planned only after the last one's
NEEDS = {"bus_noise": "rs485", "bus_cut": "rs485", "power_cut": "all", "wifi_drop": "mqtt",
         "hostile": "all"}
# Kinds that never overlap themselves: the real seconds one event of the kind may last.
SPAN = {"gateway_kill": lambda p: p["down_s"] + KILL_START_S,
        "broker_restart": lambda p: p["down_s"] + 2.0,
        "uplink_outage": lambda p: p["seconds"],
        "bus_noise": lambda p: p["seconds"],
        "bus_cut": lambda p: p["seconds"],
        "hostile": lambda p: p["limit_s"],
        "gateway_replaced": lambda p: p["before_s"] + p["down_s"] + KILL_START_S + p["outage_s"]}
# Kinds that never overlap one another (each way): a replaced gateway is its own kill and outage.
EXCLUDES = {"gateway_replaced": ("gateway_kill", "uplink_outage"),
            "gateway_kill": ("gateway_replaced",), "uplink_outage": ("gateway_replaced",)}


class Skipped(Exception):
    """Raised by a hook whose fault would overlap one of its kind still in progress."""


class Event:
    __slots__ = ("at_s", "kind", "params")

    def __init__(self, at_s, kind, params):
        self.at_s = at_s
        self.kind = kind
        self.params = params

    def as_dict(self):
        return {"at_s": round(self.at_s, 3), "kind": self.kind, "params": self.params}

    def __repr__(self):
        return "Event(%.1f, %s, %r)" % (self.at_s, self.kind, self.params)


def _params(kind, rng, harsh, devices):
    f = 2.0 if harsh else 1.0
    if kind == "gateway_kill":
        return {"down_s": round(rng.uniform(0.5, 2.0) * f, 2)}
    if kind == "broker_restart":
        return {"down_s": round(rng.uniform(0.5, 2.0) * f, 2)}
    if kind == "uplink_outage":
        return {"seconds": round(rng.uniform(2.0, 6.0) * f, 2)}
    if kind == "uplink_5xx":
        return {"count": rng.randint(1, 3) * int(f), "status": rng.choice((500, 502, 503)),
                "window_s": WINDOW_S * f}
    if kind == "uplink_429":
        return {"count": rng.randint(1, 3) * int(f), "retry_after": rng.choice((1, 2)),
                "window_s": WINDOW_S * f}
    if kind == "uplink_slow":
        return {"count": rng.randint(2, 4), "delay_s": round(rng.uniform(1.0, 3.0) * f, 2),
                "window_s": WINDOW_S * f}
    if kind == "bus_noise":
        return {"seconds": round(rng.uniform(3.0, 8.0) * f, 2), "ber": 2e-4 * f,
                "drop_rate": 2e-4 * f}
    if kind == "bus_cut":
        whole = rng.random() < 0.3
        return {"seconds": round(rng.uniform(1.0, 4.0) * f, 2),
                "device": None if whole or not devices["rs485"] else rng.choice(devices["rs485"])}
    if kind == "power_cut":
        return {"device": rng.choice(devices["all"]), "down_s": round(rng.uniform(0.3, 2.0), 2),
                "instant": round(rng.random(), 4)}
    if kind == "wifi_drop":
        return {"device": rng.choice(devices["mqtt"]), "seconds": round(rng.uniform(2.0, 8.0) * f, 2)}
    if kind == "hostile":
        return {"flood": 5000 if harsh else 2000, "seed": rng.randrange(1 << 30), "limit_s": 30.0}
    if kind == "gateway_replaced":
        return {"before_s": round(rng.uniform(2.0, 5.0) * f, 2),
                "down_s": round(rng.uniform(0.5, 2.0) * f, 2),
                "outage_s": round(rng.uniform(2.0, 6.0) * f, 2)}
    raise ValueError(kind)


def schedule(level, duration_s, seed, rs485=(), mqtt=(), warmup_s=3.0, quiet_tail=None,
             kinds=None, params=None):
    """The fault events of a run, sorted by time. `rs485` / `mqtt`: device ids on each transport;
    `kinds`: only these kinds (default all); `params` {kind: {name: value}} over each event's own
    (a gateway_replaced's `outage_s`, say). An event of a lasting kind (SPAN) that the run has
    room for is placed so that it is over before the quiet tail."""
    if level not in LEVELS:
        raise ValueError("chaos level %r (known: %s)" % (level, ", ".join(LEVELS)))
    unknown = set(kinds or ()) - set(KINDS)
    if unknown:
        raise ValueError("chaos kind %s (known: %s)" % (", ".join(sorted(unknown)), ", ".join(KINDS)))
    if level == "none":
        return []
    rng = random.Random("chaos/%s/%s" % (seed, level))
    harsh = level == "harsh"
    hostile = level == "hostile"
    devices = {"rs485": list(rs485), "mqtt": list(mqtt), "all": list(rs485) + list(mqtt)}
    if quiet_tail is None:
        quiet_tail = min(15.0, duration_s * 0.25)
    end = duration_s - quiet_tail
    if end <= warmup_s:
        return []
    kinds = [k for k in KINDS if (NEEDS.get(k) is None or devices[NEEDS[k]])
             and (kinds is None or k in kinds)]

    def make(kind, at):
        p = _params(kind, rng, harsh, devices)
        p.update((params or {}).get(kind, {}))
        if kind == "gateway_replaced":      # long: over before the quiet tail when there is room
            at = max(warmup_s, min(at, end - SPAN[kind](p)))
        return Event(at, kind, p)

    events = []
    # every kind once, spread over the window in a shuffled order, so short runs see them all
    order = list(kinds)
    rng.shuffle(order)
    slot = (end - warmup_s) / len(order) if order else 0.0
    for i, kind in enumerate(order):
        events.append(make(kind, warmup_s + slot * (i + rng.uniform(0.1, 0.9))))
    # more at random: a Poisson process per kind
    for kind in kinds:
        gap = MEAN_GAP_S[kind] / (3.0 if harsh else 1.0)
        if hostile and kind == "hostile":
            gap = HOSTILE_GAP_S
        t = warmup_s + rng.expovariate(1.0 / gap)
        while t < end:
            events.append(make(kind, t))
            t += rng.expovariate(1.0 / gap)
    events.sort(key=lambda e: e.at_s)
    if hostile:
        for event in events:
            if event.kind == "hostile":
                event.params["flood"] = 5000
    return spaced(events)


def spaced(events):
    """`events` (sorted) without those starting while an earlier one of their kind (SPAN), or of a
    kind they exclude (EXCLUDES), lasts. The earliest of each kind is always kept, so every kind
    planned is still played: when one of another kind is in the way, it starts once that is over."""
    busy_until = {}
    deferred = set()
    first = {}
    for event in events:
        first.setdefault(event.kind, event)
    pending = [(e.at_s, i, e) for i, e in enumerate(events)]
    heapq.heapify(pending)
    out = []
    while pending:
        _, i, event = heapq.heappop(pending)
        span = SPAN.get(event.kind)
        if event.at_s < busy_until.get(event.kind, float("-inf")) or (
                event.kind in deferred and first[event.kind] is not event):
            continue
        blocked = max((busy_until.get(k, float("-inf")) for k in EXCLUDES.get(event.kind, ())),
                      default=float("-inf"))
        if event.at_s < blocked:
            if first[event.kind] is event:
                deferred.add(event.kind)     # (the rest of its kind waits for it)
                event.at_s = blocked
                heapq.heappush(pending, (event.at_s, i, event))
            continue
        deferred.discard(event.kind)
        if span is not None:
            busy_until[event.kind] = event.at_s + span(event.params)
        out.append(event)
    return out


class Chaos:
    """Plays a schedule against hooks {kind: async fn(**params)}; counts what was injected, what
    it hit (a hook's return: a number, or {what: number} for the hostile kind), what was skipped."""

    def __init__(self, events, hooks, clock=None):
        self.events = list(events)
        self.hooks = hooks
        self.injected = {}
        self.failed = {}
        self.skipped = {}
        self.hits = {}
        self.hit_detail = {}        # kind -> {what: hits} for hooks that return a dict
        self.log = []               # injected events, with when each began and ended (real s)
        self._clock = clock
        self._t0 = 0.0

    async def run(self, started_at=None):
        loop = asyncio.get_running_loop()
        t0 = self._t0 = loop.time() if started_at is None else started_at
        tasks = []
        for event in self.events:
            delay = t0 + event.at_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            hook = self.hooks.get(event.kind)
            if hook is None:
                continue
            tasks.append(asyncio.ensure_future(self._one(hook, event)))
        if tasks:
            await asyncio.gather(*tasks)

    async def _one(self, hook, event):
        loop = asyncio.get_running_loop()
        began = loop.time() - self._t0
        try:
            hit = await hook(**event.params)
        except asyncio.CancelledError:
            raise
        except Skipped as exc:
            log.info("chaos %s skipped: %s", event.kind, exc)
            self.skipped[event.kind] = self.skipped.get(event.kind, 0) + 1
            return
        except Exception as exc:   # a fault that could not be injected is reported, not fatal
            log.warning("chaos %s failed: %s", event.kind, exc)
            self.failed[event.kind] = self.failed.get(event.kind, 0) + 1
            return
        self.injected[event.kind] = self.injected.get(event.kind, 0) + 1
        if isinstance(hit, dict):
            detail = self.hit_detail.setdefault(event.kind, {})
            for what, n in hit.items():
                detail[what] = detail.get(what, 0) + n
            n_hit = sum(hit.values())
        else:
            n_hit = int(hit or 0)
        self.hits[event.kind] = self.hits.get(event.kind, 0) + n_hit
        entry = event.as_dict()
        entry.update(began_s=round(began, 3), ended_s=round(loop.time() - self._t0, 3), hits=n_hit)
        self.log.append(entry)

    def unhit(self):
        """Kinds injected that hit nothing: not tested by this run."""
        return sorted(k for k in self.injected if not self.hits.get(k))
