"""Helpers for the uplink and central API tests: a live reference central API on loopback."""

import contextlib

from gateway.store import Store
from hall_simulator.central_api import CentralServer
from hall_simulator.central_store import CentralStore
from protocol import vocab
from tests.gw_support import HALL, make_rating

SECRET = "uplink-test-secret"
T0 = 1718000000   # 2024-06-10 (a Monday) 14:13:20 +08:00


class FakeClock:
    def __init__(self, now=T0):
        self.now = float(now)

    def __call__(self):
        return self.now


class Sleeps:
    """Injected sleep: records what the uplink asked for and returns at once."""

    def __init__(self, clock=None):
        self.calls = []
        self.clock = clock

    async def __call__(self, seconds):
        self.calls.append(seconds)
        if self.clock is not None:
            self.clock.now += seconds


class FixedRng:
    """uniform(a, b) -> b * fraction: full jitter made predictable."""

    def __init__(self, fraction=0.5):
        self.fraction = fraction

    def uniform(self, a, b):
        return a + (b - a) * self.fraction


@contextlib.asynccontextmanager
async def central(tmp_path, clock=None, secrets=None, store_thread=False, **store_options):
    store = CentralStore(tmp_path / "central.db", clock=clock or FakeClock(), **store_options)
    server = CentralServer(store, secrets=secrets if secrets is not None else {"*": SECRET},
                           store_thread=store_thread)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        store.close()


def outbox(tmp_path, name="outbox.db", capacity=100000):
    return Store(tmp_path / name, capacity=capacity, clock=FakeClock())


def enrichment(staff_name="王喆", matter="居住证签注"):
    return {"matter_code": "440300-001", "matter_name": matter, "staff_id": "1001",
            "staff_name": staff_name}


def rating(device, counter, level=vocab.SATISFIED, serial=None, **extra):
    serial = serial or "SN%s%06d" % (device.replace("-", ""), counter)
    return make_rating(device, counter, level=level, serials=[serial], gateway_time=T0 + counter,
                       hall=HALL, **extra)


def fill(store, device, counters, level=vocab.SATISFIED):
    results = store.commit_ratings([(rating(device, n, level), enrichment()) for n in counters])
    assert all(r[0] == vocab.ACK_STORED for r in results), results
