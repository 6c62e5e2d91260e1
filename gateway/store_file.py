"""The store's SQLite file: its schema, opening it in WAL mode with synchronous=FULL, transactions,
and what counts as a damaged file (gateway.salvage deals with one)."""

import sqlite3

SCHEMA_VERSION = 1
SCHEMA = (
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


class StoreError(Exception):
    pass


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


def connect(path):
    """One connection, in autocommit mode (transactions are explicit: Txn), checked whole."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        db.execute("PRAGMA synchronous=FULL")
        sync = db.execute("PRAGMA synchronous").fetchone()[0]
        if mode.lower() != "wal" or sync != 2:
            # Without both, a power cut may lose ratings already ACKed: refuse to start.
            raise StoreError("%s: journal_mode=%s synchronous=%s; WAL and FULL (2) are required"
                             % (path, mode, sync))
        for statement in SCHEMA:
            db.execute(statement)
        row = db.execute("PRAGMA quick_check").fetchone()
        if not row or row[0] != "ok":
            raise Corrupt("quick_check: %s" % (row,))
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    except BaseException:
        db.close()
        raise
    return db


class Txn:
    """`with Txn(db):` one write transaction (BEGIN IMMEDIATE), rolled back on any error."""

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
