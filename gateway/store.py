"""The gateway's durable outbox: SQLite in WAL mode with synchronous=FULL, written by group commit.

Every rating, "not rated" event and finished case is committed here before anyone is told it was
recorded; the uplink drains it. Rules:
- A rating's permanent key is protocol.rating.rating_id (device:counter). The `ids` table remembers
  every key ever stored (with a digest of the content), so a retransmission is a duplicate even
  after the row was uploaded and deleted, and the same key with other content is a replay.
- Each device has a committed high-water mark (its largest stored counter). A counter at or below
  it whose id was never stored is a replay: dead letter R_REPLAY and an alarm
  (protocol.rating.verdict). No false alarm from reordering: a device sends only its outbox head
  (oldest unreleased counter) and moves on only after an ACK that releases it (stored, duplicate,
  dead letter), so counter N+1 is never sent before N was decided. Late copies of N (MQTT QoS 1
  redelivery, a resend crossing the ACK) find N's id stored: duplicates.
- `ids` is never pruned: dedupe must hold after days offline and after upload. It costs ~42 bytes
  per rating (measured with 13-character device ids): ~31 MB a year at 2,000 ratings a day.
- Bounded: past `capacity` pending items new data is refused (gateway.upload_queue); dead letters
  are bounded per device and in all (gateway.deadletters): a new one evicts its device's oldest,
  counted and alarmed, so a dead-letter verdict is always final.
- A database that cannot be opened or fails its check is set aside and what can be read of it
  salvaged into a fresh file (gateway.set_aside): the hall never stalls.
- A sidecar `<db>-acked` holds how many records were acknowledged as stored; a file that comes
  back holding fewer (a -wal file lost after a kill, an old copy restored) raises `store_short`.
- Custody (SPEC 3.11, gateway.custody): the store has a generation (meta), new with a new file,
  a salvaged one or one that came back short; settled(device) is the device's lowest counter still
  queued, else its mark + 1. A re-offered copy (item[3]) not stored is committed even at or below
  the mark, and the flag is not kept.
- A rated case closes inside its rating's group commit, from data its `case_closer` hands over
  before the transaction (gateway.case_state), and an opened case is written from the data
  Cases hands to commit_case: no transaction calls out of the store.

`Store` is what the rest of the gateway holds. It owns the one connection, the one lock (the MQTT
committer, the RS-485 master and the uplink call from different threads) and every transaction;
its parts do one job each on the connection they are given: gateway.ledger (ids, marks, dead
letters), gateway.upload_queue (the outbox), gateway.case_state (state, callbacks, closings).
"""

import json
import logging
import sqlite3
import threading
import time

from gateway import custody, deadletters, set_aside, store_file
from gateway.acked import AckedSidecar
from gateway.case_state import CaseState
from gateway.ledger import Ledger, dead_row, digest, rating_digest
from gateway.rejects import Throttle
from gateway.store_file import is_corrupt
from gateway.upload_queue import (KIND_CASE, KIND_RATING, Settlement, UploadQueue,
                                  rating_upload_record, record_json)
from protocol import errors, vocab
from protocol import rating as rating_rules

log = logging.getLogger("gateway.store")

ALARM_LOG_EVERY_S = 60.0   # without an on_alarm handler: one log line per alarm name a minute
_STAT_OF_ACK = {vocab.ACK_STORED: "stored", vocab.ACK_DUPLICATE: "duplicates",
                vocab.ACK_DEAD_LETTER: "dead_letters", vocab.ACK_RETRY: "refused_full"}
_REFUSED = (vocab.ACK_RETRY, errors.R_STORE_FULL)


class Store:
    """`dead_capacity` bounds the dead letters in all, `dead_per_device` each device's,
    `dead_unknown` those of devices the registry does not know (see gateway.deadletters);
    `known_device(device) -> bool` is the registry's word (set_known_devices).

    `case_closer`, when set, has closings(ratings) -> [(case_id, callback) or None], one per
    rating: what storing each rating closes (gateway.cases). It is asked before the group commit's
    transaction; its failure is logged and the ratings commit without closing anything."""

    def __init__(self, path, capacity=200_000, alarm_ratio=0.8, on_alarm=None, clock=time.time,
                 dead_capacity=None, callback_capacity=10_000, dead_per_device=1000, dead_unknown=200,
                 known_device=None):
        self.path = str(path)
        self.dead_capacity = dead_capacity if dead_capacity is not None else max(1000, capacity // 4)
        self.on_alarm = on_alarm
        self.case_closer = None
        self.clock = clock
        self.alarms = {}          # alarm name -> times raised
        self._alarm_throttle = Throttle(ALARM_LOG_EVERY_S)
        self.stats = {"stored": 0, "duplicates": 0, "dead_letters": 0, "refused_full": 0,
                      "commits": 0, "uploaded": 0, "rejected": 0, "retried": 0, "dead_evicted": 0,
                      "reoffered": 0}
        self.moved_aside = []     # paths of corrupt files set aside
        self.pending = custody.PendingCounters()
        self.generation = 0
        self._renew_generation = False
        now = self._now
        self.queue = UploadQueue(capacity, alarm_ratio, self._alarm, self.stats)
        self.ledger = Ledger(deadletters.Buckets(min(dead_per_device, self.dead_capacity),
                                                 min(dead_unknown, self.dead_capacity),
                                                 self.dead_capacity, known_device),
                             self._alarm, self.stats, now)
        self.case_state = CaseState(callback_capacity, self._alarm, now)
        self._lock = threading.RLock()
        self._db = None
        self._acked = AckedSidecar(self.path + "-acked", self._alarm)
        self._open()

    def _now(self):
        return self.clock()

    # --- opening, corruption ---------------------------------------------------------------
    def _open(self):
        try:
            self._db = store_file.connect(self.path)
        except sqlite3.DatabaseError as e:
            if not is_corrupt(e):
                raise  # locked, unreadable, no space: not the file's fault; setting it aside loses data
            self._set_aside(e)
        self._load()

    def _set_aside(self, error):
        """Rename the broken file (and its WAL) aside, start fresh, salvage what can be read."""
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        aside = set_aside.move_aside(self.path, self.clock())
        self.moved_aside.append(aside)
        self._db = store_file.connect(self.path)
        salvaged, detail = set_aside.salvage_into(self._db, aside)
        self._renew_generation = True     # its marks may be below what it had acknowledged
        self._alarm("corrupt_store", "database %s unusable (%s); set aside as %s, %d rows salvaged"
                    " (%s)" % (self.path, error, aside, salvaged, detail))

    def _load(self):
        self.queue.load(self._db)
        self.case_state.load(self._db)
        self.ledger.load(self._db)
        self.pending.load(self._db)
        # quick_check read the whole file: counting `ids` is cheap now
        short = self._acked.check(self._db.execute("SELECT COUNT(*) FROM ids").fetchone()[0],
                                  self.path)
        self.generation = custody.load_generation(self._db, self._renew_generation or short)
        self._renew_generation = False

    def set_known_devices(self, known):
        """known(device) -> bool: the registry's word on which devices have their own bucket of
        dead letters; the others share one small bucket."""
        with self._lock:
            self.ledger.buckets.known = known
            self.ledger.load_dead(self._db)

    def close(self):
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._acked.close()

    # --- transactions --------------------------------------------------------------------
    def _guarded(self, work):
        """Run `work()` in a transaction; on corruption set the file aside and try once more.
        Every write transaction of the store goes through here."""
        try:
            with store_file.Txn(self._db):
                return work()
        except sqlite3.DatabaseError as e:
            if not is_corrupt(e):
                raise  # disk full, I/O, a bug: not corruption; the caller refuses for now
            self._set_aside(e)
            self._load()
            with store_file.Txn(self._db):
                return work()

    def _alarm(self, name, detail):
        """Count, and hand to on_alarm (the gateway logs and publishes, rate-limited); without
        one, log here at most once a minute per name (a full store refuses every batch)."""
        self.alarms[name] = self.alarms.get(name, 0) + 1
        if self.on_alarm is not None:
            try:
                self.on_alarm(name, detail)
            except Exception:
                log.exception("alarm callback failed")
            return
        held = self._alarm_throttle.allow(name)
        if held is not None:
            log.error("ALARM %s: %s%s", name, detail, " (+%d more)" % held if held else "")

    # --- ingest side ---------------------------------------------------------------------
    def commit_ratings(self, items):
        """Commit a group of ratings in one transaction; one (ACK_*, R_*) result per item, in order.

        item = (rating, enrichment) or (rating, enrichment, reject_reason): a rating the caller
        already found invalid (bad MAC ...), or a RawPayload, is kept as a dead letter with that
        reason; (rating, enrichment, None, True): a verified copy a device re-offered (SPEC 3.11). Storing a rating also closes its case when the case_closer says so."""
        rids = [None if len(item) > 2 and item[2] else rating_rules.rating_id(item[0]) for item in items]
        closings = self._closings(items, rids)
        with self._lock:
            try:
                results, after = self._guarded(lambda: self._commit_ratings(items, rids, closings))
            except sqlite3.Error as e:
                self._alarm("store_unwritable", "commit failed: %s" % e)
                return [_REFUSED] * len(items)
            self._after_ratings(results, *after)
            return results

    def _closings(self, items, rids):
        """Ask the case_closer, outside any transaction and lock, what each rating would close."""
        if self.case_closer is None:
            return None
        try:
            ratings = [item[0] for item, rid in zip(items, rids) if rid is not None]
            closings = iter(self.case_closer.closings(ratings))
            return [None if rid is None else next(closings) for rid in rids]
        except Exception:
            log.exception("no case closings for this group commit; its ratings commit anyway")
            return None

    def _commit_ratings(self, items, rids, closings):
        db = self._db
        now = self.clock()
        ledger, queue = self.ledger, self.queue
        results = []
        hwm = {}
        dead_rows = []
        replays = []
        full = False
        # One query for the batch's ids and one executemany per table: a group commit costs a few
        # statements, not three per rating.
        known = ledger.stored_digests(db, [rid for rid in rids if rid is not None])
        committed_hwm = ledger.hwm
        room = queue.capacity - queue.pending()
        outbox_rows, id_rows, closing, stored, reoffered = [], [], [], [], 0
        for i, (item, rid) in enumerate(zip(items, rids)):
            rating = item[0]
            if rid is None:
                dead_rows.append(dead_row(KIND_RATING, rating, item[2], now))
                results.append((vocab.ACK_DEAD_LETTER, item[2]))
                continue
            device, counter = rating["device"], rating["counter"]
            d = rating_digest(rating)
            mark = hwm.get(device, committed_hwm.get(device, 0))
            verdict = rating_rules.verdict(counter, mark, known.get(rid), d)
            reoffer = len(item) > 3 and item[3]
            if reoffer:
                verdict = custody.reoffer_verdict(verdict, known.get(rid))
            if verdict[0] == vocab.ACK_DUPLICATE:
                results.append(verdict)
                continue
            if verdict[0] == vocab.ACK_DEAD_LETTER:
                replays.append(rid)
                dead_rows.append(dead_row(KIND_RATING, rating, verdict[1], now))
                results.append((vocab.ACK_DEAD_LETTER, verdict[1]))
                continue
            if len(outbox_rows) >= room:
                full = True
                results.append(_REFUSED)
                continue
            outbox_rows.append((KIND_RATING, rid, 1 if rating_rules.is_bad(rating) else 0,
                                record_json(rating_upload_record(rating, item[1])), now))
            id_rows.append((rid, d))
            known[rid] = d
            hwm[device] = max(counter, mark)      # a re-offered copy may lie below the mark
            stored.append((device, counter))
            reoffered += 1 if reoffer else 0
            results.append((vocab.ACK_STORED, errors.R_OK))
            if closings is not None and closings[i] is not None:
                closing.append(closings[i])
        if outbox_rows:
            queue.add(db, outbox_rows)
            ledger.add(db, id_rows, hwm)
        plan = ledger.prune_dead(db, ledger.insert_dead(db, dead_rows)) if dead_rows else None
        txn, closed = self._close_cases_in(db, closing) if closing else (None, ())
        # Memory follows the file only once the transaction has committed (_after_ratings).
        return results, (hwm, stored, reoffered, plan, replays, full, txn, closed)

    def _close_cases_in(self, db, closings):
        """The group's closings, under a savepoint: their failure is rolled back and logged, and
        the ratings still commit (the cases close alone afterwards: gateway.cases.on_rating)."""
        txn = self.case_state.txn(db)
        db.execute("SAVEPOINT closings")
        try:
            closed = self.case_state.close_in(txn, closings)
        except sqlite3.DatabaseError as e:
            if is_corrupt(e):
                raise           # _guarded sets the file aside and runs the whole group again
            txn, closed = self._undo_closings(db)
        except Exception:
            txn, closed = self._undo_closings(db)
        db.execute("RELEASE closings")
        return txn, closed

    @staticmethod
    def _undo_closings(db):
        log.exception("closing cases inside the group commit failed; the ratings commit anyway")
        db.execute("ROLLBACK TO closings")
        return None, ()

    def _after_ratings(self, results, hwm, stored, reoffered, plan, replays, full, txn, closed):
        if txn is not None:
            self.case_state.after(txn, closed)
        self.ledger.note_marks(hwm)
        self.pending.add(stored)
        added = len(stored)
        self.queue.added(KIND_RATING, added)
        if added:
            self._acked.add(added)
        if plan is not None:
            self.ledger.after_prune(plan)
        stats = self.stats
        stats["commits"] += 1
        stats["reoffered"] += reoffered
        for ack, _ in results:
            stats[_STAT_OF_ACK[ack]] += 1
        for rid in replays:
            self._alarm("replay", "rating %s replayed" % rid)
        if full:
            self.queue.refuse("new ratings")
        self.queue.check_fill()

    def commit_case(self, record, opening=None):
        """Queue a finished case (case upload record with "case_key") for upload: (ACK_*, R_*).

        With `opening` = (case, window name, window), the data of a case being opened (dicts), a
        stored case also gets the next case id, set as "case_id" in both dicts, and both are
        written as state in the same transaction (one fsync to open a case, not four)."""
        key = record["case_key"]
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        with self._lock:
            def work():
                db = self._db
                if self.ledger.is_stored(db, key):
                    return vocab.ACK_DUPLICATE
                if self.queue.pending() >= self.queue.capacity:
                    return vocab.ACK_RETRY
                self.queue.add(db, [(KIND_CASE, key, 0, text, self.clock())])
                self.ledger.add(db, [(key, digest(text.encode("utf-8")))])
                if opening is not None:
                    case, window_name, window = opening
                    case["case_id"] = window["case_id"] = self.case_state.next_case_id(db, self.clock())
                    txn = self.case_state.txn(db)
                    txn.put("case:%d" % case["case_id"], case)
                    txn.put("window:" + window_name, window)
                return vocab.ACK_STORED
            try:
                ack = self._guarded(work)
            except sqlite3.Error as e:
                self._alarm("store_unwritable", "case commit failed: %s" % e)
                return _REFUSED
            if ack == vocab.ACK_STORED:
                self.queue.added(KIND_CASE, 1)
                self._acked.add(1)
                self.queue.check_fill()
            elif ack == vocab.ACK_RETRY:
                self.queue.refuse("case %s" % key)
                return _REFUSED
            return (ack, errors.R_OK)

    # --- upload side ---------------------------------------------------------------------
    def upload_batch(self, limit, after=None):
        """Up to `limit` pending items, bad ratings first (gateway.upload_queue.UploadQueue.batch)."""
        with self._lock:
            return self.queue.batch(self._db, limit, after)

    def settle(self, results):
        """Apply the central side's verdicts [(item_id, outcome, reason)] in one transaction: the
        rejected become dead letters, the retried count an attempt, the rest leave the outbox."""
        settlement = Settlement(results)
        with self._lock:
            now = self.clock()

            def work():
                db = self._db
                new_dead = self.ledger.file_rejected(
                    db, [(key, reason, now) for key, reason in settlement.rejected])
                plan = self.ledger.prune_dead(db, new_dead) if new_dead else None
                return self.queue.settle_in(db, settlement), plan
            removed, plan = self._guarded(work)
            if plan is not None:
                self.ledger.after_prune(plan)
            self.queue.settled(settlement, removed)
            self.pending.remove(settlement.gone)

    def backlog(self):
        with self._lock:
            out = self.queue.backlog(self._db)
            out.update(dead_letters=self.ledger.buckets.count, dead_evicted=self.ledger.dead_evicted)
            return out

    # --- small durable state (open cases, windows, case id sequence), callbacks ----------------
    def state_put(self, name, value):
        with self._lock:
            self._guarded(lambda: self.case_state.txn(self._db).put(name, value))

    def state_delete(self, name):
        with self._lock:
            self._guarded(lambda: self.case_state.txn(self._db).delete(name))

    def meta_put(self, name, value):
        """A number in the store's own meta rows (custody's seq floor), apart from the cases' state."""
        with self._lock:
            self._guarded(lambda: self._db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)",
                                                   (name, str(int(value)))))

    def meta_int(self, name):
        with self._lock:
            return custody.meta_int(self._db, name)

    def state_items(self, prefix=""):
        with self._lock:
            return self.case_state.items(self._db, prefix)

    def close_cases(self, closings):
        """Apply closings [(case_id, callback)] in a transaction of their own (a rating whose
        group commit did not close its case); the case ids that were open and are now closed."""
        with self._lock:
            def work():
                txn = self.case_state.txn(self._db)
                return txn, self.case_state.close_in(txn, closings)
            txn, closed = self._guarded(work)
            self.case_state.after(txn)
            return closed

    def closed_in_commit(self, case_id):
        """True (once) if a group commit closed this case."""
        with self._lock:
            return self.case_state.closed_in_commit(case_id)

    def callbacks_due(self, limit=50):
        """The oldest undelivered callbacks: [(id, event dict, attempts, created)]."""
        with self._lock:
            return self.case_state.due(self._db, limit)

    def callbacks_settle(self, finished=(), failed=None):
        """Forget delivered (or given-up) callbacks; count one more attempt on `failed`."""
        finished = list(finished)
        if not finished and failed is None:
            return
        with self._lock:
            self._guarded(lambda: self.case_state.settle_in(self._db, finished, failed))
            self.case_state.load(self._db)

    def callbacks_pending(self):
        with self._lock:
            return self.case_state.callbacks

    def next_case_id(self):
        """A hall-wide case id that is never handed out twice, across restarts (1 .. 2**32-1)."""
        with self._lock:
            return self._guarded(lambda: self.case_state.next_case_id(self._db, self.clock()))

    # --- inspection ----------------------------------------------------------------------
    def hwm(self, device):
        with self._lock:
            return self.ledger.hwm.get(device, 0)

    def settled(self, device):
        """SPEC 3.11: the device's lowest counter still waiting for the central API, else its
        committed high-water mark + 1. O(1) amortised (gateway.custody.PendingCounters)."""
        with self._lock:
            lowest = self.pending.lowest(device)
            return lowest if lowest is not None else self.ledger.hwm.get(device, 0) + 1

    def dead_letters(self, limit=100, device=None, before_id=None):
        """Dead letters newest first, `limit` of them: of one device only if given, with ids
        below `before_id` if given (the next page starts below the last id of this one)."""
        with self._lock:
            return self.ledger.dead_letters(self._db, limit, device, before_id)

    def clear_dead_letters(self, device=None, up_to_id=None):
        """Delete reviewed dead letters: all, one device's, those up to an id, or both filters.
        Returns how many rows went."""
        with self._lock:
            n = self._guarded(lambda: self.ledger.clear_dead(self._db, device, up_to_id))
            self.ledger.load_dead(self._db)   # an operator's action, rare: recount from the file
        return n

    def stored_ids(self):
        """Every key ever stored (tests and audits)."""
        with self._lock:
            return self.ledger.stored_ids(self._db)
