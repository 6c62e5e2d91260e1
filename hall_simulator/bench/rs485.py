"""RS-485 bench: 32 evaluators on the virtual bus at 115,200 and 9,600 baud.

    python -m hall_simulator.bench.rs485 --json      (or: hall-sim bench rs485 --json)

Production code on both ends by default:
- master: the gateway's (gateway.rs485_master.Rs485Master with its registry, MAC checks and
  durable SQLite store, through pyserial socket:// as in production). committed = the store has
  committed the rating (on_rating), before the ACK goes back. `--master link`: a bare
  protocol.link.MasterBus poller instead (committed = it received the RATING).
- devices: real evaluators (hall_simulator.evaluator: firmware.device.Device on the sim board with
  the firmware's RS-485 transport and its own flash directory), one thread each; the master pushes
  each a case, a citizen rates it, the next case follows its commit. pressed = the thank-you
  screen appeared (the rating is in flash). `--devices-impl link`: 32 protocol.link.SlaveLink loops
  in one thread with Poisson presses, to see the bus and master without the devices' CPU cost.

Figures per baud: idle poll cycle (measured vs the wire limit of protocol.timing.poll_cycle_us with
the real payload sizes), the cycle under load, press -> committed p50/p99, and the bus counters.
ratio = the lower of the two bus efficiencies (wire-limit cycle / measured idle cycle).
"""

import argparse
import hashlib
import heapq
import os
import shutil
import tempfile
import random
import select
import sys
import threading
import time

import serial

from hall_simulator.bench import emit, percentile
from hall_simulator.bus_runners import BusProcess, BusThread
from hall_simulator.bus_uart import BusUart
from protocol import auth, codec, errors, schema, timing, vocab
from protocol.link import MasterBus, SlaveLink
from protocol.rating import rating_id

BAUDS = (115200, 9600)
REPLY_PAYLOAD_MAX = 300     # a signed RATING with serials and a text stays well under this
MAX_RATINGS_PER_VISIT = 4   # the master moves on after this many, so one device cannot hog the bus


def device_id(address):
    return "dev-%03d" % address


def device_key(address):
    return hashlib.sha256(b"rs485-bench/%d" % address).digest()


def _rating(address, counter, key, rng):
    level = rng.choice(vocab.LEVELS)
    record = {
        "device": device_id(address), "counter": counter, "case_id": address * 100000 + counter,
        "serials": ["SZ2026%06d" % (address * 1000 + counter)], "node": vocab.NODE_COMPLETION,
        "source": vocab.SRC_PRESS, "overall": level, "staff_id": "A%03d" % address,
        "window": "W%02d" % address, "device_time": int(time.time()), "uptime_ms": counter * 1000,
    }
    if vocab.is_bad(level):
        record["tags"] = [501]
    return auth.sign(key, record)


class DeviceFarm(threading.Thread):
    """All device loops in one thread: select() over their BusUarts, replies after the guard time."""

    def __init__(self, url, baud, devices, press_every_s, seed):
        super().__init__(name="rs485-devices", daemon=True)
        self.guard_s = timing.guard_us(baud) / 1e6
        self.rng = random.Random(seed)
        self.press_every_s = press_every_s
        self.pressing = False
        self.running = True
        self.pressed = {}           # rating id -> monotonic press time
        self.devices = []
        for address in range(1, devices + 1):
            self.devices.append({
                "address": address, "uart": BusUart(url, baud=baud, require_de=False),
                "link": SlaveLink(address), "outbox": [], "counter": 0, "key": device_key(address),
                "next_press": 0.0,
            })
        self._replies = []          # heap of (due, order, uart, bytes)
        self._order = 0

    def start_pressing(self):
        now = time.monotonic()
        for d in self.devices:
            d["next_press"] = now + self.rng.expovariate(1.0 / self.press_every_s)
        self.pressing = True

    def stop_pressing(self):
        self.pressing = False

    def outboxes(self):
        return sum(len(d["outbox"]) for d in self.devices)

    def run(self):
        by_fd = {d["uart"].fileno(): d for d in self.devices}
        while self.running:
            now = time.monotonic()
            if self.pressing:
                for d in self.devices:
                    if d["next_press"] <= now:
                        d["counter"] += 1
                        r = _rating(d["address"], d["counter"], d["key"], self.rng)
                        d["outbox"].append(r)
                        self.pressed[rating_id(r)] = now
                        d["next_press"] = now + self.rng.expovariate(1.0 / self.press_every_s)
            while self._replies and self._replies[0][0] <= now:
                _, _, uart, data = heapq.heappop(self._replies)
                uart.write(data)
            wake = now + 0.02
            if self._replies:
                wake = min(wake, self._replies[0][0])
            readable, _, _ = select.select(list(by_fd), [], [], max(0.0, wake - time.monotonic()))
            for fd in readable:
                d = by_fd[fd]
                data = d["uart"].read()
                if not data:
                    continue
                heard = time.monotonic()
                d["link"].receive_data(data)
                while True:
                    req = d["link"].next_request()
                    if req is None:
                        break
                    reply = self._answer(d, req)
                    if reply is not None:
                        self._order += 1
                        heapq.heappush(self._replies, (heard + self.guard_s, self._order, d["uart"], reply))

    def _answer(self, d, req):
        link = d["link"]
        if req.broadcast:
            return None
        if req.error is not None:
            return link.refuse(req, req.error.reason)
        if req.type == schema.ACK:
            outbox = d["outbox"]
            if outbox and outbox[0]["counter"] == req.record.get("counter") and \
                    vocab.device_releases(req.record.get("result", 0)) and \
                    auth.verify_ack(d["key"], device_id(d["address"]), req.record,
                                    outbox[0]["mac"]):   # as the firmware: bound to its head
                outbox.pop(0)
        elif req.type == schema.POLL:
            if req.record.get("want_status"):
                return link.reply(req, schema.STATUS, {
                    "device": device_id(d["address"]), "firmware": "bench", "board": "sim",
                    "outbox": len(d["outbox"]), "counter": d["counter"]})
        else:
            return link.refuse(req, errors.R_UNKNOWN_TYPE)
        if d["outbox"]:
            return link.reply(req, schema.RATING, d["outbox"][0])
        return link.reply(req, schema.IDLE, {"outbox": 0, "case_id": 0})

    def close(self):
        self.running = False
        self.join(5)
        for d in self.devices:
            d["uart"].close()


class PollingMaster:
    """The gateway's side, minimal: poll each address in turn, ACK every rating it is given."""

    def __init__(self, url, baud, devices):
        self.ser = serial.serial_for_url(url, timeout=0.05)
        self.byte_s = 10.0 / baud
        self.guard_s = timing.guard_us(baud) / 1e6
        self.timeout_s = timing.reply_timeout_us(baud, REPLY_PAYLOAD_MAX) / 1e6
        self.bus = MasterBus()
        self.addresses = list(range(1, devices + 1))
        self.committed = {}         # rating id -> monotonic time the master received it
        self.stats = {"exchanges": 0, "timeouts": 0, "ratings": 0, "seen_again": 0}

    def exchange(self, address, msg_type, record):
        ch = self.bus.channel(address)
        data = ch.request(msg_type, record)
        self.ser.write(data)
        self.stats["exchanges"] += 1
        deadline = time.monotonic() + len(data) * self.byte_s + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                ch.give_up()
                self.stats["timeouts"] += 1
                return None
            self.ser.timeout = left
            chunk = self.ser.read(1)
            if not chunk:
                continue
            waiting = self.ser.in_waiting
            if waiting:
                chunk += self.ser.read(waiting)
            self.bus.receive_data(chunk)
            got = self.bus.next_reply()
            if got is not None:
                time.sleep(self.guard_s)          # let the device release the line
                return got[1]

    def visit(self, address):
        reply = self.exchange(address, schema.POLL, {"time": int(time.time())})
        for _ in range(MAX_RATINGS_PER_VISIT):
            if reply is None or reply.type != schema.RATING or reply.record is None:
                return
            rid = rating_id(reply.record)
            if rid in self.committed:
                self.stats["seen_again"] += 1
            else:
                self.committed[rid] = time.monotonic()
                self.stats["ratings"] += 1
            # Signed and bound to the rating as the gateway does (SPEC 7.5): the firmware releases
            # nothing on an unsigned ACK or one for another rating.
            ack = {"device": reply.record["device"], "counter": reply.record["counter"],
                   "result": vocab.ACK_STORED}
            reply = self.exchange(address, schema.ACK,
                                  auth.sign_ack(device_key(address), device_id(address), ack,
                                                reply.record["mac"]))

    def cycle(self):
        t0 = time.monotonic()
        for address in self.addresses:
            self.visit(address)
        return time.monotonic() - t0

    def summary(self):
        return dict(self.stats)

    def close(self):
        self.ser.close()


class GatewayMaster:
    """The real gateway master (gateway.rs485_master.Rs485Master) with its registry and durable
    store; a rating counts as committed when the store has committed it (on_rating)."""

    def __init__(self, url, baud, devices):
        from gateway.config import BusConfig
        from gateway.registry import Registry
        from gateway.rejects import Rejections
        from gateway.rs485_master import Rs485Master
        from gateway.committer import GroupCommitter
        from gateway.store import Store
        self.dir = tempfile.mkdtemp(prefix="rs485-bench-")
        self.registry = Registry([{"id": device_id(a), "window": "W%02d" % a, "transport": "rs485",
                                   "address": a, "key": device_key(a).hex()}
                                  for a in range(1, devices + 1)])
        self.store = Store(os.path.join(self.dir, "outbox.db"))
        self.committer = GroupCommitter(self.store)
        self.rejections = Rejections()
        self.committed = {}
        self.listeners = []         # fn(rating) after each first commit (firmware farm: next case)
        self.stats = {"ratings": 0, "seen_again": 0}
        self.master = Rs485Master(BusConfig(url=url, baud=baud), 0, "bench-hall", self.registry,
                                  self.committer, self.rejections, on_rating=self._rated)
        self.master.port = self.master._open()   # the production path (read timeout, RS-485 mode)

    def _rated(self, rating, result, enrichment):
        rid = rating_id(rating)
        if rid in self.committed:
            self.stats["seen_again"] += 1
        else:
            self.committed[rid] = time.monotonic()
            self.stats["ratings"] += 1
            for fn in self.listeners:
                fn(rating)

    def cycle(self):
        t0 = time.monotonic()
        self.master.round()
        return time.monotonic() - t0

    def summary(self):
        out = dict(self.stats)
        for name in ("exchanges", "timeouts", "refused"):
            out[name] = sum(self.master.stats(device_id(a))[name]
                            for a in range(1, len(self.registry.rs485(0)) + 1))
        out["rejected"] = self.rejections.total()
        return out

    def close(self):
        self.master.port.close()
        self.committer.close()
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class FirmwareFarm:
    """32 real evaluators (hall_simulator.evaluator: firmware.device.Device on the sim board, the
    firmware's RS-485 transport, own flash directory, a citizen who presses), each in its thread.
    The gateway master pushes each one a case; when its rating is committed, the next case.
    "pressed" = the moment the thank-you screen appeared (the rating is in the device's flash)."""

    def __init__(self, url, baud, devices, press_every_s, seed):
        from hall_simulator import citizens
        from hall_simulator.clock import SimClock
        from hall_simulator.evaluator import Evaluator, Spec
        self.dir = tempfile.mkdtemp(prefix="rs485-bench-fw-")
        self.pressing = False
        self.pressed = {}
        self.master = None
        self.cases = 0
        self._lock = threading.Lock()
        think = max(0.1, press_every_s / 4.0)
        mix = citizens.Mix(walk_away=0.0, double_tap=0.0, think_s=(think / 2, think * 1.5))
        clock = SimClock()
        self.evaluators = [
            Evaluator(Spec(device_id(a), device_key(a).hex(), "W%02d" % a, "rs485",
                           os.path.join(self.dir, device_id(a)), address=a, baud=baud),
                      clock, self._confirmed, mix=mix, seed=seed, bus_url=url)
            for a in range(1, devices + 1)]
        for ev in self.evaluators:
            ev.start()

    def attach(self, gateway_master):
        self.master = gateway_master
        gateway_master.listeners.append(self._committed)

    def _confirmed(self, entry):
        if entry["source"] == vocab.SRC_PRESS:
            self.pressed[entry["rating_id"]] = time.monotonic()

    def _case(self, address):
        with self._lock:
            self.cases += 1
            n = self.cases
        return {"case_id": n, "window": "W%02d" % address, "staff_id": "A%03d" % address,
                "staff_name": "李堃", "matter_code": "M0001", "matter_name": "营业执照变更登记",
                "serials": ["SZ2026%06d" % n], "node": vocab.NODE_COMPLETION,
                "indicators": vocab.NODE_INDICATORS[vocab.NODE_COMPLETION],
                "deadline": int(time.time()) + 7 * 86400}

    def _committed(self, rating):
        if self.pressing:
            address = int(rating["device"].split("-")[1])
            self.master.master.set_context(rating["device"], self._case(address))

    def start(self):
        pass

    def start_pressing(self):
        self.pressing = True
        for ev in self.evaluators:
            self.master.master.set_context(ev.id, self._case(ev.spec.address))

    def stop_pressing(self):
        self.pressing = False
        for ev in self.evaluators:
            self.master.master.set_context(ev.id, None)

    def outboxes(self):
        waiting = sum(ev.outbox_depth() or 0 for ev in self.evaluators)
        return waiting + len([r for r in self.pressed if r not in self.master.committed])

    def close(self):
        for ev in self.evaluators:
            ev.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_baud(baud, devices=32, duration=20.0, idle_cycles=5, press_every_s=8.0, seed=1,
             bus_in="process", master_kind="gateway", devices_kind="firmware", farm_factory=None):
    if devices_kind == "firmware" and master_kind != "gateway":
        raise ValueError("firmware devices need the gateway master (it pushes their cases)")
    kind = BusProcess if bus_in == "process" else BusThread
    with kind(baud=baud, rng=random.Random(seed)) as bus:
        master = (GatewayMaster if master_kind == "gateway" else PollingMaster)(bus.url, baud, devices)
        farm = (farm_factory or (FirmwareFarm if devices_kind == "firmware" else DeviceFarm))(
            bus.url, baud, devices, press_every_s, seed)
        if devices_kind == "firmware":
            farm.attach(master)
        deadline = time.monotonic() + 10
        while bus.node_count() < devices + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        farm.start()
        master.cycle()                                   # warm-up
        idle = [master.cycle() for _ in range(idle_cycles)]
        farm.start_pressing()
        loaded = []
        end = time.monotonic() + duration
        while time.monotonic() < end:
            loaded.append(master.cycle())
        farm.stop_pressing()
        drain_end = time.monotonic() + 15
        while farm.outboxes() and time.monotonic() < drain_end:   # drain what is still queued
            master.cycle()
        latencies = [(master.committed[rid] - t) * 1000 for rid, t in farm.pressed.items()
                     if rid in master.committed]
        counters = bus.stats()
        left = farm.outboxes()
        farm.close()
        master.close()
    poll_payload = len(codec.encode(schema.POLL, {"time": int(time.time())}))
    idle_payload = len(codec.encode(schema.IDLE, {"outbox": 0, "case_id": 0}))
    wire_us = timing.poll_cycle_us(devices, baud, poll_payload=poll_payload, reply_payload=idle_payload)
    bare_us = timing.poll_cycle_us(devices, baud, device_turnaround_us=0, poll_payload=poll_payload,
                                   reply_payload=idle_payload)
    idle_ms = sum(idle) / len(idle) * 1000
    return {
        "devices": devices,
        "idle_cycle_ms": round(idle_ms, 2),
        "wire_limit_cycle_ms": round(wire_us / 1000, 2),
        "wire_limit_no_turnaround_ms": round(bare_us / 1000, 2),
        "efficiency": round(wire_us / 1000 / idle_ms, 3),
        "loaded_cycle_ms": {"mean": round(sum(loaded) / len(loaded) * 1000, 2),
                            "max": round(max(loaded) * 1000, 2), "cycles": len(loaded)},
        "press_to_committed_ms": {
            "p50": round(percentile(latencies, 50), 1) if latencies else None,
            "p99": round(percentile(latencies, 99), 1) if latencies else None,
            "max": round(max(latencies), 1) if latencies else None,
            "count": len(latencies)},
        "pressed": len(farm.pressed), "committed": master.stats["ratings"], "left_in_outboxes": left,
        "presses_per_s": round(len(farm.pressed) / duration, 2),
        "master": master.summary(),
        "bus": {k: counters[k] for k in ("bytes_on_line", "collisions", "collided_bytes",
                                         "bit_flips", "dropped_bytes")},
        "line_utilisation": round(counters["line_time_s"] / (sum(idle) + sum(loaded)) , 3)
        if idle else None,
    }


def main(argv=None):
    sys.setswitchinterval(0.0005)   # three threads hand bytes around: keep the GIL hand-over short
    p = argparse.ArgumentParser(prog="hall-sim bench rs485", description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--devices", type=int, default=32)
    p.add_argument("--duration", type=float, default=20.0, help="seconds of presses per baud rate")
    p.add_argument("--press-every", type=float, default=8.0, help="mean seconds between presses per device")
    p.add_argument("--baud", type=int, action="append", help="baud rate(s) (default 115200 and 9600)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--master", choices=("gateway", "link"), default="gateway",
                   help="the real gateway master and store (default) or a bare protocol.link master")
    p.add_argument("--devices-impl", choices=("firmware", "link"), default="firmware",
                   help="the real firmware evaluators (default) or bare protocol.link device loops")
    p.add_argument("--bus-in", choices=("process", "thread"), default="process",
                   help="run the bus in a child process (default) or a thread of this one")
    o = p.parse_args(argv)
    figures = {}
    for baud in o.baud or BAUDS:
        figures[str(baud)] = run_baud(baud, o.devices, o.duration, press_every_s=o.press_every,
                                      seed=o.seed, bus_in=o.bus_in, master_kind=o.master,
                                      devices_kind=o.devices_impl)
    result = {
        "name": "rs485",
        "figures": figures,
        "ratio": min(f["efficiency"] for f in figures.values()),
        "note": "master: %s; devices: %s; bus in a %s; committed = %s; pressed = %s"
                % (o.master, "firmware evaluators" if o.devices_impl == "firmware"
                   else "protocol.link SlaveLink loops", o.bus_in,
                   "gateway store commit" if o.master == "gateway" else "master received the RATING",
                   "thank-you screen shown" if o.devices_impl == "firmware" else "rating queued"),
    }
    emit(result, o.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
