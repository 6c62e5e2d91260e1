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
- Bounded: past `capacity` pending items new data is refused (ACK_RETRY, the device keeps it) with
  an alarm; old rows are never dropped. An alarm also fires when the fill crosses `alarm_ratio`.
- Dead letters keep the raw payload and the reason, for review. They are bounded per device and in
  all (gateway.deadletters): a new one evicts its device's oldest, counted and alarmed, so a
  dead-letter verdict is always final and a flood on one topic crowds out no other device.
- A database that cannot be opened or fails its check is renamed aside with a timestamp, readable
  rows are salvaged into a fresh file, row by row where a table is damaged (gateway.salvage), and
  an alarm says what each table saved and lost: the hall never stalls.
- A sidecar `<db>-acked` holds how many records were acknowledged as stored; a file that comes
  back holding fewer (a -wal file lost after a kill, an old copy restored) raises `store_short`.
One connection guarded by a lock: the MQTT committer, the RS-485 master and the uplink may call
from different threads.
"""

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time

try:  # the upload side decodes every queued record: orjson does it in half the time
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - stdlib fallback, same results
    _loads = json.loads
try:  # the ingest side writes one record per rating: orjson in a quarter of the time
    from orjson import dumps as _orjson_dumps
except ImportError:  # pragma: no cover
    _orjson_dumps = None

from gateway import deadletters, salvage
from gateway.rejects import Throttle
from protocol import codec, errors, schema, vocab
from protocol import rating as rating_rules

log = logging.getLogger("gateway.store")

SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)",
    # Pending uploads, ratings and cases together so both drain oldest first.
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
    " key TEXT NOT NULL UNIQUE, bad INTEGER NOT NULL, record TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS outbox_order ON outbox (bad DESC, seq)",
    # Every key ever stored: permanent dedupe.
    "CREATE TABLE IF NOT EXISTS ids (key TEXT PRIMARY KEY, digest BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS devices (device TEXT PRIMARY KEY, hwm INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT,"
    " key TEXT, device TEXT, reason_code INTEGER, reason TEXT, payload TEXT, created REAL)",
    # Listing and clearing one device's dead letters (an older store gains it on open).
    "CREATE INDEX IF NOT EXISTS dead_letters_device ON dead_letters (device, id)",
    # Queueing-system callbacks ("rated", "not_rated") until delivered: a restart loses none.
    "CREATE TABLE IF NOT EXISTS callbacks (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL)",
)

ALARM_LOG_EVERY_S = 60.0   # without an on_alarm handler: one log line per alarm name a minute
EVICT_ALARM_EVERY_S = 60.0  # one "dead_letters_evicted" alarm per bucket a minute, not one per row
DEAD_COLUMNS = ("id", "kind", "key", "device", "reason_code", "reason", "payload", "created")
KIND_RATING = "rating"
KIND_CASE = "case"
OUTCOMES = ("accepted", "duplicate", "rejected", "retry")
_SETTLE_STATS = {"accepted": "uploaded", "duplicate": "uploaded", "rejected": "rejected",
                 "retry": "retried"}
ENRICHMENT_KEYS = ("matter_code", "matter_name", "staff_id", "staff_name", "window", "applicant")


def _digest(data):
    return hashlib.sha256(data).digest()[:16]


# What a damaged file's tables give to the fresh one (rowid tables keep their rowids: order, ids).
_SALVAGE = (("outbox", "kind, key, bad, record, attempts, created"), ("ids", "key, digest"),
            ("devices", "device, hwm"),
            ("dead_letters", "kind, key, device, reason_code, reason, payload, created"),
            ("callbacks", "body, attempts, created"))
_ROWID = {"outbox": "seq", "devices": "rowid", "dead_letters": "id", "callbacks": "id"}


def _reason_name(reason, names=errors.REASON_NAMES):   # looked up once, not per dead letter
    return names.get(reason, str(reason))


def _acked_text(n):
    return b"%020d\n" % n     # fixed width: each write covers the last, in one page


def _sane_outbox_row(row):
    """A row read from a damaged page may be garbage that still parses: keep only what an upload
    would accept (a JSON object; a rating's record naming its own key)."""
    _, kind, key, bad, record, _, _ = row
    if kind not in (KIND_RATING, KIND_CASE) or bad not in (0, 1) or not isinstance(key, str):
        return False
    try:
        obj = _loads(record)
    except Exception:
        return False
    if not isinstance(obj, dict):
        return False
    if kind == KIND_RATING:
        device, _, counter = key.rpartition(":")
        return obj.get("rating_id") == key and device != "" and counter.isdigit()
    return obj.get("case_key") == key


def rating_digest(rating):
    """What identifies a rating's content: its MAC, else a hash of its signed bytes."""
    mac = rating.get("mac")
    if mac:
        return bytes(mac)
    core = dict((k, v) for k, v in rating.items() if k not in schema.MAC_EXCLUDED)
    return _digest(bytes(codec.encode_fields(schema.RATING_FIELDS, core)))


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


class StoreError(Exception):
    pass


class StateTxn:
    """The small state table and the callback queue, inside a group commit's transaction: what a
    `close_hook` may touch, so that closing a rated case costs no transaction (fsync) of its own
    and a crash cannot separate a stored rating from its case's closing."""

    def __init__(self, store, db):
        self._store = store
        self._db = db
        self.callbacks = 0
        self.dropped = 0

    def get(self, name):
        row = self._db.execute("SELECT value FROM meta WHERE name=?", ("state:" + name,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, name, value):
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (
            "state:" + name, json.dumps(value, ensure_ascii=False, separators=(",", ":"))))

    def delete(self, name):
        self._db.execute("DELETE FROM meta WHERE name=?", ("state:" + name,))

    def add_callback(self, callback):
        """Queue a queueing-system callback; False (and an alarm after the commit) when full."""
        if self._store._callbacks + self.callbacks >= self._store.callback_capacity:
            self.dropped += 1
            return False
        self._db.execute("INSERT INTO callbacks (body, created) VALUES (?,?)", (
            json.dumps(callback, ensure_ascii=False, separators=(",", ":")), self._store.clock()))
        self.callbacks += 1
        return True


class RawPayload:
    """A rating payload too broken to decode, kept as a dead letter by the group committer (not
    with a commit of its own on the network thread: a flood of junk must not stall valid ratings)."""
    __slots__ = ("text", "device")

    def __init__(self, text, device):
        self.text = text
        self.device = device


class Corrupt(sqlite3.DatabaseError):
    """The file fails its integrity check."""


_CORRUPT_CODES = (11, 26)   # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes: the low byte)


def is_corrupt(error):
    """Only a damaged file is set aside; a locked database, a constraint or a full disk is not
    corruption (setting a healthy file aside would strand whatever another writer adds to it)."""
    if isinstance(error, Corrupt):
        return True
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _CORRUPT_CODES


class Store:
    """`dead_capacity` bounds the dead letters in all, `dead_per_device` each device's,
    `dead_unknown` those of devices the registry does not know (see gateway.deadletters);
    `known_device(device) -> bool` is the registry's word (set_known_devices)."""

    def __init__(self, path, capacity=200_000, alarm_ratio=0.8, on_alarm=None, clock=time.time,
                 dead_capacity=None, callback_capacity=10_000, dead_per_device=1000, dead_unknown=200,
                 known_device=None):
        self.path = str(path)
        self.capacity = capacity
        self.callback_capacity = callback_capacity
        self.alarm_ratio = alarm_ratio
        self.dead_capacity = dead_capacity if dead_capacity is not None else max(1000, capacity // 4)
        self._buckets = deadletters.Buckets(min(dead_per_device, self.dead_capacity),
                                            min(dead_unknown, self.dead_capacity),
                                            self.dead_capacity, known_device)
        self._evict_alarm = {}    # bucket -> [rows evicted since its last alarm, time of that alarm]
        self.on_alarm = on_alarm
        # close_hook(StateTxn, ratings): called inside each group commit with the ratings it
        # stores (gateway.cases closes their cases there). Its failure is rolled back to a
        # savepoint and logged; the ratings still commit.
        self.close_hook = None
        self.clock = clock
        self.alarms = {}          # alarm name -> times raised
        self._alarm_throttle = Throttle(ALARM_LOG_EVERY_S)
        self.stats = {"stored": 0, "duplicates": 0, "dead_letters": 0, "refused_full": 0,
                      "commits": 0, "uploaded": 0, "rejected": 0, "retried": 0, "dead_evicted": 0}
        self.moved_aside = []     # paths of corrupt files set aside
        self._lock = threading.RLock()
        self._fill_alarmed = False
        self._db = None
        self._acked_fd = None
        self._open()

    # --- opening, corruption ---------------------------------------------------------------
    def _connect(self):
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            db.execute("PRAGMA synchronous=FULL")
            sync = db.execute("PRAGMA synchronous").fetchone()[0]
            if mode.lower() != "wal" or sync != 2:
                # Without both, a power cut may lose ratings already ACKed: refuse to start.
                raise StoreError("%s: journal_mode=%s synchronous=%s; WAL and FULL (2) are required"
                                 % (self.path, mode, sync))
            for statement in _SCHEMA:
                db.execute(statement)
            row = db.execute("PRAGMA quick_check").fetchone()
            if not row or row[0] != "ok":
                raise Corrupt("quick_check: %s" % (row,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        except BaseException:
            db.close()
            raise
        return db

    def _open(self):
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as e:
            if not is_corrupt(e):
                raise  # locked, unreadable, no space: not the file's fault; setting it aside loses data
            self._set_aside(e)
        self._load_counts()

    def _set_aside(self, error):
        """Rename the broken file (and its WAL) aside, start fresh, salvage what can be read."""
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self.clock()))
        aside = "%s.corrupt-%s-%d" % (self.path, stamp, os.getpid())
        n = 0
        while os.path.exists(aside if not n else "%s.%d" % (aside, n)):
            n += 1
        if n:
            aside = "%s.%d" % (aside, n)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, aside + suffix)
        self.moved_aside.append(aside)
        self._db = self._connect()
        salvaged, detail = self._salvage(aside)
        self._alarm("corrupt_store", "database %s unusable (%s); set aside as %s, %d rows salvaged"
                    " (%s)" % (self.path, error, aside, salvaged, detail))

    def _salvage(self, aside):
        """Copy what can be read from the file set aside: table by table, row by row where a table
        is damaged (gateway.salvage). Returns (outbox rows saved, what each table saved and lost)."""
        try:
            old = sqlite3.connect("file:%s?mode=ro" % aside, uri=True)
        except sqlite3.Error:
            return 0, "nothing readable"
        reports = []
        try:
            outbox = []
            for table, cols in _SALVAGE:
                if table == "ids":
                    rows, report = salvage.keyed_rows(old, table, cols, "key")
                else:
                    rows, report = salvage.rowid_rows(old, table, cols)
                if table == "outbox":
                    rows = [row for row in rows if _sane_outbox_row(row)]
                    outbox = rows
                report.saved = len(rows)
                reports.append(report)
                marks = ",".join("?" * len(rows[0])) if rows else ""
                with self._txn():
                    if rows:
                        self._db.executemany("INSERT OR IGNORE INTO %s (%s%s) VALUES (%s)" % (
                            table, "" if table == "ids" else _ROWID[table] + ", ", cols, marks), rows)
            with self._txn():
                self._rebuild_from_outbox(outbox)
        except sqlite3.Error as e:     # the old file is beyond reading: keep what was copied
            reports.append("stopped: %s" % e)
        finally:
            old.close()
        return (reports[0].saved if reports and not isinstance(reports[0], str) else 0,
                "; ".join(str(r) for r in reports))

    def _rebuild_from_outbox(self, rows):
        """Pending items imply their `ids` rows and a floor for their devices' high-water marks:
        restore both in case those tables were the damaged ones."""
        ids, marks = [], {}
        for _, kind, key, _, record, _, _ in rows:
            if kind == KIND_CASE:
                ids.append((key, _digest(record.encode("utf-8"))))
                continue
            mac = _loads(record).get("mac")
            if mac:
                ids.append((key, bytes.fromhex(mac)))
            device, _, counter = key.rpartition(":")
            marks[device] = max(marks.get(device, 0), int(counter))
        self._db.executemany("INSERT OR IGNORE INTO ids VALUES (?,?)", ids)
        self._db.executemany("INSERT INTO devices VALUES (?,?) ON CONFLICT (device) DO UPDATE"
                             " SET hwm = max(hwm, excluded.hwm)", list(marks.items()))

    def _load_counts(self):
        db = self._db
        self._counts = {KIND_RATING: 0, KIND_CASE: 0}
        for kind, n in db.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind"):
            self._counts[kind] = n
        self._hwm = dict(db.execute("SELECT device, hwm FROM devices"))
        self._callbacks = db.execute("SELECT COUNT(*) FROM callbacks").fetchone()[0]
        row = db.execute("SELECT value FROM meta WHERE name='dead_evicted'").fetchone()
        self._dead_evicted = int(row[0]) if row else 0
        self._load_dead()
        self._check_acked()

    # --- what was acknowledged: a sidecar to catch a store that comes back short ---------------
    def _check_acked(self):
        """Compare the records the file holds with those acknowledged as stored (the sidecar
        `<db>-acked`): fewer (a lost -wal file, a restored copy, a salvage) raises `store_short`
        with the numbers, and the store goes on from what it holds."""
        self._acked = self._db.execute("SELECT COUNT(*) FROM ids").fetchone()[0]   # quick_check read it all
        if self._acked_fd is None:
            try:
                self._acked_fd = os.open(self.path + "-acked", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as e:
                log.warning("no acknowledgement sidecar (%s): a short store goes unnoticed", e)
                return
        said = os.pread(self._acked_fd, 64, 0)
        try:
            said = int(said) if said else None
        except ValueError:
            log.warning("acknowledgement sidecar unreadable (%r): starting it afresh", said[:32])
            said = None
        if said is not None and said > self._acked:
            self._alarm("store_short", "%s holds %d stored records but %d were acknowledged: %d"
                        " missing" % (self.path, self._acked, said, said - self._acked))
        self._note_acked()
        try:
            os.ftruncate(self._acked_fd, len(_acked_text(0)))   # an old longer text's tail
        except OSError:
            pass

    def _note_acked(self):
        """After each commit that stored something: one pwrite, no fsync. A killed process's write
        is in the page cache and survives; a power cut may lose it, which only makes the count
        lower (never a false alarm): the database itself was fsynced before this line."""
        if self._acked_fd is not None:
            try:
                os.pwrite(self._acked_fd, _acked_text(self._acked), 0)
            except OSError:
                pass

    def _load_dead(self):
        """The dead letters' buckets from the file (at open, after a clear, when the registry's
        word changes), pruned to the caps in force (they may be lower than when rows were kept)."""
        self._buckets.load(self._db.execute("SELECT id, device FROM dead_letters ORDER BY id"))
        if self._buckets.count > self._buckets.total or any(
                len(d) > self._buckets.cap(b) for b, d in self._buckets.rows.items()):
            with self._txn():
                plan = self._prune_dead(self._db, [])
            self._after_prune(plan)

    def set_known_devices(self, known):
        """known(device) -> bool: the registry's word on which devices have their own bucket of
        dead letters; the others share one small bucket."""
        with self._lock:
            self._buckets.known = known
            self._load_dead()

    def close(self):
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._acked_fd is not None:
                os.close(self._acked_fd)
                self._acked_fd = None

    # --- transactions --------------------------------------------------------------------
    class _Txn:
        def __init__(self, db):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind, value, tb):
            if kind is None:
                try:
                    self.db.execute("COMMIT")
                    return False
                except sqlite3.Error:
                    self._rollback()   # a failed COMMIT (BUSY) leaves the transaction open
                    raise
            self._rollback()
            return False

        def _rollback(self):
            if self.db.in_transaction:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass

    def _txn(self):
        return self._Txn(self._db)

    def _guarded(self, work):
        """Run `work()` in a transaction; on corruption set the file aside and try once more."""
        try:
            with self._txn():
                return work()
        except sqlite3.DatabaseError as e:
            if not is_corrupt(e):
                raise  # disk full, I/O, a bug: not corruption; the caller refuses for now
            self._set_aside(e)
            self._load_counts()
            with self._txn():
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

    def _pending(self):
        return self._counts[KIND_RATING] + self._counts[KIND_CASE]

    def _check_fill(self):
        fill = self._pending() / float(self.capacity)
        if fill >= self.alarm_ratio and not self._fill_alarmed:
            self._fill_alarmed = True
            self._alarm("store_fill", "outbox %.0f%% full (%d of %d)"
                        % (fill * 100, self._pending(), self.capacity))
        elif fill < self.alarm_ratio * 0.9:
            self._fill_alarmed = False

    # --- ingest side ---------------------------------------------------------------------
    def commit_ratings(self, items):
        """Commit a group of ratings in one transaction; one (ACK_*, R_*) result per item, in order.

        item = (rating, enrichment) or (rating, enrichment, reject_reason): a rating the caller
        already found invalid (bad MAC ...), or a RawPayload, is kept as a dead letter with that
        reason."""
        with self._lock:
            try:
                results, after = self._guarded(lambda: self._commit_ratings(items))
            except sqlite3.Error as e:
                self._alarm("store_unwritable", "commit failed: %s" % e)
                return [(vocab.ACK_RETRY, errors.R_STORE_FULL)] * len(items)
            self._apply_after_commit(results, *after)
            return results

    def _commit_ratings(self, items):
        db = self._db
        now = self.clock()
        results = []
        hwm = {}
        dead_rows = []
        replays = []
        full = False
        # One query for the batch's ids and one executemany per table: a group commit costs a few
        # statements, not three per rating.
        rids = [None if len(item) > 2 and item[2] else rating_rules.rating_id(item[0]) for item in items]
        known = self._stored_digests([rid for rid in rids if rid is not None])
        outbox_rows, id_rows = [], []
        for item, rid in zip(items, rids):
            rating, enrichment = item[0], item[1]
            if rid is None:
                results.append(self._dead_letter(KIND_RATING, rating, item[2], now, dead_rows))
                continue
            device, counter = rating["device"], rating["counter"]
            digest = rating_digest(rating)
            verdict = rating_rules.verdict(counter, hwm.get(device, self._hwm.get(device, 0)),
                                           known.get(rid), digest)
            if verdict[0] == vocab.ACK_DUPLICATE:
                results.append(verdict)
                continue
            if verdict[0] == vocab.ACK_DEAD_LETTER:
                replays.append(rid)
                results.append(self._dead_letter(KIND_RATING, rating, verdict[1], now, dead_rows))
                continue
            if self._pending() + len(outbox_rows) >= self.capacity:
                full = True
                results.append((vocab.ACK_RETRY, errors.R_STORE_FULL))
                continue
            record = rating_upload_record(rating, enrichment)
            outbox_rows.append((KIND_RATING, rid, 1 if rating_rules.is_bad(rating) else 0,
                                record_json(record), now))
            id_rows.append((rid, digest))
            known[rid] = digest
            hwm[device] = counter
            results.append((vocab.ACK_STORED, errors.R_OK))
        if outbox_rows:
            db.executemany("INSERT INTO outbox (kind, key, bad, record, created) VALUES (?,?,?,?,?)",
                           outbox_rows)
            db.executemany("INSERT INTO ids VALUES (?,?)", id_rows)
            db.executemany("INSERT OR REPLACE INTO devices VALUES (?,?)", list(hwm.items()))
        plan = self._prune_dead(db, self._insert_dead(db, dead_rows)) if dead_rows else None
        # Memory follows the file only once the transaction has committed (see commit_ratings).
        added = {KIND_RATING: len(outbox_rows)}
        txn = None
        if self.close_hook is not None and outbox_rows:
            stored = [item[0] for item, result in zip(items, results)
                      if result[0] == vocab.ACK_STORED]
            txn = self._run_close_hook(db, stored)
        return results, (hwm, added[KIND_RATING], plan, replays, full, txn)

    def _run_close_hook(self, db, stored):
        txn = StateTxn(self, db)
        db.execute("SAVEPOINT close_hook")
        try:
            self.close_hook(txn, stored)
        except sqlite3.DatabaseError as e:
            if is_corrupt(e):
                raise           # _guarded sets the file aside and runs the whole group again
            txn = self._undo_close_hook(db)
        except Exception:
            txn = self._undo_close_hook(db)
        db.execute("RELEASE close_hook")
        return txn

    def _undo_close_hook(self, db):
        log.exception("closing cases inside the group commit failed; the ratings commit anyway")
        db.execute("ROLLBACK TO close_hook")
        return None

    def _stored_digests(self, keys):
        """{key: digest} of those keys already in `ids`."""
        found = {}
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            found.update((key, bytes(digest)) for key, digest in self._db.execute(
                "SELECT key, digest FROM ids WHERE key IN (%s)" % ",".join("?" * len(part)), part))
        return found

    def _apply_after_commit(self, results, hwm, added, plan, replays, full, txn=None):
        if txn is not None:
            self._callbacks += txn.callbacks
            if txn.dropped:
                self._alarm("callbacks_full", "%d callbacks undelivered: dropping %d"
                            % (self._callbacks, txn.dropped))
        self._hwm.update(hwm)
        self._counts[KIND_RATING] += added
        if added:
            self._acked += added
            self._note_acked()
        if plan is not None:
            self._after_prune(plan)
        self.stats["commits"] += 1
        for ack, _ in results:
            key = {vocab.ACK_STORED: "stored", vocab.ACK_DUPLICATE: "duplicates",
                   vocab.ACK_DEAD_LETTER: "dead_letters", vocab.ACK_RETRY: "refused_full"}[ack]
            self.stats[key] += 1
        for rid in replays:
            self._alarm("replay", "rating %s replayed" % rid)
        if full:
            self._alarm("store_full", "outbox full (%d items): refusing new ratings" % self.capacity)
        self._check_fill()

    def _dead_letter(self, kind, rating, reason, now, dead_rows):
        """Keep a rejected rating (or RawPayload) for review. Always final: the device is released
        and moves on; room is made by evicting its bucket's oldest rows (_prune_dead), never by
        refusing, since a device sends only its oldest rating and would be stuck behind this one."""
        if isinstance(rating, RawPayload):
            payload, key, device = rating.text, None, rating.device
        else:
            device = rating.get("device")
            try:
                payload = codec.dumps(codec.to_obj(schema.RATING_FIELDS, rating))
                key = rating_rules.rating_id(rating)
            except Exception:
                payload, key = repr(rating), None
        dead_rows.append((kind, key, device, reason, _reason_name(reason), payload, now))
        return (vocab.ACK_DEAD_LETTER, reason)

    def _insert_dead(self, db, rows):
        """Insert a group's dead letters in one statement: [(bucket, id)]. AUTOINCREMENT gives the
        rows of one statement consecutive ids ending at the table's sequence number."""
        db.executemany("INSERT INTO dead_letters (kind, key, device, reason_code, reason, payload,"
                       " created) VALUES (?,?,?,?,?,?,?)", rows)
        last = db.execute("SELECT seq FROM sqlite_sequence WHERE name='dead_letters'").fetchone()[0]
        first = last - len(rows) + 1
        return [(self._buckets.bucket(row[2]), first + i) for i, row in enumerate(rows)]

    def _prune_dead(self, db, new_dead):
        """Inside the transaction that added `new_dead` [(bucket, id)]: delete (by primary key)
        the oldest rows of every bucket past its cap. The plan is applied to memory after COMMIT."""
        plan = self._buckets.plan(new_dead)
        gone = plan.ids()
        if gone:
            db.executemany("DELETE FROM dead_letters WHERE id=?", [(i,) for i in gone])
            db.execute("INSERT OR REPLACE INTO meta VALUES ('dead_evicted', ?)",
                       (str(self._dead_evicted + len(gone)),))
        return plan

    def _after_prune(self, plan):
        self._buckets.apply(plan)
        now = self.clock()
        for bucket, ids in plan.evicted.items():
            self._dead_evicted += len(ids)
            self.stats["dead_evicted"] += len(ids)
            held = self._evict_alarm.setdefault(bucket, [0, None])
            held[0] += len(ids)
            if held[1] is None or now - held[1] >= EVICT_ALARM_EVERY_S:
                self._alarm("dead_letters_evicted", "%s: %d oldest dead letters evicted (caps: %d a"
                            " device, %d unknown devices, %d in all)"
                            % (_bucket_name(bucket), held[0], self._buckets.per_device,
                               self._buckets.unknown, self._buckets.total))
                held[:] = [0, now]

    def commit_case(self, record, open_state=None):
        """Queue a finished case (case upload record with "case_key") for upload: (ACK_*, R_*).

        With `open_state(StateTxn, case_id)`, a stored case also gets the next case id and its
        state written in the same transaction (one fsync to open a case, not four)."""
        key = record["case_key"]
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        digest = _digest(text.encode("utf-8"))
        with self._lock:
            def work():
                row = self._db.execute("SELECT digest FROM ids WHERE key=?", (key,)).fetchone()
                if row is not None:
                    return vocab.ACK_DUPLICATE
                if self._pending() >= self.capacity:
                    return vocab.ACK_RETRY
                self._db.execute("INSERT INTO outbox (kind, key, bad, record, created) VALUES (?,?,?,?,?)",
                                 (KIND_CASE, key, 0, text, self.clock()))
                self._db.execute("INSERT INTO ids VALUES (?,?)", (key, digest))
                if open_state is not None:
                    open_state(StateTxn(self, self._db), self._next_case_id())
                return vocab.ACK_STORED
            try:
                ack = self._guarded(work)
            except sqlite3.Error as e:
                self._alarm("store_unwritable", "case commit failed: %s" % e)
                return (vocab.ACK_RETRY, errors.R_STORE_FULL)
            if ack == vocab.ACK_STORED:
                self._counts[KIND_CASE] += 1
                self._acked += 1
                self._note_acked()
                self._check_fill()
                return (ack, errors.R_OK)
            if ack == vocab.ACK_RETRY:
                self._alarm("store_full", "outbox full (%d items): refusing case %s" % (self.capacity, key))
                return (ack, errors.R_STORE_FULL)
            return (ack, errors.R_OK)

    # --- upload side ---------------------------------------------------------------------
    def upload_batch(self, limit, after=None):
        """Up to `limit` pending items: bad ratings first, then everything oldest first.

        `after` is the cursor (last bad seq, last other seq) of the batches already handed out and
        still in flight (the uplink keeps it): items up to it are skipped, so pipelined batches never
        re-read or re-send an item in flight. A bad rating committed meanwhile has a larger seq
        than the bad cursor, so it still goes ahead of the remaining good ones."""
        bad_after, other_after = after or (0, 0)
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, bad, key, kind, record, attempts FROM outbox WHERE bad=1 AND seq>?"
                " ORDER BY seq LIMIT ?", (bad_after, limit)).fetchall()
            if len(rows) < limit:
                rows += self._db.execute(
                    "SELECT seq, bad, key, kind, record, attempts FROM outbox WHERE bad=0 AND seq>?"
                    " ORDER BY seq LIMIT ?", (other_after, limit - len(rows))).fetchall()
        return [{"item_id": key, "kind": kind, "record": _loads(record), "attempts": attempts,
                 "seq": seq, "bad": bad} for seq, bad, key, kind, record, attempts in rows]

    def settle(self, results):
        """Apply the central side's verdicts: [(item_id, outcome, reason)], set by set: one
        statement per outcome (per 500 ids), all in one transaction. An id settled already (a
        repeated answer) is skipped; an id listed twice counts its first verdict."""
        verdicts = {}
        for item_id, outcome, reason in results:
            if outcome not in OUTCOMES:
                raise StoreError("unknown outcome %r for %s" % (outcome, item_id))
            verdicts.setdefault(item_id, (outcome, reason))
        with self._lock:
            removed = {KIND_RATING: 0, KIND_CASE: 0}
            moved = [0]
            now = self.clock()
            retry = [(key,) for key, (outcome, _) in verdicts.items() if outcome == "retry"]
            rejected = [(KIND_RATING, key.rpartition(":")[0] or None,
                         "rejected upstream: %s" % (reason or "no reason given"), now, key)
                        for key, (outcome, reason) in verdicts.items() if outcome == "rejected"]
            gone = [key for key, (outcome, _) in verdicts.items() if outcome != "retry"]

            def work():
                db = self._db
                if retry:
                    db.executemany("UPDATE outbox SET attempts = attempts + 1 WHERE key=?", retry)
                new_dead = []
                for row in rejected:    # a rating is filed under its device, a case under none
                    new_dead.extend((self._buckets.bucket(device), i) for i, device in db.execute(
                        "INSERT INTO dead_letters (kind, key, device, reason_code, reason, payload,"
                        " created) SELECT kind, key, CASE WHEN kind=? THEN ? END, NULL, ?, record, ?"
                        " FROM outbox WHERE key=? RETURNING id, device", row).fetchall())
                moved[0] = self._prune_dead(db, new_dead) if new_dead else None
                for start in range(0, len(gone), 500):
                    chunk = gone[start:start + 500]
                    for (kind,) in db.execute("DELETE FROM outbox WHERE key IN (%s) RETURNING kind"
                                              % ",".join("?" * len(chunk)), chunk).fetchall():
                        removed[kind] += 1
            self._guarded(work)
            for kind, n in removed.items():
                self._counts[kind] -= n
            if moved[0] is not None:
                self._after_prune(moved[0])
            for _, outcome, _ in results:
                self.stats[_SETTLE_STATS[outcome]] += 1
            self._check_fill()

    def backlog(self):
        with self._lock:
            pending = self._pending()
            return {"ratings": self._counts[KIND_RATING], "cases": self._counts[KIND_CASE],
                    "dead_letters": self._buckets.count, "dead_evicted": self._dead_evicted,
                    "capacity": self.capacity,
                    "fill": min(1.0, pending / float(self.capacity))}

    # --- small durable state (open cases, case id sequence) ----------------------------------
    def state_put(self, name, value):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._guarded(lambda: self._db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)",
                                                   ("state:" + name, text)))

    def state_delete(self, name):
        with self._lock:
            self._guarded(lambda: self._db.execute("DELETE FROM meta WHERE name=?", ("state:" + name,)))

    def state_items(self, prefix=""):
        with self._lock:
            rows = self._db.execute("SELECT name, value FROM meta WHERE name >= ? AND name < ?",
                                    ("state:" + prefix, "state:" + prefix + "\uffff")).fetchall()
        return [(name[6:], json.loads(value)) for name, value in rows]

    def close_case(self, case_name, window_name=None, window_state=None, callback=None):
        """One transaction: forget an open case's state, save its window's new state, and queue
        the queueing system's callback. False when the callback had to be dropped (table full)."""
        body = None if callback is None else json.dumps(callback, ensure_ascii=False,
                                                        separators=(",", ":"))
        with self._lock:
            room = body is not None and self._callbacks < self.callback_capacity

            def work():
                db = self._db
                db.execute("DELETE FROM meta WHERE name=?", ("state:" + case_name,))
                if window_name is not None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (
                        "state:" + window_name,
                        json.dumps(window_state, ensure_ascii=False, separators=(",", ":"))))
                if room:
                    db.execute("INSERT INTO callbacks (body, created) VALUES (?,?)", (body, self.clock()))
            self._guarded(work)
            if room:
                self._callbacks += 1
            elif body is not None:
                self._alarm("callbacks_full", "%d callbacks undelivered: dropping one" % self._callbacks)
            return body is None or room

    def callbacks_due(self, limit=50):
        """The oldest undelivered callbacks: [(id, event dict, attempts, created)]."""
        with self._lock:
            rows = self._db.execute("SELECT id, body, attempts, created FROM callbacks ORDER BY id"
                                    " LIMIT ?", (limit,)).fetchall()
        return [(cid, json.loads(body), attempts, created) for cid, body, attempts, created in rows]

    def callbacks_settle(self, finished=(), failed=None):
        """Forget delivered (or given-up) callbacks; count one more attempt on `failed`."""
        finished = list(finished)
        if not finished and failed is None:
            return
        with self._lock:
            def work():
                self._db.executemany("DELETE FROM callbacks WHERE id=?", [(i,) for i in finished])
                if failed is not None:
                    self._db.execute("UPDATE callbacks SET attempts = attempts + 1 WHERE id=?", (failed,))
            self._guarded(work)
            self._callbacks = self._db.execute("SELECT COUNT(*) FROM callbacks").fetchone()[0]

    def callbacks_pending(self):
        with self._lock:
            return self._callbacks

    def next_case_id(self):
        """A hall-wide case id that is never handed out twice, across restarts (1 .. 2**32-1)."""
        with self._lock:
            return self._guarded(self._next_case_id)

    def _next_case_id(self):
        row = self._db.execute("SELECT value FROM meta WHERE name='case_seq'").fetchone()
        n = int(row[0]) + 1 if row else 1
        if n > 0xFFFFFFFF:
            n = 1
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('case_seq', ?)", (str(n),))
        return n

    # --- inspection ----------------------------------------------------------------------
    def hwm(self, device):
        with self._lock:
            return self._hwm.get(device, 0)

    def dead_letters(self, limit=100, device=None, before_id=None):
        """Dead letters newest first, `limit` of them: of one device only if given, with ids
        below `before_id` if given (the next page starts below the last id of this one)."""
        where, args = [], []
        if device is not None:
            where.append("device=?")
            args.append(device)
        if before_id is not None:
            where.append("id<?")
            args.append(before_id)
        sql = "SELECT %s FROM dead_letters%s ORDER BY id DESC LIMIT ?" % (
            ", ".join(DEAD_COLUMNS), " WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            rows = self._db.execute(sql, args + [limit]).fetchall()
        return [dict(zip(DEAD_COLUMNS, row)) for row in rows]

    def clear_dead_letters(self, device=None, up_to_id=None):
        """Delete reviewed dead letters: all, one device's, those up to an id, or both filters.
        Returns how many rows went."""
        where, args = [], []
        if device is not None:
            where.append("device=?")
            args.append(device)
        if up_to_id is not None:
            where.append("id<=?")
            args.append(up_to_id)
        sql = "DELETE FROM dead_letters" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            n = self._guarded(lambda: self._db.execute(sql, args).rowcount)
            self._load_dead()   # an operator's action, rare: recount from the file
        return n

    def stored_ids(self):
        """Every key ever stored (tests and audits)."""
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT key FROM ids")]


def _bucket_name(bucket):
    if bucket is deadletters.UNKNOWN:
        return "devices not in the registry"
    if bucket is deadletters.NO_DEVICE:
        return "records of no device"
    return "device %s" % bucket


class GroupCommitter:
    """One thread that turns a stream of ratings into group commits.

    submit() from any thread; while one commit waits for its fsync the next ones queue up and go
    in the following transaction together. `done(result)` is called on the committer thread
    after the transaction is durable, with result = (ACK_*, R_*): only then may anyone ACK."""

    _STOP = object()

    def __init__(self, store, max_batch=512):
        import queue
        self.store = store
        self.max_batch = max_batch
        self._queue = queue.SimpleQueue()
        self.batches = 0
        self.items = 0
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def submit(self, rating, enrichment, done, reject=None):
        item = (rating, enrichment) if reject is None else (rating, enrichment, reject)
        self._queue.put((item, done))

    def commit_now(self, rating, enrichment=None, reject=None, timeout=30.0):
        """Blocking helper (RS-485 thread): submit and wait for the durable result."""
        box = []
        event = threading.Event()

        def done(result):
            box.append(result)
            event.set()
        self.submit(rating, enrichment, done, reject)
        if not event.wait(timeout):
            return (vocab.ACK_RETRY, errors.R_STORE_FULL)
        return box[0]

    def depth(self):
        return self._queue.qsize()

    def close(self):
        self._queue.put(self._STOP)
        self._thread.join(10)

    def _run(self):
        q = self._queue
        while True:
            first = q.get()
            if first is self._STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = q.get_nowait()
                except Exception:
                    break
                if nxt is self._STOP:
                    stop = True
                    break
                batch.append(nxt)
            self.commit_batch(batch)
            if stop:
                return

    def commit_batch(self, batch):
        """Commit [(item, done)] in one transaction on the calling thread, then call each done(result):
        for a caller that gathers its own groups (the MQTT bridge on its ingest thread, which
        then publishes the ACKs without a hop to another thread)."""
        try:
            results = self.store.commit_ratings([item for item, _ in batch])
        except Exception:
            log.exception("group commit failed; every item is refused for now")
            results = [(vocab.ACK_RETRY, errors.R_STORE_FULL)] * len(batch)
        self.batches += 1
        self.items += len(batch)
        for (_, done), result in zip(batch, results):
            try:
                done(result)
            except Exception:
                log.exception("commit callback failed")
