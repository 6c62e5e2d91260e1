"""The ledger: every key ever stored with a digest of its content (permanent dedupe, table `ids`),
each device's committed high-water mark (`devices`), and the dead letters (`dead_letters`, bounded
per device and in all by gateway.deadletters).

Its methods run inside the store's transactions on the connection they are given; what memory
holds (marks, buckets) follows the file only after the commit (note_marks, after_prune).
"""

import hashlib

from gateway import deadletters
from gateway.store_file import Txn
from gateway.upload_queue import KIND_RATING
from protocol import codec, errors, schema
from protocol import rating as rating_rules

EVICT_ALARM_EVERY_S = 60.0  # one "dead_letters_evicted" alarm per bucket a minute, not one per row
DEAD_COLUMNS = ("id", "kind", "key", "device", "reason_code", "reason", "payload", "created")


def digest(data):
    return hashlib.sha256(data).digest()[:16]


def rating_digest(rating):
    """What identifies a rating's content: its MAC, else a hash of its signed bytes."""
    mac = rating.get("mac")
    if mac:
        return bytes(mac)
    core = dict((k, v) for k, v in rating.items() if k not in schema.MAC_EXCLUDED)
    return digest(bytes(codec.encode_fields(schema.RATING_FIELDS, core)))


def _reason_name(reason, names=errors.REASON_NAMES):   # looked up once, not per dead letter
    return names.get(reason, str(reason))


def _bucket_name(bucket):
    if bucket is deadletters.UNKNOWN:
        return "devices not in the registry"
    if bucket is deadletters.NO_DEVICE:
        return "records of no device"
    return "device %s" % bucket


def _dead_filter(device, id_test, id_value):
    """(" WHERE ..." or "", args) selecting one device's rows and/or those by id."""
    where, args = [], []
    if device is not None:
        where.append("device=?")
        args.append(device)
    if id_value is not None:
        where.append("id" + id_test)
        args.append(id_value)
    return (" WHERE " + " AND ".join(where) if where else ""), args


class RawPayload:
    """A rating payload too broken to decode, kept as a dead letter by the group committer (not
    with a commit of its own on the network thread: a flood of junk must not stall valid ratings)."""
    __slots__ = ("text", "device")

    def __init__(self, text, device):
        self.text = text
        self.device = device


def dead_row(kind, rating, reason, now):
    """The dead_letters row of a rejected rating (or RawPayload), kept for review."""
    if isinstance(rating, RawPayload):
        payload, key, device = rating.text, None, rating.device
    else:
        device = rating.get("device")
        try:
            payload = codec.dumps(codec.to_obj(schema.RATING_FIELDS, rating))
            key = rating_rules.rating_id(rating)
        except Exception:
            payload, key = repr(rating), None
    return (kind, key, device, reason, _reason_name(reason), payload, now)


class Ledger:
    """`buckets` is the gateway.deadletters.Buckets of the caps in force; `alarm(name, detail)`,
    `stats` (the store's counters) and `clock` are the store's."""

    def __init__(self, buckets, alarm, stats, clock):
        self.buckets = buckets
        self.hwm = {}             # device -> committed high-water mark
        self.dead_evicted = 0     # dead letters evicted, ever (kept in meta)
        self._evict_alarm = {}    # bucket -> [rows evicted since its last alarm, time of that alarm]
        self._alarm = alarm
        self._stats = stats
        self._clock = clock

    def load(self, db):
        self.hwm = dict(db.execute("SELECT device, hwm FROM devices"))
        row = db.execute("SELECT value FROM meta WHERE name='dead_evicted'").fetchone()
        self.dead_evicted = int(row[0]) if row else 0
        self.load_dead(db)

    def load_dead(self, db):
        """The dead letters' buckets from the file (at open, after a clear, when the registry's
        word changes), pruned to the caps in force (they may be lower than when rows were kept)."""
        buckets = self.buckets
        buckets.load(db.execute("SELECT id, device FROM dead_letters ORDER BY id"))
        if buckets.count > buckets.total or any(
                len(d) > buckets.cap(b) for b, d in buckets.rows.items()):
            with Txn(db):
                plan = self.prune_dead(db, [])
            self.after_prune(plan)

    # --- dedupe and marks (inside a commit) --------------------------------------------------
    @staticmethod
    def stored_digests(db, keys):
        """{key: digest} of those keys already in `ids`."""
        found = {}
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            found.update((key, bytes(d)) for key, d in db.execute(
                "SELECT key, digest FROM ids WHERE key IN (%s)" % ",".join("?" * len(part)), part))
        return found

    @staticmethod
    def is_stored(db, key):
        return db.execute("SELECT 1 FROM ids WHERE key=?", (key,)).fetchone() is not None

    @staticmethod
    def add(db, id_rows, marks=None):
        """Remember keys [(key, digest)] for ever, and raise devices' marks {device: counter}."""
        db.executemany("INSERT INTO ids VALUES (?,?)", id_rows)
        if marks:
            db.executemany("INSERT OR REPLACE INTO devices VALUES (?,?)", list(marks.items()))

    def note_marks(self, marks):
        """After the commit that wrote them."""
        self.hwm.update(marks)

    # --- dead letters -----------------------------------------------------------------------
    def insert_dead(self, db, rows):
        """Insert a group's dead letters in one statement: [(bucket, id)]. AUTOINCREMENT gives the
        rows of one statement consecutive ids ending at the table's sequence number."""
        db.executemany("INSERT INTO dead_letters (kind, key, device, reason_code, reason, payload,"
                       " created) VALUES (?,?,?,?,?,?,?)", rows)
        last = db.execute("SELECT seq FROM sqlite_sequence WHERE name='dead_letters'").fetchone()[0]
        first = last - len(rows) + 1
        return [(self.buckets.bucket(row[2]), first + i) for i, row in enumerate(rows)]

    def file_rejected(self, db, rows):
        """Move items the central side rejected from the outbox to the dead letters: rows
        [(key, reason text, now)]; a rating is filed under its device, a case under none.
        Returns the new rows [(bucket, id)]."""
        new_dead = []
        for key, reason, now in rows:
            new_dead.extend((self.buckets.bucket(device), i) for i, device in db.execute(
                "INSERT INTO dead_letters (kind, key, device, reason_code, reason, payload,"
                " created) SELECT kind, key, CASE WHEN kind=? THEN ? END, NULL, ?, record, ?"
                " FROM outbox WHERE key=? RETURNING id, device",
                (KIND_RATING, key.rpartition(":")[0] or None, reason, now, key)).fetchall())
        return new_dead

    def prune_dead(self, db, new_dead):
        """Inside the transaction that added `new_dead` [(bucket, id)]: delete (by primary key)
        the oldest rows of every bucket past its cap. The plan is applied to memory after COMMIT."""
        plan = self.buckets.plan(new_dead)
        gone = plan.ids()
        if gone:
            db.executemany("DELETE FROM dead_letters WHERE id=?", [(i,) for i in gone])
            db.execute("INSERT OR REPLACE INTO meta VALUES ('dead_evicted', ?)",
                       (str(self.dead_evicted + len(gone)),))
        return plan

    def after_prune(self, plan):
        self.buckets.apply(plan)
        now = self._clock()
        for bucket, ids in plan.evicted.items():
            self.dead_evicted += len(ids)
            self._stats["dead_evicted"] += len(ids)
            held = self._evict_alarm.setdefault(bucket, [0, None])
            held[0] += len(ids)
            if held[1] is None or now - held[1] >= EVICT_ALARM_EVERY_S:
                self._alarm("dead_letters_evicted", "%s: %d oldest dead letters evicted (caps: %d a"
                            " device, %d unknown devices, %d in all)"
                            % (_bucket_name(bucket), held[0], self.buckets.per_device,
                               self.buckets.unknown, self.buckets.total))
                held[:] = [0, now]

    # --- inspection -------------------------------------------------------------------------
    @staticmethod
    def dead_letters(db, limit, device, before_id):
        where, args = _dead_filter(device, "<?", before_id)
        rows = db.execute("SELECT %s FROM dead_letters%s ORDER BY id DESC LIMIT ?" % (
            ", ".join(DEAD_COLUMNS), where), args + [limit]).fetchall()
        return [dict(zip(DEAD_COLUMNS, row)) for row in rows]

    @staticmethod
    def clear_dead(db, device, up_to_id):
        """Inside a transaction: delete reviewed dead letters; how many went."""
        where, args = _dead_filter(device, "<=?", up_to_id)
        return db.execute("DELETE FROM dead_letters" + where, args).rowcount

    @staticmethod
    def stored_ids(db):
        return [row[0] for row in db.execute("SELECT key FROM ids")]

