"""A fake flash that can lose power at any write step, and the outbox power-cut scenario played on
it: for the firmware tests, on CPython and on MicroPython alike."""

from firmware.boards.sim import PowerCut
from firmware.flashfs import Fs
from firmware.outbox import Outbox, OutboxFull


class _File:
    def __init__(self, flash, path, mode):
        self.flash = flash
        self.path = path
        self.writing = "r" not in mode
        self.pending = bytearray()
        self.pos = 0
        self.closed = False

    def write(self, data):
        self.flash.step("write")
        self.pending.extend(data)
        return len(data)

    def flush(self):
        self.flash.step("flush")
        self.flash.files[self.path].extend(self.pending)
        self.pending = bytearray()

    def close(self):
        if self.closed:
            return
        if self.writing and self.pending:
            self.flush()
        self.closed = True
        if self in self.flash.handles:
            self.flash.handles.remove(self)

    def seek(self, pos, whence=0):
        self.pos = pos if whence == 0 else len(self.flash.files[self.path]) + pos
        return self.pos

    def read(self, n=-1):
        self.flash.check()
        self.flash.reads += 1
        data = self.flash.files[self.path]
        end = len(data) if n < 0 else min(len(data), self.pos + n)
        out = bytes(data[self.pos:end])
        self.pos = end
        return out

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class FakeFlash(Fs):
    """A filesystem whose power can be cut at the k-th mutating step (open for writing, write,
    flush, close, rename, remove). At the cut, bytes written but not flushed survive only as a
    prefix of `torn` of their length (0 none, 1 all: the worst cases both), then every later
    call raises PowerCut. `reboot()` gives a fresh powered view of the same surviving files.
    `reads` counts read() calls on open files (how often the firmware reads the flash)."""

    def __init__(self, files=None, cut_at=0, torn=0.5):
        self.files = files if files is not None else {}
        self.cut_at = cut_at
        self.torn = torn
        self.steps = 0
        self.reads = 0
        self.dead = False
        self.handles = []

    def check(self):
        if self.dead:
            raise PowerCut()

    def step(self, what):
        self.check()
        self.steps += 1
        if self.cut_at and self.steps >= self.cut_at:
            for h in self.handles:
                keep = int(len(h.pending) * self.torn)
                self.files[h.path].extend(h.pending[:keep])
                h.pending = bytearray()
            self.dead = True
            raise PowerCut()

    def reboot(self, cut_at=0):
        return FakeFlash(self.files, cut_at, self.torn)

    # --- the firmware.flashfs.Fs interface ---------------------------------------------------
    def open(self, path, mode):
        if "r" in mode:
            self.check()
            if path not in self.files:
                raise OSError(2)
            return _File(self, path, mode)
        self.step("open")
        if "w" in mode or path not in self.files:
            self.files[path] = bytearray()  # truncation is immediate: the worst case
        f = _File(self, path, mode)
        self.handles.append(f)
        return f

    def rename(self, old, new):
        self.step("rename")
        self.files[new] = self.files.pop(old)

    def remove(self, path):
        self.step("remove")
        del self.files[path]

    def exists(self, path):
        self.check()
        return path in self.files

    def mkdir(self, path):
        pass



# --- the power-cut scenario, shared by the CPython and MicroPython tests ------------------------
def payload_for(counter):
    return ("R%d:" % counter).encode() * (1 + counter % 7)


class Journal:
    """What the citizen was told, as the scenario goes."""

    def __init__(self):
        self.attempted = set()   # append called
        self.promised = set()    # append returned: the thank-you was shown
        self.releasing = set()   # release called
        self.released = set()    # release returned
        self.highest = 0


def play(flash, ops, journal, capacity=4, compact_after=3):
    """Run ops ("a",) append / ("r", i) release the i-th live rating; PowerCut escapes."""
    ob = Outbox(flash, "/ob", capacity, compact_after).open()
    for op in ops:
        if op[0] == "a":
            c = ob.high + 1
            journal.attempted.add(c)
            try:
                ob.append(c, payload_for(c))
            except OutboxFull:
                continue
            journal.promised.add(c)
            journal.highest = max(journal.highest, c)
        elif ob.counters:
            c = ob.counters[op[1] % len(ob.counters)]
            if c != ob.counters[0]:
                assert not ob.release(c)   # only the head is ever released (nothing written)
                continue
            journal.releasing.add(c)
            ob.release(c)
            journal.released.add(c)
    return ob


def check_recovered(files, journal, capacity=4):
    """Reboot on the surviving files and check the promises. Returns the problems found."""
    problems = []
    ob = Outbox(FakeFlash(files), "/ob", capacity, 3).open()
    for c in journal.promised:
        if c not in journal.releasing and c not in ob.counters:
            problems.append("lost %d" % c)
    for c in ob.counters:
        if c not in journal.attempted:
            problems.append("phantom %d" % c)
        elif ob.get(c) != payload_for(c):
            problems.append("corrupt %d" % c)
        if c in journal.released:
            problems.append("released %d came back" % c)
    if ob.high < journal.highest:
        problems.append("counter went back %d < %d" % (ob.high, journal.highest))
    # the rebooted outbox keeps working
    ob2 = Outbox(FakeFlash(files), "/ob", capacity, 3).open()
    if not ob2.full():
        c = ob2.high + 1
        ob2.append(c, payload_for(c))
        ob3 = Outbox(FakeFlash(files), "/ob", capacity, 3).open()
        if c not in ob3.counters or ob3.get(c) != payload_for(c):
            problems.append("append after reboot lost")
    return problems


def cut_everywhere(ops, torn, capacity=4):
    """Cut the power at every step of `ops` in turn; returns (steps, problems)."""
    clean = FakeFlash(torn=torn)
    play(clean, ops, Journal(), capacity)
    steps = clean.steps
    problems = []
    for k in range(1, steps + 1):
        flash = FakeFlash(cut_at=k, torn=torn)
        journal = Journal()
        try:
            play(flash, ops, journal, capacity)
        except PowerCut:
            pass
        for p in check_recovered(flash.files, journal, capacity):
            problems.append("cut at %d: %s" % (k, p))
    return steps, problems
