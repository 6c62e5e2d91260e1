"""Custody (SPEC 3.11) on the flash outbox: a plain model of what the outbox must hold, and the
power cut at every write step checked against it. Runs on CPython and MicroPython alike.

An op is ("a",) append the next counter, ("r",) release the outbox head, ("s", generation, seq,
settled, mark_all) a SETTLE's effect, ("u",) a re-offered copy acknowledged again (the lowest
marked one), ("c",) a compaction, ("o",) a reboot (open again)."""

from fw_flash_support import FakeFlash, PowerCut, payload_for
from firmware.outbox import Outbox, OutboxFull


class Model:
    """What the outbox holds, in plain lists: no flash, no ranges."""

    def __init__(self, capacity, keep=True):
        self.capacity = capacity
        self.keep = keep
        self.outbox = []
        self.custody = []
        self.marks = []
        self.gen = 0
        self.seq = 0
        self.high = 0
        self.dropped = 0

    def state(self):
        return (tuple(self.outbox), tuple(self.custody), tuple(self.marks), self.gen, self.seq)

    def reoffer_head(self):
        return self.marks[0] if self.marks else None

    def drop_for_room(self):
        """One custody copy gives way; True when one did."""
        if self.custody and len(self.outbox) + len(self.custody) >= self.capacity:
            c = self.custody.pop(0)
            if c in self.marks:
                self.marks.remove(c)
            self.dropped += 1
            return True
        return False

    def append(self, counter):
        self.outbox.append(counter)
        self.high = counter

    def release(self):
        c = self.outbox.pop(0)
        if self.keep:
            self.custody.append(c)

    def settle(self, gen, seq, settled, mark_all):
        if mark_all:
            self.marks = list(self.custody)
        self.custody = [c for c in self.custody if c >= settled or c in self.marks]
        self.gen, self.seq = gen, seq

    def unmark(self):
        self.marks.pop(0)


def outbox_state(ob):
    copies = list(ob.copies())
    assert ob.kept == len(copies)
    marked = [c for c in copies if ob.marked(c)]
    return (tuple(ob.counters), tuple(copies), tuple(marked), ob.generation, ob.seq)


def model_states(ops, capacity, keep=True):
    """The model's states as the ops go, one per durable record, and for each op the span of
    states (first, last) a power cut inside it may leave."""
    m = Model(capacity, keep)
    states = [m.state()]
    spans = []
    for op in ops:
        first = len(states) - 1
        k = op[0]
        if k == "a":
            if len(m.outbox) < capacity:
                while m.drop_for_room():
                    states.append(m.state())
                m.append(m.high + 1)
                states.append(m.state())
        elif k == "r":
            if m.outbox:
                m.release()
                states.append(m.state())
        elif k == "s":
            m.settle(op[1], op[2], op[3], op[4])
            states.append(m.state())
        elif k == "u":
            if m.marks:
                m.unmark()
                states.append(m.state())
        spans.append((first, len(states) - 1))
    return m, states, spans


def open_outbox(flash, capacity, keep=True):
    return Outbox(flash, "/ob", capacity, 3, custody=keep).open()


def play(flash, ops, progress, capacity, keep=True, journal=None):
    """Run ops on a custody outbox; progress[0] is the index of the op under way. PowerCut
    escapes. `journal`: {"promised": set, "releasing": set} of appends that returned and
    releases that were called."""
    ob = open_outbox(flash, capacity, keep)
    for j in range(len(ops)):
        progress[0] = j
        op = ops[j]
        k = op[0]
        if k == "a":
            try:
                ob.append(ob.high + 1, payload_for(ob.high + 1))
                if journal is not None:
                    journal["promised"].add(ob.high)
            except OutboxFull:
                pass
        elif k == "r":
            if ob.counters:
                if journal is not None:
                    journal["releasing"].add(ob.counters[0])
                assert ob.release(ob.counters[0])
        elif k == "s":
            ob.settle(op[1], op[2], op[3], op[4])
        elif k == "u":
            c = ob.reoffer_head()
            if c is not None:
                assert ob.unmark(c)
        elif k == "c":
            ob.compact()
        elif k == "o":
            ob = open_outbox(flash, capacity, keep)
    progress[0] = len(ops)
    return ob


def check_bytes(ob):
    """Every held rating reads back byte-identical."""
    problems = []
    for c in ob.counters:
        if ob.get(c) != payload_for(c):
            problems.append("corrupt outbox %d" % c)
    for c in ob.copies():
        if ob.copy(c) != payload_for(c):
            problems.append("corrupt custody %d" % c)
    return problems


def cut_everywhere(ops, torn=0.5, capacity=5, keep=True, flash_of=None):
    """Cut the power at every write step of `ops`; after each cut the rebooted outbox must hold
    exactly the model's state before or after the step under way (never an outbox rating lost,
    never a marked copy gone), its bytes intact, and keep working. Returns (steps, problems).
    `flash_of(cut_at)`: the flash to use (default a FakeFlash tearing unflushed bytes at `torn`)."""
    if flash_of is None:
        def flash_of(k):
            return FakeFlash(cut_at=k, torn=torn)
    model, states, spans = model_states(ops, capacity, keep)
    clean = flash_of(0)
    progress = [0]
    ob = play(clean, ops, progress, capacity, keep)
    problems = []
    if outbox_state(ob) != states[-1]:
        problems.append("no cut: %r != model %r" % (outbox_state(ob), states[-1]))
    steps = clean.steps
    for k in range(1, steps + 1):
        flash = flash_of(k)
        progress = [0]
        try:
            play(flash, ops, progress, capacity, keep)
        except PowerCut:
            pass
        j = progress[0]
        if j < len(ops):
            first, last = spans[j]
        else:
            first = last = len(states) - 1
        again = open_outbox(FakeFlash(flash.files), capacity, keep)
        got = outbox_state(again)
        if got not in states[first:last + 1]:
            problems.append("cut at %d (op %d %r): %r not in %r" % (k, j, ops[j] if j < len(ops) else None,
                                                                  got, states[first:last + 1]))
        for p in check_bytes(again):
            problems.append("cut at %d: %s" % (k, p))
        # the rebooted outbox keeps working: a new rating lands and survives a reboot
        if not again.full():
            c = again.high + 1
            again.append(c, payload_for(c))
            third = open_outbox(FakeFlash(flash.files), capacity, keep)
            if c not in third.counters or third.get(c) != payload_for(c):
                problems.append("cut at %d: append after reboot lost" % k)
    return steps, problems


# a fixed walk through every custody change: moves, a new generation marking all, re-offers
# acknowledged, SETTLEs dropping only unmarked copies, drops for room, compactions, reboots
OPS = [("a",), ("a",), ("r",), ("a",), ("r",), ("s", 7, 1, 0, True), ("a",), ("u",), ("s", 7, 2, 9, False),
       ("r",), ("u",), ("a",), ("a",), ("s", 7, 3, 3, False), ("r",), ("c",), ("a",), ("r",), ("a",),
       ("s", 8, 1, 0, True), ("o",), ("u",), ("a",), ("a",), ("s", 8, 2, 0, True), ("r",),
       ("s", 8, 3, 99, False), ("u",), ("u",), ("a",)]
