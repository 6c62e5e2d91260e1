"""`hall-sim --rollout`: a staged over-the-air update across the running hall while citizens keep
rating, driven the way an operator would, through the gateway's update routes (gateway.ota_api).

    hall.script = rollout.script(idle_s=20)      # before hall.run(); figures(hall) afterwards

The play: after WARMUP_S, the hall runs idle for `idle_s` and until `idle_samples` presses have
been committed (the latency baseline, at most IDLE_MAX_S); two bundles are built with the build tool's Bundle
(tools.flashkit.bundle) and registered (POST /api/v1/releases); a rollout of the good one starts
with w01 as the canary, then the rest (POST /api/v1/rollouts); one bus device and one Wi-Fi
device other than the canary have their power cut mid-transfer (once each holds half the
release: the evaluator's cut_mid_update) and must resume from what they held; when every
device confirmed, the broken release goes to one device, whose trial boots fail (its
firmware/main.py raises at import: the evaluator's boot runs the release's entry as
firmware.main.hand_over would) until boot_select rolls it back by itself, and the device says why.

Latency is press -> committed: from the press to the gateway's ACK releasing the rating from the
device's outbox (the ACK goes out after the commit), p99 while idle against p99 during the
rollout of the same run; `ratio` is their quotient, which should stay within RATIO_GOAL.

The releases are small (a root main.py, firmware/main.py and one data file of `data_bytes`): the
hall's own code is the host's, and a full bundle (the 684 KB font) would take many minutes at
9,600 baud; the transfer, resume, verify, switch, trial and rollback are the real ones.
"""

import asyncio
import json
import os
import time

import aiohttp

from hall_simulator import chaos as chaos_mod
from hall_simulator import report as report_mod
from tools.flashkit.bundle import ROOT_MAIN, Bundle

VERSION = "1.1.0"
BROKEN_VERSION = "1.1.1"
FACTORY = "1.0.0"            # firmware.health.FIRMWARE_VERSION: the release tools/flash.py wrote
DATA_BYTES = 2 * 1024
POLL_S = 0.1
CUT_SHARE = 0.5              # a victim's power goes once it holds this share of the release
ROLLOUT_MAX_S = 600.0        # real seconds a rollout may take before the play gives up
WARMUP_S = 5.0               # real seconds after the opening before the idle part counts
IDLE_SAMPLES = 100           # committed presses the idle part waits for (its p99's samples)
IDLE_MAX_S = 120.0           # real seconds the idle part may wait for them
RATIO_GOAL = 1.5             # press -> committed p99 during the rollout / idle, at most
BROKEN_MAIN = b'raise ImportError("this release was built without its firmware")\n'
FW_MAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "firmware", "main.py")


def bundles(workdir, data_bytes=DATA_BYTES):
    """(good bundle dir, broken bundle dir) under workdir/releases."""
    with open(FW_MAIN, "rb") as f:
        main = f.read()
    data = bytes((i * 131 + (i >> 8)) & 0xFF for i in range(data_bytes))
    boards = ["five_button", "touch"]
    good = Bundle(VERSION, {"main.py": ROOT_MAIN, "firmware/main.py": main,
                            "prompts/notes.bin": data}, boards)
    broken = Bundle(BROKEN_VERSION, {"main.py": ROOT_MAIN, "firmware/main.py": BROKEN_MAIN}, boards)
    base = os.path.join(workdir, "releases")
    os.makedirs(base, exist_ok=True)
    return good.save(os.path.join(base, VERSION)), broken.save(os.path.join(base, BROKEN_VERSION))


class Operator:
    """The operator's side of the update routes, with the hall's operator token."""

    def __init__(self, url, token):
        self.url = url
        self.session = aiohttp.ClientSession(headers={"Authorization": "Bearer " + token})

    async def call(self, method, path, body=None):
        async with self.session.request(method, self.url + path, json=body) as r:
            answer = await r.json(content_type=None)
            if r.status >= 300:
                raise RuntimeError("%s %s: %d %s" % (method, path, r.status, answer))
            return answer

    async def rollout(self, rollout_id):
        """The rollout, or None while the gateway is away (a restart)."""
        try:
            for r in (await self.call("GET", "/api/v1/rollouts"))["rollouts"]:
                if r["id"] == rollout_id:
                    return r
        except (aiohttp.ClientError, RuntimeError, ValueError):
            return None
        return None

    async def close(self):
        await self.session.close()


class Watch:
    """What the play saw of one rollout: when each device first left `pending` and confirmed."""

    def __init__(self):
        self.started = {}      # device -> wall time it first was past pending
        self.done = {}         # device -> wall time it reached a final state
        self.last = None

    def see(self, r):
        now = time.time()
        self.last = r
        for p in r["devices"]:
            if p["state"] != "pending":
                self.started.setdefault(p["device"], now)
            if p["state"] in ("confirmed", "rolled_back", "refused", "cancelled"):
                self.done.setdefault(p["device"], now)


async def _follow(op, rid, watch, until, step=None):
    end = time.monotonic() + ROLLOUT_MAX_S
    while time.monotonic() < end:
        r = await op.rollout(rid)
        if r is not None:
            watch.see(r)
            if step is not None:
                step(r)
            if until(r):
                return True
        await asyncio.sleep(POLL_S)
    return False


async def _idle(hall, idle_s, samples):
    """The idle part: `idle_s`, and until `samples` presses since it began were committed."""
    began = time.time()
    await asyncio.sleep(idle_s)
    end = time.monotonic() + IDLE_MAX_S
    while time.monotonic() < end and len(_committed(hall, began, time.time())) < samples:
        await asyncio.sleep(0.5)


def victims(hall, canary):
    """The devices whose power is cut mid-transfer: the last bus device and the last Wi-Fi device
    other than the canary (one of each the hall has)."""
    out = []
    for transport in ("rs485", "mqtt"):
        ids = [d for d in sorted(hall.evaluators)
               if hall.evaluators[d].spec.transport == transport and d != canary]
        if ids:
            out.append(ids[-1])
    return out


class PowerCuts:
    """Cuts each victim's power once, mid-transfer: the device itself goes down between two of
    its loop turns once it holds CUT_SHARE of the release and not all of it (the sim evaluator's
    cut_mid_update, armed before the rollout starts, so no poll of the operator's can miss the
    moment), and notes what it held on flash then and when it was back, and where the gateway
    saw its transfer after the boot."""

    def __init__(self, hall, devices, down_s):
        self.hall = hall
        self.cuts = {d: {} for d in devices}
        self.down_s = down_s
        self.tasks = []

    def arm(self):
        for d in self.cuts:
            self.hall.evaluators[d].cut_mid_update(self.down_s, CUT_SHARE)
            self.tasks.append(asyncio.ensure_future(self._watch(d)))

    async def _watch(self, device):
        """Fills the device's entry once the power went and it booted again."""
        ev = self.hall.evaluators[device]
        while ev.update_cut is None:
            await asyncio.sleep(0.05)
        end = time.monotonic() + self.down_s + chaos_mod.CAP_S
        while "resumed_from" not in ev.update_cut and time.monotonic() < end:
            await asyncio.sleep(0.05)
        cut = dict(ev.update_cut)
        self.cuts[device].update(device=device, acked_at_cut=cut["held"], at=cut["at"],
                                 transport=ev.spec.transport, file_at_cut=cut["file"],
                                 boots=cut["boots"], resumed_from=cut.get("resumed_from"))

    def step(self, r):
        for p in r["devices"]:
            cut = self.cuts.get(p["device"])
            if cut and cut.get("boots") and cut.get("state_after") is None and p["state"] in (
                    "receiving", "verified", "switching", "switched", "confirmed"):
                cut["state_after"] = p["state"]
                cut["gateway_acked_after"] = p["acked"] if p["state"] == "receiving" else r["bytes"]

    async def close(self):
        """Disarms; a device whose power went is waited for (its boot is at most down_s and
        chaos.CAP_S away), one that was never cut keeps an empty entry."""
        for d, task in zip(self.cuts, self.tasks):
            ev = self.hall.evaluators[d]
            ev.disarm_update_cut()
            if ev.update_cut is None:
                task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def script(idle_s=20.0, canary="w01", cut_down_s=1.0, idle_samples=None, data_bytes=None):
    """The play, as an async fn(hall) for Hall.script; returns what figures() reports.
    `idle_samples` and `data_bytes` default to IDLE_SAMPLES and DATA_BYTES as they are when the
    play starts (a reduced run lowers them)."""

    async def play(hall):
        await asyncio.sleep(WARMUP_S)     # the opening rush (every window's first case) is not idle
        out = {"idle_from": time.time()}
        await _idle(hall, idle_s, IDLE_SAMPLES if idle_samples is None else idle_samples)
        good_dir, broken_dir = await asyncio.to_thread(
            bundles, hall.workdir, DATA_BYTES if data_bytes is None else data_bytes)
        op = Operator(hall.gateway.http_url, hall.operator_token)
        try:
            good = await op.call("POST", "/api/v1/releases", {"path": good_dir})
            devices = sorted(hall.evaluators)
            cuts = PowerCuts(hall, victims(hall, canary), cut_down_s)
            broken_at = next((d for d in devices if d != canary and d not in cuts.cuts), canary)
            before = {d: hall.evaluators[d].running_version() or FACTORY for d in devices}
            out.update(start=time.time(), release=good["id"], version=VERSION, bytes=good["bytes"],
                       canary=canary, versions_before=before)
            cuts.arm()
            r = await op.call("POST", "/api/v1/rollouts",
                              {"release": good["id"], "canary": [canary], "devices": devices})
            watch = Watch()
            finished = await _follow(op, r["id"], watch,
                                     lambda r: r["status"] in ("done", "cancelled"), cuts.step)
            out.update(end=time.time(), finished=finished, rollout=watch.last,
                       power_cuts=cuts.cuts, started_at=watch.started, done_at=watch.done)
            await cuts.close()
            if not finished:              # given up: the broken release needs the gateway free
                await op.call("POST", "/api/v1/rollouts/%s/cancel" % r["id"])
            # the broken release to one device: its trial boots fail, it rolls back by itself
            broken = await op.call("POST", "/api/v1/releases", {"path": broken_dir})
            rb = await op.call("POST", "/api/v1/rollouts",
                               {"release": broken["id"], "canary": [broken_at], "devices": [broken_at]})
            bw = Watch()
            await _follow(op, rb["id"], bw, lambda r: r["devices"][0]["state"] in
                          ("rolled_back", "confirmed", "refused", "cancelled"))
            last = bw.last["devices"][0] if bw.last else {}
            if bw.last and bw.last["status"] in ("running", "paused"):
                await op.call("POST", "/api/v1/rollouts/%s/cancel" % rb["id"])
            out["broken"] = {"device": broken_at, "version": BROKEN_VERSION, "state": last.get("state"),
                             "reason": last.get("reason"), "version_after": last.get("version_after"),
                             "failed_starts": hall.evaluators[broken_at].stats["failed_starts"]}
        finally:
            await op.close()
        out["versions_after"] = {d: hall.evaluators[d].running_version() or FACTORY
                                 for d in sorted(hall.evaluators)}
        return out

    return play


def _committed(hall, since, until):
    """Press -> committed (ms) of the presses between `since` and `until` (wall time) that the
    gateway's ACK has released from their device's outbox."""
    acked = {}
    for ev in list(hall.evaluators.values()):
        acked.update(ev.acked_at)
    out = []
    for e in list(hall.confirmations):
        if e.get("source") != report_mod.PRESS or not since <= e.get("at", 0) < until:
            continue
        at = acked.get((e["device"], e["counter"]))
        if at is not None:
            out.append(max(0.0, (at - e["at"]) * 1000.0))
    return out


def _p99(values):
    v = report_mod.percentile(values, 99)
    return None if v is None else round(v, 1)


def figures(hall, confirmations=None):
    """{"rollout": ...} for the report: versions before/after per device (the gateway's rollout
    report and the device's own boot pointer), canary first, the resumed devices, the rollback,
    and press -> committed p99 while idle against during the rollout (the same run)."""
    played = hall.script_result
    if not isinstance(played, dict) or "start" not in played:
        return {"rollout": {"error": repr(played)[:300]}}
    idle = _committed(hall, played["idle_from"], played["start"])
    during = _committed(hall, played["start"], played["end"])
    ro = played.get("rollout") or {"devices": [], "status": "?"}
    per = {p["device"]: p for p in ro["devices"]}
    canary = played["canary"]
    rest_started = [t for d, t in played["started_at"].items() if d != canary]
    canary_done = played["done_at"].get(canary)
    after = played.get("versions_after", {})
    known = {FACTORY, VERSION}
    devices = {}
    for d, before in played["versions_before"].items():
        p = per.get(d, {})
        devices[d] = {"before": before, "after": after.get(d), "gateway_before": p.get("version_before"),
                      "gateway_after": p.get("version_after"), "state": p.get("state"),
                      "canary": bool(p.get("canary"))}
    cuts = {}
    for d, cut in (played.get("power_cuts") or {}).items():
        cuts[d] = dict(cut, device=d, resumed=bool(cut) and per.get(d, {}).get("state") == "confirmed"
                       and (cut.get("resumed_from") or 0) > 0)
    i99, d99 = _p99(idle), _p99(during)
    ratio = round(d99 / i99, 2) if i99 and d99 is not None else None
    out = {"release": played["release"], "version": played["version"], "bytes": played["bytes"],
           "status": ro.get("status"), "duration_s": round(played["end"] - played["start"], 1),
           "idle_s": round(played["start"] - played["idle_from"], 1),
           "canary": canary, "canary_first": bool(canary_done) and all(t >= canary_done for t in rest_started),
           "devices": devices,
           "all_updated": all(v["after"] == VERSION for v in devices.values()),
           "on_neither": sorted(d for d, v in devices.items() if v["after"] not in known),
           "power_cuts": cuts, "rollback": played.get("broken"),
           "latency_p99_ms": {"idle": i99, "rollout": d99, "idle_samples": len(idle),
                              "rollout_samples": len(during), "ratio": ratio},
           "p99_ratio": ratio, "p99_ratio_ok": ratio is not None and ratio <= RATIO_GOAL}
    return {"rollout": json.loads(json.dumps(out))}
