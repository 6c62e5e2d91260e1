"""Custody on RS-485 (SPEC 3.11) at the gateway: the bus master (gateway.rs485_master) with the
gateway's custody (gateway.custody) against devices that keep custody by the SPEC's rules,
behind a loopback socket (tests/test_gw_rs485.py's FakeDevices).

- a SETTLE goes in place of a POLL and is answered as one; the first names the store's
  generation and the device re-offers what it holds (duplicates to this store);
- copies are kept while the ratings wait in the upload queue, released once they left it;
- SETTLEs are rare: not one per poll;
- a new store (a blank replacement gateway) gets everything the device holds re-offered and
  committed, counted as re-offered;
- a device that never said it holds custody (firmware without it) gets no SETTLE while it takes
  its ACKs;
- one that took an old store's generation and is too busy to IDLE refuses the new store's ACKs
  and offers its rating again: that brings it a SETTLE, and its outbox drains.
"""

import time

import serial

from gateway.committer import GroupCommitter
from gateway.config import BusConfig
from gateway.custody import Custody
from gateway.registry import Registry
from gateway.rejects import Rejections
from gateway.rs485_master import Rs485Master
from gateway.store import Store
from gw_custody_support import Custody as DeviceCustody
from gw_support import HALL, device_key, make_rating
from protocol import auth, errors, schema
from protocol.link import SlaveLink
from test_gw_rs485 import FakeDevices


class CustodyDevices(FakeDevices):
    """Address 1 keeps custody (dev-1); any other answers as firmware without it."""

    def __init__(self, addresses):
        self.model = DeviceCustody("dev-1")
        self.sent = None                 # (rating, reoffer) last sent by dev-1
        super().__init__(addresses)

    def serve_again(self):
        """A new master (the replacement gateway) on the same wire."""
        import threading
        self.links = dict((a, SlaveLink(a)) for a in self.links)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _answer(self, address, link, req):
        if address != 1:
            if req.type == schema.SETTLE:
                self.heard[address].append(req.type)
                return link.refuse(req, errors.R_UNKNOWN_TYPE)
            return super()._answer(address, link, req)
        self.heard[address].append(req.type)
        model, rec = self.model, req.record
        if req.type == schema.SETTLE:
            model.settle(rec)
        elif req.type == schema.ACK and self.sent is not None:
            rating, reoffer = self.sent
            if (rec["counter"] == rating["counter"]
                    and auth.verify_ack(device_key("dev-1"), "dev-1", rec, rating["mac"])
                    and rec.get("result", 0) in (0, 1, 2) and model.takes(rec, reoffer)):
                model.released(rating, reoffer)
                self.sent = None
        elif req.type == schema.POLL and rec.get("want_status"):
            return link.reply(req, schema.STATUS, model.status_record(len(model.custody)))
        head = model.head()
        if head is not None and req.type in (schema.POLL, schema.SETTLE, schema.ACK):
            self.sent = head
            rating, reoffer = head
            return link.reply(req, schema.RATING, dict(rating, reoffer=1) if reoffer else rating)
        idle = {"outbox": len(model.outbox)}
        if model.custody:
            idle["custody"] = len(model.custody)
        if model.generation:
            idle["generation"] = model.generation
        return link.reply(req, schema.IDLE, idle)


class Rig:
    def __init__(self, fake, data_dir):
        self.fake = fake
        self.registry = Registry([{"id": "dev-%d" % a, "window": "W%d" % a, "transport": "rs485",
                                   "address": a, "key": device_key("dev-%d" % a).hex()}
                                  for a in fake.links])
        self.store = Store(str(data_dir / "outbox.db"))
        self.committer = GroupCommitter(self.store)
        self.master = Rs485Master(BusConfig(url=fake.url, baud=115200, retries=1), 0, HALL,
                                  self.registry, self.committer, Rejections())
        self.custody = Custody(self.store, self.registry)
        self.custody.rs485_every_s = 1.0
        self.master.custody = self.custody
        self.master.port = serial.serial_for_url(fake.url, baudrate=115200, timeout=0.005)

    def rounds(self, n):
        for _ in range(n):
            self.master.round()

    def upload_all(self):
        self.store.settle([(i["item_id"], "accepted", None) for i in self.store.upload_batch(1000)])

    def close(self):
        self.master.port.close()
        self.committer.close()
        self.store.close()


def test_custody_on_the_bus(tmp_path):
    fake = CustodyDevices([1, 2])
    (tmp_path / "a").mkdir()
    rig = Rig(fake, tmp_path / "a")
    model = fake.model
    try:
        for c in (1, 2, 3):
            model.press(make_rating("dev-1", c, serials=["SN%d" % c]))
        fake.outbox[2] = [make_rating("dev-2", c) for c in (1, 2)]   # a device without custody
        rig.rounds(20)
        assert model.outbox == [] and rig.store.hwm("dev-1") == 3
        assert model.generation == rig.store.generation          # its first SETTLE
        assert model.held() == [1, 2, 3]                         # waiting for the uplink
        assert rig.store.stats["duplicates"] == 3                # the first SETTLE's re-offers
        assert schema.SETTLE not in fake.heard[2] and fake.outbox[2] == []
        before = fake.heard[1].count(schema.SETTLE)
        rig.rounds(30)
        time.sleep(1.1)
        rig.rounds(30)
        assert model.held() == [1, 2, 3]                         # nothing left the queue: kept
        assert fake.heard[1].count(schema.SETTLE) == before      # and no SETTLE: nothing moved

        rig.store.settle([("dev-1:1", "accepted", None)])         # the central API has 1
        rig.rounds(3)
        assert model.held() == [2, 3]
        rig.upload_all()                                          # and then the rest
        rig.rounds(10)
        assert model.held() == [2, 3]                             # at most one SETTLE a while
        time.sleep(1.1)
        rig.rounds(3)
        assert model.held() == []
        settles = fake.heard[1].count(schema.SETTLE)
        assert settles == before + 2 and fake.heard[1].count(schema.POLL) > 50

        # 4 and 5 committed here, then this gateway is lost with them
        for c in (4, 5):
            model.press(make_rating("dev-1", c, serials=["SN%d" % c]))
        rig.rounds(10)
        assert model.held() == [4, 5] and rig.store.hwm("dev-1") == 5
        generation = rig.store.generation
    finally:
        rig.close()

    (tmp_path / "b").mkdir()
    fake.serve_again()
    blank = Rig(fake, tmp_path / "b")
    try:
        blank.rounds(15)
        assert blank.store.generation not in (generation, 0)
        assert model.generation == blank.store.generation
        assert blank.store.hwm("dev-1") == 5 and blank.store.stats["reoffered"] == 2
        assert sorted(i["item_id"] for i in blank.store.upload_batch(100)) == ["dev-1:4", "dev-1:5"]
        assert model.held() == [4, 5]                             # not before its upload
        blank.upload_all()
        time.sleep(1.1)
        blank.rounds(5)
        assert model.held() == []
    finally:
        blank.close()
        fake.close()


def test_a_busy_device_that_took_an_old_generation_gets_a_settle_and_drains(tmp_path):
    fake = CustodyDevices([1])
    rig = Rig(fake, tmp_path)
    model = fake.model
    try:
        model.generation = 0x5EED                    # a lost store's, taken long ago; no copies
        for c in range(1, 6):
            model.press(make_rating("dev-1", c, serials=["SN%d" % c]))
        rig.rounds(12)
        assert model.generation == rig.store.generation
        assert model.outbox == [] and model.held() == [1, 2, 3, 4, 5]
        assert rig.store.hwm("dev-1") == 5 and rig.custody.stats["settles_sent"] == 1
        heard = fake.heard[1]               # the SETTLE came at once after the first refused ACK
        assert heard.index(schema.SETTLE) == heard.index(schema.ACK) + 1, heard
    finally:
        rig.close()
