"""A spare gateway: the hall's Pi dies, its SD card with it, while the central API is down, and a
technician puts in a spare Pi provisioned from the hall's installation (chaos kind
`gateway_replaced`), and what that cost: how many ratings were waiting in the dead store, how many
of them the central API holds in the end (custody, protocol/SPEC.md 3.11: the evaluators offer
again what a store that no longer exists had acknowledged).

What the spare Pi has, and what it does not (the gateway's data directory, [gateway] data_dir):
- kept, as a technician restores it from the installation: gateway.toml (outside the data
  directory here), the device registry and its keys (registry.json, and [[devices]] in
  gateway.toml), the broker's password and ACL files ([mqtt] broker_files, outside it here), TLS
  material (*.pem, *.crt, *.key), the console's users and first password (console-users.toml,
  console-initial-password), the API's generated bearer credentials (http-credentials.toml) and
  the operator's live configuration (live-config.json): CONFIGURATION below;
- gone with the card: everything else, the rating store and its WAL/SHM and acknowledgement
  sidecar (outbox.db, outbox.db-wal, outbox.db-shm, outbox.db-acked: the upload queue, the
  high-water marks, the queueing system's pending callbacks), the history (history.sqlite), the
  alert queue (alerts.sqlite), the over-the-air releases and rollout state (releases.json,
  rollout.json: an operator registers them again), the pid file and the status OLED's frame.
The dead card is kept beside the new directory (gateway-dead-N) so a run can be looked into.
"""

import asyncio
import os
import shutil
import socket
import sqlite3
import struct
import time

from hall_simulator import chaos as chaos_mod

CONFIGURATION = ("gateway.toml", "registry.json", "console-users.toml", "console-initial-password",
                 "http-credentials.toml", "live-config.json")
TLS_SUFFIXES = (".pem", ".crt", ".key")
STORE = "outbox.db"          # [gateway] store, as the hall's gateway.toml leaves it


def is_configuration(name):
    """True for a file of the data directory a technician restores on a spare Pi."""
    return name in CONFIGURATION or name.endswith(TLS_SUFFIXES)


def replace_data_dir(data_dir, dead_dir):
    """Move the data directory to `dead_dir` (the dead card) and make `data_dir` anew holding only
    its configuration files; returns the names kept."""
    os.rename(data_dir, dead_dir)
    os.makedirs(data_dir)
    kept = []
    for name in sorted(os.listdir(dead_dir)):
        path = os.path.join(dead_dir, name)
        if os.path.isfile(path) and is_configuration(name):
            shutil.copy2(path, os.path.join(data_dir, name))
            kept.append(name)
    return kept


def pending_ratings(store_path):
    """Rating ids waiting in a (dead) store's upload queue, sorted; [] when it has no store."""
    if not os.path.exists(store_path):
        return []
    db = sqlite3.connect(store_path)       # the owner is dead: reading also applies its WAL
    try:
        return sorted(k for (k,) in db.execute("SELECT key FROM outbox WHERE kind = 'rating'"))
    except sqlite3.DatabaseError:
        return []
    finally:
        db.close()


def reset_connections(counter):
    """An asyncio server callback cutting each connection at once with a reset (a host that lost
    its service), counting them in counter[0]."""

    def refuse(reader, writer):
        counter[0] += 1
        transport = writer.transport
        try:       # linger 0: a reset
            transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (OSError, AttributeError):
            pass
        transport.abort()
    return refuse


async def read_status(hall):
    """The running gateway's /status, None while it is away."""
    from hall_simulator.screens import gateway_status
    try:
        return await asyncio.to_thread(gateway_status, hall.gateway.http_url, 2.0)
    except (OSError, ValueError):
        return None


async def _ratings_waiting(hall):
    """Ratings the running gateway holds for the central API (its /status), 0 when unknown."""
    from hall_simulator.screens import gateway_status
    try:
        status = await asyncio.to_thread(gateway_status, hall.gateway.http_url, 0.5)
        return int((status.get("outbox") or {}).get("ratings", 0))
    except (OSError, ValueError, TypeError):
        return 0


def _central_retransmissions(hall):
    row = hall.store.db.execute(
        "SELECT value FROM counters WHERE name = 'retransmissions'").fetchone()
    return row[0] if row else 0


async def gateway_replaced(hall, before_s, down_s, outage_s, cap_s=chaos_mod.CAP_S):
    """The chaos hook: the central API's port resets every connection; after `before_s` (longer,
    up to cap_s, until the gateway holds a rating for it) the gateway is SIGKILLed and its data
    directory replaced (module docstring); the spare starts after `down_s`; the central API comes
    back `outage_s` after it listens. Returns how many ratings the dead store held for the central
    API (recorded in hall.replaced). Skipped while a gateway restart or an outage is in progress;
    it holds both marks meanwhile, so neither a gateway_kill nor an uplink_outage overlaps it."""
    if hall._killing or hall._outage_end is not None:
        raise chaos_mod.Skipped("a gateway restart or a central outage is in progress")
    hall._killing = True
    start = time.monotonic()
    hall._outage_end = start + before_s + down_s + outage_s     # (recover() sets 0.0: end it now)
    ended = lambda: hall._outage_end == 0.0                     # noqa: E731
    cut = [0]
    refuser = None
    central = hall.central
    await central.stop_listening()
    try:
        refuser = await asyncio.start_server(reset_connections(cut), central.host, central.port)
        while not ended():
            now = time.monotonic()
            if now >= start + max(before_s, cap_s) or (
                    now >= start + before_s and await _ratings_waiting(hall)):
                break
            await asyncio.sleep(0.1)
        if ended():
            return 0                 # the hall is recovering: no replacement after all
        record = {"began_s": round(start - (hall.started_at or start), 3),
                  "retransmissions_before": _central_retransmissions(hall)}
        hall.gateway.kill()
        data_dir = os.path.join(hall.workdir, "gateway")
        replaced = getattr(hall, "replaced", None)
        if replaced is None:
            replaced = hall.replaced = []
        dead_dir = os.path.join(hall.workdir, "gateway-dead-%d" % (len(replaced) + 1))
        record["kept"] = replace_data_dir(data_dir, dead_dir)
        record["dead_dir"] = dead_dir
        record["pending"] = pending_ratings(os.path.join(dead_dir, STORE))
        replaced.append(record)
        await asyncio.sleep(down_s)
        hall.gateway.start()
        await hall.gateway.wait_ready()
        back = time.monotonic() + outage_s
        while not ended() and time.monotonic() < back:
            await asyncio.sleep(0.05)
        record["cut"] = cut[0]
        return len(record["pending"])
    finally:
        hall._outage_end = None
        hall._killing = False
        if refuser is not None:
            refuser.close()
            await refuser.wait_closed()
        await central.listen()


def figures(hall, custody=True, gateway_status=None):
    """The report's `custody` figures (None when no gateway was replaced and custody is on):
    the ratings (and "not rated" events) the dead stores held for the central API, and which of
    them it holds in the end,
    read from the central API's own database; its `duplicate` answers (retransmissions) since the
    first replacement, re-offered copies it already had among them; the running gateway's count of
    ratings committed from re-offered copies (its /status `custody`, since it started:
    reoffered_committed); the evaluators' counts (reoffered, custody_dropped, and repeat_case:
    cases refused as one already rated, by id)."""
    replaced = getattr(hall, "replaced", None) or []
    if not replaced and custody:
        return None
    pending = sorted({rid for r in replaced for rid in r["pending"]})
    db = hall.store.db
    held = {r for (r,) in db.execute("SELECT rating_id FROM ratings UNION SELECT rating_id FROM "
                                     "duplicate_ratings UNION SELECT rating_id FROM not_rated")}
    missing = [rid for rid in pending if rid not in held]
    confirmed = hall.confirmed_ids()
    out = {"enabled": custody, "replacements": len(replaced), "dead_store_pending": len(pending),
           "recovered": len(pending) - len(missing), "not_recovered": len(missing),
           "not_recovered_confirmed": sum(1 for rid in missing if rid in confirmed),
           "central_duplicates_since": (_central_retransmissions(hall)
                                        - replaced[0]["retransmissions_before"]) if replaced else 0,
           "kept_files": replaced[0]["kept"] if replaced else []}
    if missing:
        out["not_recovered_ids"] = missing[:50]
    gateway_custody = (gateway_status or {}).get("custody")
    if isinstance(gateway_custody, dict) and "reoffered" in gateway_custody:
        out["reoffered_committed"] = gateway_custody["reoffered"]
    for name in ("reoffered", "custody_dropped", "repeat_case"):     # since each one's last boot
        n = _device_counter(hall, name)
        if n is not None:
            out[name] = n
    return out


def _device_counter(hall, name):
    """The evaluators' firmware counter `name` added up (None when their firmware keeps none):
    the device's and its outbox's `stats`, its health's error counts (a name never counted is 0)."""
    total = None
    for ev in hall.evaluators.values():
        device = ev.device
        outbox = getattr(device, "outbox", None)
        for stats in (getattr(device, "stats", None), getattr(outbox, "stats", None)):
            if isinstance(stats, dict) and name in stats:
                total = (total or 0) + stats[name]
        errors = getattr(getattr(device, "health", None), "errors", None)
        if name == "repeat_case" and isinstance(errors, dict):
            total = (total or 0) + errors.get(name, 0)
    return total
