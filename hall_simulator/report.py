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
  latency_ms       p50 / p99 of press (thank-you shown) -> stored at the central API, wall clock;
                   with the evaluators' ACK times, also split into press -> ACK (the device got
                   the gateway's ACK: the gateway had committed it) and ACK -> central (0 when
                   the uplink was faster than the ACK's way back)
  faults           {kind: count} injected; with chaos, fault_hits {kind: operations the fault
                   actually hit} and faults_unhit (kinds injected that hit nothing: not tested)
  forged_accepted  ratings at the central API that no device's firmware issued: an id no
                   confirmation names (and above the counters its device used), or a confirmed id
                   the central API holds for another case
  ratings_destroyed  confirmed ratings a device released (the gateway's ACK) that the central API
                   never got: `lost` for good, as no retransmission can bring them back
  custody          (a gateway replaced, or --custody off) the ratings the dead stores held for the
                   central API (dead_store_pending), how many of them it holds in the end
                   (recovered: the evaluators offered them again) and not (not_recovered, the
                   confirmed among them in `lost` too), its `duplicate` answers since the first
                   replacement (central_duplicates_since: copies offered again that it already
                   had), the gateway's ratings committed from copies offered again since it
                   started (reoffered_committed), and the evaluators' own counts since their last
                   boot, where their firmware keeps them: copies offered again (reoffered), copies
                   dropped for room (custody_dropped), cases refused as one already rated
                   (repeat_case: a case id handed out again)
  unauthorised_changes  (hostile runs) 2xx answers to unauthenticated writes, an anonymous MQTT
                   login accepted, staff names or levels in unauthenticated reads, registry
                   entries the simulator did not make; attack_hits counts what each attack reached
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
        not_rated_keys = dict(q("SELECT rating_id, case_key FROM not_rated"))
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
            "not_rated_keys": not_rated_keys,
            "counters": counters, "cases_rated_twice": live_per_case, "work_orders": orders,
            "rejected": rejected, "cases": cases}


def _p(values):
    out = {}
    for name, p in (("p50", 50), ("p99", 99)):
        v = percentile(values, p)
        out[name] = None if v is None else round(v, 1)
    out["samples"] = len(values)
    return out


SLOWEST = 10


def _issued_by_device(rid, issued_high):
    """True when `rid`'s counter is one its device used (a rating its firmware stored, whose
    thank-you a power cut may have cut off)."""
    device, _, counter = rid.rpartition(":")
    high = (issued_high or {}).get(device)
    return high is not None and counter.isdigit() and int(counter) <= high


def forged(confirmations, central, issued_high=None):
    """Rating ids the central API holds that no device's firmware issued, sorted: unknown to the
    confirmation log and above every counter their device used (`issued_high` {device: highest
    counter in its flash}), or a confirmed id held for another case than the one confirmed."""
    issued = {}
    for e in confirmations:
        issued.setdefault(e["rating_id"], e)
    held = [(rid, r["case_key"]) for rid, r in central["ratings"].items()
            if r["source"] != vocab.SRC_SYSTEM_DEFAULT]
    held += list((central.get("not_rated_keys") or {}).items())
    out = []
    for rid, key in held:
        e = issued.get(rid)
        if e is None:
            if not _issued_by_device(rid, issued_high):
                out.append(rid)
        elif e.get("case_key") and key and e["case_key"] != key:
            out.append(rid)
    return sorted(out)


def destroyed(confirmations, central, acked_at):
    """Confirmed citizen ratings a device released (acked_at {rating id: time}) that the central
    API does not hold, sorted."""
    held = set(central["ratings"]) | set(central["duplicate_ratings"])
    return sorted({e["rating_id"] for e in confirmations if e.get("source") == PRESS
                   and e["rating_id"] not in held and e["rating_id"] in (acked_at or {})})


def compute(confirmations, central, faults=None, extra=None, acked_at=None, t0=None):
    """The report dict from confirmation log entries and central_view(); `acked_at` {rating id:
    wall time the device released it} splits the latency at the gateway; with `t0` (the run's
    start, wall time) the slowest ratings are listed with their times since the start."""
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
    latencies, to_gateway, to_central, timeline = [], [], [], []
    for rid, e in confirmed.items():
        r = pressed.get(rid)
        if r is not None and e.get("at"):
            latencies.append(max(0.0, (r["received_at"] - e["at"]) * 1000.0))
            acked = (acked_at or {}).get(rid)
            if t0 is not None:
                timeline.append((r["received_at"] - e["at"], rid, e["at"] - t0,
                                 None if acked is None else round(acked - t0, 2), r["received_at"] - t0))
            if acked is not None:
                to_gateway.append(max(0.0, (acked - e["at"]) * 1000.0))
                to_central.append(max(0.0, (r["received_at"] - acked) * 1000.0))
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
                       "p99": None if p99 is None else round(p99, 1), "samples": len(latencies),
                       "press_to_ack": _p(to_gateway), "ack_to_central": _p(to_central)},
        "faults": dict(sorted((faults or {}).items())),
        "received_unconfirmed": len(set(pressed) - set(confirmed)),
    }
    if timeline:
        timeline.sort(reverse=True)
        report["slowest"] = [{"rating_id": rid, "pressed_s": round(p, 2), "acked_s": a,
                              "central_s": round(c, 2)} for _, rid, p, a, c in timeline[:SLOWEST]]
    if lost_ids:
        report["lost_ids"] = lost_ids[:50]
    if central["rejected"]:
        report["rejected_reasons"] = sorted({reason for _, reason in central["rejected"]})[:10]
    if extra:
        report.update(extra)
    return report


def ok(report):
    """The run's pass condition: something confirmed, nothing lost, doubled or forged, no rating
    destroyed, nothing changed without authority."""
    return (report["confirmed"] > 0 and report["lost"] == 0 and report["duplicates"] == 0
            and not report.get("forged_accepted") and not report.get("ratings_destroyed")
            and not report.get("unauthorised_changes") and rollout_ok(report.get("rollout")))


def rollout_ok(ro):
    """(--rollout) every device on the new release, canary first, every power-cut device resumed,
    the broken release rolled back by itself, no device on neither release; True without one.
    The press -> committed p99 ratio (rollout / idle, goal 1.5: rollout.RATIO_GOAL) is reported
    beside it, not part of it: in the simulated hall both p99s swing with the host's load (every
    evaluator is a thread of one process), and on a short bus the gateway gives an update one
    smallest exchange a round even where its share of an idle round is less (gateway.rs485_master),
    so the ratio there says more about the host than about the rollout."""
    if ro is None:
        return True
    back = ro.get("rollback") or {}
    cuts = ro.get("power_cuts") or {}
    return ("error" not in ro and ro["all_updated"] and ro["canary_first"] and not ro["on_neither"]
            and bool(cuts) and all(c.get("resumed") for c in cuts.values())
            and back.get("state") == "rolled_back")


def rollout_lines(ro):
    """The summary's lines about a rollout (hall_simulator.rollout.figures)."""
    if "error" in ro:
        return ["rollout: did not run: %s" % ro["error"]]
    lat = ro["latency_p99_ms"]
    back = ro.get("rollback") or {}
    versions = {}
    for d, v in sorted(ro["devices"].items()):
        versions.setdefault("%s -> %s" % (v["before"], v["after"]), []).append(d)
    lines = ["rollout %s (%d bytes): %s in %.1f s, canary %s first: %s" % (
        ro["version"], ro["bytes"], ro["status"], ro["duration_s"], ro["canary"],
        "yes" if ro["canary_first"] else "NO"),
        "  versions: %s" % "; ".join("%s %s" % (k, ",".join(ds)) for k, ds in versions.items())]
    for d, cut in sorted((ro.get("power_cuts") or {}).items()):
        lines.append("  power cut mid-transfer: %s (%s) at %s bytes, resumed from %s: %s" % (
            d, cut.get("transport"), cut.get("acked_at_cut"), cut.get("resumed_from"),
            "yes" if cut.get("resumed") else "NO"))
    if not ro.get("power_cuts"):
        lines.append("  power cut mid-transfer: NONE")
    lines += [
        "  broken release %s on %s: %s (%s), now %s" % (
            back.get("version"), back.get("device"), back.get("state"), back.get("reason"),
            ro["devices"].get(back.get("device"), {}).get("after")),
        "  press->committed p99 idle %s ms (%d samples, %s s) / during the rollout %s ms (%d): "
        "p99_ratio %s (%s)" % (
            lat["idle"], lat["idle_samples"], ro.get("idle_s"), lat["rollout"],
            lat["rollout_samples"], ro.get("p99_ratio"),
            "within 1.5x" if ro.get("p99_ratio_ok") else "ABOVE 1.5x")]
    if ro["on_neither"]:
        lines.append("  ON NEITHER RELEASE: %s" % ", ".join(ro["on_neither"]))
    return lines


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
        "latency press->central p50 %s ms  p99 %s ms (%d samples)%s" % (
            lat["p50"], lat["p99"], lat["samples"], _split(lat)),
        "faults: %s" % (", ".join("%s %d" % kv for kv in faults.items()) if faults else "none"),
    ]
    hits = report.get("fault_hits")
    if faults and hits is not None:
        lines.append("  operations they hit: %s" % ", ".join(
            "%s %d" % (k, hits.get(k, 0)) for k in faults))
        if report.get("faults_unhit"):
            lines.append("  NOT EXERCISED (injected, hit nothing): %s" % ", ".join(report["faults_unhit"]))
        if report.get("chaos_skipped"):
            lines.append("  skipped (one of the kind still running): %s" % ", ".join(
                "%s %d" % kv for kv in sorted(report["chaos_skipped"].items())))
    if report.get("custody") is not None:
        lines += custody_lines(report["custody"], report["lost"])
    if "forged_accepted" in report:
        lines.append("forged accepted %d  ratings destroyed %d  unauthorised changes %d" % (
            report["forged_accepted"], report["ratings_destroyed"],
            report.get("unauthorised_changes", 0)))
    if report.get("attack_hits"):
        lines.append("  attacks (operations that reached the hall): %s" % ", ".join(
            "%s %d" % kv for kv in report["attack_hits"].items()))
        missed = [k for k, v in report["attack_hits"].items() if not v]
        if missed:
            lines.append("  attacks that reached nothing: %s" % ", ".join(missed))
    if report.get("rollout") is not None:
        lines += rollout_lines(report["rollout"])
    lines.append("verdict: %s%s" % ("OK" if ok(report) else "FAILED",
                                    " (the hall was closed early)" if report.get("interrupted") else ""))
    return "\n".join(lines)


def custody_lines(c, lost):
    """The summary's lines about replaced gateways (hall_simulator.spare_gateway.figures)."""
    line = "custody %s: gateways replaced %d, ratings in the dead stores %d, at the central API " \
           "now %d, never %d (%d of them confirmed to a citizen)" % (
               "on" if c["enabled"] else "OFF", c["replacements"], c["dead_store_pending"],
               c["recovered"], c["not_recovered"], c["not_recovered_confirmed"])
    lines = [line, "  central duplicate answers since the replacement %d%s; lost in all %d" % (
        c["central_duplicates_since"],
        "".join(", %s %d" % (what, c[name]) for name, what in (
            ("reoffered_committed", "committed from copies offered again"),
            ("reoffered", "copies offered again"), ("custody_dropped", "copies dropped for room"),
            ("repeat_case", "cases refused as already rated"))
            if c.get(name) is not None), lost)]
    if c["replacements"] and not c["dead_store_pending"]:
        lines.append("  NOT EXERCISED: no dead store held a rating for the central API")
    return lines


def _split(lat):
    g, c = lat.get("press_to_ack"), lat.get("ack_to_central")
    if not g or not g.get("samples"):
        return ""
    return "\n  split at the gateway's ACK: press->ACK p50 %s / p99 %s ms, ACK->central p50 %s / p99 %s ms" % (
        g["p50"], g["p99"], c["p50"], c["p99"])


def progress_line(elapsed_s, duration_s, confirmed, received, device_outboxes, gateway_backlog,
                  faults):
    """One live status line (rewritten in place with \\r on a terminal)."""
    return "[%5.1fs/%ds] confirmed %d  at central %d  in devices %s  in gateway %s  faults %d" % (
        elapsed_s, duration_s, confirmed, received,
        "?" if device_outboxes is None else device_outboxes,
        "?" if gateway_backlog is None else gateway_backlog, sum(faults.values()) if faults else 0)
