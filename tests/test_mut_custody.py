"""Custody behaviours no other test pinned, found by mutation testing (docs/mutation.md)."""

from firmware.custody_runs import add, runs_of


def test_a_counter_not_above_the_last_leaves_the_runs_as_they_are():
    runs = runs_of([1, 2, 3, 5, 6, 7])
    assert list(runs) == [1, 3, 5, 7]
    for c in (7, 6, 4, 2, 1):        # held already, or below the newest: callers rebuild instead
        add(runs, c)
    assert list(runs) == [1, 3, 5, 7]
    add(runs, 8)
    add(runs, 10)
    assert list(runs) == [1, 3, 5, 8, 10, 10]


def test_runs_hold_every_32_bit_counter():
    top = 0xFFFFFFFF                  # a RATING counter is a U32 (protocol.schema)
    runs = runs_of([0x80000000, 0x80000001, top])
    assert list(runs) == [0x80000000, 0x80000001, top, top]
