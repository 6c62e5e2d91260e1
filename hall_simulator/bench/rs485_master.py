"""RS-485 master bench: the gateway's master alone, against 32 light devices, at 115,200 and 9,600.

    hall-sim bench rs485_master --json      (or: python -m hall_simulator.bench.rs485_master --json)

What runs (hall_simulator.bench.rs485 does the work; this picks its parts and judges the result):
- master: gateway.rs485_master.Rs485Master with its registry, MAC checks and durable SQLite store,
  its port opened by its own _open() (pyserial socket://, the production read timeout), on the
  baud-accurate virtual bus in a child process. committed = the store committed the rating.
- devices: 32 protocol.link SlaveLink loops in one thread (rs485.DeviceFarm), not 32 firmware
  interpreters, in a child process of their own by default (`--devices-in process`): in the
  master's process they would take the GIL from it, which a real bus's devices never do. They
  answer POLL with IDLE, STATUS or their outbox head after the guard time
  (SPEC 5.1), and release a rating only on a releasing ACK that verifies under their key and is
  bound to that rating's MAC (SPEC 7.5). Poisson presses, `--press-every` s apart per device:
  by default 8 s at 115,200 and 48 s at 9,600 (a RATING and its ACK take ~27 ms of line at
  115,200 but ~210 ms at 9,600: the same rate would saturate the slow bus and measure only its
  queue); either is far above a real hall's case per window every few minutes. Each baud runs
  long enough for `--samples` presses (default 150), so the p99 rests on enough of them.

Baseline, from the same run: the wire limit, computed by protocol.timing.poll_cycle_us for the
real POLL and IDLE sizes (the cycle a perfect master would reach). efficiency = wire-limit cycle
/ measured idle cycle; ratio = the lower efficiency of the two baud rates.

Goals (reported, never adjusted): at 115,200 press -> committed p99 <= 150 ms and efficiency
>= 0.8; at 9,600 p99 <= 1 s. `p99_floor_ms` is what round-robin polling allows at best: a press
waits up to one whole wire-limit cycle for its device's turn (p99: 0.99 of it), then its POLL and
RATING cross the line. A goal below that floor cannot be met by any master that polls in turn.
`idle_phases` splits an idle exchange in two, to tell the master's own cost from the simulated
line's and devices': request written -> reply decoded (the wire needs request + guard + reply;
the rest is the bus, the devices and the OS waking each of them) and reply decoded -> next
request written (the wire needs the guard; the rest is the master: handling, scheduling).
The machine's load average is reported with the figures: the master, the bus and the devices are
three busy processes/threads, so a loaded machine shows as timeouts and a slower cycle.
"""

import argparse
import os
import random
import statistics
import sys
import time

from hall_simulator.bench import emit, rs485
from hall_simulator.bus_runners import BusProcess, BusThread
from protocol import codec, schema, timing

GOALS = {115200: {"p99_ms": 150.0, "efficiency": 0.8}, 9600: {"p99_ms": 1000.0}}
PRESS_EVERY_S = {115200: 8.0, 9600: 48.0}     # other baud rates: scaled from 115,200's
DEVICE_TURNAROUND_US = 2000     # protocol.timing.poll_cycle_us's default reaction time


def _farm_child(conn, url, baud, devices, press_every_s, seed):
    """The light devices' side of a FarmProcess: a DeviceFarm run on commands from the pipe."""
    sys.setswitchinterval(0.0005)
    farm = rs485.DeviceFarm(url, baud, devices, press_every_s, seed)
    farm.start()
    conn.send("ready")
    while True:
        command = conn.recv()
        if command == "press":
            farm.start_pressing()
            conn.send(None)
        elif command == "hold":
            farm.stop_pressing()
            conn.send(None)
        elif command == "outboxes":
            conn.send(farm.outboxes())
        elif command == "close":
            farm.close()                    # joins the farm thread: `pressed` holds still
            # press times are time.monotonic(): one clock for every process on the machine
            conn.send((dict(farm.pressed), farm.outboxes()))
            return


class FarmProcess:
    """rs485.DeviceFarm in a child process (spawn), with the methods run_baud calls on a farm."""

    def __init__(self, url, baud, devices, press_every_s, seed):
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_farm_child, name="rs485-devices", daemon=True,
                                 args=(child, url, baud, devices, press_every_s, seed))
        self._proc.start()
        if not self._conn.poll(60) or self._conn.recv() != "ready":
            self._proc.kill()
            raise RuntimeError("device process did not start")
        self._final = None                  # (pressed, outboxes) once the child has ended

    def _call(self, command):
        self._conn.send(command)
        if not self._conn.poll(30):
            raise RuntimeError("device process not answering")
        return self._conn.recv()

    def start(self):
        pass                                # running since __init__

    def start_pressing(self):
        self._call("press")

    def stop_pressing(self):
        self._call("hold")

    def outboxes(self):
        return self._call("outboxes") if self._final is None else self._final[1]

    @property
    def pressed(self):
        """Rating id -> press time; run_baud reads it once the presses are over (which ends the
        child: the farm thread must stop for the table to hold still)."""
        self._end()
        return self._final[0]

    def _end(self):
        if self._final is None:
            self._final = self._call("close")
            self._proc.join(10)

    def close(self):
        self._end()
        if self._proc.is_alive():
            self._proc.kill()


def _payload_sizes():
    poll = len(codec.encode(schema.POLL, {"time": int(time.time()), "want_status": 0}))
    idle = len(codec.encode(schema.IDLE, {"outbox": 0, "case_id": 0}))
    rating = len(codec.encode(schema.RATING, rs485._rating(1, 1, rs485.device_key(1),
                                                            random.Random(0))))
    return poll, idle, rating


def p99_floor_us(devices, baud):
    """The lowest press -> committed p99 that polling every device in turn allows (see above)."""
    poll, idle, rating = _payload_sizes()
    cycle = timing.poll_cycle_us(devices, baud, DEVICE_TURNAROUND_US, poll, idle)
    return (0.99 * cycle + timing.frame_us(poll, baud) + timing.guard_us(baud)
            + DEVICE_TURNAROUND_US + timing.frame_us(rating, baud))


def idle_phases(baud, devices, seed=1, cycles=5, bus_in="process", devices_in="process"):
    """Times of the two halves of each idle exchange (see the module's doc), in ms."""
    kind = BusProcess if bus_in == "process" else BusThread
    with kind(baud=baud, rng=random.Random(seed)) as bus:
        master = rs485.GatewayMaster(bus.url, baud, devices)
        farm = (FarmProcess if devices_in == "process" else rs485.DeviceFarm)(
            bus.url, baud, devices, 1e9, seed)
        try:
            deadline = time.monotonic() + 10
            while bus.node_count() < devices + 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            farm.start()
            marks = []
            port, m = master.master.port, master.master
            write, await_reply = port.write, m._await_reply

            def timed_write(data):
                marks.append(("request", time.monotonic()))
                return write(data)

            def timed_await(ch, sent_len):
                reply = await_reply(ch, sent_len)
                marks.append(("reply" if reply is not None else "silence", time.monotonic()))
                return reply
            port.write, m._await_reply = timed_write, timed_await
            master.cycle()                              # warm-up (and the STATUS polls)
            del marks[:]
            for _ in range(cycles):
                master.cycle()
        finally:
            farm.close()
            master.close()
    to_reply, to_next = [], []
    for (k0, t0), (k1, t1), nxt in zip(marks, marks[1:], marks[2:] + [None]):
        if k0 == "request" and k1 == "reply":
            to_reply.append((t1 - t0) * 1000)
            if nxt is not None and nxt[0] == "request":
                to_next.append((nxt[1] - t1) * 1000)
    poll, idle, _ = _payload_sizes()
    guard = timing.guard_us(baud) / 1000
    wire = (timing.frame_us(poll, baud) + timing.frame_us(idle, baud)) / 1000 + guard

    def summary(values):
        return {"p50": round(statistics.median(values), 2),
                "mean": round(statistics.mean(values), 2)} if values else None
    return {"exchanges": len(to_reply), "silent": sum(1 for k, _ in marks if k == "silence"),
            "request_to_reply_ms": summary(to_reply),
            "wire_request_to_reply_ms": round(wire, 2),
            "reply_to_next_request_ms": summary(to_next), "wire_reply_to_next_request_ms": guard}


def judge(baud, figures):
    """{goal: {"goal", "measured", "met"}} for the goals of this baud rate (none: {})."""
    out = {}
    for name, goal in sorted(GOALS.get(baud, {}).items()):
        if name == "p99_ms":
            measured = figures["press_to_committed_ms"]["p99"]
            met = measured is not None and measured <= goal
        else:
            measured = figures["efficiency"]
            met = measured >= goal
        out[name] = {"goal": goal, "measured": measured, "met": met}
    return out


def press_every(baud, given=None):
    if given:
        return given
    return PRESS_EVERY_S.get(baud) or PRESS_EVERY_S[115200] * 115200.0 / baud


def run(bauds, devices, duration=None, press_every_s=None, seed=1, bus_in="process", samples=150,
        devices_in="process"):
    """Figures per baud rate. duration None: long enough for about `samples` presses."""
    figures = {}
    for baud in bauds:
        every = press_every(baud, press_every_s)
        seconds = duration or samples * every / devices
        f = rs485.run_baud(baud, devices, seconds, press_every_s=every, seed=seed,
                           bus_in=bus_in, master_kind="gateway", devices_kind="link",
                           farm_factory=FarmProcess if devices_in == "process" else None)
        f["press_every_s"] = every
        f["duration_s"] = round(seconds, 1)
        f["p99_floor_ms"] = round(p99_floor_us(devices, baud) / 1000, 1)
        f["goals"] = judge(baud, f)
        f["idle_phases"] = idle_phases(baud, devices, seed, bus_in=bus_in, devices_in=devices_in)
        figures[str(baud)] = f
    poll, idle, rating = _payload_sizes()
    return {
        "name": "rs485_master",
        "figures": figures,
        "ratio": min(f["efficiency"] for f in figures.values()),
        "goals_met": all(g["met"] for f in figures.values() for g in f["goals"].values()),
        "baseline": {"kind": "wire limit (protocol.timing.poll_cycle_us)",
                     "device_turnaround_us": DEVICE_TURNAROUND_US,
                     "payload_bytes": {"poll": poll, "idle": idle, "rating": rating}},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "note": "master: gateway Rs485Master + SQLite store, port by its _open(); devices: %d "
                "protocol.link SlaveLink loops (ACKs verified, bound to the rating MAC) in a "
                "%s; bus in a %s; Poisson presses (press_every_s per baud); committed = store "
                "commit"
                % (devices, devices_in, bus_in),
    }


def main(argv=None):
    sys.setswitchinterval(0.0005)   # master, devices and pyserial share the GIL: short hand-overs
    p = argparse.ArgumentParser(prog="hall-sim bench rs485_master",
                                description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--devices", type=int, default=32)
    p.add_argument("--duration", type=float, help="seconds of presses per baud rate "
                   "(default: long enough for --samples presses)")
    p.add_argument("--samples", type=int, default=150, help="presses to aim for per baud rate")
    p.add_argument("--press-every", type=float, help="mean seconds between presses per device "
                   "(default 8 at 115200, 48 at 9600)")
    p.add_argument("--baud", type=int, action="append",
                   help="baud rate(s) (default 115200 and 9600)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bus-in", choices=("process", "thread"), default="process")
    p.add_argument("--devices-in", choices=("process", "thread"), default="process",
                   help="the light devices in a child process (default) or a master's thread")
    o = p.parse_args(argv)
    emit(run(o.baud or rs485.BAUDS, o.devices, o.duration, o.press_every, o.seed, o.bus_in,
             o.samples, o.devices_in), o.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
