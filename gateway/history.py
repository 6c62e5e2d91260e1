"""The hall's rating history for the console: every stored rating, queryable by day, window,
staff, matter and hour, and the follow-up of each bad rating (差评, rules Art. 21).

The outbox (gateway.store) is the durable record; this is the hall's view of it, in a SQLite file
of its own (<data_dir>/history.sqlite, WAL):
- record() only enqueues (a bounded queue: the rating path never waits for it); one writer thread
  wakes once a burst (LINGER_S) and writes it with synchronous=NORMAL, rows made by
  gateway.history_rows, the daily counts the summaries read by SQLite in the same transaction.
  A rating id already there is left out: a rating recorded twice counts once. A full queue
  drops the rating from the view (counted, alarm history_full).
- Follow-ups are operator actions: each is one transaction with synchronous=FULL. States are data
  (TRANSITIONS): pending -> verified -> handled, pending -> handled; the same state again only
  changes the note. There is no way back: a handled bad rating stays handled.
- Never the applicant: a row holds only the named fields of the rating and its case enrichment.
- Days are the hall's local dates ([console] timezone, default Asia/Shanghai); rows older than
  [console] history_days (400) are pruned once a day, with their follow-ups.
- A history file that is damaged is set aside (gateway.set_aside.move_aside) and a fresh one made
  (alarm corrupt_history); one that cannot be opened at all leaves the history unavailable
  (alarm history_unavailable): reads raise HistoryUnavailable, the gateway keeps running.
"""

import datetime
import logging
import queue
import sqlite3
import threading
import time

from gateway import set_aside
from gateway.history_rows import (COLUMNS, DEFAULT_DAYS, DEFAULT_TIMEZONE, GROUPS, local_time,
                                  row_of, settings, timezone)
from gateway.store_file import Corrupt, Txn, is_corrupt
from gateway.text_rules import is_text
from protocol import errors, vocab
from protocol.rating import rating_id

log = logging.getLogger("gateway.history")

FILE_NAME = "history.sqlite"
QUEUE_SIZE = 20_000
LINGER_S = 0.5           # the writer lets a burst gather this long (the queue holds 20 000)
CHUNK = 1000             # ratings a transaction: the writer never holds the GIL long
IDLE_S = 60.0            # the writer wakes at least this often (the daily prune)
NOTE_LIMIT = 500
STATES = ("pending", "verified", "handled")
TRANSITIONS = {"pending": ("pending", "verified", "handled"),
               "verified": ("verified", "handled"),
               "handled": ("handled",)}

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ratings (rating_id TEXT NOT NULL UNIQUE, time INTEGER NOT NULL,"
    " day TEXT NOT NULL, hour INTEGER NOT NULL, device TEXT NOT NULL, window TEXT NOT NULL,"
    " staff_id TEXT NOT NULL, staff_name TEXT NOT NULL, matter_code TEXT NOT NULL,"
    " matter_name TEXT NOT NULL, case_id INTEGER, serial TEXT NOT NULL, source INTEGER NOT NULL,"
    " level INTEGER, overall INTEGER, business INTEGER, service INTEGER, bad INTEGER NOT NULL,"
    " tags TEXT NOT NULL, text TEXT NOT NULL)",
    # the bad list, newest first: walked backwards from the period's end, no sort
    "CREATE INDEX IF NOT EXISTS ratings_bad ON ratings (time, rating_id) WHERE bad = 1",
    # What the summaries read: ratings counted per day, dimension (GROUPS), key, level and
    # source, kept by the writer with each rating it adds (a week of a big hall is a few
    # thousand rows here, not 50 000 ratings to group per request).
    "CREATE TABLE IF NOT EXISTS daily (dim TEXT NOT NULL, day TEXT NOT NULL, key TEXT NOT NULL,"
    " level INTEGER NOT NULL, source INTEGER NOT NULL, n INTEGER NOT NULL, label TEXT NOT NULL,"
    " PRIMARY KEY (dim, day, key, level, source)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS follow_ups (rating_id TEXT PRIMARY KEY, state TEXT NOT NULL,"
    " note TEXT NOT NULL, by TEXT NOT NULL, at INTEGER NOT NULL)",
)
_INSERT = "INSERT INTO ratings (%s) VALUES (%s)" % (", ".join(COLUMNS), ", ".join("?" * len(COLUMNS)))
# The daily counts of the ratings added after rowid ?, one statement per dimension: SQLite
# groups them (in C, the GIL released), not the writer's Python.
_ADD_DAILY = tuple(
    "INSERT INTO daily SELECT '%s', day, %s, COALESCE(level, 0), source, COUNT(*), %s FROM ratings"
    " WHERE rowid > ? GROUP BY day, %s, COALESCE(level, 0), source ON CONFLICT (dim, day, key,"
    " level, source) DO UPDATE SET n = n + excluded.n, label = excluded.label"
    % (dim, key, label, key) for dim, (key, label) in GROUPS.items())
_STOP = object()


class HistoryUnavailable(Exception):
    """The history cannot be read or written now (its file could not be opened)."""


class FollowUpError(ValueError):
    """A follow-up the caller must fix: `reason` an R_* code; `conflict` True for a transition
    the rating's state does not allow (or a rating that is not bad), False for bad input,
    None for a rating the history does not hold."""

    def __init__(self, reason, detail, conflict=False):
        super().__init__(detail)
        self.reason, self.detail, self.conflict = reason, detail, conflict


def _connect(path):
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        for statement in SCHEMA:
            db.execute(statement)
        row = db.execute("PRAGMA quick_check").fetchone()
        if not row or row[0] != "ok":
            raise Corrupt("quick_check: %s" % (row,))
    except BaseException:
        db.close()
        raise
    return db


class History:
    def __init__(self, path, tz=DEFAULT_TIMEZONE, keep_days=DEFAULT_DAYS, alarm=None,
                 clock=time.time, queue_size=QUEUE_SIZE):
        self.path = str(path)
        self.tz = timezone(tz) if isinstance(tz, str) else tz
        self._local = local_time(self.tz)
        self.keep_days = keep_days
        self.alarm = alarm or (lambda name, detail: log.error("ALARM %s: %s", name, detail))
        self.clock = clock
        self.stats = {"recorded": 0, "written": 0, "duplicates": 0, "dropped": 0, "errors": 0,
                      "pruned": 0, "set_aside": 0}
        self._wlock = threading.RLock()   # the writer connection (batches, follow-ups, reopening)
        self._rlock = threading.RLock()   # the reader connection (the console's queries)
        self._wdb = self._rdb = None
        self._pruned_day = None
        self._queue = queue.Queue(queue_size)
        self._wake = threading.Event()    # a flush or the stop cuts the writer's lingering short
        with self._wlock:
            self._open()
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    # --- the file -----------------------------------------------------------------------
    def _open(self):
        try:
            try:
                self._wdb = _connect(self.path)
            except sqlite3.DatabaseError as e:
                if not is_corrupt(e):
                    raise
                self._set_aside(e)
                self._wdb = _connect(self.path)
            self._rdb = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as e:
            self._close_connections()
            self.alarm("history_unavailable", "rating history %s cannot be opened (%s); the console"
                       " shows no ratings until a restart" % (self.path, e))

    def _set_aside(self, error):
        aside = set_aside.move_aside(self.path, self.clock())
        self.stats["set_aside"] += 1
        self.alarm("corrupt_history", "rating history %s damaged (%s); set aside as %s, a fresh one"
                   " started (the outbox and the central API still hold every rating)"
                   % (self.path, error, aside))

    def _reset(self, error):
        """A damaged file found while running: set it aside and start a fresh one."""
        with self._wlock, self._rlock:
            self._close_connections()
            try:
                self._set_aside(error)
            except OSError as e:
                log.error("history: could not set %s aside: %s", self.path, e)
            self._open()

    def _close_connections(self):
        for db in (self._wdb, self._rdb):
            if db is not None:
                try:
                    db.close()
                except sqlite3.Error:
                    pass
        self._wdb = self._rdb = None

    def _failed(self, error, what):
        """A read or write failed: a damaged file is replaced; anything else is counted."""
        self.stats["errors"] += 1
        if isinstance(error, sqlite3.DatabaseError) and is_corrupt(error):
            self._reset(error)
        else:
            self.alarm("history_error", "rating history %s failed: %s" % (what, error))

    # --- writing ------------------------------------------------------------------------
    def record(self, rating, enrichment=None):
        """Queue a stored rating for the history (any thread; never blocks)."""
        try:
            self._queue.put_nowait((rating, enrichment))   # nothing changes a rating once stored
            self.stats["recorded"] += 1
        except queue.Full:
            self.stats["dropped"] += 1
            self.alarm("history_full", "rating history queue full; %s left out of the console's view"
                       % rating_id(rating))

    def flush(self, timeout=10.0):
        """Wait until everything recorded so far is written; False on timeout."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        self._wake.set()
        return done.wait(timeout)

    def _run(self):
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=IDLE_S)
            except queue.Empty:
                first = None
            if isinstance(first, tuple):
                # Let a burst gather: the writer wakes once a batch, not once a rating (a wake
                # per rating costs the rating path a thread switch and the GIL each time).
                self._wake.wait(LINGER_S)
            self._wake.clear()
            batch, markers, stop = self._collect(first)
            try:
                for i in range(0, len(batch), CHUNK):
                    if i:
                        time.sleep(0)   # hand the GIL to the rating path between chunks
                    self._write(batch[i:i + CHUNK])
                self._maybe_prune()
            except Exception:   # never the writer's end: these miss the view, the gateway goes on
                self.stats["errors"] += 1
                log.exception("history: a batch of %d rating(s) was not written", len(batch))
            finally:
                for marker in markers:
                    marker.set()

    def _collect(self, item):
        """(ratings, flush markers, stop): `item` and whatever is queued now."""
        batch, markers, stop = [], [], False
        while item is not None:
            if item is _STOP:
                stop = True
            elif isinstance(item, threading.Event):
                markers.append(item)
            else:
                batch.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                item = None
        return batch, markers, stop

    def _write(self, batch):
        try:
            rows = {}
            for rating, enrichment in batch:
                row = row_of(rating, enrichment, self._local)
                rows.setdefault(row[0], row)            # the first of a rating sent twice
            count = len(batch)
        except Exception:    # a rating that cannot make a row (none should): its batch is left out
            self.stats["errors"] += 1
            log.exception("history: %d rating(s) not recorded", len(batch))
            return
        with self._wlock:
            db = self._wdb
            if db is None:
                self.stats["dropped"] += count
                return
            try:
                with Txn(db):
                    # only what is new counts: a duplicate is left out here and in the counts
                    known = db.execute("SELECT rating_id FROM ratings WHERE rating_id IN (%s)"
                                       % ",".join("?" * len(rows)), list(rows)).fetchall()
                    for (rid,) in known:
                        del rows[rid]
                    added = list(rows.values())
                    last = db.execute("SELECT COALESCE(MAX(rowid), 0) FROM ratings").fetchone()[0]
                    db.executemany(_INSERT, added)
                    for statement in _ADD_DAILY:
                        db.execute(statement, (last,))
                self.stats["written"] += len(added)
                self.stats["duplicates"] += count - len(added)
            except sqlite3.Error as e:
                self.stats["dropped"] += count
                self._failed(e, "writing %d rating(s)" % count)

    def _maybe_prune(self):
        today = self.today()
        if today == self._pruned_day:
            return
        cutoff = (datetime.date.fromisoformat(today)
                  - datetime.timedelta(days=self.keep_days - 1)).isoformat()
        with self._wlock:
            db = self._wdb
            if db is None:
                return
            try:
                with Txn(db):
                    pruned = db.execute("DELETE FROM ratings WHERE day < ?", (cutoff,)).rowcount
                    db.execute("DELETE FROM daily WHERE day < ?", (cutoff,))
                    db.execute("DELETE FROM follow_ups WHERE rating_id NOT IN"
                               " (SELECT rating_id FROM ratings)")
                self.stats["pruned"] += pruned
                self._pruned_day = today
            except sqlite3.Error as e:
                self._failed(e, "pruning before %s" % cutoff)

    def follow_up(self, rid, state, note, by):
        """Move a bad rating's follow-up to `state` with `note` (durably); its item afterwards."""
        if state not in STATES:
            raise FollowUpError(errors.R_OUT_OF_RANGE, "state must be one of %s" % ", ".join(STATES))
        if not is_text(note, NOTE_LIMIT):
            raise FollowUpError(errors.R_OUT_OF_RANGE, "note must be text of at most %d characters,"
                                " without control characters" % NOTE_LIMIT)
        with self._wlock:
            db = self._wdb
            if db is None:
                raise HistoryUnavailable("the rating history is unavailable")
            try:
                db.execute("PRAGMA synchronous=FULL")   # an operator's action: on disk when answered
                with Txn(db):
                    self._apply_follow_up(db, rid, state, note, by)
            except sqlite3.Error as e:
                self._failed(e, "a follow-up")
                raise HistoryUnavailable("the follow-up could not be saved: %s" % e) from None
            finally:
                if self._wdb is db:
                    db.execute("PRAGMA synchronous=NORMAL")
        return self.item(rid)

    def _apply_follow_up(self, db, rid, state, note, by):
        row = db.execute("SELECT bad FROM ratings WHERE rating_id = ?", (rid,)).fetchone()
        if row is None:
            raise FollowUpError(errors.R_MISSING, "no rating %s in the history" % rid, None)
        if not row[0]:
            raise FollowUpError(errors.R_BAD_STATE, "rating %s is not a bad rating" % rid, True)
        found = db.execute("SELECT state FROM follow_ups WHERE rating_id = ?", (rid,)).fetchone()
        current = found[0] if found else "pending"
        if state not in TRANSITIONS[current]:
            raise FollowUpError(errors.R_BAD_STATE, "a %s bad rating cannot become %s (allowed: %s)"
                                % (current, state, ", ".join(TRANSITIONS[current])), True)
        db.execute("INSERT INTO follow_ups VALUES (?, ?, ?, ?, ?) ON CONFLICT (rating_id) DO UPDATE"
                   " SET state = excluded.state, note = excluded.note, by = excluded.by,"
                   " at = excluded.at", (rid, state, note, by, int(self.clock())))

    # --- reading ------------------------------------------------------------------------
    def today(self):
        return datetime.datetime.fromtimestamp(self.clock(), self.tz).date().isoformat()

    def _bounds(self, day_from, day_to):
        """Unix seconds of the hall's midnight starting day_from and of the one ending day_to."""
        first = datetime.date.fromisoformat(day_from)
        end = datetime.date.fromisoformat(day_to) + datetime.timedelta(days=1)
        return tuple(int(datetime.datetime.combine(d, datetime.time(0), self.tz).timestamp())
                     for d in (first, end))

    def _read(self, sql, args):
        with self._rlock:
            db = self._rdb
            if db is None:
                raise HistoryUnavailable("the rating history is unavailable")
            try:
                return db.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                error = e
        self._failed(error, "a query")    # outside the reader's lock: _reset takes both
        raise HistoryUnavailable("the rating history could not be read: %s" % error)

    def summary(self, day_from, day_to, by):
        """([(key, label, {level: n}, not_rated)] sorted by key, total ({level: n}, not_rated))
        of the days day_from..day_to (ISO dates, inclusive)."""
        if by not in GROUPS:
            raise ValueError("by must be one of %s" % ", ".join(GROUPS))
        rows = self._read("SELECT key, label, level, source, SUM(n) FROM daily WHERE dim = ?"
                          " AND day BETWEEN ? AND ? GROUP BY key, level, source ORDER BY MAX(day)",
                          (by, day_from, day_to))
        groups, total, not_rated = {}, {}, 0
        for k, name, level, source, n in rows:      # the label of a key's latest day wins
            group = groups.setdefault(k, [k, name, {}, 0])
            group[1] = name or group[1]
            if source == vocab.SRC_NOT_RATED:
                group[3] += n
                not_rated += n
            elif level:
                group[2][level] = group[2].get(level, 0) + n
                total[level] = total.get(level, 0) + n
        return [tuple(groups[k]) for k in sorted(groups)], (total, not_rated)

    def bad(self, day_from, day_to, state=None, window=None, staff_id=None, level=None, limit=1000):
        """Bad ratings of day_from..day_to, newest first, each with its follow-up."""
        where, args = ["r.bad = 1", "r.time >= ?", "r.time < ?"], list(self._bounds(day_from, day_to))
        for column, value in (("COALESCE(f.state, 'pending')", state), ("r.window", window),
                              ("r.staff_id", staff_id), ("r.level", level)):
            if value is not None:
                where.append("%s = ?" % column)
                args.append(value)
        args.append(limit)
        rows = self._read("SELECT %s, f.state, f.note, f.by, f.at FROM ratings r LEFT JOIN"
                          " follow_ups f USING (rating_id) WHERE %s ORDER BY r.time DESC,"
                          " r.rating_id DESC LIMIT ?" % (_columns("r"), " AND ".join(where)), args)
        return [_item(row) for row in rows]

    def item(self, rid):
        """One rating with its follow-up, or None."""
        rows = self._read("SELECT %s, f.state, f.note, f.by, f.at FROM ratings r LEFT JOIN"
                          " follow_ups f USING (rating_id) WHERE r.rating_id = ?" % _columns("r"),
                          (rid,))
        return _item(rows[0]) if rows else None

    def export(self, day_from, day_to, after=0, limit=500):
        """(last position, items) of day_from..day_to in the order they were recorded, a page
        at a time: pass the position back as `after` for the next page."""
        rows = self._read("SELECT r.rowid, %s, f.state, f.note, f.by, f.at FROM ratings r LEFT JOIN"
                          " follow_ups f USING (rating_id) WHERE r.rowid > ? AND r.day BETWEEN ? AND ?"
                          " ORDER BY r.rowid LIMIT ?" % _columns("r"),
                          (after, day_from, day_to, limit))
        return (rows[-1][0] if rows else after), [_item(row[1:]) for row in rows]

    def close(self, timeout=5.0):
        """Write what is queued, stop the writer, close the file."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            pass
        self._wake.set()
        self._thread.join(timeout)
        with self._wlock, self._rlock:
            self._close_connections()


def _columns(alias):
    return ", ".join("%s.%s" % (alias, c) for c in COLUMNS)


def _item(row):
    """A row (COLUMNS then the follow-up's state, note, by, at) as a dict."""
    out = dict(zip(COLUMNS, row))
    state, note, by, at = row[len(COLUMNS):]
    out["tags"] = [int(tag) for tag in out["tags"].split(",")] if out["tags"] else []
    out["bad"] = bool(out["bad"])
    out["follow_up"] = {"state": state or "pending", "note": note or "", "by": by, "at": at}
    return out
