"""Salvage row by row: damaged leaf pages cost the rows on them, not the whole table."""

import os
import re
import sqlite3

from gateway import salvage
from gateway.store import Store
from protocol import errors, vocab
from gw_support import make_rating

STORED = (vocab.ACK_STORED, errors.R_OK)


def leaf_pages(path, table):
    """[(page number, rows on it)] of a table's leaf pages, from SQLite's own page map."""
    db = sqlite3.connect(path)
    try:
        pages = db.execute("SELECT pageno, ncell FROM dbstat WHERE name=? AND pagetype='leaf'"
                           " ORDER BY pageno", (table,)).fetchall()
        size = db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()
    return pages, size


def smash(path, pages, size, fill=b"\x00"):
    with open(path, "r+b") as f:
        for page in pages:
            f.seek((page - 1) * size)
            f.write(fill * size)


def build(path, n=50):
    s = Store(path)
    ratings = [(make_rating("dev-%d" % (i % 3), i // 3 + 1, text="评价" * 60), None) for i in range(n)]
    assert s.commit_ratings(ratings) == [STORED] * n
    s.close()                                  # checkpointed: every page is in the main file
    return ratings


def test_two_damaged_leaf_pages_lose_only_their_rows(tmp_path):
    path = str(tmp_path / "outbox.db")
    ratings = build(path)
    pages, size = leaf_pages(path, "outbox")
    assert len(pages) >= 5
    hit = [pages[1], pages[len(pages) // 2]]
    smash(path, [p for p, _ in hit], size)
    lost = sum(n for _, n in hit)
    alarms = []
    s = Store(path, on_alarm=lambda name, detail: alarms.append((name, detail)))
    pending = {item["item_id"]: item for item in s.upload_batch(1000)}
    assert len(pending) == 50 - lost and lost > 0
    for key, item in pending.items():
        assert item["record"]["rating_id"] == key and item["record"]["text"] == "评价" * 60
    assert set(pending) < {"%s:%d" % (r["device"], r["counter"]) for r, _ in ratings}
    ((name, detail),) = [a for a in alarms if a[0] == "corrupt_store"]
    assert "%d rows salvaged" % (50 - lost) in detail
    assert "outbox %d saved, %d lost" % (50 - lost, lost) in detail
    # The store goes on: dedupe and marks held (ids and devices were intact), new ratings commit.
    assert s.commit_ratings([ratings[0]]) == [(vocab.ACK_DUPLICATE, errors.R_OK)]
    assert s.hwm("dev-0") == 17
    assert s.commit_ratings([(make_rating("dev-0", 18), None)]) == [STORED]
    s.close()


def test_a_damaged_index_and_table_still_give_the_readable_rows(tmp_path):
    """With the upload table's indexes damaged too, the walk still steps over the bad pages."""
    path = str(tmp_path / "outbox.db")
    build(path)
    pages, size = leaf_pages(path, "outbox")
    index_pages, _ = leaf_pages(path, "sqlite_autoindex_outbox_1")
    order_pages, _ = leaf_pages(path, "outbox_order")
    hit = [pages[2], pages[-2]]
    smash(path, [p for p, _ in hit] + [p for p, _ in index_pages + order_pages], size, b"\xa5")
    alarms = []
    s = Store(path, on_alarm=lambda name, detail: alarms.append((name, detail)))
    assert len(s.upload_batch(1000)) == 50 - sum(n for _, n in hit)
    detail = dict(alarms)["corrupt_store"]
    assert re.search(r"outbox \d+ saved, 0 lost \(2 unreadable stretches", detail), detail
    s.close()


def test_lost_ids_and_marks_are_rebuilt_from_the_pending_rows(tmp_path):
    path = str(tmp_path / "outbox.db")
    ratings = build(path, 30)
    ids_pages, size = leaf_pages(path, "ids")
    device_pages, _ = leaf_pages(path, "devices")
    smash(path, [p for p, _ in ids_pages + device_pages], size)
    s = Store(path)
    assert len(s.upload_batch(1000)) == 30
    assert s.hwm("dev-1") == 10                                  # a replay below it is still caught
    assert s.commit_ratings([ratings[1]]) == [(vocab.ACK_DUPLICATE, errors.R_OK)]
    assert s.commit_ratings([(make_rating("dev-1", 3, level=vocab.DISSATISFIED), None)]) == [
        (vocab.ACK_DEAD_LETTER, errors.R_REPLAY)]
    s.close()


def test_rowid_walk_over_many_bad_pages_matches_a_page_by_page_count(tmp_path):
    """The reading alone (no index) on a bare table with every third leaf page damaged, the
    first and the last among them."""
    path = str(tmp_path / "t.db")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    # sparse rowids, as after uploads deleted rows: the probe must cross wide gaps
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i * 7919, "x" * 300) for i in range(600)])
    db.commit()
    db.close()
    pages, size = leaf_pages(path, "t")
    hit = sorted(set(pages[::3] + pages[-1:]))
    smash(path, [p for p, _ in hit], size)
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    rows, report = salvage.rowid_rows(db, "t", "v")
    db.close()
    assert len(rows) == 600 - sum(n for _, n in hit)
    assert [r[0] for r in rows] == sorted(r[0] for r in rows) and all(r[1] == "x" * 300 for r in rows)
    assert report.gaps >= 1 and report.lost == 0
