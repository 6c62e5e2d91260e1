"""A Wi-Fi evaluator's custody as SPEC 3.11 has it, over a real broker (a paho client: the device
side of the gateway's custody tests), and the reference central API on a loop thread of its own."""

import asyncio
import threading
import time

from gw_support import WAIT, FakeDevice, device_key
from hall_simulator.central_api import CentralServer
from hall_simulator.central_store import CentralStore
from protocol import auth, codec, schema, vocab
from uplink_support import SECRET


class Custody:
    """A device's outbox and custody by SPEC 3.11's rules (the gateway tests' model of a device)."""

    def __init__(self, device_id):
        self.device_id = device_id
        self.lock = threading.RLock()
        self.outbox = []                # ratings not yet released
        self.custody = {}               # counter -> [rating, marked for re-offer]
        self.generation = 0
        self.seq = 0
        self.settles = []               # SETTLEs taken
        self.forged_settles = 0
        self.deaf = False               # ignores SETTLEs (has not heard them yet)

    def settle(self, settle):
        if self.deaf:
            return
        if not auth.verify_settle(device_key(self.device_id), self.device_id, settle):
            self.forged_settles += 1
            return
        with self.lock:
            if settle["generation"] != self.generation:
                self.generation = settle["generation"]
                for copy in self.custody.values():
                    copy[1] = True
            elif settle["seq"] <= self.seq:
                return
            if settle.get("reoffer"):
                for copy in self.custody.values():
                    copy[1] = True
            for counter in [c for c, (_, marked) in self.custody.items()
                            if c < settle.get("settled", 0) and not marked]:
                del self.custody[counter]
            self.seq = settle["seq"]
            self.settles.append(settle)

    def held(self):
        with self.lock:
            return sorted(self.custody)

    def press(self, rating):
        with self.lock:
            self.outbox.append(rating)

    def head(self):
        """(rating, reoffer) to send next: re-offers first, lowest counter first; else None."""
        with self.lock:
            marked = sorted(c for c, (_, m) in self.custody.items() if m)
            if marked:
                return self.custody[marked[0]][0], True
            return (self.outbox[0], False) if self.outbox else None

    def takes(self, ack, reoffer):
        """Whether an ACK's generation lets it release (SPEC 3.11): a re-offered copy's must be the
        one taken last; any other may name none, or that one."""
        gen = ack.get("generation", 0)
        with self.lock:
            return gen == self.generation or not reoffer and not (gen and self.generation)

    def released(self, rating, reoffer):
        with self.lock:
            if reoffer:
                self.custody[rating["counter"]][1] = False
            elif self.outbox and self.outbox[0]["counter"] == rating["counter"]:
                self.outbox.pop(0)
                self.custody[rating["counter"]] = [rating, False]

    def wire(self, rating, reoffer):
        obj = codec.to_obj(schema.RATING_FIELDS, rating)
        if reoffer:
            obj["reoffer"] = 1
        return obj

    def status_record(self, counter):
        with self.lock:
            oldest = min((r.get("device_time", 0) for r, _ in self.custody.values()), default=0)
            return {"device": self.device_id, "firmware": "test", "outbox": len(self.outbox),
                    "counter": counter, "custody": len(self.custody), "custody_oldest": oldest}


class CustodyDevice(FakeDevice):
    """A Wi-Fi evaluator with custody: deliver() sends one rating at a time until none is left."""

    def __init__(self, broker, device_id):
        self.model = Custody(device_id)
        super().__init__(broker, device_id)

    def __getattr__(self, name):        # the model's state and rules (generation, held, press ...)
        return getattr(self.__dict__["model"], name)

    def __setattr__(self, name, value):
        if name in ("deaf",):
            setattr(self.model, name, value)
        else:
            super().__setattr__(name, value)

    def _on_message(self, client, userdata, message):
        if message.topic.endswith("/settle") and message.payload:
            self.model.settle(codec.from_json(schema.SETTLE, message.payload))
        super()._on_message(client, userdata, message)

    def deliver(self):
        """Send until nothing is left; the ACK results in order."""
        results = []
        while True:
            head = self.model.head()
            if head is None:
                return results
            rating, reoffer = head
            self.publish("rating", codec.dumps(self.model.wire(rating, reoffer)).encode())
            ack = self.ack()
            assert ack["counter"] == rating["counter"]
            results.append(ack["result"])
            if vocab.device_releases(ack["result"]) and self.model.takes(ack, reoffer):
                self.model.released(rating, reoffer)

    def status(self, counter):
        self.publish("status", codec.to_json(schema.STATUS, self.model.status_record(counter)))


class CentralThread:
    """The reference central API on its own loop thread, at a fixed port, stopped and started
    again on demand (the uplink is down meanwhile); its store outlives the server."""

    def __init__(self, path, port):
        self.store = CentralStore(path)
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self):
        self.server = CentralServer(self.store, port=self.port, secrets={"*": SECRET})
        self._run(self.server.start())

    def stop(self):
        if self.server is not None:
            self._run(self.server.stop())
            self.server = None

    def rating_ids(self):
        async def read():
            return [r["rating_id"] for r in self.store.ratings(limit=100000)]
        return self._run(read())

    def report(self):
        async def read():
            return self.store.report()
        return self._run(read())

    def close(self):
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.store.close()


def until(predicate, what, timeout=WAIT * 2):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)
