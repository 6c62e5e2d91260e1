"""The simulated queueing system: the case mix, the event bodies the gateway's API parses, staff
sign-in with real names, and the callback endpoint over real HTTP."""

import asyncio
import random

import aiohttp

from gateway.cases import parse_event
from hall_simulator import queue_sim
from hall_simulator.clock import SimClock
from protocol import vocab


def test_every_kind_of_case_makes_a_body_the_gateway_accepts():
    maker = queue_sim.CaseMaker(random.Random(3))
    for kind in queue_sim.KINDS:
        ev = maker.make("07", ("A1002", "李堃"), "A001", kind=kind)
        parsed = parse_event(ev.body(completed_at=1_700_000_000))
        assert parsed["node"] == ev.node and parsed["serials"] == ev.serials
        assert parsed["staff_name"] == "李堃" and parsed["completed_at"] == 1_700_000_000
        assert parsed["success"] == (kind != "failed_receipt") == ev.opens_rating
    batch = maker.make("07", ("A1001", "王喆"), "A002", kind="batch")
    assert 2 <= len(batch.serials) <= 4 and len(set(batch.serials)) == len(batch.serials)
    theme = maker.make("07", ("A1001", "王喆"), "A003", kind="theme")
    assert len(theme.items) == 3 and theme.matter_code.startswith("T-")
    receipt = maker.make("07", ("A1003", "朱镕"), "A004", kind="receipt")
    assert receipt.node == vocab.NODE_RECEIPT


def test_the_mix_follows_its_weights_and_serials_never_repeat():
    maker = queue_sim.CaseMaker(random.Random(5), {"completion": 3, "batch": 1})
    events = [maker.make("01", ("A1", "张伟"), "A%03d" % i) for i in range(400)]
    share = sum(e.kind == "batch" for e in events) / 400
    assert 0.18 < share < 0.32 and {e.kind for e in events} == {"completion", "batch"}
    serials = [s for e in events for s in e.serials]
    assert len(serials) == len(set(serials))


class FakeApi:
    """Answers like the gateway and calls back over real HTTP, like the gateway's notifier."""

    def __init__(self):
        self.signed = {}
        self.bodies = []
        self.callback_url = None
        self.fail_first = 2

    async def sign_in(self, window, staff_id, staff_name):
        self.signed[window] = (staff_id, staff_name)
        return {}

    async def case(self, body):
        if self.fail_first:
            self.fail_first -= 1
            raise OSError("gateway restarting")
        self.bodies.append(body)
        cid = len(self.bodies)
        if body["success"]:
            asyncio.get_running_loop().call_later(0.02, lambda: asyncio.ensure_future(
                self._callback({"event": "rated", "case_id": cid, "window": body["window"]})))
        return {"case_id": cid, "rating": body["success"]}

    async def get_case(self, case_id):
        return {"case_id": case_id, "status": "rated"}

    async def _callback(self, body):
        async with aiohttp.ClientSession() as s:
            async with s.post(self.callback_url, json=body, headers={"Authorization": "Bearer t"}):
                pass


def test_windows_sign_in_serve_tickets_and_wait_for_callbacks():
    async def main():
        api = FakeApi()
        q = queue_sim.QueueSystem(api, ["01", "02", "03"], SimClock(speed=100), seed=4,
                                  service_s=(1.0, 2.0), settle_wait_s=30, retry_s=0.01)
        cb = await queue_sim.CallbackServer(q, token="t").start()
        api.callback_url = cb.url
        task = asyncio.ensure_future(q.run())
        await asyncio.sleep(0.8)
        q.stop_new_cases()
        await asyncio.wait_for(task, 5)
        await cb.stop()
        return api, q

    api, q = asyncio.run(main())
    assert api.signed == {"01": ("A1001", "王喆"), "02": ("A1002", "李堃"), "03": ("A1003", "朱镕")}
    assert q.stats["api_errors"] == 2                     # retried while the gateway was away
    assert len(api.bodies) == q.stats["cases"] >= 6
    rated = [e for e in q.events if e.opens_rating]
    assert q.stats["callbacks"] == len(rated) and q.stats["settle_timeouts"] == 0
    assert q.stats["settled_by_callback"] == len(rated) and q.stats["settled_by_query"] == 0
    assert q.stats["unknown_callbacks"] == 0


class RestartingGateway:
    """A gateway that was SIGKILLed: callbacks come late (seconds after the window's wait), come
    twice (at-least-once delivery), and its case API is away for the first questions."""

    def __init__(self, late_s, rates=True):
        self.late_s = late_s
        self.rates = rates
        self.cases = {}
        self.queue = None
        self.asked = 0
        self.away = 2

    async def sign_in(self, window, staff_id, staff_name):
        return {}

    async def case(self, body):
        cid = len(self.cases) + 1
        self.cases[cid] = "open"
        loop = asyncio.get_running_loop()
        if not self.rates:
            return {"case_id": cid}                                # the device never rates
        loop.call_later(0.05, self._rate, cid)                  # rated at once ...
        for delay in (self.late_s, self.late_s + 0.01):            # ... but called back late, twice
            loop.call_later(delay, lambda: self.queue.on_callback(
                {"event": "rated", "case_id": cid, "window": body["window"]}))
        return {"case_id": cid}

    def _rate(self, cid):
        self.cases[cid] = "rated"

    async def get_case(self, case_id):
        self.asked += 1
        if self.away:
            self.away -= 1
            raise OSError("connection refused")
        return {"case_id": case_id, "status": self.cases[case_id]}


def test_a_late_callback_is_reconciled_by_asking_the_gateway():
    async def main(late_s, settle_wait_s, rates=True):
        gw = RestartingGateway(late_s, rates)
        q = queue_sim.QueueSystem(gw, ["01", "02"], SimClock(speed=100), seed=4, service_s=(1.0, 2.0),
                                  settle_wait_s=settle_wait_s, retry_s=0.01, recheck_s=2.0,
                                  settle_max_s=4 * settle_wait_s)
        gw.queue = q
        task = asyncio.ensure_future(q.run())
        await asyncio.sleep(0.6)
        q.stop_new_cases()
        await asyncio.wait_for(task, 5)
        await asyncio.sleep(late_s + 0.1)                         # the last late callbacks
        return gw, q

    gw, q = asyncio.run(main(late_s=0.3, settle_wait_s=5))       # the window waits 0.05 s real
    s = q.stats
    assert s["settle_timeouts"] == 0 and s["unknown_callbacks"] == 0
    assert s["settled_by_query"] == s["cases"] >= 4 and gw.asked >= s["cases"] + 2
    assert s["late_callbacks"] == s["cases"] and s["repeated_callbacks"] == s["cases"]
    # a case the gateway keeps open is waited for, up to settle_max_s, then given up
    gw, q = asyncio.run(main(late_s=0, settle_wait_s=5, rates=False))
    s = q.stats
    assert s["settle_timeouts"] == s["cases"] >= 2 and s["settled_by_query"] == 0
    assert gw.asked >= s["cases"] * 4                            # asked again and again meanwhile


def test_a_callback_for_an_earlier_case_does_not_settle_the_current_one():
    q = queue_sim.QueueSystem(None, ["01"], SimClock(speed=100))
    w = q.windows["01"]
    old, new = queue_sim.CaseMaker(random.Random(1)).make("01", w.staff, "A001"), None
    new = queue_sim.CaseMaker(random.Random(2)).make("01", w.staff, "A002")
    old.case_id, new.case_id = 7, 8
    q._by_case.update({7: w, 8: w})
    w.open_case = new
    q.on_callback({"event": "rated", "case_id": 7, "window": "01"})
    assert not w.settled.is_set() and q.stats["late_callbacks"] == 1
    q.on_callback({"event": "rated", "case_id": 9, "window": "01"})
    assert not w.settled.is_set() and q.stats["unknown_callbacks"] == 1
    q.on_callback({"event": "rated", "case_id": 8, "window": "01"})
    assert w.settled.is_set()
