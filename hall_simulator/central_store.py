"""The reference central rating service's memory and rules (SQLite), without any HTTP.

What it keeps, so a simulator report can be checked after the fact:
- every distinct item id ever received (`seen`): permanent dedupe. An id that comes again is a
  *retransmission* (counted), answered "duplicate", never stored twice.
- ratings (one row per distinct rating id), the rating that holds each case (`case_ratings`), and
  *duplicate ratings*: a second, different rating id for a case key that is already rated (same
  first serial and node, rules: duplicates blocked per case number and node). Those are answered
  "duplicate" with reason "case_already_rated" and counted, not stored as ratings.
- "not rated at the window" events (the case stays open for a rate-later QR rating).
- cases (from "case" items): at `close_expired(now)` every case whose deadline passed without a
  rating gets the configured default level with source system_default (rules Art. 18). A real press
  that reaches us late but was made before the deadline replaces that default.
- a bad-rating work order (差评工单) per 不满意/非常不满意 press, deadline N working days.
- batches by id with their answer: a repeated batch id with the byte-identical body gets the first
  answer back (the gateway may have lost it); a batch id reused with another body is refused (409).
Durability: WAL with synchronous=FULL and one transaction (one fsync) per batch, so every verdict
the API answered survives a power cut (the gateway deletes what we answered). `synchronous="NORMAL"`
is faster but may lose the last answered batches on power loss: for throwaway runs only.
"""

import hashlib
import json
import sqlite3
import time

from gateway import builtin_profiles
from gateway import profiles as profile_tables
from hall_simulator import central_rules as rules
from protocol import errors, vocab
from protocol import rating as rating_rules
from protocol.errors import ProtocolError

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS seen (item_id TEXT PRIMARY KEY, status TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS ratings (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " rating_id TEXT NOT NULL UNIQUE, case_key TEXT NOT NULL, gateway_id TEXT, hall TEXT,"
    " profile TEXT, window TEXT, staff_id TEXT, staff_name TEXT, matter_code TEXT, matter_name TEXT,"
    " level INTEGER NOT NULL, overall INTEGER, business INTEGER, service INTEGER,"
    " source INTEGER NOT NULL, channel TEXT, tags TEXT, text TEXT, pressed_at INTEGER,"
    " received_at REAL NOT NULL, sim_received_at REAL NOT NULL, batch_id TEXT,"
    " superseded INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS case_ratings (case_key TEXT PRIMARY KEY, rating_id TEXT NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS duplicate_ratings (rating_id TEXT PRIMARY KEY, case_key TEXT,"
    " held_by TEXT, received_at REAL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS not_rated (rating_id TEXT PRIMARY KEY, case_key TEXT, window TEXT,"
    " pressed_at INTEGER, received_at REAL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS cases (case_key TEXT PRIMARY KEY, serials TEXT, node INTEGER,"
    " hall TEXT, window TEXT, staff_id TEXT, staff_name TEXT, matter_code TEXT, matter_name TEXT,"
    " completed_at INTEGER, deadline INTEGER, received_at REAL)",
    "CREATE INDEX IF NOT EXISTS cases_deadline ON cases (deadline)",
    "CREATE TABLE IF NOT EXISTS work_orders (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " rating_id TEXT NOT NULL UNIQUE, case_key TEXT, window TEXT, staff_id TEXT, matter_code TEXT,"
    " level INTEGER, tags TEXT, text TEXT, created_at INTEGER, deadline_date TEXT,"
    " deadline INTEGER, status TEXT NOT NULL DEFAULT 'open')",
    "CREATE TABLE IF NOT EXISTS rejected (id INTEGER PRIMARY KEY AUTOINCREMENT, batch_id TEXT,"
    " item_id TEXT, kind TEXT, reason TEXT, received_at REAL)",
    "CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, gateway_id TEXT, digest TEXT,"
    " items INTEGER, response TEXT, received_at REAL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
    " WITHOUT ROWID",
)
COUNTERS = ("retransmissions", "duplicate_ratings", "rejected", "batches", "replayed_batches",
            "system_defaults", "defaults_superseded", "not_rated", "work_orders", "cases")

_NODE_NAMES = vocab.NODE_NAMES     # looked up once: vocab loads its name tables per access
REQUIRED_RATING = ("rating_id", "serials", "node", "source", "gateway_time")
REQUIRED_CASE = ("case_key", "serials", "node", "deadline")


class Rejected(ValueError):
    pass


def case_key(serials, node):
    return "%s#%d" % (serials[0], node)


def batch_digest(envelope):
    """What a batch id stands for when no raw body is at hand (the HTTP layer hashes the body)."""
    signed = [envelope.get("gateway_id"), envelope.get("profile"), envelope.get("items")]
    return hashlib.sha256(json.dumps(signed, sort_keys=True, ensure_ascii=False)
                          .encode("utf-8")).hexdigest()


class CentralStore:
    """Rules plus storage. `clock` is the (possibly accelerated) time the rules live in."""

    def __init__(self, path, clock=time.time, default_level=vocab.BASICALLY_SATISFIED,
                 work_order_days=10, calendar=None, wall_clock=time.time, synchronous="FULL"):
        self.path = str(path)
        self.clock = clock
        self.wall_clock = wall_clock
        self.default_level = default_level
        self.work_order_days = work_order_days
        self.calendar = calendar or rules.WorkCalendar()
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=%s" % synchronous)
        for statement in _SCHEMA:
            self.db.execute(statement)
        for name in COUNTERS:
            self.db.execute("INSERT OR IGNORE INTO counters VALUES (?, 0)", (name,))

    def close(self):
        self.db.close()

    # --- batches -------------------------------------------------------------------------
    def previous_answer(self, batch_id, digest):
        """The stored answer of an earlier batch with this id, "conflict", or None if new."""
        row = self.db.execute("SELECT digest, response FROM batches WHERE batch_id=?",
                              (batch_id,)).fetchone()
        if row is None:
            return None
        if row[0] != digest:
            return "conflict"
        return json.loads(row[1])

    def receive_batch(self, envelope, digest=None):
        """Apply one batch envelope (already parsed JSON); returns the answer object."""
        batch_id = envelope["batch_id"]
        items = envelope["items"]
        digest = digest or batch_digest(envelope)
        previous = self.previous_answer(batch_id, digest)
        if previous == "conflict":
            raise Rejected("batch_id %s was used for another body" % batch_id)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if previous is not None:
                # The gateway lost our answer: give it back; each rating is a retransmission.
                results = self._replay(items, previous)
                self._bump(retransmissions=sum(1 for r in results if r["status"] != "rejected"),
                           replayed_batches=1)
                answer = {"batch_id": batch_id, "replayed": True, "results": results}
            else:
                answer = {"batch_id": batch_id, "replayed": False,
                          "results": self._apply(envelope, items)}
                # Keep only what was not "accepted": the same body brings the ids back.
                exceptions = {str(i): r for i, r in enumerate(answer["results"])
                              if r["status"] != "accepted"}
                db.execute("INSERT INTO batches VALUES (?,?,?,?,?,?)",
                           (batch_id, envelope.get("gateway_id"), digest, len(items),
                            json.dumps(exceptions, ensure_ascii=False), self.wall_clock()))
                self._bump(batches=1)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return answer

    @staticmethod
    def _replay(items, exceptions):
        return [exceptions.get(str(i)) or {"id": item["id"], "status": "accepted"}
                for i, item in enumerate(items)]

    def _apply(self, envelope, items):
        profile = profile_tables.get(envelope["profile"])
        now_sim = self.clock()
        now_wall = self.wall_clock()
        results = [None] * len(items)
        parsed = []                      # (index, kind, item_id, record)
        for index, item in enumerate(items):
            item_id = item.get("id") if isinstance(item, dict) else None
            try:
                if not isinstance(item_id, str) or not item_id:
                    raise Rejected("item without an id")
                kind = item.get("kind")
                if kind not in ("rating", "case"):
                    raise Rejected("unknown kind %r" % (kind,))
                record = profile.unmap_record(kind, item.get("data"))
                if kind == "rating":
                    self._check_rating(item_id, record)
                else:
                    self._check_case(item_id, record)
                parsed.append((index, kind, item_id, record))
            except (Rejected, profile_tables.ProfileError, ProtocolError) as exc:
                results[index] = self._reject(envelope, item_id, item, str(exc), now_wall)
        ids = [p[2] for p in parsed]
        seen = self._existing("SELECT item_id FROM seen WHERE item_id IN (%s)", ids)
        fresh = []
        retransmissions = 0
        for index, kind, item_id, record in parsed:
            if item_id in seen:
                results[index] = {"id": item_id, "status": "duplicate", "reason": "retransmission"}
                retransmissions += 1
                continue
            seen.add(item_id)
            fresh.append((index, kind, item_id, record))
        self._bump(retransmissions=retransmissions)
        cases = [p for p in fresh if p[1] == "case"]
        ratings = [p for p in fresh if p[1] == "rating"]
        for index, _, item_id, record in cases:
            results[index] = self._store_case(record, now_wall)
        keys = [case_key(r[3]["serials"], r[3]["node"]) for r in ratings]
        held = self._existing("SELECT case_key FROM case_ratings WHERE case_key IN (%s)", keys)
        deadlines = self._lookup("SELECT case_key, deadline FROM cases WHERE case_key IN (%s)", keys)
        rows, orders = [], []
        for (index, _, item_id, record), key in zip(ratings, keys):
            results[index] = self._store_rating(envelope, item_id, record, key, held, deadlines,
                                                rows, orders, now_sim, now_wall)
        if orders:   # every work order of a batch is opened at the same instant: one deadline
            deadline_date, deadline_unix = self.calendar.deadline(now_sim, self.work_order_days)
            orders = [order + (deadline_date, deadline_unix) for order in orders]
        if rows:
            self.db.executemany(
                "INSERT INTO ratings (rating_id, case_key, gateway_id, hall, profile, window,"
                " staff_id, staff_name, matter_code, matter_name, level, overall, business, service,"
                " source, channel, tags, text, pressed_at, received_at, sim_received_at, batch_id)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            self.db.executemany("INSERT OR REPLACE INTO case_ratings VALUES (?,?)",
                                [(row[1], row[0]) for row in rows])
        if orders:
            self.db.executemany(
                "INSERT OR IGNORE INTO work_orders (rating_id, case_key, window, staff_id,"
                " matter_code, level, tags, text, created_at, deadline_date, deadline)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)", orders)
            self._bump(work_orders=len(orders))
        self.db.executemany("INSERT OR IGNORE INTO seen VALUES (?,?)",
                            [(r["id"], r["status"]) for r in results
                             if r["status"] != "rejected"])
        return results

    # --- validation ----------------------------------------------------------------------
    @staticmethod
    def _check_rating(item_id, record):
        missing = [name for name in REQUIRED_RATING if not record.get(name)]
        if missing:
            raise Rejected("missing %s" % ", ".join(missing))
        if record["rating_id"] != item_id:
            raise Rejected("item id %s differs from the rating id" % item_id)
        device, counter = rating_rules.split_rating_id(item_id)
        if record.get("device", device) != device or record.get("counter", counter) != counter:
            raise Rejected("rating id does not match device and counter")
        if record["source"] == vocab.SRC_SYSTEM_DEFAULT:
            raise Rejected("system defaults are set by the central side only")
        if record["node"] not in _NODE_NAMES:
            raise Rejected("node %r" % record["node"])
        rating_rules.check(record, vocab.NODE_INDICATORS[record["node"]])

    @staticmethod
    def _check_case(item_id, record):
        missing = [name for name in REQUIRED_CASE if not record.get(name)]
        if missing:
            raise Rejected("missing %s" % ", ".join(missing))
        if record["case_key"] != item_id or case_key(record["serials"], record["node"]) != item_id:
            raise Rejected("case key must be <first serial>#<node>")

    def _reject(self, envelope, item_id, item, reason, now_wall):
        self.db.execute("INSERT INTO rejected (batch_id, item_id, kind, reason, received_at)"
                        " VALUES (?,?,?,?,?)", (envelope["batch_id"], item_id,
                                                item.get("kind") if isinstance(item, dict) else None,
                                                reason, now_wall))
        self._bump(rejected=1)
        return {"id": item_id, "status": "rejected", "reason": reason}

    # --- storing -------------------------------------------------------------------------
    def _store_case(self, record, now_wall):
        self.db.execute(
            "INSERT OR IGNORE INTO cases VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (record["case_key"], ",".join(record["serials"]), record["node"], record.get("hall"),
             record.get("window"), record.get("staff_id"), record.get("staff_name"),
             record.get("matter_code"), record.get("matter_name"), record.get("completed_at"),
             record["deadline"], now_wall))
        self._bump(cases=1)
        return {"id": record["case_key"], "status": "accepted"}

    def _store_rating(self, envelope, item_id, record, key, held, deadlines, rows, orders, now_sim,
                      now_wall):
        if record["source"] == vocab.SRC_NOT_RATED:
            self.db.execute("INSERT OR IGNORE INTO not_rated VALUES (?,?,?,?,?)",
                            (item_id, key, record.get("window"), record["gateway_time"], now_wall))
            self._bump(not_rated=1)
            return {"id": item_id, "status": "accepted"}
        if key in held and not self._supersede_default(key, record):
            holder = self.db.execute("SELECT rating_id FROM case_ratings WHERE case_key=?",
                                     (key,)).fetchone()
            self.db.execute("INSERT OR IGNORE INTO duplicate_ratings VALUES (?,?,?,?)",
                            (item_id, key, holder[0] if holder else None, now_wall))
            self._bump(duplicate_ratings=1)
            return {"id": item_id, "status": "duplicate", "reason": "case_already_rated"}
        deadline = deadlines.get(key)
        if deadline and record["gateway_time"] > deadline:
            raise_reason = "rating window closed at %d" % deadline
            return self._reject(envelope, item_id, {"kind": "rating"}, raise_reason, now_wall)
        held.add(key)
        level = rules.effective_level(record)
        get = record.get
        tags = get("tags")
        tags = ",".join(str(t) for t in tags) if tags else ""
        rows.append((item_id, key, envelope.get("gateway_id"), get("hall"), envelope["profile"],
                     get("window"), get("staff_id"), get("staff_name"), get("matter_code"),
                     get("matter_name"), level, get("overall"), get("business"), get("service"),
                     record["source"], get("channel"), tags, get("text"), record["gateway_time"],
                     now_wall, now_sim, envelope["batch_id"]))
        if rating_rules.is_bad(record):   # deadline columns are added once per batch (_apply)
            orders.append((item_id, key, get("window"), get("staff_id"), get("matter_code"), level,
                           tags, get("text"), int(now_sim)))
        return {"id": item_id, "status": "accepted"}

    def _supersede_default(self, key, record):
        """A press made before the deadline beats a system default given meanwhile."""
        row = self.db.execute(
            "SELECT r.rating_id, c.deadline FROM case_ratings cr JOIN ratings r"
            " ON r.rating_id = cr.rating_id LEFT JOIN cases c ON c.case_key = cr.case_key"
            " WHERE cr.case_key=? AND r.source=?", (key, vocab.SRC_SYSTEM_DEFAULT)).fetchone()
        if row is None or (row[1] and record["gateway_time"] > row[1]):
            return False
        self.db.execute("UPDATE ratings SET superseded=1 WHERE rating_id=?", (row[0],))
        self.db.execute("DELETE FROM case_ratings WHERE case_key=?", (key,))
        self._bump(defaults_superseded=1)
        return True

    # --- the 7-day window ----------------------------------------------------------------
    def close_expired(self, now=None):
        """Give every case past its deadline without a rating the default level. Returns how many."""
        now = self.clock() if now is None else now
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(
                "SELECT c.case_key, c.hall, c.window, c.staff_id, c.staff_name, c.matter_code,"
                " c.matter_name, c.deadline FROM cases c LEFT JOIN case_ratings cr"
                " ON cr.case_key = c.case_key WHERE c.deadline <= ? AND cr.case_key IS NULL",
                (now,)).fetchall()
            wall = self.wall_clock()
            for key, hall, window, staff_id, staff_name, matter_code, matter_name, deadline in rows:
                rating_id = "default:%s" % key
                db.execute(
                    "INSERT OR IGNORE INTO ratings (rating_id, case_key, hall, profile, window,"
                    " staff_id, staff_name, matter_code, matter_name, level, overall, source, channel,"
                    " pressed_at, received_at, sim_received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (rating_id, key, hall, None, window, staff_id, staff_name, matter_code,
                     matter_name, self.default_level, self.default_level, vocab.SRC_SYSTEM_DEFAULT,
                     builtin_profiles.CH_SYSTEM, deadline, wall, now))
                db.execute("INSERT OR REPLACE INTO case_ratings VALUES (?,?)", (key, rating_id))
            self._bump(system_defaults=len(rows))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(rows)

    # --- reading -------------------------------------------------------------------------
    def _existing(self, sql, keys):
        found = set()
        for start in range(0, len(keys), 900):
            chunk = keys[start:start + 900]
            if chunk:
                found.update(row[0] for row in self.db.execute(sql % ",".join("?" * len(chunk)), chunk))
        return found

    def _lookup(self, sql, keys):
        """{key: value} of `sql` ("SELECT key, value ... IN (%s)") over `keys`, 900 at a time."""
        found = {}
        for start in range(0, len(keys), 900):
            chunk = keys[start:start + 900]
            found.update(self.db.execute(sql % ",".join("?" * len(chunk)), chunk))
        return found

    def _bump(self, **deltas):
        for name, delta in deltas.items():
            if delta:
                self.db.execute("UPDATE counters SET value = value + ? WHERE name=?", (delta, name))

    def counters(self):
        return dict(self.db.execute("SELECT name, value FROM counters"))

    def report(self):
        """The figures a simulator report checks against."""
        c = self.counters()
        q = self.db.execute
        received = q("SELECT COUNT(*) FROM ratings WHERE source=?", (vocab.SRC_PRESS,)).fetchone()[0]
        return {
            "received": received,
            "retransmissions": c["retransmissions"],
            "duplicates": c["duplicate_ratings"],
            "not_rated": c["not_rated"],
            "system_defaults": c["system_defaults"] - c["defaults_superseded"],
            "work_orders": q("SELECT COUNT(*) FROM work_orders").fetchone()[0],
            "rejected": c["rejected"],
            "cases": q("SELECT COUNT(*) FROM cases").fetchone()[0],
            "batches": c["batches"],
            "replayed_batches": c["replayed_batches"],
        }

    def rating(self, rating_id):
        cur = self.db.execute("SELECT * FROM ratings WHERE rating_id=?", (rating_id,))
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row)) if row else None

    def ratings(self, after=0, limit=1000):
        cur = self.db.execute("SELECT * FROM ratings WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur]

    def work_orders(self):
        cur = self.db.execute("SELECT * FROM work_orders ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur]

    def statistics(self, by):
        """Per window, staff or matter: counts per level, score 0..100 and grade."""
        column = {"window": "window", "staff": "staff_id", "matter": "matter_code"}[by]
        label = {"window": "window", "staff": "staff_name", "matter": "matter_name"}[by]
        groups = {}
        for key, name, level, n in self.db.execute(
                "SELECT %s, MAX(%s), level, COUNT(*) FROM ratings WHERE superseded=0 AND level > 0"
                " GROUP BY %s, level" % (column, label, column)):
            group = groups.setdefault(key, {"key": key, "name": name, "levels": {}})
            group["levels"][level] = n
        out = []
        for group in groups.values():
            value = rules.score(group["levels"])
            out.append({"key": group["key"], "name": group["name"],
                        "ratings": sum(group["levels"].values()),
                        "levels": {vocab.LEVEL_NAMES[k]: v for k, v in sorted(group["levels"].items())},
                        "score": round(value, 2), "grade": rules.grade(value)})
        return sorted(out, key=lambda g: (g["key"] is None, g["key"] or ""))
