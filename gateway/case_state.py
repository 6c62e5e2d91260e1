"""The cases' durable state: the small key-value state table (rows "state:<name>" of `meta`: open
cases "case:<id>", windows "window:<name>"), the hall-wide case id sequence, and the queue of
callbacks to the queueing system (`callbacks`, bounded by `callback_capacity`).

Closing a rated case is data, applied by the store inside the rating's own group commit (no
transaction, no fsync of its own, and no crash between a stored rating and its case's closing):
a closing is (case_id, callback or None), handed over by the store's `case_closer` (gateway.cases)
before the transaction begins. Inside it, a closing counts only if the case is still open in the
state table: it forgets the case, frees its window if that window still shows it, and queues the
callback. The same code closes a case in a transaction of its own (close_cases).
"""

import json

_PREFIX = "state:"


def _json(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


CASE_EPOCH = 1704067200    # 2024-01-01 UTC
CASES_PER_S = 4            # a store hands out fewer case ids than this per second on average


def first_case_id(now):
    """A new store's first case id: CASES_PER_S per second since CASE_EPOCH, so it lies above
    every id an earlier store of the hall handed out (as a device's counter floor does, SPEC 7.2:
    a hall opens far fewer than 4 cases a second, averaged since its store began). Devices keep
    the last case ids they were rated on and refuse a case id again, so a spare gateway that
    started at 1 would show cases nobody could rate. Good until 2057; after that, 1 again."""
    n = int((now - CASE_EPOCH) * CASES_PER_S)
    return n if 0 < n <= 0xFFFFFFFF else 1


class StateTxn:
    """The state table and the callback queue inside one of the store's transactions: what
    opening a case (commit_case's opening) and closing one may touch."""

    def __init__(self, state, db):
        self._state = state
        self._db = db
        self.callbacks = 0
        self.dropped = 0

    def get(self, name):
        row = self._db.execute("SELECT value FROM meta WHERE name=?", (_PREFIX + name,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, name, value):
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (_PREFIX + name, _json(value)))

    def delete(self, name):
        self._db.execute("DELETE FROM meta WHERE name=?", (_PREFIX + name,))

    def add_callback(self, callback):
        """Queue a queueing-system callback; False (and an alarm after the commit) when full."""
        if self._state.callbacks + self.callbacks >= self._state.callback_capacity:
            self.dropped += 1
            return False
        self._db.execute("INSERT INTO callbacks (body, created) VALUES (?,?)",
                         (_json(callback), self._state.clock()))
        self.callbacks += 1
        return True

    def close(self, case_id, callback):
        """Apply one closing; True if the case was open and is now closed."""
        name = "case:%d" % case_id
        case = self.get(name)
        if case is None or case.get("status", "open") != "open":
            return False
        self.delete(name)
        window_name = "window:%s" % case.get("window")
        window = self.get(window_name)
        if window is not None and window.get("case_id") == case_id:
            self.put(window_name, dict(window, case_id=0))
        if callback is not None:
            self.add_callback(callback)
        return True


class CaseState:
    """`alarm(name, detail)` and `clock` are the store's."""

    def __init__(self, callback_capacity, alarm, clock):
        self.callback_capacity = callback_capacity
        self.callbacks = 0            # undelivered callbacks in the file
        self.clock = clock
        self._alarm = alarm
        self._closed = set()          # case ids closed by a group commit, until closed_in_commit()

    def load(self, db):
        self.callbacks = db.execute("SELECT COUNT(*) FROM callbacks").fetchone()[0]

    def txn(self, db):
        return StateTxn(self, db)

    def after(self, txn, closed=()):
        """Once the transaction `txn` wrote in has committed: count its callbacks, alarm the
        dropped ones, remember the cases it closed."""
        self.callbacks += txn.callbacks
        if txn.dropped:
            self._alarm("callbacks_full", "%d callbacks undelivered: dropping %d"
                        % (self.callbacks, txn.dropped))
        self._closed.update(closed)

    @staticmethod
    def close_in(txn, closings):
        """Inside a transaction: apply [(case_id, callback)] in order; the case ids closed."""
        return [case_id for case_id, callback in closings if txn.close(case_id, callback)]

    def closed_in_commit(self, case_id):
        """True once for a case a group commit closed (its rating's on_rating follows in memory)."""
        if case_id in self._closed:
            self._closed.discard(case_id)
            return True
        return False

    # --- plain reads and writes (each inside the store's transaction or lock) -------------------
    @staticmethod
    def items(db, prefix):
        rows = db.execute("SELECT name, value FROM meta WHERE name >= ? AND name < ?",
                          (_PREFIX + prefix, _PREFIX + prefix + "\uffff")).fetchall()
        return [(name[len(_PREFIX):], json.loads(value)) for name, value in rows]

    @staticmethod
    def due(db, limit):
        rows = db.execute("SELECT id, body, attempts, created FROM callbacks ORDER BY id LIMIT ?",
                          (limit,)).fetchall()
        return [(cid, json.loads(body), attempts, created) for cid, body, attempts, created in rows]

    @staticmethod
    def settle_in(db, finished, failed):
        db.executemany("DELETE FROM callbacks WHERE id=?", [(i,) for i in finished])
        if failed is not None:
            db.execute("UPDATE callbacks SET attempts = attempts + 1 WHERE id=?", (failed,))

    @staticmethod
    def next_case_id(db, now):
        """A hall-wide case id never handed out twice, across restarts (1 .. 2**32-1), nor by a
        new store after the old one was lost (a spare gateway): a store's first id is
        first_case_id(now), above any id an earlier store handed out."""
        row = db.execute("SELECT value FROM meta WHERE name='case_seq'").fetchone()
        n = int(row[0]) + 1 if row else first_case_id(now)
        if n > 0xFFFFFFFF:
            n = 1
        db.execute("INSERT OR REPLACE INTO meta VALUES ('case_seq', ?)", (str(n),))
        return n
