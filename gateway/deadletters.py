"""Which dead letters to keep: per-device buckets with caps, held in memory so that a group commit
never counts rows in SQL.

Every dead letter belongs to one bucket: its device when the registry knows it, one shared small
bucket for devices it does not know (junk on unknown topics), and one for rows with no device
(upstream rejections of cases). A bucket past its cap gives up its oldest rows; past the global
cap the largest bucket does. So a flood on one topic evicts only its own evidence, and a new dead
letter always has room: the verdict is final and the device moves on.

The store asks plan() inside its transaction (and deletes the ids it returns by primary key there),
then apply()s the plan once the transaction has committed, so memory follows the file.
"""

from collections import deque

UNKNOWN = ("unknown",)    # not a registry token: cannot collide with a device id
NO_DEVICE = ("none",)


class Plan:
    __slots__ = ("popped", "added", "evicted")

    def __init__(self):
        self.popped = {}     # bucket -> rows taken from the left of its committed deque
        self.added = {}      # bucket -> deque of new ids still kept
        self.evicted = {}    # bucket -> ids deleted (committed or new)

    def ids(self):
        return [i for ids in self.evicted.values() for i in ids]


class Buckets:
    def __init__(self, per_device, unknown, total, known=None):
        self.per_device = max(1, per_device)
        self.unknown = max(1, unknown)
        self.total = max(1, total)
        self.known = known          # known(device) -> bool; None: every named device is known
        self.rows = {}              # bucket -> deque of ids, oldest first
        self.count = 0

    def bucket(self, device):
        if device is None or device == "":
            return NO_DEVICE
        if self.known is not None and not self.known(device):
            return UNKNOWN
        return device

    def cap(self, bucket):
        return self.unknown if bucket is UNKNOWN else self.per_device

    def load(self, rows):
        """rows: (id, device) in id order, as the table holds them."""
        self.rows = {}
        for rid, device in rows:
            self.rows.setdefault(self.bucket(device), deque()).append(rid)
        self.count = sum(len(d) for d in self.rows.values())

    def plan(self, new):
        """new: [(bucket, id)] inserted in this transaction, in order. Which ids must go."""
        plan = Plan()
        for bucket, rid in new:
            plan.added.setdefault(bucket, deque()).append(rid)
        sizes = {}
        for bucket in set(plan.added) | set(b for b, d in self.rows.items() if len(d) > self.cap(b)):
            sizes[bucket] = len(self.rows.get(bucket, ())) + len(plan.added.get(bucket, ()))
            for _ in range(sizes[bucket] - self.cap(bucket)):
                self._evict_oldest(plan, bucket)
            sizes[bucket] = min(sizes[bucket], self.cap(bucket))
        total = self.count + len(new) - sum(len(v) for v in plan.evicted.values())
        if total > self.total:
            for bucket, d in self.rows.items():
                sizes.setdefault(bucket, len(d))
            while total > self.total:
                largest = max(sizes, key=sizes.get)   # few buckets: the registry's devices + 2
                self._evict_oldest(plan, largest)
                sizes[largest] -= 1
                total -= 1
        return plan

    def _evict_oldest(self, plan, bucket):
        committed = self.rows.get(bucket, ())
        taken = plan.popped.get(bucket, 0)
        if taken < len(committed):
            rid = committed[taken]       # near the left end: cheap on a deque
            plan.popped[bucket] = taken + 1
        else:
            rid = plan.added[bucket].popleft()
        plan.evicted.setdefault(bucket, []).append(rid)

    def apply(self, plan):
        for bucket, n in plan.popped.items():
            d = self.rows[bucket]
            for _ in range(n):
                d.popleft()
            self.count -= n
        for bucket, ids in plan.added.items():
            if ids:
                self.rows.setdefault(bucket, deque()).extend(ids)
                self.count += len(ids)
        for bucket in [b for b, d in self.rows.items() if not d]:
            del self.rows[bucket]

    def size(self, bucket):
        return len(self.rows.get(bucket, ()))
