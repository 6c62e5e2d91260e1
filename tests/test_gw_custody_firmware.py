"""Custody end to end on RS-485 with the real firmware (SPEC 3.11): a virtual evaluator (firmware,
sim board, citizen in front) on the simulated bus, polled by the gateway's own bus master with
its store and custody; the upload queue is drained by hand (the central API's acceptance).

- the device keeps its acknowledged ratings while they wait in the upload queue and lets them go
  only once they left it;
- a blank replacement gateway (a new store, a new generation) gets what the device still holds
  re-offered and committed, and lets it go only after its own upload.
"""

import random
import time

from gateway.committer import GroupCommitter
from gateway.config import BusConfig
from gateway.custody import Custody
from gateway.registry import Registry
from gateway.rejects import Rejections
from gateway.rs485_master import Rs485Master
from gateway.store import Store
from hall_simulator import citizens
from hall_simulator.bus_runners import BusThread
from hall_simulator.clock import SimClock
from hall_simulator.evaluator import Evaluator, Spec
from protocol import vocab

KEY = "37" * 32
CONFIG = {"version": 1, "rating_timeout_s": 20, "thanks_s": 1, "press_guard_ms": 300,
          "tags": [{"code": 501, "label": "态度不积极", "indicator": 7}]}


def case(cid):
    return {"case_id": cid, "window": "03", "staff_id": "A0303", "matter_code": "M-7",
            "matter_name": "居民身份证换领", "serials": ["SZ%06d" % cid],
            "node": vocab.NODE_COMPLETION, "time": int(time.time())}


def until(predicate, what, timeout=40.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


class Gateway:
    """The gateway's RS-485 side: store, committer, bus master, custody."""

    def __init__(self, data_dir, url):
        data_dir.mkdir()
        self.registry = Registry([{"id": "w03", "window": "03", "transport": "rs485",
                                   "address": 3, "key": KEY}])
        self.store = Store(str(data_dir / "outbox.db"))
        self.committer = GroupCommitter(self.store)
        self.master = Rs485Master(BusConfig(url=url, baud=115200, retries=1), 0, "hall",
                                  self.registry, self.committer, Rejections())
        self.custody = Custody(self.store, self.registry)
        self.custody.rs485_every_s = 1.0
        self.master.custody = self.custody
        self.master.set_config("w03", CONFIG)
        self.master.start()

    def held(self):
        return self.registry.get("w03").custody       # what its IDLE says

    def rate(self, cid, confirmed):
        """Open case `cid` at the device and wait for its citizen's rating to be committed."""
        before = len(confirmed)
        self.master.set_context("w03", case(cid))
        until(lambda: len(confirmed) > before and self.store.hwm("w03") >= confirmed[-1]["counter"],
              "case %d rated and committed" % cid)
        self.master.set_context("w03", None)

    def upload_all(self):
        self.store.settle([(i["item_id"], "accepted", None) for i in self.store.upload_batch(1000)])

    def close(self):
        self.master.stop()
        self.committer.close()
        self.store.close()


def test_the_real_firmware_keeps_custody_until_uploaded_and_reoffers_to_a_blank_gateway(tmp_path):
    confirmed = []
    mix = citizens.Mix(levels=(100, 0, 0, 0, 0), walk_away=0.0, double_tap=0.0, think_s=(0.3, 0.6))
    with BusThread(baud=115200, rng=random.Random(3)) as bus:
        ev = Evaluator(Spec("w03", KEY, "03", "rs485", str(tmp_path / "w03"), address=3, baud=115200),
                       SimClock(speed=8), confirmed.append, mix=mix, seed=4, bus_url=bus.url)
        ev.start()
        first = Gateway(tmp_path / "gw1", bus.url)
        try:
            for cid in (1, 2, 3):
                first.rate(cid, confirmed)
            until(lambda: first.held() == 3, "three copies in custody")
            assert first.store.stats["stored"] == 3
            time.sleep(2.5)
            assert first.held() == 3                     # still waiting for the central API
            first.upload_all()
            until(lambda: first.held() == 0, "custody released after the upload")
            for cid in (4, 5):                           # committed here, never uploaded
                first.rate(cid, confirmed)
            until(lambda: first.held() == 2, "4 and 5 in custody")
            generation = first.store.generation
        finally:
            first.close()
        blank = Gateway(tmp_path / "gw2", bus.url)      # the spare, with a blank store
        try:
            until(lambda: blank.store.stats["reoffered"] == 2, "4 and 5 re-offered to the spare")
            assert blank.store.generation != generation
            pending = sorted(i["item_id"] for i in blank.store.upload_batch(100))
            assert pending == ["w03:%d" % e["counter"] for e in confirmed[3:]]
            until(lambda: blank.held() == 2, "the device's IDLE after the re-offers")
            time.sleep(2.5)
            assert blank.held() == 2                     # not before the spare's own upload
            blank.upload_all()
            until(lambda: blank.held() == 0, "custody released by the spare")
        finally:
            blank.close()
            ev.stop()
    assert [e["source"] for e in confirmed] == [vocab.SRC_PRESS] * 5
