"""A store that comes back holding less than it acknowledged raises `store_short` with the numbers."""

import os
import subprocess
import sys

from gateway.store import Store
from protocol import errors, vocab
from gw_support import make_rating

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORED = (vocab.ACK_STORED, errors.R_OK)

# Commits ratings with checkpoints off (they stay in the -wal file), says so, then dies by SIGKILL.
CHILD = r"""
import os, signal, sys
sys.path.insert(0, %(root)r); sys.path.insert(0, %(root)r + "/tests")
from gateway.store import Store
from gw_support import make_rating
s = Store(%(path)r)
s._db.execute("PRAGMA wal_autocheckpoint=0")
s.commit_case({"case_key": "SN1#3", "serials": ["SN1"], "node": 3})
for first in range(11, 41, 6):
    results = s.commit_ratings([(make_rating("k", c), None) for c in range(first, first + 6)])
    assert all(r[0] == 0 for r in results), results
sys.stdout.write("acked\n"); sys.stdout.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def run_and_kill(path):
    child = subprocess.run([sys.executable, "-c", CHILD % {"root": ROOT, "path": path}],
                           stdout=subprocess.PIPE, timeout=60)
    assert child.stdout == b"acked\n" and child.returncode == -9


def reopen(path):
    alarms = []
    return Store(path, on_alarm=lambda n, d: alarms.append((n, d))), alarms


def test_a_lost_wal_file_after_a_kill_is_reported_with_the_numbers(tmp_path):
    path = str(tmp_path / "outbox.db")
    s = Store(path)
    assert s.commit_ratings([(make_rating("k", c), None) for c in range(1, 11)]) == [STORED] * 10
    s.close()                                        # these ten are checkpointed into the file
    run_and_kill(path)
    assert os.path.getsize(path + "-wal") > 0
    os.remove(path + "-wal")
    os.remove(path + "-shm")
    s, alarms = reopen(path)
    assert alarms == [("store_short", "%s holds 10 stored records but 41 were acknowledged: 31 missing"
                       % path)]
    assert s.backlog()["ratings"] == 10 and s.hwm("k") == 10
    assert s.commit_ratings([(make_rating("k", 11), None)]) == [STORED]   # and it goes on
    s.close()
    s, alarms = reopen(path)                         # said once: the new baseline is what it holds
    assert alarms == []
    s.close()


def test_a_kill_that_keeps_the_wal_file_is_no_alarm(tmp_path):
    path = str(tmp_path / "outbox.db")
    run_and_kill(path)
    s, alarms = reopen(path)
    assert alarms == [] and s.backlog()["ratings"] == 30 and s.backlog()["cases"] == 1
    s.close()


def test_a_deleted_database_next_to_its_sidecar_is_reported(tmp_path):
    path = str(tmp_path / "outbox.db")
    s = Store(path)
    s.commit_ratings([(make_rating("k", c), None) for c in range(1, 4)])
    s.commit_case({"case_key": "SN2#3", "serials": ["SN2"], "node": 3})
    s.close()
    os.remove(path)
    s, alarms = reopen(path)
    assert [n for n, _ in alarms] == ["store_short"] and "0 stored records but 4" in alarms[0][1]
    s.close()


def test_an_unreadable_sidecar_is_started_afresh_without_alarm(tmp_path):
    path = str(tmp_path / "outbox.db")
    with open(path + "-acked", "wb") as f:
        f.write(b"\xff\xfegarbage" * 9)
    s, alarms = reopen(path)
    assert alarms == []
    s.commit_ratings([(make_rating("k", 1), None)])
    s.close()
    with open(path + "-acked", "rb") as f:
        assert int(f.read()) == 1
