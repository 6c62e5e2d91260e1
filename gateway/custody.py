"""Custody (SPEC 3.11): a device keeps each rating it was told is committed until the gateway says
the central API holds it, and offers it again to a gateway whose store is new. The gateway's side:

- The store's **generation**: a random non-zero 64-bit number made with the store and kept in its
  `meta` table (load_generation). A new data directory, a store set aside and salvaged, or one
  that came back holding fewer records than were acknowledged (`store_short`) gets a new one:
  every device then re-offers what it holds.
- The **settled mark** of a device: its lowest counter still in the upload queue, else its
  committed high-water mark + 1 (dead letters count as settled: they never go upstream).
  PendingCounters keeps each device's queued counters in a heap, filled once at open and moved
  at each commit and each settlement: reading the mark is O(1), never a scan of the queue.
- **SETTLE** records, signed under the device's key (protocol.auth.sign_settle), `seq` the unix
  time in ms and never below the last one plus 1 (a floor kept in the store, reserved ahead so a
  clock set back after a restart cannot make a device take a SETTLE as stale).
- When to send one (Custody): RS-485 in place of a POLL (rs485_settle), MQTT retained on the
  device's `settle` topic (mqtt_due, run by the gateway's loop).
- Devices that never said they hold custody (no `custody` or `generation` in any IDLE or STATUS:
  firmware without custody, or a device that holds nothing yet) get no SETTLE on RS-485; one that
  refuses a SETTLE gets none for REFUSED_BACKOFF_S. Its ratings flow as before either way.
"""

import asyncio
import heapq
import logging
import os
import threading
import time

from gateway.store_file import Txn
from protocol import auth, errors, vocab

log = logging.getLogger("gateway.custody")

GENERATION = "generation"       # meta row: the store's generation (decimal text)
SEQ_FLOOR = "settle_seq_floor"  # meta row: every seq sent so far is below this
SEQ_RESERVE_MS = 3_600_000      # the floor is written this far ahead (one write an hour at most)
RS485_EVERY_S = 60.0            # a SETTLE for a moved mark to a device holding custody, at most
GENERATION_RESEND_S = 5.0       # a device still naming another generation: again after this
REFUSED_BACKOFF_S = 600.0       # a device that refused a SETTLE (no custody in its firmware)
MQTT_EVERY_S = 2.0              # a device's retained SETTLE republished at most this often
MQTT_TICK_S = 0.5


def new_generation():
    while True:
        value = int.from_bytes(os.urandom(8), "big")
        if value:
            return value


def meta_int(db, name):
    row = db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
    try:
        return int(row[0]) if row else 0
    except (TypeError, ValueError):
        return 0


def load_generation(db, renew=False):
    """The store's generation; made and written (its own transaction) when it has none, or anew
    when `renew` (the store lost what it had acknowledged)."""
    generation = 0 if renew else meta_int(db, GENERATION)
    if not 0 < generation < 1 << 64:
        generation = new_generation()
        with Txn(db):
            db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (GENERATION, str(generation)))
    return generation


def _split(key):
    device, _, counter = key.rpartition(":")
    return (device, int(counter)) if device and counter.isdigit() else (None, None)


class PendingCounters:
    """Each device's counters in the upload queue: a heap with lazy deletion (a counter leaves
    the live set at once, the heap when it reaches the top)."""

    def __init__(self):
        self._heaps = {}
        self._live = {}

    def load(self, db):
        self._heaps, self._live = {}, {}
        self.add(_split(key) for (key,) in db.execute("SELECT key FROM outbox WHERE kind='rating'"))

    def add(self, pairs):
        for device, counter in pairs:
            if device is None:
                continue
            live = self._live.setdefault(device, set())
            if counter not in live:
                live.add(counter)
                heapq.heappush(self._heaps.setdefault(device, []), counter)

    def remove(self, keys):
        """Keys that left the queue (uploaded, duplicate, rejected upstream); others are ignored."""
        for key in keys:
            device, counter = _split(key)
            live = self._live.get(device)
            if live is not None:
                live.discard(counter)

    def lowest(self, device):
        heap, live = self._heaps.get(device), self._live.get(device)
        while heap and heap[0] not in live:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def count(self, device):
        return len(self._live.get(device, ()))


class _Peer:
    __slots__ = ("custody", "generation", "answered_mark", "sent_at",
                 "refused_at", "reoffer", "reoffer_for", "published", "published_at", "unsure")

    def __init__(self):
        self.custody = None          # copies the device holds, as it last said (None: never)
        self.generation = None       # the generation its last IDLE named
        self.answered_mark = None    # `settled` of the last SETTLE it answered (RS-485)
        self.sent_at = None          # mono time of that SETTLE
        self.refused_at = None       # mono time it refused one
        self.reoffer = False         # the next SETTLE asks for a re-offer
        self.reoffer_for = None      # the STATUS counter that request was for (once per detection)
        self.published = None        # (generation, settled) last published (MQTT)
        self.published_at = None
        self.unsure = False          # it offered again a rating we had answered (RS-485)


class Custody:
    """The gateway's custody: `store` (generation, settled(), state), `registry` (keys)."""

    def __init__(self, store, registry, enabled=True, clock=time.time, mono=time.monotonic):
        self.store = store
        self.registry = registry
        self.enabled = enabled
        self.clock = clock
        self.mono = mono
        self.stats = {"settles_sent": 0, "settles_refused": 0, "reoffer_requests": 0}
        self._peers = {}
        self._lock = threading.Lock()
        self.rs485_every_s = RS485_EVERY_S
        self._seq = 0
        self._seq_floor = 0
        self._seq_lock = threading.Lock()
        self._connected_epoch = None

    def _peer(self, device_id):
        p = self._peers.get(device_id)
        if p is None:
            p = self._peers[device_id] = _Peer()
        return p

    def summary(self):
        """/status: whether custody is on, the store's generation, what was re-offered."""
        generation = self.store.generation
        return dict(self.stats, enabled=self.enabled, generation=generation,
                    generation_hex="%016x" % generation, reoffered=self.store.stats["reoffered"])

    # --- the record ---------------------------------------------------------------------------
    def _next_seq(self):
        """Unix ms, never below the last plus 1, nor below what was sent before a restart."""
        with self._seq_lock:       # the buses' threads and the loop
            if not self._seq_floor:
                self._seq_floor = self._seq = _read_floor(self.store)
            self._seq = seq = max(int(self.clock() * 1000), self._seq + 1)
            if seq >= self._seq_floor:
                self._seq_floor = seq + SEQ_RESERVE_MS
                self.store.meta_put(SEQ_FLOOR, self._seq_floor)
            return seq

    def record(self, device_id, reoffer=False):
        """A signed SETTLE for the device, or None (not in the registry)."""
        device = self.registry.get(device_id)
        if device is None or not device.key:
            return None
        settle = {"device": device_id, "generation": self.store.generation,
                  "settled": self.store.settled(device_id), "seq": self._next_seq()}
        if reoffer:
            settle["reoffer"] = 1
        return auth.sign_settle(device.key, device_id, settle)

    # --- what devices say ---------------------------------------------------------------------
    def idle(self, device_id, idle):
        with self._lock:
            p = self._peer(device_id)
            p.custody = idle.get("custody", 0) if _speaks(idle) or p.custody is not None else None
            p.generation = idle.get("generation", 0)

    def status(self, device_id, status):
        """STATUS: its custody, and a request for a re-offer when it has counted past what this
        store holds while its outbox is empty (ratings a lost store had acknowledged)."""
        with self._lock:
            p = self._peer(device_id)
            if _speaks(status) or p.custody is not None:
                p.custody = status.get("custody", 0)
            counter = status.get("counter", 0)
            if (self.enabled and p.custody and not status.get("outbox", 0)
                    and counter > self.store.hwm(device_id) and p.reoffer_for != counter):
                p.reoffer, p.reoffer_for = True, counter
                self.stats["reoffer_requests"] += 1

    def answered_again(self, device_id):
        """An RS-485 device offered again a rating this gateway had answered: the ACK was lost, or
        the device refused it for naming a generation it has not taken (a new store, before its
        first SETTLE reached a device too busy to IDLE). Until it is known to hold this store's
        generation, its next turn brings it a SETTLE, even if it never said it keeps custody."""
        with self._lock:
            p = self._peer(device_id)
            if p.generation != self.store.generation:
                p.unsure = True

    def forget(self, device_id):
        with self._lock:
            self._peers.pop(device_id, None)

    # --- RS-485: a SETTLE in place of a POLL --------------------------------------------------
    def rs485_settle(self, device_id):
        """(SETTLE record, done) to send instead of this turn's POLL, or None. done() is called
        once the device answered it (as it answers a POLL)."""
        if not self.enabled:
            return None
        now = self.mono()
        with self._lock:
            p = self._peer(device_id)
            if p.refused_at is not None and now - p.refused_at < REFUSED_BACKOFF_S:
                return None
            if p.unsure and p.generation == self.store.generation:
                p.unsure = False   # it took this store's generation meanwhile
            if p.custody is None and not p.reoffer and not p.unsure:
                return None        # never said it holds custody: nothing to settle
            since = now - p.sent_at if p.sent_at is not None else None
            if p.generation != self.store.generation:
                due = since is None or since >= GENERATION_RESEND_S
            else:
                # the clock first: the mark takes the store's lock, which a commit holds
                due = p.reoffer or bool(p.custody and (since is None or since >= self.rs485_every_s)
                                        and p.answered_mark != self.store.settled(device_id))
            if not due:
                return None
            reoffer = p.reoffer
        record = self.record(device_id, reoffer)
        if record is None:
            return None
        del record["device"]        # the address says whom it is for; the MAC still covers it

        def done():
            with self._lock:
                p.answered_mark = record["settled"]
                p.generation = record["generation"]   # until its next IDLE says otherwise
                p.sent_at, p.refused_at, p.unsure = self.mono(), None, False
                if reoffer:
                    p.reoffer = False
                self.stats["settles_sent"] += 1
        return record, done

    def refused(self, device_id):
        """The device refused a SETTLE (its firmware has no custody): none for a while."""
        with self._lock:
            p = self._peer(device_id)
            p.refused_at, p.unsure = self.mono(), False
            self.stats["settles_refused"] += 1

    # --- MQTT: retained, republished when the mark moves ---------------------------------------
    def mqtt_due(self, device_ids, epoch):
        """[(device id, SETTLE)] to publish now: all after a (re)connection (`epoch` changed), then
        a device whose generation or mark moved, at most every MQTT_EVERY_S, or asked to re-offer."""
        if not self.enabled:
            return []
        now = self.mono()
        fresh = epoch != self._connected_epoch
        self._connected_epoch = epoch
        out = []
        for device_id in device_ids:
            with self._lock:
                p = self._peer(device_id)
                state = (self.store.generation, self.store.settled(device_id))
                if not (fresh or p.reoffer or (state != p.published and (
                        p.published_at is None or now - p.published_at >= MQTT_EVERY_S))):
                    continue
                reoffer, p.reoffer = p.reoffer, False
                p.published, p.published_at = state, now
            record = self.record(device_id, reoffer)
            if record is not None:
                out.append((device_id, record))
        return out

    async def run(self, bridge, tick=MQTT_TICK_S):
        """The gateway's loop: publish the MQTT devices' SETTLEs while the broker is connected."""
        while True:
            await asyncio.sleep(tick)
            try:   # in a thread: the marks take the store's lock, which a commit holds
                await asyncio.to_thread(self.mqtt_publish, bridge)
            except Exception:
                log.exception("publishing SETTLE failed; next tick tries again")

    def mqtt_publish(self, bridge):
        if not bridge.connected.is_set():
            return 0
        ids = [d.id for d in self.registry.all() if d.transport == "mqtt"]
        due = self.mqtt_due(ids, bridge.stats.get("connects", 0))
        for device_id, record in due:
            bridge.publish_settle(device_id, record)
            with self._lock:      # the buses count theirs from their own threads
                self.stats["settles_sent"] += 1
        return len(due)


def _speaks(record):
    """A device that put custody fields in a record knows SETTLE (zero fields are not sent)."""
    return bool(record.get("custody") or record.get("generation"))


def _read_floor(store):
    return store.meta_int(SEQ_FLOOR)


def reoffer_verdict(verdict, stored_digest):
    """SPEC 3.11 over 7.3 (protocol.rating.verdict): a re-offered copy whose MAC verified and whose
    id is not stored is committed even at or below the mark: a lost store had acknowledged it. The
    central API's permanent dedupe answers `duplicate` if it had it already."""
    if stored_digest is None and tuple(verdict) == (vocab.ACK_DEAD_LETTER, errors.R_REPLAY):
        return (vocab.ACK_STORED, errors.R_OK)
    return verdict
