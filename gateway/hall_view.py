"""The console's hall view (GET /api/v1/hall, the `hall` server-sent event): every window and its
evaluator, the gateway's own health and its alarms, as one JSON-ready dict.

Built for a role: only the operator's view holds staff names and rating levels (rules Art. 4:
nobody at a window may watch how it is rated); the others' never get those keys at all, rather
than having them removed afterwards. Never an applicant, never a device key.
Cheap at 64 windows: one registry snapshot, one cases snapshot, one backlog read, one statvfs.
The backlog read takes the store's lock (held over a group commit's fsync): call it off the loop.
"""

import shutil

OPERATOR = "operator"
ACK_PREFIX = "console/ack/"      # gw.store state names of alarm acknowledgements


class Acks:
    """Who acknowledged which alarm when: in memory, and in the store's small state so a restart
    keeps them. An alarm raised again after its acknowledgement counts as unacknowledged."""

    def __init__(self, store):
        self.store = store
        self._acks = dict((name[len(ACK_PREFIX):], value)
                          for name, value in store.state_items(ACK_PREFIX))

    def ack(self, name, who, at):
        record = {"by": who, "at": at}
        self.store.state_put(ACK_PREFIX + name, record)   # durable first: a failure changes nothing
        self._acks[name] = record
        return record

    def get(self, name):
        return self._acks.get(name)


def _device(d):
    """From a registry snapshot entry (copied under the registry's lock)."""
    return {"id": d["id"], "name": d["name"], "transport": d["transport"], "online": d["online"],
            "since": d["since"] or None, "last_seen": d["last_seen"] or None,
            "firmware": d["firmware"], "outbox": d["outbox"], "errors": sum(d["errors"].values()),
            "rssi": d["rssi"], "bus": d["bus"], "address": d["address"],
            "custody": d.get("custody", 0), "custody_oldest": d.get("custody_oldest")}


def _last_rating(summary, private):
    if summary is None:
        return None
    out = {"time": summary.get("time")}
    if private:
        out["level"] = summary.get("level")
        out["level_name"] = summary.get("level_name")
    return out


def _windows(devices, signed_in, last_ratings, private):
    by_window = {}
    for d in devices:
        if d["window"]:
            by_window.setdefault(d["window"], []).append(d)
    names = sorted(set(by_window) | set(signed_in))
    out = []
    for window in names:
        for d in by_window.get(window) or (None,):      # the snapshot is sorted by id
            entry = {"window": window, "device": _device(d) if d is not None else None,
                     "staff_id": signed_in.get(window, {}).get("staff_id", ""),
                     "last_rating": _last_rating(last_ratings.get(window), private)}
            if private:
                entry["staff_name"] = signed_in.get(window, {}).get("staff_name", "")
            out.append(entry)
    return out


def _alarms(gw, acks):
    counts = dict(gw.alarms)           # a copy: any thread may raise an alarm meanwhile
    at = dict(getattr(gw, "_alarm_at", {}))
    details = dict(getattr(gw, "alarm_details", {}))
    out = []
    for name in sorted(counts):
        ack = acks.get(name) if acks is not None else None
        if ack is not None and ack["at"] < at.get(name, 0):
            ack = None                 # raised again since
        out.append({"name": name, "count": counts[name], "last_at": at.get(name),
                    "detail": details.get(name, ""), "acked_by": ack["by"] if ack else None,
                    "acked_at": ack["at"] if ack else None})
    out.sort(key=lambda a: (a["acked_at"] is not None, -(a["last_at"] or 0)))
    return out


def _disk_free(path):
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _bus(master):
    """An RS-485 bus (gateway.rs485_master): open or not, and its errors: polls unanswered and
    replies found behind line noise."""
    timeouts = sum(p.stats["timeouts"] for p in list(master.peers.values()))
    return {"url": master.cfg.url, "open": master.port is not None, "rounds": master.rounds,
            "errors": timeouts + master.line.get("noisy_replies", 0)}


def gateway_health(gw, now):
    backlog = gw.store.backlog()
    oldest = backlog.get("oldest_at")
    uplink = {"state": "idle", "since": None,
              "oldest_pending_age_s": round(max(0.0, now - oldest), 1) if oldest else None}
    if gw.uplink is not None:
        status = gw.uplink.status
        uplink["state"] = status.state
        uplink["since"] = getattr(status, "since", None)
        uplink["last_ok_at"] = status.last_ok_at
    return {"uplink": uplink,
            "outbox": {"ratings": backlog.get("ratings", 0), "cases": backlog.get("cases", 0),
                       "fill": round(backlog.get("fill", 0.0), 4)},
            "disk_free_bytes": _disk_free(gw.cfg.data_dir),
            "broker_connected": gw.bridge.connected.is_set(),
            "buses": [_bus(b) for b in gw.buses]}


def hall_views(gw, roles, last_ratings=None, acks=None, now=None):
    """{role: hall view} for each of `roles`, from one read of the gateway's parts (the console's
    live updates build every role's view at once). `last_ratings` {window: the gateway's
    last-rating summary} and `acks` (an Acks) are the console's."""
    now = gw.clock() if now is None else now
    health = gateway_health(gw, now)
    alarms = _alarms(gw, acks)
    signed_in = gw.cases.snapshot()["windows"]
    devices = gw.registry.snapshot()
    return dict((role, {"hall": gw.cfg.hall, "time": round(now, 3), "gateway": health,
                        "windows": _windows(devices, signed_in, last_ratings or {},
                                            private=role == OPERATOR),
                        "alarms": alarms})
                for role in roles)


def hall_view(gw, role, last_ratings=None, acks=None, now=None):
    """The hall view for `role` (operator: with staff names and levels)."""
    return hall_views(gw, (role,), last_ratings, acks, now)[role]
