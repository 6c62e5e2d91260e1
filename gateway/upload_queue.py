"""The upload queue (table `outbox`): ratings and finished cases waiting for the central API, bad
ratings first and then everything oldest first, and what an upload record holds.

Bounded: past `capacity` pending items new data is refused (ACK_RETRY, the device keeps it) with an
alarm; old rows are never dropped. An alarm also fires when the fill crosses `alarm_ratio`. Its
methods run on the connection they are given, inside the store's transactions; the counts in
memory follow the file after the commit.
"""

import json

from gateway.store_file import StoreError
from protocol import codec, schema
from protocol import rating as rating_rules

try:  # the upload side decodes every queued record: orjson does it in half the time
    from orjson import loads
except ImportError:  # pragma: no cover - stdlib fallback, same results
    loads = json.loads
try:  # the ingest side writes one record per rating: orjson in a quarter of the time
    from orjson import dumps as _orjson_dumps
except ImportError:  # pragma: no cover
    _orjson_dumps = None

KIND_RATING = "rating"
KIND_CASE = "case"
OUTCOMES = ("accepted", "duplicate", "rejected", "retry")
_SETTLE_STATS = {"accepted": "uploaded", "duplicate": "uploaded", "rejected": "rejected",
                 "retry": "retried"}
ENRICHMENT_KEYS = ("matter_code", "matter_name", "staff_id", "staff_name", "window", "applicant")
_COLUMNS = "seq, bad, key, kind, record, attempts"


def rating_upload_record(rating, enrichment=None):
    """JSON-ready upload record: canonical rating fields, its id, and the case's enrichment."""
    record = codec.to_obj(schema.RATING_FIELDS, rating)
    record["rating_id"] = rating_rules.rating_id(rating)
    for name in ENRICHMENT_KEYS:
        value = (enrichment or {}).get(name)
        if value in (None, ""):
            continue
        if name == "applicant" and not isinstance(value, str):
            continue  # only a sealed token (gateway.privacy) may be stored, never clear identity
        if name == "window" and record.get("window"):
            continue  # the device's own window stays; the case's fills a gap only
        record[name] = value
    return record


def record_json(record):
    """codec.dumps(record) (compact, UTF-8 kept), by orjson when it can: the same text for the
    str/int/list/dict records stored here; anything orjson refuses (a lone surrogate in an
    enrichment value, an integer past 64 bits) goes the standard library's way."""
    if _orjson_dumps is not None:
        try:
            return _orjson_dumps(record).decode("utf-8")
        except (TypeError, ValueError):
            pass
    return codec.dumps(record)


class Settlement:
    """The central side's verdicts [(item_id, outcome, reason)] sorted for one transaction. An id
    listed twice counts its first verdict."""

    def __init__(self, results):
        verdicts = {}
        for item_id, outcome, reason in results:
            if outcome not in OUTCOMES:
                raise StoreError("unknown outcome %r for %s" % (outcome, item_id))
            verdicts.setdefault(item_id, (outcome, reason))
        self.results = results
        self.retry = [(key,) for key, (outcome, _) in verdicts.items() if outcome == "retry"]
        self.rejected = [(key, "rejected upstream: %s" % (reason or "no reason given"))
                         for key, (outcome, reason) in verdicts.items() if outcome == "rejected"]
        self.gone = [key for key, (outcome, _) in verdicts.items() if outcome != "retry"]


class UploadQueue:
    """`alarm(name, detail)` and `stats` (the store's counters) are the store's."""

    def __init__(self, capacity, alarm_ratio, alarm, stats):
        self.capacity = capacity
        self.alarm_ratio = alarm_ratio
        self.counts = {KIND_RATING: 0, KIND_CASE: 0}
        self._alarm = alarm
        self._stats = stats
        self._fill_alarmed = False
        self._oldest_at = None     # `created` of the oldest pending item; None: none pending
        self._oldest_stale = True  # re-read it (the first row by seq) when next asked

    def load(self, db):
        self.counts = {KIND_RATING: 0, KIND_CASE: 0}
        for kind, n in db.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind"):
            self.counts[kind] = n
        self._oldest_stale = True

    def pending(self):
        return self.counts[KIND_RATING] + self.counts[KIND_CASE]

    def check_fill(self):
        fill = self.pending() / float(self.capacity)
        if fill >= self.alarm_ratio and not self._fill_alarmed:
            self._fill_alarmed = True
            self._alarm("store_fill", "outbox %.0f%% full (%d of %d)"
                        % (fill * 100, self.pending(), self.capacity))
        elif fill < self.alarm_ratio * 0.9:
            self._fill_alarmed = False

    def refuse(self, what):
        self._alarm("store_full", "outbox full (%d items): refusing %s" % (self.capacity, what))

    # --- adding (inside a commit), then counting (after it) -----------------------------------
    @staticmethod
    def add(db, rows):
        """rows [(kind, key, bad, record text, created)]."""
        db.executemany("INSERT INTO outbox (kind, key, bad, record, created) VALUES (?,?,?,?,?)", rows)

    def added(self, kind, n):
        self.counts[kind] += n

    # --- the upload side ----------------------------------------------------------------------
    @staticmethod
    def batch(db, limit, after=None):
        """Up to `limit` pending items: bad ratings first, then everything oldest first.

        `after` is the cursor (last bad seq, last other seq) of the batches already handed out and
        still in flight (the uplink keeps it): items up to it are skipped, so pipelined batches never
        re-read or re-send an item in flight. A bad rating committed meanwhile has a larger seq
        than the bad cursor, so it still goes ahead of the remaining good ones."""
        bad_after, other_after = after or (0, 0)
        rows = db.execute("SELECT %s FROM outbox WHERE bad=1 AND seq>? ORDER BY seq LIMIT ?"
                          % _COLUMNS, (bad_after, limit)).fetchall()
        if len(rows) < limit:
            rows += db.execute("SELECT %s FROM outbox WHERE bad=0 AND seq>? ORDER BY seq LIMIT ?"
                               % _COLUMNS, (other_after, limit - len(rows))).fetchall()
        return [{"item_id": key, "kind": kind, "record": loads(record), "attempts": attempts,
                 "seq": seq, "bad": bad} for seq, bad, key, kind, record, attempts in rows]

    @staticmethod
    def settle_in(db, settlement):
        """Inside the settling transaction (after the rejected were filed as dead letters): count
        an attempt on the retried, delete the rest, set by set (one statement per 500 ids).
        Returns {kind: rows deleted}; an id settled already (a repeated answer) is skipped."""
        removed = {KIND_RATING: 0, KIND_CASE: 0}
        if settlement.retry:
            db.executemany("UPDATE outbox SET attempts = attempts + 1 WHERE key=?", settlement.retry)
        gone = settlement.gone
        for start in range(0, len(gone), 500):
            chunk = gone[start:start + 500]
            for (kind,) in db.execute("DELETE FROM outbox WHERE key IN (%s) RETURNING kind"
                                      % ",".join("?" * len(chunk)), chunk).fetchall():
                removed[kind] += 1
        return removed

    def settled(self, settlement, removed):
        for kind, n in removed.items():
            self.counts[kind] -= n
        if any(removed.values()):
            self._oldest_stale = True      # the oldest may have gone
        for _, outcome, _ in settlement.results:
            self._stats[_SETTLE_STATS[outcome]] += 1
        self.check_fill()

    def oldest_at(self, db):
        """When the gateway stored the oldest pending item (its `created`, the rating's gateway
        time), None when nothing is pending. Kept in memory; re-read (the first row by seq, which
        grows with time: no scan) only after items left the queue or it was loaded."""
        if not self.pending():
            return None
        if self._oldest_stale and db is not None:
            row = db.execute("SELECT created FROM outbox ORDER BY seq LIMIT 1").fetchone()
            self._oldest_at = row[0] if row else None
            self._oldest_stale = False
        return self._oldest_at

    def backlog(self, db=None):
        return {"ratings": self.counts[KIND_RATING], "cases": self.counts[KIND_CASE],
                "capacity": self.capacity, "fill": min(1.0, self.pending() / float(self.capacity)),
                "oldest_at": self.oldest_at(db)}
