"""A test flash that, at a power cut, may lose or reorder the bytes written since the last flush.

fw_flash_support.FakeFlash keeps unflushed bytes only as a prefix, so it cannot tell whether a writer
flushes in the right order: a commit byte can never outlive the bytes before it. A real NOR part
under LittleFS programs a pending buffer page by page, and a cut mid-sync may leave any subset of
those pages programmed (cache eviction, a metadata commit racing the data) or a prefix plus one
half-programmed page. ReorderFlash picks one such outcome per seed: the pages are split at fixed
file offsets (`page` bytes), a lost page reads back erased (0xFF), a torn page has some bits
programmed (NOR only pulls bits 1 -> 0). Flushed bytes are durable, as before.

Each cut also records (path, intended, survived): the file as the writer meant it and as it is
now, so a test can check an ordering promise byte by byte. Runs on CPython and MicroPython.
"""

from fw_flash_support import FakeFlash, Journal, PowerCut, check_recovered, play



class Rng:
    """xorshift32: the same loss patterns on every runtime for a given seed."""

    def __init__(self, seed):
        self.x = (seed * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF or 1

    def next(self):
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x

    def below(self, n):
        return self.next() % n


# loss patterns: seed 0 loses every unflushed byte, seed 1 keeps them all; the others draw one
ALL_LOST, ALL_KEPT, SUBSET, PREFIX_TORN = "lost", "kept", "subset", "prefix+torn"


def pattern_of(seed):
    if seed == 0:
        return ALL_LOST
    if seed == 1:
        return ALL_KEPT
    return SUBSET if seed % 2 == 0 else PREFIX_TORN


def survive(base, pending, kind, rng, page):
    """The bytes that land after `base` (the durable length) when a cut hits `pending`:
    a bytearray, possibly shorter than pending, possibly with erased holes."""
    if kind == ALL_LOST or not pending:
        return bytearray()
    if kind == ALL_KEPT:
        return bytearray(pending)
    # page i covers pending[starts[i]:starts[i + 1]]; pages sit at absolute file offsets
    starts = [0]
    nxt = page - base % page
    while nxt < len(pending):
        starts.append(nxt)
        nxt += page
    starts.append(len(pending))
    npages = len(starts) - 1
    out = bytearray(b"\xff" * len(pending))  # erased NOR reads 0xFF
    end = 0
    if kind == SUBSET:
        for i in range(npages):
            if rng.below(2):
                a, b = starts[i], starts[i + 1]
                out[a:b] = pending[a:b]
                end = b
    else:
        whole = rng.below(npages)          # pages before `whole` programmed, page `whole` torn
        a, b = starts[whole], starts[whole + 1]
        out[:a] = pending[:a]
        for j in range(a, b):
            new = pending[j]
            out[j] = new | (rng.next() & 0xFF & ~new)  # some of its 0 bits never programmed
        end = b
    return out[:end]


class ReorderFlash(FakeFlash):
    """FakeFlash whose cut applies a seeded page-loss pattern to every handle's unflushed bytes."""

    def __init__(self, files=None, cut_at=0, seed=0, page=8):
        FakeFlash.__init__(self, files, cut_at, 0.0)
        self.seed = seed
        self.kind = pattern_of(seed)
        self.rng = Rng(seed)
        self.page = page
        self.cuts = []  # (path, intended, survived) per handle with pending bytes at the cut

    def step(self, what):
        self.check()
        self.steps += 1
        if self.cut_at and self.steps >= self.cut_at:
            for h in self.handles:
                data = self.files[h.path]
                intended = bytes(data) + bytes(h.pending)
                data.extend(survive(len(data), h.pending, self.kind, self.rng, self.page))
                h.pending = bytearray()
                self.cuts.append((h.path, intended, bytes(data)))
            self.dead = True
            raise PowerCut()

    def reboot(self, cut_at=0):
        return ReorderFlash(self.files, cut_at, self.seed, self.page)


def cut_everywhere_reordered(ops, seeds, page=8, capacity=4, check_cut=None):
    """Cut at every step of `ops`, and for each cut try every seed's loss pattern; reboot and
    check the outbox's promises (fw_flash_support.check_recovered), plus `check_cut(path, intended,
    survived)` -> problems on each cut's raw bytes. Returns (steps, cuts tried, problems)."""
    clean = ReorderFlash(page=page)
    play(clean, ops, Journal(), capacity)
    steps = clean.steps
    problems = []
    tried = 0
    for k in range(1, steps + 1):
        for seed in seeds:
            flash = ReorderFlash(cut_at=k, seed=seed, page=page)
            journal = Journal()
            try:
                play(flash, ops, journal, capacity)
            except PowerCut:
                pass
            tried += 1
            found = check_recovered(flash.files, journal, capacity)
            if check_cut is not None:
                for path, intended, survived in flash.cuts:
                    found += check_cut(path, intended, survived)
            for p in found:
                problems.append("cut at %d seed %d (%s): %s" % (k, seed, pattern_of(seed), p))
    return steps, tried, problems
