"""Custody's runs of counters: the outbox's custody copies as a flat array [first, last, ...] of
ascending runs of consecutive counters, 8 bytes a run whatever its length (counters are issued
one after the other and enter custody in order, so a run breaks only at a burnt counter or where
a SETTLE kept marked copies).
"""

from array import array


def bisect(a, c):
    """The index of the first item of sorted `a` not below `c`."""
    lo = 0
    hi = len(a)
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < c:
            lo = mid + 1
        else:
            hi = mid
    return lo


def add(runs, c):
    """Put counter `c`, above every counter in `runs`, into the flat [first, last, ...] runs."""
    if len(runs) and runs[-1] + 1 == c:
        runs[-1] = c
    elif not len(runs) or runs[-1] < c:
        runs.append(c)
        runs.append(c)


def runs_of(counters):
    """The runs of ascending `counters`."""
    runs = array("I")
    for c in counters:
        add(runs, c)
    return runs
