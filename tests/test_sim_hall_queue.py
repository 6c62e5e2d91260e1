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
    assert q.stats["unknown_callbacks"] == 0
