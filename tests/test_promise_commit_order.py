"""An ACK is a promise: STORED goes on the wire only once the rating's commit is durable, and a
commit that fails answers RETRY (the device keeps the rating and sends it again). On both
transports, with the real store behind a gate that holds, fails or refuses its commits."""

import sqlite3
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gw_support import make_rating  # noqa: E402
from protocol import errors, schema, vocab  # noqa: E402

HOLD_S = 0.5      # how long a held commit is watched for an early ACK


class GatedStore:
    """The real store, whose commit_ratings waits while `hold` is clear and then fails ("raise":
    the disk; "full": the store refuses, as at capacity) or commits for real."""

    def __init__(self, store):
        self._store = store
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self.fail = None
        self.calls = 0

    def commit_ratings(self, items):
        self.calls += 1
        self.entered.set()
        assert self.hold.wait(30), "a held commit was never released"
        if self.fail == "raise":
            raise sqlite3.OperationalError("disk I/O error")
        if self.fail == "full":
            return [(vocab.ACK_RETRY, errors.R_STORE_FULL)] * len(items)
        return self._store.commit_ratings(items)

    def __getattr__(self, name):
        return getattr(self._store, name)


def _gate(committer):
    gate = GatedStore(committer.store)
    committer.store = gate
    return gate


# --- MQTT ---------------------------------------------------------------------------------------
def test_mqtt_acks_stored_only_after_the_commit_and_retry_when_it_fails(gateway, device):
    gate = _gate(gateway.committer)
    gate.hold.clear()
    try:
        device.rate(make_rating("dev-a", 1))
        assert gate.entered.wait(10)
        time.sleep(HOLD_S)
        assert device.acks.empty(), "an ACK went out while the commit was held"
        assert "dev-a:1" not in gateway.store.stored_ids()
    finally:
        gate.hold.set()
    ack = device.ack()
    assert (ack["counter"], ack["result"]) == (1, vocab.ACK_STORED)
    assert "dev-a:1" in gateway.store.stored_ids()
    for n, fail in ((2, "full"), (3, "raise")):
        gate.fail = fail
        rating = make_rating("dev-a", n)
        device.rate(rating)
        ack = device.ack()
        assert (ack["counter"], ack["result"], ack["reason"]) == (n, vocab.ACK_RETRY, errors.R_STORE_FULL), fail
        assert "dev-a:%d" % n not in gateway.store.stored_ids()
        gate.fail = None
        device.rate(rating)                   # the device kept it and sends it again
        assert device.ack()["result"] == vocab.ACK_STORED
        assert "dev-a:%d" % n in gateway.store.stored_ids()
    assert [c for c, res in gateway.rated if res[0] == vocab.ACK_STORED] == [1, 2, 3]


# --- RS-485 -------------------------------------------------------------------------------------
def test_rs485_acks_stored_only_after_the_commit_and_retry_when_it_fails(rig):
    made = {}
    acks = []

    def on_ack(address, ack):
        stored = "dev-1:%d" % ack["counter"] in made["store"].stored_ids()
        acks.append((ack["counter"], ack.get("result", 0), ack.get("reason", 0), stored))
    r = made = rig([1], on_ack=on_ack)
    gate = _gate(r["committer"])
    fake, master = r["fake"], r["master"]
    fake.outbox[1] = [make_rating("dev-1", 1)]
    gate.hold.clear()

    def turns():
        for _ in range(6):
            master.round()
            if acks:
                return
    turn = threading.Thread(target=turns, daemon=True)
    turn.start()
    try:
        assert gate.entered.wait(10)
        time.sleep(HOLD_S)
        assert acks == [] and schema.ACK not in fake.heard[1], "an ACK went out while the commit was held"
    finally:
        gate.hold.set()
    turn.join(10)
    assert acks == [(1, vocab.ACK_STORED, 0, True)] and fake.outbox[1] == []
    for n, fail in ((2, "full"), (3, "raise")):
        del acks[:]
        gate.fail = fail
        fake.outbox[1] = [make_rating("dev-1", n)]
        master.round()
        assert acks[:1] == [(n, vocab.ACK_RETRY, errors.R_STORE_FULL, False)], fail
        assert [x["counter"] for x in fake.outbox[1]] == [n]        # kept by the device
        gate.fail = None
        for _ in range(3):
            master.round()
        assert acks[-1] == (n, vocab.ACK_STORED, 0, True) and fake.outbox[1] == []
    assert [c for c, res in r["rated"] if res[0] == vocab.ACK_STORED] == [1, 2, 3]


from test_gw_mqtt import device, gateway  # noqa: E402,F401  (fixtures: the real bridge on Mosquitto)
from test_gw_rs485 import rig  # noqa: E402,F401  (fixture: the real master and fake devices)
