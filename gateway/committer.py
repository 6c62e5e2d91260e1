"""The group committer: one thread that turns a stream of ratings into the store's group commits
(one transaction, one fsync, for whatever arrived while the previous one was being written)."""

import logging
import queue
import threading

from protocol import errors, vocab

log = logging.getLogger("gateway.store")


class GroupCommitter:
    """One thread that turns a stream of ratings into group commits.

    submit() from any thread; while one commit waits for its fsync the next ones queue up and go
    in the following transaction together. `done(result)` is called on the committer thread
    after the transaction is durable, with result = (ACK_*, R_*): only then may anyone ACK."""

    _STOP = object()

    def __init__(self, store, max_batch=512):
        self.store = store
        self.max_batch = max_batch
        self._queue = queue.SimpleQueue()
        self.batches = 0
        self.items = 0
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def submit(self, rating, enrichment, done, reject=None, reoffer=False):
        """`reoffer`: a verified custody copy offered again (SPEC 3.11, gateway.store)."""
        if reoffer:
            item = (rating, enrichment, reject, True)
        else:
            item = (rating, enrichment) if reject is None else (rating, enrichment, reject)
        self._queue.put((item, done))

    def commit_now(self, rating, enrichment=None, reject=None, reoffer=False, timeout=30.0):
        """Blocking helper (RS-485 thread): submit and wait for the durable result."""
        box = []
        event = threading.Event()

        def done(result):
            box.append(result)
            event.set()
        self.submit(rating, enrichment, done, reject, reoffer)
        if not event.wait(timeout):
            return (vocab.ACK_RETRY, errors.R_STORE_FULL)
        return box[0]

    def depth(self):
        return self._queue.qsize()

    def close(self):
        self._queue.put(self._STOP)
        self._thread.join(10)

    def _run(self):
        q = self._queue
        while True:
            first = q.get()
            if first is self._STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = q.get_nowait()
                except Exception:
                    break
                if nxt is self._STOP:
                    stop = True
                    break
                batch.append(nxt)
            self.commit_batch(batch)
            if stop:
                return

    def commit_batch(self, batch):
        """Commit [(item, done)] in one transaction on the calling thread, then call each done(result):
        for a caller that gathers its own groups (the MQTT bridge on its ingest thread, which
        then publishes the ACKs without a hop to another thread)."""
        try:
            results = self.store.commit_ratings([item for item, _ in batch])
        except Exception:
            log.exception("group commit failed; every item is refused for now")
            results = [(vocab.ACK_RETRY, errors.R_STORE_FULL)] * len(batch)
        self.batches += 1
        self.items += len(batch)
        for (_, done), result in zip(batch, results):
            try:
                done(result)
            except Exception:
                log.exception("commit callback failed")
