"""A store file that cannot be opened or fails its check: renamed aside with a timestamp (with its
-wal and -shm), and what can still be read of it (gateway.salvage) copied into the fresh file."""

import os
import sqlite3
import time

from gateway import salvage
from gateway.ledger import digest
from gateway.store_file import Txn
from gateway.upload_queue import KIND_CASE, KIND_RATING, loads

# What a damaged file's tables give to the fresh one (rowid tables keep their rowids: order, ids).
TABLES = (("outbox", "kind, key, bad, record, attempts, created"), ("ids", "key, digest"),
          ("devices", "device, hwm"),
          ("dead_letters", "kind, key, device, reason_code, reason, payload, created"),
          ("callbacks", "body, attempts, created"))
_ROWID = {"outbox": "seq", "devices": "rowid", "dead_letters": "id", "callbacks": "id"}


def move_aside(path, now):
    """Rename `path` (and its -wal, -shm) to a free `<path>.corrupt-<UTC stamp>-<pid>[.n]`."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    aside = "%s.corrupt-%s-%d" % (path, stamp, os.getpid())
    n = 0
    while os.path.exists(aside if not n else "%s.%d" % (aside, n)):
        n += 1
    if n:
        aside = "%s.%d" % (aside, n)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, aside + suffix)
    return aside


def salvage_into(db, aside):
    """Copy what can be read from the file set aside into `db`: table by table, row by row where
    a table is damaged. Returns (outbox rows saved, what each table saved and lost)."""
    try:
        old = sqlite3.connect("file:%s?mode=ro" % aside, uri=True)
    except sqlite3.Error:
        return 0, "nothing readable"
    reports = []
    try:
        outbox = []
        for table, cols in TABLES:
            if table == "ids":
                rows, report = salvage.keyed_rows(old, table, cols, "key")
            else:
                rows, report = salvage.rowid_rows(old, table, cols)
            if table == "outbox":
                rows = [row for row in rows if sane_outbox_row(row)]
                outbox = rows
            report.saved = len(rows)
            reports.append(report)
            marks = ",".join("?" * len(rows[0])) if rows else ""
            with Txn(db):
                if rows:
                    db.executemany("INSERT OR IGNORE INTO %s (%s%s) VALUES (%s)" % (
                        table, "" if table == "ids" else _ROWID[table] + ", ", cols, marks), rows)
        with Txn(db):
            rebuild_from_outbox(db, outbox)
    except sqlite3.Error as e:     # the old file is beyond reading: keep what was copied
        reports.append("stopped: %s" % e)
    finally:
        old.close()
    return (reports[0].saved if reports and not isinstance(reports[0], str) else 0,
            "; ".join(str(r) for r in reports))


def sane_outbox_row(row):
    """A row read from a damaged page may be garbage that still parses: keep only what an upload
    would accept (a JSON object; a rating's record naming its own key)."""
    _, kind, key, bad, record, _, _ = row
    if kind not in (KIND_RATING, KIND_CASE) or bad not in (0, 1) or not isinstance(key, str):
        return False
    try:
        obj = loads(record)
    except Exception:
        return False
    if not isinstance(obj, dict):
        return False
    if kind == KIND_RATING:
        device, _, counter = key.rpartition(":")
        return obj.get("rating_id") == key and device != "" and counter.isdigit()
    return obj.get("case_key") == key


def rebuild_from_outbox(db, rows):
    """Pending items imply their `ids` rows and a floor for their devices' high-water marks:
    restore both in case those tables were the damaged ones."""
    ids, marks = [], {}
    for _, kind, key, _, record, _, _ in rows:
        if kind == KIND_CASE:
            ids.append((key, digest(record.encode("utf-8"))))
            continue
        mac = loads(record).get("mac")
        if mac:
            ids.append((key, bytes.fromhex(mac)))
        device, _, counter = key.rpartition(":")
        marks[device] = max(marks.get(device, 0), int(counter))
    db.executemany("INSERT OR IGNORE INTO ids VALUES (?,?)", ids)
    db.executemany("INSERT INTO devices VALUES (?,?) ON CONFLICT (device) DO UPDATE"
                   " SET hwm = max(hwm, excluded.hwm)", list(marks.items()))
