"""Over-the-air update bench: press -> committed on a 32-device bus during a rollout, against the
same bus idle, at 115,200 and 9,600 baud, and the rollout's duration.

    hall-sim bench ota_bus --json      (or: python -m hall_simulator.bench.ota_bus --json)

What runs, per baud rate, in one run: the gateway's master (gateway.rs485_master.Rs485Master with
its registry, MAC checks and durable SQLite store: hall_simulator.bench.rs485.GatewayMaster) on
the baud-accurate virtual bus (a child process), and 32 light devices (rs485.DeviceFarm: one
thread of protocol.link SlaveLink loops in a child process of their own; Poisson presses; a rating released only on an ACK that
verifies) that also take updates through hall_simulator.light_update (the manifest's MAC under
the hall's release key, every file's sha256, the next (file, offset) they need; the trial boot
confirms at the next poll). The rollout is the gateway's own (gateway.ota + gateway.rollout):
one canary, then the other 31.

1. idle: presses for `--idle` seconds, no rollout: the baseline p99.
2. rollout: the release is registered and rolled out while the presses go on, until every device
   confirmed (or `--max-rollout` s). Its p99 and duration are the figures.
ratio = the higher rollout/idle p99 ratio of the two baud rates (the goal: <= 1.5).
The release is `--release-kb` KB of changed code (default 4 at 115,200, 0.5 at 9,600: a fix to
a module or two; a device fetches only what it lacks, and at 9,600 a third of the line moves
~80 bytes a round). The chunk size follows the
master's share of the line (gateway.rs485_master.OTA_SHARE), so the slow bus gets small chunks.
"""

import argparse
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time

from hall_simulator.bench import emit, percentile, rs485
from hall_simulator.bench.rs485_master import press_every
from hall_simulator.bus_runners import BusProcess
from hall_simulator.light_update import UpdateDouble
from protocol import schema

BAUDS = (115200, 9600)
RELEASE_KB = {115200: 4, 9600: 0.5}
KEY = bytes(range(7, 39))
UPDATES = (schema.UPDATE_OFFER, schema.UPDATE_CHUNK, schema.UPDATE_COMMIT)
GOAL_RATIO = 1.5


class UpdatingFarm(rs485.DeviceFarm):
    """The light devices, each with its update double."""

    def __init__(self, url, baud, devices, press_every_s, seed):
        super().__init__(url, baud, devices, press_every_s, seed)
        for d in self.devices:
            d["update"] = UpdateDouble(rs485.device_id(d["address"]), KEY, auto_boot=True)

    def _answer(self, d, req):
        if req.error is None and not req.broadcast and req.type in UPDATES:
            return d["link"].reply(req, schema.UPDATE_STATE, d["update"].handle(req.type, req.record))
        if req.error is None and not req.broadcast and req.type == schema.POLL and not d["outbox"] \
                and not req.record.get("want_status"):
            news = d["update"].news()        # SPEC 3.10: the update's news instead of IDLE
            if news is not None:
                return d["link"].reply(req, schema.UPDATE_STATE, news)
        return super()._answer(d, req)


def _farm_child(conn, url, baud, devices, press_every_s, seed):
    """The devices in a child process (as bench rs485_master's: in the master's process they
    would take the GIL from it, which a real bus's devices never do), run on pipe commands."""
    import hashlib
    sys.setswitchinterval(0.0005)
    farm = UpdatingFarm(url, baud, devices, press_every_s, seed)
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
            farm.close()
            files = dict((d["address"], dict((p, hashlib.sha256(b).hexdigest())
                                             for p, b in d["update"].files().items()))
                         for d in farm.devices)
            conn.send((dict(farm.pressed), farm.outboxes(), files))
            return


class FarmProcess:
    """UpdatingFarm in a child process (spawn)."""

    def __init__(self, url, baud, devices, press_every_s, seed):
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_farm_child, name="ota-devices", daemon=True,
                                 args=(child, url, baud, devices, press_every_s, seed))
        self._proc.start()
        if not self._conn.poll(60) or self._conn.recv() != "ready":
            self._proc.kill()
            raise RuntimeError("device process did not start")

    def _call(self, command):
        self._conn.send(command)
        if not self._conn.poll(30):
            raise RuntimeError("device process not answering")
        return self._conn.recv()

    def start_pressing(self):
        self._call("press")

    def stop_pressing(self):
        self._call("hold")

    def outboxes(self):
        return self._call("outboxes")

    def close(self):
        """(pressed: rating id -> monotonic press time, outboxes left, files per address)."""
        out = self._call("close")
        self._proc.join(10)
        return out


def _release(folder, kb, seed):
    from tools.flashkit.bundle import Bundle
    rng = random.Random(seed)
    files = {"firmware/app.py": bytes(rng.getrandbits(8) for _ in range(int(kb * 1024) - 200)),
             "main.py": b"from firmware import main\nmain.run()\n"}
    return Bundle("1.1.0", files, ["five_button"]).save(os.path.join(folder, "bundle"))


def _p99(pressed, committed, since, until):
    values = [(committed[rid] - t) * 1000 for rid, t in pressed.items()
              if since <= t < until and rid in committed]
    return (round(percentile(values, 99), 1) if values else None), len(values)


def run_baud(baud, devices=32, idle_s=30.0, max_rollout_s=300.0, press_every_s=None, kb=None, seed=1):
    from gateway import ota, rollout
    every = press_every(baud, press_every_s)
    kb = kb or RELEASE_KB.get(baud, 2)
    folder = tempfile.mkdtemp(prefix="ota-bus-")
    try:
        with BusProcess(baud=baud, rng=random.Random(seed)) as bus:
            master = rs485.GatewayMaster(bus.url, baud, devices)
            farm = FarmProcess(bus.url, baud, devices, every, seed)
            deadline = time.monotonic() + 10
            while bus.node_count() < devices + 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            releases = ota.Releases(KEY, folder)
            ro = rollout.Rollouts(folder, releases, firmware=lambda d: "1.0.0")
            master.master.updates = ro
            master.cycle()
            farm.start_pressing()
            t_idle = time.monotonic()
            while time.monotonic() < t_idle + idle_s:
                master.cycle()
            rel = releases.add(_release(folder, kb, seed))
            ids = [rs485.device_id(a) for a in range(1, devices + 1)]
            t_start = time.monotonic()
            r = ro.start(rel.id, ids, ids[:1])
            canary_at = None
            while r["status"] == "running" and time.monotonic() < t_start + max_rollout_s:
                master.cycle()
                if canary_at is None and r["phase"] == "rest":
                    canary_at = time.monotonic()
            t_end = time.monotonic()
            farm.stop_pressing()
            drain = time.monotonic() + 15
            while farm.outboxes() and time.monotonic() < drain:
                master.cycle()
            pressed, left, files = farm.close()
            want = dict((n, hashlib.sha256(d).hexdigest()) for n, d in zip(rel.names, rel.data[1:]))
            p99_idle, n_idle = _p99(pressed, master.committed, t_idle, t_start)
            p99_roll, n_roll = _p99(pressed, master.committed, t_start, t_end)
            counts = {}
            for p in r["devices"].values():
                counts[p["state"]] = counts.get(p["state"], 0) + 1
            out = {
                "devices": devices, "release_bytes": rel.total, "press_every_s": every,
                "idle": {"seconds": round(t_start - t_idle, 1), "p99_ms": p99_idle, "presses": n_idle},
                "rollout": {"seconds": round(t_end - t_start, 1), "p99_ms": p99_roll, "presses": n_roll,
                            "canary_s": round(canary_at - t_start, 1) if canary_at else None,
                            "status": r["status"], "devices": counts,
                            "bytes_acked": sum(p["acked"] for p in r["devices"].values()),
                            "bytes_per_s": round(sum(p["acked"] for p in r["devices"].values())
                                                 / max(0.001, t_end - t_start), 1)},
                "ratio": round(p99_roll / p99_idle, 3) if p99_idle and p99_roll else None,
                "lost": len(pressed) - len([k for k in pressed if k in master.committed]),
                "left_in_outboxes": left,
                "duplicates": master.stats["seen_again"],
                "master_ota": dict(master.master.ota_stats),
                "correct": all(f == want for f in files.values()),
            }
            master.close()
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(bauds, devices, idle_s, max_rollout_s, press_every_s=None, kb=None, seed=1):
    figures = dict((str(b), run_baud(b, devices, idle_s, max_rollout_s, press_every_s, kb, seed))
                   for b in bauds)
    ratios = [f["ratio"] for f in figures.values() if f["ratio"] is not None]
    from gateway.rs485_master import OTA_SHARE
    return {"name": "ota_bus", "figures": figures, "ratio": max(ratios) if ratios else None,
            "goal_ratio": GOAL_RATIO,
            "goals_met": bool(ratios) and max(ratios) <= GOAL_RATIO and all(
                f["rollout"]["status"] == "done" and f["lost"] == 0 and f["correct"]
                for f in figures.values()),
            "baseline": "press -> committed p99 of the same bus idle, same run",
            "ota_share": OTA_SHARE, "load_average": [round(x, 2) for x in os.getloadavg()],
            "note": "master: gateway Rs485Master + SQLite store; devices: %d light SlaveLink loops "
                    "with hall_simulator.light_update (not firmware interpreters); bus in a process"
                    % devices}


def main(argv=None):
    sys.setswitchinterval(0.0005)
    p = argparse.ArgumentParser(prog="hall-sim bench ota_bus", description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--devices", type=int, default=32)
    p.add_argument("--idle", type=float, default=30.0, help="seconds of presses with no rollout")
    p.add_argument("--max-rollout", type=float, default=300.0, help="give the rollout this long at most")
    p.add_argument("--press-every", type=float, help="mean seconds between presses per device "
                   "(default: as bench rs485_master)")
    p.add_argument("--release-kb", type=float, help="size of the release (default 4 at 115200, 0.5 at 9600)")
    p.add_argument("--baud", type=int, action="append", help="baud rate(s) (default 115200 and 9600)")
    p.add_argument("--seed", type=int, default=1)
    o = p.parse_args(argv)
    emit(run(o.baud or BAUDS, o.devices, o.idle, o.max_rollout, o.press_every, o.release_kb, o.seed),
         o.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
