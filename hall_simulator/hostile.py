"""A rogue client on the hall's LAN and RS-485 bus: the chaos kind `hostile`.

One campaign (`campaign(hall, ...)`) tries, once each, what a stranger with a laptop on the hall's
network, or an insider holding ONE evaluator (its key read out of its flash), can do:
  http_*        unauthenticated writes to the gateway's API: add a device with our key, re-key
                and move real devices, delete one, a fake case event, a staff sign-in; reads of
                /status, /metrics and /api/v1/windows looking for staff names and rating levels;
                with the queueing system's credential (under-privileged: cases and sign-ins
                only), device writes and a look for levels in /status
  mqtt_*        an anonymous MQTT login and publish; with the compromised device's login:
                publishing on another device's topics, junk / bad-MAC / replayed genuine ratings
                on our own and on a victim's rating topic (the victim's id and counters), a
                bounded flood of junk, forged ACKs on victims' ack topics; and logins under the
                client id of a victim's firmware and of the gateway's two connections (a broker
                that took it would disconnect them: a breach, read from the broker's log)
  bus_rogue     a node on the RS-485 bus answering in a victim's poll slot with a junk RATING
Targets are only 127.0.0.1 (the hall's own gateway and broker) and the hall's own virtual bus.
Everything is bounded: `flood` messages at most, `limit_s` seconds per campaign (an attack
that finds the gateway away, killed by another fault, tries again until then).

Hits are operations the system under attack actually answered or took (an HTTP answer, a
broker's PUBACK, a frame sent in a victim's poll slot): attempts that reached it, whatever the
outcome. What got through is recorded in the hall's Ledger as a breach: a 2xx to a write, an
anonymous MQTT login accepted, a staff name or level in an unauthenticated read. The report adds
what only the end of the run shows (`figures`): ratings at the central API that no device's
firmware issued, ratings a citizen was thanked for that a device released without the central
API ever getting them, and registry entries the simulator did not make.

The attacks live by target: hostile_http, hostile_mqtt, hostile_bus; who and what they aim at
(targets, counters, forged ratings) in hostile_targets. This module holds the ledger, the
campaign and the figures.
"""

import asyncio
import json
import logging
import random
import time

from hall_simulator.hostile_bus import ROGUE_ANSWERS, attack_bus  # noqa: F401 (the campaign's bound)
from hall_simulator.hostile_http import HTTP_TIMEOUT_S, attack_http
from hall_simulator.hostile_mqtt import attack_mqtt
from hall_simulator.hostile_targets import Targets

log = logging.getLogger("hall_simulator.hostile")

ATTACKS = ("http_add_device", "http_rekey", "http_move", "http_delete", "http_case",
           "http_sign_in", "http_read", "http_queue_role", "mqtt_anonymous", "mqtt_foreign_topic", "mqtt_junk",
           "mqtt_bad_mac", "mqtt_replay", "mqtt_flood", "mqtt_forged_ack", "mqtt_clientid_takeover",
           "bus_rogue")


class Ledger:
    """What the attacks hit and what got through, over every campaign of a run."""

    def __init__(self):
        self.hits = dict.fromkeys(ATTACKS, 0)
        self.breaches = []          # (attack, detail): things that should have been refused
        self.campaigns = 0

    def hit(self, attack, n=1):
        self.hits[attack] += n

    def breach(self, attack, detail):
        log.warning("hostile %s got through: %s", attack, detail)
        self.breaches.append((attack, detail))


# --- one campaign ----------------------------------------------------------------------------------
async def campaign(hall, flood=2000, seed=0, limit_s=30.0):
    """Every attack once against the running hall; {attack: hits} of this campaign."""
    from hall_simulator import queue_sim
    if hall.hostile is None:
        hall.hostile = Ledger()
    ledger = hall.hostile
    before = dict(ledger.hits)
    rng = random.Random("hostile/%s" % seed)
    targets = Targets(hall, rng)
    deadline = time.monotonic() + limit_s
    staff = [name for _, name in queue_sim.STAFF]
    ledger.campaigns += 1
    bus = asyncio.ensure_future(asyncio.to_thread(attack_bus, ledger, hall, targets, rng, deadline))
    try:
        await asyncio.wait_for(attack_http(ledger, hall, targets, rng, staff, deadline),
                               max(1.0, deadline - time.monotonic() + HTTP_TIMEOUT_S))
    except asyncio.TimeoutError:
        pass
    await asyncio.to_thread(attack_mqtt, ledger, hall, targets, rng, flood, deadline)
    await bus
    return {a: ledger.hits[a] - before[a] for a in ATTACKS if ledger.hits[a] - before[a]}


# --- after the run ---------------------------------------------------------------------------------
def registry_changes(hall):
    """Registry entries (the gateway's registry file) the simulator did not make."""
    from gateway import config
    try:
        cfg = config.load(hall.gateway.config_path)      # what the simulator configured
        with open(cfg.registry_path, encoding="utf-8") as f:
            held = {d["id"]: d for d in json.load(f).get("devices", ())}
    except (OSError, ValueError, KeyError, AttributeError):
        return []
    made = {d["id"]: d for d in cfg.devices}
    out = []
    for dev_id in sorted(set(held) | set(made)):
        h, m = held.get(dev_id), made.get(dev_id)
        if h is None:
            out.append("%s removed" % dev_id)
        elif m is None:
            out.append("%s added" % dev_id)
        else:
            for name in ("window", "transport", "key", "address"):
                if name in m and m[name] != h.get(name):
                    out.append("%s %s changed" % (dev_id, name))
    return out


def figures(hall, ledger, confirmations, central, acked_at, issued_high):
    """The report's hostile figures (see report.forged and report.destroyed for the first two)."""
    from hall_simulator import report
    breaches = list(ledger.breaches) if ledger is not None else []
    changes = registry_changes(hall)
    forged_ids = report.forged(confirmations, central, issued_high)
    destroyed_ids = report.destroyed(confirmations, central, acked_at)
    out = {"forged_accepted": len(forged_ids), "ratings_destroyed": len(destroyed_ids),
           "unauthorised_changes": len(breaches) + len(changes),
           "attack_hits": dict(ledger.hits) if ledger is not None else {}}
    if ledger is not None:
        out["attack_campaigns"] = ledger.campaigns
    if forged_ids:
        out["forged_ids"] = forged_ids[:20]
    if destroyed_ids:
        out["destroyed_ids"] = destroyed_ids[:20]
    if breaches or changes:
        out["unauthorised"] = ["%s: %s" % b for b in breaches][:40] + [
            "registry: %s" % c for c in changes][:20]
    return out
