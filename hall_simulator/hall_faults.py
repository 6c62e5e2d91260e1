"""The simulated hall's fault hooks: what each chaos kind (hall_simulator.chaos) does to the running
hall, and how many operations it hit. Faults of one kind never overlap: one still in progress makes
the next raise chaos.Skipped."""

import asyncio
import time

from hall_simulator import chaos as chaos_mod
from hall_simulator import spare_gateway


def hooks(hall):
    """{kind: async hook(**params)} for a started Hall; each returns how many operations its fault
    hit (the hostile kind: a dict per attack), or raises chaos.Skipped when one of its kind still
    runs."""
    loop_time = asyncio.get_running_loop().time
    central_faults = hall.central.faults

    async def gateway_kill(down_s):
        if hall._killing:            # a restart still in progress: two gateways never run
            raise chaos_mod.Skipped("the gateway is still being restarted")
        hall._killing = True
        try:
            hit = 1 if hall.gateway.running else 0
            hall.gateway.kill()
            await asyncio.sleep(down_s)
            hall.gateway.start()
            await hall.gateway.wait_ready()
            return hit
        finally:
            hall._killing = False

    async def broker_restart(down_s):
        if _busy(hall, "broker"):
            raise chaos_mod.Skipped("the broker is still being restarted")
        try:
            hit = 1 if hall.broker.running else 0
            await asyncio.to_thread(hall.broker.restart, down_s)
            return hit
        finally:
            _free(hall, "broker")

    async def uplink_outage(seconds, cap_s=chaos_mod.CAP_S):
        # The central API's port answers nothing: each connection is cut at once (counted,
        # so an outage nobody tried to reach is not reported as tested). It lasts `seconds`,
        # longer (up to cap_s) until the first connection was cut.
        if hall._outage_end is not None:
            raise chaos_mod.Skipped("an outage is in progress")
        cut = [0]
        start = time.monotonic()
        hall._outage_end = start + seconds
        await hall.central.stop_listening()
        refuser = None
        try:
            refuser = await asyncio.start_server(spare_gateway.reset_connections(cut),
                                                 hall.central.host, hall.central.port)
            while True:
                now = time.monotonic()
                if hall._outage_end == 0.0 or (now >= hall._outage_end and (
                        cut[0] or now >= start + max(seconds, cap_s))):
                    break     # (0.0: recover() ends it now)
                await asyncio.sleep(0.05)
        finally:
            hall._outage_end = None
            if refuser is not None:
                refuser.close()
                await refuser.wait_closed()
            await hall.central.listen()
        return cut[0]

    async def incident(kind, arm, disarm, armed, window_s, cap_s):
        """A central-side incident: armed until it altered an answer (or cap_s passed); what
        is left of it is dropped window_s after the first. One incident of a kind at a time,
        so the answers it altered are its own; another one meanwhile is skipped, not queued
        (queued, they would keep the central API failing for the whole run)."""
        lock = hall._incident_locks.setdefault(kind, asyncio.Lock())
        if lock.locked():
            raise chaos_mod.Skipped("a %s incident is armed" % kind)
        async with lock:
            before = central_faults.injected[kind]
            central_faults.set(**arm)
            end = loop_time() + cap_s
            first = None
            try:
                while loop_time() < end and armed():
                    if first is None and central_faults.injected[kind] > before:
                        first = loop_time()
                        end = min(end, first + window_s)
                    await asyncio.sleep(0.05)
            finally:
                central_faults.set(**disarm)
            return central_faults.injected[kind] - before

    async def uplink_5xx(count, status=500, window_s=chaos_mod.WINDOW_S, cap_s=chaos_mod.CAP_S):
        return await incident("5xx", {"fail_next": count, "status": status}, {"fail_next": 0},
                              lambda: central_faults.fail_next > 0, window_s, cap_s)

    async def uplink_429(count, retry_after=1, window_s=chaos_mod.WINDOW_S, cap_s=chaos_mod.CAP_S):
        return await incident("429", {"throttle_next": count, "retry_after": retry_after},
                              {"throttle_next": 0}, lambda: central_faults.throttle_next > 0,
                              window_s, cap_s)

    async def uplink_slow(count, delay_s, window_s=chaos_mod.WINDOW_S, cap_s=chaos_mod.CAP_S):
        return await incident("slow", {"delay_s": delay_s, "delay_next": count},
                              {"delay_s": 0.0, "delay_next": 0}, lambda: central_faults.delay_s > 0,
                              window_s, cap_s)

    def corrupted():
        st = hall.bus.stats()
        return st["bit_flips"] + st["dropped_bytes"]

    async def bus_noise(seconds, ber, drop_rate, cap_s=chaos_mod.CAP_S):
        """Bits flipped and bytes dropped on the line; longer (up to cap_s) until one was."""
        if _busy(hall, "bus_noise"):
            raise chaos_mod.Skipped("bus noise already on")
        try:
            before = corrupted()
            start = time.monotonic()
            hall.bus.set_noise(ber, drop_rate)
            try:
                await asyncio.sleep(seconds)
                while corrupted() == before and time.monotonic() < start + max(seconds, cap_s):
                    await asyncio.sleep(0.1)
            finally:
                hall.bus.set_noise(0.0, 0.0)
            return corrupted() - before
        finally:
            _free(hall, "bus_noise")

    async def bus_cut(seconds, device=None):
        """Bytes the cut kept off the line or from a receiver."""
        if _busy(hall, "bus_cut"):
            raise chaos_mod.Skipped("a cut is in progress")
        try:
            node = None
            if device is not None:
                uart = hall.evaluators[device].uart
                if uart is None or not uart.local_port:
                    raise RuntimeError("%s is not on the bus right now" % device)
                node = uart.local_port
            before = hall.bus.stats()["cut_bytes"]
            hall.bus.cut(seconds, node)
            await asyncio.sleep(seconds)
            return hall.bus.stats()["cut_bytes"] - before
        finally:
            _free(hall, "bus_cut")

    async def power_cut(device, down_s, instant, cap_s=chaos_mod.CAP_S):
        """Boots after the cut (1, or 0 when the device never went down and up again)."""
        ev = hall.evaluators[device]
        boots = ev.boots
        ev.power_cut(down_s, instant)
        end = time.monotonic() + down_s + cap_s
        while ev.boots == boots and time.monotonic() < end:
            await asyncio.sleep(0.05)
        return ev.boots - boots

    async def wifi_drop(device, seconds):
        """1 when the device was on the network (its connections were dropped)."""
        ev = hall.evaluators[device]
        hit = 1 if ev.net is not None and ev.net.isconnected() else 0
        ev.wifi_drop(seconds)
        return hit

    async def hostile(flood, seed, limit_s):
        if _busy(hall, "hostile"):
            raise chaos_mod.Skipped("an attack campaign is in progress")
        try:
            from hall_simulator import hostile as hostile_mod
            return await hostile_mod.campaign(hall, flood=flood, seed=seed, limit_s=limit_s)
        finally:
            _free(hall, "hostile")

    async def gateway_replaced(before_s, down_s, outage_s, cap_s=chaos_mod.CAP_S):
        """A spare Pi in place of the gateway while the central API is down (its docstring)."""
        return await spare_gateway.gateway_replaced(hall, before_s, down_s, outage_s, cap_s)

    return {"gateway_kill": gateway_kill, "broker_restart": broker_restart,
            "gateway_replaced": gateway_replaced, "uplink_outage": uplink_outage,
            "uplink_5xx": uplink_5xx, "uplink_429": uplink_429,
            "uplink_slow": uplink_slow, "bus_noise": bus_noise, "bus_cut": bus_cut,
            "power_cut": power_cut, "wifi_drop": wifi_drop, "hostile": hostile}


def _busy(hall, kind):
    """True when a fault of `kind` is in progress; else marks one as started."""
    if kind in hall._running:
        return True
    hall._running.add(kind)
    return False

def _free(hall, kind):
    hall._running.discard(kind)
