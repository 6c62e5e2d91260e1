"""A virtual evaluator (real firmware, sim board, real RS-485 bus over TCP, citizen in front) against
the protocol's own bus master: cases come in, citizens rate, ratings are confirmed on the device,
survive power cuts at random instants, and reach the master exactly once per counter."""

import random
import time

import serial

from hall_simulator import citizens
from hall_simulator.bus_runners import BusThread
from hall_simulator.clock import SimClock
from hall_simulator.evaluator import Evaluator, Spec
from protocol import auth, schema, vocab
from protocol.frame import FrameDecoder
from protocol.link import MasterBus

KEY = "11" * 32


class Master:
    """A minimal gateway: one request at a time over pyserial, as the real one reaches the bus."""

    def __init__(self, url, address):
        self.ser = serial.serial_for_url(url, timeout=0.05)
        self.bus = MasterBus()
        self.ch = self.bus.channel(address)

    def ask(self, msg_type, record, timeout=0.4):
        self.ser.reset_input_buffer()
        self.ser.write(self.ch.request(msg_type, record))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.bus.receive_data(self.ser.read(256))
            got = self.bus.next_reply()
            if got:
                return got[1]
        self.ch.give_up()
        return None


def _case(cid):
    return {"case_id": cid, "window": "03", "staff_id": "A0303", "staff_name": "朱镕",
            "matter_code": "M-7", "matter_name": "居民身份证换领", "serials": ["SZ%06d" % cid],
            "node": vocab.NODE_COMPLETION, "time": int(time.time())}


def run_cases(tmp_path, n_cases, power_cuts=0, seed=5):
    confirmed = []
    clock = SimClock(speed=8)
    mix = citizens.Mix(levels=(40, 20, 10, 15, 15), walk_away=0.15, double_tap=0.3,
                       think_s=(1.0, 2.0))
    received = {}
    with BusThread(baud=115200, rng=random.Random(1)) as bus:
        ev = Evaluator(Spec("w03", KEY, "03", "rs485", str(tmp_path / "w03"), address=3, baud=115200),
                       clock, confirmed.append, mix=mix, seed=seed, bus_url=bus.url)
        ev.start()
        m = Master(bus.url, 3)
        m.ask(schema.CONFIG, {"version": 1, "rating_timeout_s": 20, "thanks_s": 2, "press_guard_ms": 300,
                              "tags": [{"code": 501, "label": "态度不积极", "indicator": 7},
                                       {"code": 702, "label": "其他原因", "indicator": 7}]})
        rng = random.Random(seed)
        cid = 0
        deadline = time.monotonic() + 60
        cuts_left = power_cuts
        while time.monotonic() < deadline and (cid < n_cases or ev.outbox_depth() or
                                                ev.state() not in ("idle", "off")):
            reply = m.ask(schema.POLL, {"time": int(time.time())})
            if reply is None:
                continue
            if reply.type == schema.RATING:
                r = reply.record
                assert auth.verify(bytes.fromhex(KEY), r)
                received.setdefault((r["device"], r["counter"]), r)
                m.ask(schema.ACK, auth.sign_ack(bytes.fromhex(KEY), r["device"],
                                                {"device": r["device"], "counter": r["counter"],
                                                 "result": vocab.ACK_STORED}, r["mac"]))
            elif reply.type == schema.IDLE and not reply.record.get("case_id") and cid < n_cases \
                    and ev.state() == "idle":
                cid += 1
                m.ask(schema.CONTEXT, _case(cid))
            if cuts_left and rng.random() < 0.05:
                cuts_left -= 1
                ev.power_cut(down_s=0.2, instant=rng.random())
            time.sleep(0.01)
        ev.stop()
    return ev, confirmed, received, cid


def test_citizens_rate_through_the_real_firmware_and_every_confirmation_arrives(tmp_path):
    ev, confirmed, received, cases = run_cases(tmp_path, 6)
    assert cases == 6
    assert ev.stats["presses"] > 0 and ev.stats["cases"] == 6
    ids = {e["rating_id"] for e in confirmed}
    assert {"%s:%d" % k for k in received} >= ids       # every confirmation reached the master
    presses = [e for e in confirmed if e["source"] == vocab.SRC_PRESS]
    walkaways = [e for e in confirmed if e["source"] == vocab.SRC_NOT_RATED]
    assert presses and len(presses) + len(walkaways) == 6
    for e in presses:
        r = received[(e["device"], e["counter"])]
        assert r["case_id"] == e["case_id"] and e["level"] in vocab.LEVELS
        assert bool(r.get("tags")) == e["bad"]           # bad ratings carry the citizen's tags


def test_power_cuts_lose_no_confirmed_rating(tmp_path):
    ev, confirmed, received, cases = run_cases(tmp_path, 8, power_cuts=4, seed=9)
    assert ev.stats["power_cuts"] >= 1 and ev.boots == 1 + ev.stats["power_cuts"]
    ids = {e["rating_id"] for e in confirmed}
    assert ids and {"%s:%d" % k for k in received} >= ids
    cases_rated = [r["case_id"] for r in received.values()]
    assert len(cases_rated) == len(set(cases_rated))      # no case rated twice
