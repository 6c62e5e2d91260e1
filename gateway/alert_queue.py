"""The durable alert queue: <data_dir>/alerts.sqlite (WAL, synchronous=FULL), one row per
(alert, channel), so a channel that is down holds back nobody else.

Never doubled: the row's key is the alert's dedupe key and the channel's name (a bad rating: its
rating id; a device offline: the device and the episode's start), the PRIMARY KEY, and rows go in
with INSERT OR IGNORE: raising the same alert again, from a re-delivered rating or after a
restart, adds nothing. A row is marked sent only after the channel answered 2xx and its own
success code; until then it is retried with capped exponential backoff (gateway.backoff), and
after `max_age_s` it is given up as failed (counted, alarmed). Pending rows outlive a restart and
are sent then. A crash between a channel's answer and the mark can resend one alert: the webhook
body carries the alert's id for the receiver to drop it.
Bounded: past `max_pending` pending rows the oldest are dropped, alerts other than bad ratings
first (counted, alarmed). Finished rows are kept `keep_s` (their keys guard against doubles), then
pruned.
A damaged file is set aside (alerts.sqlite.damaged-<time>, alarmed) and the queue starts afresh:
the gateway never fails to start for its alerts.
Episodes (a device offline, the uplink down, the outbox full) are kept here too, so a restart in
the middle of one raises no second alert.
All SQLite work runs on the queue's own single thread (`run`, `call`): the rating intake's
threads hand alerts over without waiting for the fsync.
"""

import asyncio
import concurrent.futures
import json
import os
import sqlite3
import time

from gateway.backoff import Backoff

PENDING, SENT, FAILED, DROPPED = "pending", "sent", "failed", "dropped"
STATES = (PENDING, SENT, FAILED, DROPPED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_rows (
    key TEXT PRIMARY KEY,          -- alert key '|' channel name: the dedupe key
    alert TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    bad INTEGER NOT NULL,          -- a bad rating's alert: dropped last
    created REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    done_at REAL,
    last_error TEXT,
    body TEXT NOT NULL             -- the alert (alerts.py): never the rater's identity
);
CREATE INDEX IF NOT EXISTS alert_rows_due ON alert_rows (state, channel, next_at);
CREATE INDEX IF NOT EXISTS alert_rows_created ON alert_rows (created);
CREATE TABLE IF NOT EXISTS alert_episodes (subject TEXT PRIMARY KEY, alert TEXT NOT NULL,
                                           since REAL NOT NULL);
CREATE TABLE IF NOT EXISTS alert_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
COUNTERS = ("sent", "failed", "dropped", "attempt_failures", "duplicates")


class AlertQueue:
    def __init__(self, path, max_pending=10_000, max_age_s=86_400.0, keep_s=30 * 86_400.0,
                 backoff_base_s=2.0, backoff_cap_s=600.0, clock=time.time, rng=None, alarm=None):
        self.path = path
        self.max_pending = max_pending
        self.max_age_s = max_age_s
        self.keep_s = keep_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.clock = clock
        self.rng = rng
        self.alarm = alarm or (lambda name, detail: None)
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="alerts")
        self._db = None
        self.pending = 0          # read by /metrics from any thread (an int: no torn read)
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.call(self._open)

    # --- the queue's thread -------------------------------------------------------------
    def call(self, fn, *args):
        """Run fn on the queue's thread and wait for it (any thread but that one)."""
        return self._thread.submit(fn, *args).result()

    def submit(self, fn, *args):
        """Run fn on the queue's thread; do not wait (the intake's threads)."""
        return self._thread.submit(fn, *args)

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def close(self):
        self._thread.submit(self._close)
        self._thread.shutdown(wait=True)

    def _close(self):
        if self._db is not None:
            self._db.close()
            self._db = None

    def _open(self):
        try:
            db = self._connect()
        except sqlite3.DatabaseError as e:
            # a damaged queue must not keep the gateway from starting: set it aside, start afresh
            aside = "%s.damaged-%d" % (self.path, int(self.clock()))
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, aside + suffix)
            self.alarm("alert_store", "the alert queue %s was damaged (%s): set aside as %s"
                       % (self.path, type(e).__name__, aside))
            db = self._connect()
        self._db = db
        for name, value in db.execute("SELECT name, value FROM alert_counters"):
            if name in self.counters:
                self.counters[name] = value
        self.pending = db.execute("SELECT COUNT(*) FROM alert_rows WHERE state = ?",
                                  (PENDING,)).fetchone()[0]

    def _connect(self):
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute("SELECT COUNT(*) FROM alert_rows").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _txn(self, work):
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            out = work(db)
            db.execute("COMMIT")
            return out
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _count(self, db, name, n=1):
        db.execute("INSERT INTO alert_counters (name, value) VALUES (?, ?) ON CONFLICT(name)"
                   " DO UPDATE SET value = value + excluded.value", (name, n))

    # --- on the queue's thread: writes ----------------------------------------------------
    def add(self, alert, channels):
        """Queue `alert` (alerts.py's dict, with key/kind/bad) for each channel name; the number of
        rows new (0: every one was there already, the alert is not doubled)."""
        now = self.clock()
        body = json.dumps(alert, ensure_ascii=False, separators=(",", ":"))

        def work(db):
            added = 0
            for channel in channels:
                cur = db.execute(
                    "INSERT OR IGNORE INTO alert_rows (key, alert, channel, kind, bad, created, state,"
                    " next_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (alert["key"] + "|" + channel, alert["key"], channel, alert["kind"],
                     int(bool(alert.get("bad"))), now, PENDING, now, body))
                added += cur.rowcount
            if added < len(channels):
                self._count(db, "duplicates", len(channels) - added)
            dropped = self._bound(db, added)
            return added, dropped
        added, dropped = self._txn(work)
        self.pending += added - dropped
        if added < len(channels):
            self.counters["duplicates"] += len(channels) - added
        if dropped:
            self.counters["dropped"] += dropped
            self.alarm("alert_dropped", "%d alert(s) dropped: more than %d pending"
                       % (dropped, self.max_pending))
        return added

    def _bound(self, db, added):
        over = self.pending + added - self.max_pending
        if over <= 0:
            return 0
        keys = [k for (k,) in db.execute(
            "SELECT key FROM alert_rows WHERE state = ? ORDER BY bad, created LIMIT ?", (PENDING, over))]
        db.executemany("UPDATE alert_rows SET state = ?, done_at = ?, last_error = ? WHERE key = ?",
                       [(DROPPED, self.clock(), "queue full", k) for k in keys])
        self._count(db, "dropped", len(keys))
        return len(keys)

    def due(self, channel, limit=20):
        """Pending rows of `channel` whose time has come: [(key, attempts, created, alert dict)]."""
        rows = self._db.execute(
            "SELECT key, attempts, created, body FROM alert_rows WHERE state = ? AND channel = ?"
            " AND next_at <= ? ORDER BY bad DESC, created LIMIT ?",
            (PENDING, channel, self.clock(), limit)).fetchall()
        return [(k, a, c, json.loads(b)) for k, a, c, b in rows]

    def next_due(self, channel):
        """When the next pending row of `channel` is due (None: nothing pending)."""
        return self._db.execute("SELECT MIN(next_at) FROM alert_rows WHERE state = ? AND channel = ?",
                                (PENDING, channel)).fetchone()[0]

    def settle(self, results):
        """results [(key, attempts, created, ok, detail)] of one channel's sends."""
        now = self.clock()
        sent, failed, retried = [], [], []
        for key, attempts, created, ok, detail in results:
            if ok:
                sent.append((SENT, now, attempts + 1, key))
            elif now - created >= self.max_age_s:
                failed.append((FAILED, now, attempts + 1, detail, key))
            else:
                retried.append((now + self._delay(attempts), attempts + 1, detail, key))

        def work(db):
            # only rows still pending move (one dropped meanwhile stays dropped): counted by rowcount
            done = [db.executemany("UPDATE alert_rows SET state = ?, done_at = ?, attempts = ?,"
                                   " last_error = NULL WHERE key = ? AND state = 'pending'", sent).rowcount,
                    db.executemany("UPDATE alert_rows SET state = ?, done_at = ?, attempts = ?,"
                                   " last_error = ? WHERE key = ? AND state = 'pending'", failed).rowcount]
            db.executemany("UPDATE alert_rows SET next_at = ?, attempts = ?, last_error = ?"
                           " WHERE key = ? AND state = 'pending'", retried)
            for name, n in (("sent", done[0]), ("failed", done[1]),
                            ("attempt_failures", len(failed) + len(retried))):
                if n:
                    self._count(db, name, n)
            return done
        n_sent, n_failed = self._txn(work)
        self.pending -= n_sent + n_failed
        self.counters["sent"] += n_sent
        self.counters["failed"] += n_failed
        self.counters["attempt_failures"] += len(failed) + len(retried)
        if n_failed:
            self.alarm("alert_failed", "%d alert(s) given up after %.0f h: %s"
                       % (n_failed, self.max_age_s / 3600, failed[0][3]))
        return n_sent, n_failed, len(retried)

    def _delay(self, attempts):
        backoff = Backoff(self.backoff_base_s, self.backoff_cap_s, self.rng)
        backoff.failures = attempts
        return max(backoff.failure(), self.backoff_base_s / 2)   # never a tight loop

    def prune(self):
        """Forget finished rows older than keep_s."""
        cut = self.clock() - self.keep_s
        self._txn(lambda db: db.execute("DELETE FROM alert_rows WHERE state != ? AND done_at < ?",
                                        (PENDING, cut)))

    # --- episodes (a condition that lasts: one alert per episode) -------------------------
    def episodes(self):
        return dict((s, (a, t)) for s, a, t in
                    self._db.execute("SELECT subject, alert, since FROM alert_episodes"))

    def open_episode(self, subject, alert_key, since):
        self._txn(lambda db: db.execute("INSERT OR IGNORE INTO alert_episodes (subject, alert, since)"
                                        " VALUES (?, ?, ?)", (subject, alert_key, since)))

    def close_episode(self, subject):
        self._txn(lambda db: db.execute("DELETE FROM alert_episodes WHERE subject = ?", (subject,)))

    # --- reading --------------------------------------------------------------------------
    def depth(self):
        """Pending rows (any thread)."""
        return self.pending

    def status(self, recent=50):
        """Counts by state and the latest rows (the queue's thread)."""
        counts = dict.fromkeys(STATES, 0)
        counts.update(self._db.execute("SELECT state, COUNT(*) FROM alert_rows GROUP BY state"))
        rows = self._db.execute(
            "SELECT key, alert, channel, kind, created, state, attempts, last_error, body"
            " FROM alert_rows ORDER BY created DESC, key LIMIT ?", (recent,)).fetchall()
        items = []
        for key, alert, channel, kind, created, state, attempts, error, body in rows:
            items.append({"id": key, "alert": alert, "channel": channel, "kind": kind, "at": created,
                          "state": state, "attempts": attempts, "error": error,
                          "body": json.loads(body)})
        return {"counts": counts, "counters": dict(self.counters), "recent": items}
