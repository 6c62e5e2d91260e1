"""Reading what can still be read from a damaged SQLite file, row by row.

One damaged page makes a whole-table SELECT fail, but a table's other pages are usually fine. So a
rowid table is read in rowid order from both ends up to the damage; inside each stretch not yet
read, seeks at ever finer spacing look for a page that reads (a seek into a damaged page fails),
and the reading goes on from there both ways. Then the rowids any readable index still lists, and
the reading did not see, are fetched one at a time: those that cannot be read are the rows lost,
counted exactly while an index is intact.
"""

import itertools
import sqlite3

MIN_ROWID = -(1 << 63)
MAX_ROWID = (1 << 63) - 1


class TableReport:
    __slots__ = ("table", "saved", "lost", "gaps")

    def __init__(self, table):
        self.table = table
        self.saved = 0
        self.lost = 0        # rows known to exist (an index lists them) that cannot be read
        self.gaps = 0        # unreadable stretches stepped over: rows there no index lists are lost too

    def __str__(self):
        text = "%s %d saved, %d lost" % (self.table, self.saved, self.lost)
        if self.gaps:
            text += " (%d unreadable stretch%s, maybe more lost)" % (self.gaps, "es" if self.gaps > 1 else "")
        return text


def rowid_rows(db, table, cols):
    """[(rowid, *cols)] of every readable row of a rowid table in rowid order, and a TableReport
    (saved is left for the caller, who may refuse rows that read but make no sense)."""
    report = TableReport(table)
    select = "SELECT rowid, %s FROM %s" % (cols, table)
    try:
        return db.execute(select + " ORDER BY rowid").fetchall(), report
    except sqlite3.DatabaseError:
        pass
    rows = {}
    low, _ = _walk(db, select, MIN_ROWID, 1, MIN_ROWID - 1, MAX_ROWID + 1, rows)
    high, _ = _walk(db, select, MAX_ROWID, -1, MIN_ROWID - 1, MAX_ROWID + 1, rows)
    # Stretches (lo, hi), bounds excluded, where no row has been read yet.
    todo = [(MIN_ROWID - 1 if low is None else low, MAX_ROWID + 1 if high is None else high)]
    while todo:
        lo, hi = todo.pop()
        if hi - lo <= 1:
            continue
        at = _find_readable(db, select, lo, hi)
        if at is None:
            report.gaps += 1
            continue
        up, damaged = _walk(db, select, at, 1, lo, hi, rows)
        if damaged:
            todo.append((up, hi))
        down, damaged = _walk(db, select, at - 1, -1, lo, hi, rows)
        if damaged:
            todo.append((lo, at if down is None else down))
    for rowid in sorted(_indexed_rowids(db, table) - set(rows)):
        try:
            row = db.execute(select + " WHERE rowid = ?", (rowid,)).fetchone()
        except sqlite3.DatabaseError:
            report.lost += 1
            continue
        if row is not None:      # None: the index is stale or damaged, not a row lost
            rows[rowid] = row
    return [rows[k] for k in sorted(rows)], report


def _query(db, select, start, direction, lo, hi, limit):
    """Rows from `start` on, one way, strictly between lo and hi."""
    if direction > 0:
        return db.execute(select + " WHERE rowid BETWEEN ? AND ? ORDER BY rowid LIMIT ?",
                          (start, hi - 1, limit))
    return db.execute(select + " WHERE rowid BETWEEN ? AND ? ORDER BY rowid DESC LIMIT ?",
                      (lo + 1, start, limit))


def _walk(db, select, start, direction, lo, hi, rows):
    """Read rows from `start` one way (strictly inside (lo, hi)) into `rows` until the damage or
    the end: (the last rowid read or None, True if stopped by damage)."""
    last = None
    while lo < start < hi:
        try:
            chunk = _query(db, select, start, direction, lo, hi, 256).fetchall()
        except sqlite3.DatabaseError:
            chunk = None
        if chunk is None:
            # A cursor reads a row ahead, so a failing statement hides the last good row it had:
            # up to the damage, one row a statement.
            try:
                chunk = _query(db, select, start, direction, lo, hi, 1).fetchall()
            except sqlite3.DatabaseError:
                return last, True
        if not chunk:
            break
        for row in chunk:
            rows[row[0]] = row
        last = chunk[-1][0]
        start = last + direction
    return last, False


def _find_readable(db, select, lo, hi):
    """A rowid in (lo, hi) from which a whole row inside (lo, hi) reads, or None: every rowid
    when the stretch is short, else points at ever finer spacing (about 4,350 probes at most)."""
    width = hi - lo
    if width <= 4096:
        points = range(lo + 1, hi)
    else:   # first steps doubling away from both ends and from zero (rowids are mostly small
        # and positive; the stretch past the last page read may reach to 2**63), then evenly
        points = itertools.chain(
            (at for j in range(64) for at in (lo + (1 << j), hi - (1 << j), 1 << j, -(1 << j))
             if lo < at < hi),
            (lo + width * k // (1 << depth) for depth in range(1, 13) for k in range(1, 1 << depth, 2)))
    for at in points:
        try:
            if _query(db, select, at, 1, lo, hi, 1).fetchone() is not None:
                return at
        except sqlite3.DatabaseError:
            pass
    return None


def _indexed_rowids(db, table):
    """Every rowid the table's indexes still list (each index read as far as it goes)."""
    found = set()
    try:
        names = [row[0] for row in db.execute("SELECT name FROM pragma_index_list(?)", (table,))]
    except sqlite3.DatabaseError:
        return found
    for name in names:
        try:
            for (rowid,) in db.execute('SELECT rowid FROM %s INDEXED BY "%s"' % (table, name)):
                found.add(rowid)
        except sqlite3.DatabaseError:
            pass
    return found


def keyed_rows(db, table, cols, key):
    """Rows of a WITHOUT ROWID table: in key order up to the damage, then backwards from the end
    down to it. Rows between are lost uncounted (report.gaps)."""
    report = TableReport(table)
    rows = []
    try:
        for row in db.execute("SELECT %s FROM %s ORDER BY %s" % (cols, table, key)):
            rows.append(row)
        return rows, report
    except sqlite3.DatabaseError:
        report.gaps = 1
    low = rows[-1][0] if rows else None
    try:
        for row in db.execute("SELECT %s FROM %s ORDER BY %s DESC" % (cols, table, key)):
            if low is not None and row[0] <= low:
                break
            rows.append(row)
    except sqlite3.DatabaseError:
        pass
    return rows, report
