"""The run's verdict: what the citizens were told (device side) against what the central API holds.

Inputs, both readable after the fact:
- the confirmation log: one JSON line per rating whose thank-you screen was shown (written by the
  evaluator runner the moment the flow enters "thanks"), and one per "not rated" screen;
- the central API's SQLite database (hall_simulator/central_store.py).

Figures (the issue's list):
  confirmed        ratings whose thank-you screen was shown (distinct rating ids)
  received         distinct citizen ratings (source press) the central API holds
  lost             confirmed but not held by the central API (neither stored nor recognised)
  duplicates       one press held as more than one rating, or a case rated twice: the central
                   API's "case already rated" refusals, cases holding more than one live rating,
                   and confirmations of one case by two rating ids
  retransmissions  items the central API recognised by id and did not count again
  not_rated        "not rated at the window" screens shown (walk-aways), and the API's count
  work_orders      bad-rating work orders at the API (and how many the confirmed bad presses need)
  latency_ms       p50 / p99 of press (thank-you shown) -> stored at the central API, wall clock
  faults           {kind: count} injected
"""

import json
import sqlite3

from protocol import vocab

PRESS = vocab.SRC_PRESS


class ConfirmationLog:
    """Append-only JSON lines, flushed per line: survives the simulator's own crash."""

    def __init__(self, path):
        self.path = str(path)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, entry):
        self._f.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        self._f.flush()

    def close(self):
        self._f.close()


def read_log(path):
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass   # a torn last line after a crash of the simulator itself
    except FileNotFoundError:
        pass
    return out


def percentile(values, p):
    """Nearest-rank percentile of a list (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-p * len(ordered) // 100)))
    return ordered[min(rank, len(ordered)) - 1]


def central_view(db_path):
    """What the central API holds, read straight from its database (read-only)."""
    db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
    try:
        q = db.execute
        ratings = {}
        for rid, key, source, received_at, superseded in q(
                "SELECT rating_id, case_key, source, received_at, superseded FROM ratings"):
            ratings[rid] = {"case_key": key, "source": source, "received_at": received_at,
                            "superseded": superseded}
        dup = {rid: key for rid, key in q("SELECT rating_id, case_key FROM duplicate_ratings")}
        not_rated = {rid for (rid,) in q("SELECT rating_id FROM not_rated")}
        counters = dict(q("SELECT name, value FROM counters"))
        live_per_case = q("SELECT case_key, COUNT(*) FROM ratings WHERE superseded=0"
                          " GROUP BY case_key HAVING COUNT(*) > 1").fetchall()
        orders = {rid for (rid,) in q("SELECT rating_id FROM work_orders")}
        rejected = q("SELECT item_id, reason FROM rejected").fetchall()
        cases = q("SELECT COUNT(*) FROM cases").fetchone()[0]
    finally:
        db.close()
    return {"ratings": ratings, "duplicate_ratings": dup, "not_rated": not_rated,
            "counters": counters, "cases_rated_twice": live_per_case, "work_orders": orders,
            "rejected": rejected, "cases": cases}


def compute(confirmations, central, faults=None, extra=None):
    """The report dict from confirmation log entries and central_view()."""
    confirmed = {}
    walkaways = set()
    for e in confirmations:
        if e.get("source") == PRESS:
            confirmed.setdefault(e["rating_id"], e)
        elif e.get("source") == vocab.SRC_NOT_RATED:
            walkaways.add(e["rating_id"])
    ratings = central["ratings"]
    pressed = {rid: r for rid, r in ratings.items() if r["source"] == PRESS}
    held = set(pressed) | set(central["duplicate_ratings"])
    lost_ids = sorted(rid for rid in confirmed if rid not in held)
    # a case confirmed by two rating ids: the firmware let one case be rated twice
    by_case = {}
    for rid, e in confirmed.items():
        by_case.setdefault((e.get("device"), e.get("case_key")), []).append(rid)
    twice_on_device = [ids for ids in by_case.values() if len(ids) > 1]
    duplicates = (len(central["duplicate_ratings"]) + len(central["cases_rated_twice"])
                  + sum(len(ids) - 1 for ids in twice_on_device))
    latencies = []
    for rid, e in confirmed.items():
        r = pressed.get(rid)
        if r is not None and e.get("at"):
            latencies.append(max(0.0, (r["received_at"] - e["at"]) * 1000.0))
    bad_confirmed = sum(1 for e in confirmed.values() if e.get("bad"))
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    report = {
        "confirmed": len(confirmed),
        "received": len(pressed),
        "lost": len(lost_ids),
        "duplicates": duplicates,
        "retransmissions": central["counters"].get("retransmissions", 0),
        "not_rated": len(walkaways),
        "not_rated_at_central": len(central["not_rated"]),
        "work_orders": len(central["work_orders"]),
        "work_orders_expected": bad_confirmed,
        "system_defaults": sum(1 for r in ratings.values()
                               if r["source"] == vocab.SRC_SYSTEM_DEFAULT and not r["superseded"]),
        "rejected": len(central["rejected"]),
        "cases_at_central": central["cases"],
        "latency_ms": {"p50": None if p50 is None else round(p50, 1),
                       "p99": None if p99 is None else round(p99, 1), "samples": len(latencies)},
        "faults": dict(sorted((faults or {}).items())),
        "received_unconfirmed": len(set(pressed) - set(confirmed)),
    }
    if lost_ids:
        report["lost_ids"] = lost_ids[:50]
    if central["rejected"]:
        report["rejected_reasons"] = sorted({reason for _, reason in central["rejected"]})[:10]
    if extra:
        report.update(extra)
    return report


def ok(report):
    """The run's pass condition: something confirmed, nothing lost, nothing doubled."""
    return report["confirmed"] > 0 and report["lost"] == 0 and report["duplicates"] == 0


def summary(report):
    """The final lines printed in the terminal."""
    lat = report["latency_ms"]
    faults = report["faults"]
    lines = [
        "confirmed %d  received %d  lost %d  duplicates %d  retransmissions %d" % (
            report["confirmed"], report["received"], report["lost"], report["duplicates"],
            report["retransmissions"]),
        "not rated %d  work orders %d (expected %d)  system defaults %d  rejected %d" % (
            report["not_rated"], report["work_orders"], report["work_orders_expected"],
            report["system_defaults"], report["rejected"]),
        "latency press->central p50 %s ms  p99 %s ms (%d samples)" % (
            lat["p50"], lat["p99"], lat["samples"]),
        "faults: %s" % (", ".join("%s %d" % kv for kv in faults.items()) if faults else "none"),
        "verdict: %s" % ("OK" if ok(report) else "FAILED"),
    ]
    return "\n".join(lines)


def progress_line(elapsed_s, duration_s, confirmed, received, device_outboxes, gateway_backlog,
                  faults):
    """One live status line (rewritten in place with \\r on a terminal)."""
    return "[%5.1fs/%ds] confirmed %d  at central %d  in devices %s  in gateway %s  faults %d" % (
        elapsed_s, duration_s, confirmed, received,
        "?" if device_outboxes is None else device_outboxes,
        "?" if gateway_backlog is None else gateway_backlog, sum(faults.values()) if faults else 0)
