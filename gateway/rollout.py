"""Staged rollout of a release (gateway.ota) to the hall's devices, as data: canaries first, the
rest once every canary has confirmed; pause, resume, cancel; progress per device.

Pure state, no I/O but its file: the transports (gateway.rs485_master, gateway.mqtt_bridge) ask
`next_step(device)` what to send when they have a free slot, and hand every UPDATE_STATE to
`report(device, state)`. The device drives the transfer (its state names the next (file, offset)
it needs), so a dropped link or a power cut resumes where the device's flash stands, whatever the
gateway remembered.

Per device: pending (its phase has not come) -> offering (UPDATE_OFFER) -> receiving (chunks) ->
verified (every file checked; the COMMIT waits while a case is open at its window) -> switching
(COMMIT sent, again every QUERY_EVERY_S until the device says switched) -> switched (on trial: the
device reports by itself, SPEC 3.10; its report is news it tells once, and an RS-485 reply can be
lost, so the COMMIT is sent again every QUERY_EVERY_S as a question, which a device already on
the release, or back from it, answers with where it stands) -> confirmed; or rolled_back /
refused (by the device, with
its reason), or cancelled. A refusal that only means "not now" (case_open, busy, not_ready) and
a device that lost its transfer (idle) are retried, not failed. A canary that fails pauses
the rollout (`paused_reason`); a failure in the rest is counted and the rollout goes on. At most
`parallel` devices take chunks at once (PARALLEL); the next starts when one has them all. A
device that says nothing for SILENT_S while offered or receiving (switched off, unplugged) gives
its place up: it goes `waiting` (reason `no_answer`) and is offered again after AGAIN_S, once the
pending devices have had their turn, so one dead evaluator never holds the hall's rollout.

Persisted in <data_dir>/rollout.json (gateway.atomic_file): an operator's change at once, what the
devices report by the gateway's loop (flush: a change of state within a pump, the bytes counters
every SAVE_EVERY_S; never in a bus thread), so a restarted gateway resumes the rollout.
"""

import copy
import functools
import json
import os
import threading
import time

from gateway import atomic_file

FILE_NAME = "rollout.json"
SAVE_EVERY_S = 2.0
QUERY_EVERY_S = 2.0        # an unanswered COMMIT is sent again this often
RETRY = {"case_open": "verified", "busy": "offering", "not_ready": "offering",
         "unknown_release": "offering"}    # "not now" refusals: the state to go back to
OFFER_EVERY_S = 2.0        # an unanswered offer is sent again after this long
WINDOW = 4                 # chunks in flight per device over MQTT (RS-485 has one per exchange)
STALL_S = 5.0              # no progress this long over MQTT: send again from what the device has

SILENT_S = 120.0           # offered or receiving and not a word this long: give the place up
AGAIN_S = 300.0            # a device that gave its place up is offered again after this long

DONE = ("confirmed", "rolled_back", "refused", "cancelled")
TRANSFERRING = ("offering", "receiving")
PARALLEL = 2               # devices taking chunks at once: a receiving device answers every POLL
                           # with its state (~100 bytes, not IDLE's 10, SPEC 3.10), and the bus
                           # moves about one chunk a round whatever the number
FAILED = ("rolled_back", "refused")
ACTIVE = ("running", "paused")


class RolloutError(ValueError):
    """A request the rollout cannot take: `status` is the HTTP status it deserves."""

    def __init__(self, detail, status=409):
        super().__init__(detail)
        self.detail = detail
        self.status = status


def _whole(method):
    """An operator's change is kept whole or not at all: a failed save restores the state before."""
    @functools.wraps(method)
    def run(self, *args):
        with self._lock:
            before = copy.deepcopy(self.rollouts)
            try:
                return method(self, *args)
            except BaseException:
                self.rollouts = before
                raise
    return run


def _progress(device_id, canary, version_before):
    return {"device": device_id, "canary": canary, "state": "pending", "sent": 0, "acked": 0,
            "file": 0, "offset": 0, "version_before": version_before, "version_after": "",
            "reason": "", "at": 0.0}


class Rollouts:
    def __init__(self, data_dir, releases, busy=lambda device_id: False, firmware=lambda d: "",
                 clock=time.time, alarm=None, parallel=PARALLEL):
        self.path = os.path.join(data_dir, FILE_NAME)
        self.releases = releases              # gateway.ota.Releases
        self.busy = busy                      # device id -> True while a case is open at its window
        self.firmware = firmware              # device id -> its running version (registry)
        self.clock = clock
        self.alarm = alarm
        self.parallel = max(1, int(parallel))
        self.rollouts = []
        self._lock = threading.RLock()
        self._saved_at = 0.0
        self._dirty = False
        self._urgent = False
        self._cursor = {}                     # device id -> (file, offset, sent_at): MQTT window
        self._restarted = {}                  # device id -> the need the window last restarted at
        self._load()

    # --- persistence --------------------------------------------------------------------
    def _load(self):
        try:
            with open(self.path, "rb") as f:
                data = json.loads(f.read().decode("utf-8"))
            self.rollouts = [r for r in data.get("rollouts", []) if isinstance(r, dict)]
        except FileNotFoundError:
            self.rollouts = []
        except (OSError, ValueError, AttributeError) as e:
            self.rollouts = []
            if self.alarm:
                self.alarm("rollout_unreadable", "%s: %s" % (self.path, e))

    def _save(self):
        now = self.clock()
        data = json.dumps({"rollouts": self.rollouts}, ensure_ascii=False, sort_keys=True)
        atomic_file.write(self.path, data.encode("utf-8"))
        self._saved_at = now
        self._dirty = False

    def _keep(self, force=True):
        """What the transports' threads change is only marked here: they never wait for a disk
        (an fsync in the bus thread would hold every rating behind it). The gateway's loop writes
        it (flush): a change of state at once, the bytes counters every SAVE_EVERY_S."""
        self._dirty = True
        self._urgent = self._urgent or force

    def flush(self, force=True):
        """Write what is held back; `force` False: a change of state, or the counters once
        SAVE_EVERY_S has passed since the last write (the gateway's loop calls it often)."""
        with self._lock:
            self._sweep()
            if not self._dirty:
                return
            if force or self._urgent or self.clock() - self._saved_at >= SAVE_EVERY_S:
                try:
                    self._save()
                    self._urgent = False
                except OSError as e:
                    if self.alarm:
                        self.alarm("rollout_unsaved", "%s: %s" % (self.path, e))

    # --- operator ------------------------------------------------------------------------
    def active(self):
        with self._lock:
            for r in self.rollouts:
                if r["status"] in ACTIVE:
                    return r
            return None

    def get(self, rollout_id):
        with self._lock:
            for r in self.rollouts:
                if r["id"] == rollout_id:
                    return r
            return None

    def snapshot(self):
        with self._lock:
            return json.loads(json.dumps(self.rollouts))

    @_whole
    def start(self, release_id, devices, canary):
        """A new rollout of `release_id` to `devices` (ids), `canary` (a subset) first."""
        with self._lock:
            release = self.releases.get(release_id)
            if release is None:
                raise RolloutError("no release %s on this gateway" % str(release_id)[:80], 404)
            if not devices:
                raise RolloutError("no devices to update", 400)
            unknown = [c for c in canary if c not in devices]
            if unknown:
                raise RolloutError("canary %s is not among the devices" % unknown[0][:40], 400)
            if not canary:
                raise RolloutError("a rollout needs at least one canary device", 400)
            if self.active() is not None:
                raise RolloutError("rollout %s is still %s" % (self.active()["id"], self.active()["status"]))
            progress = {}
            for d in devices:
                p = progress[d] = _progress(d, d in canary, self.firmware(d))
                if p["version_before"] == release.version:
                    p.update(state="confirmed", version_after=release.version,
                             reason="already at this version", acked=release.total)
            r = {"id": "r%d" % (len(self.rollouts) + 1), "release": release.id,
                 "version": release.version, "bytes": release.total, "status": "running",
                 "phase": "canary", "paused_reason": "", "created": self.clock(),
                 "finished": None, "devices": progress}
            self.rollouts.append(r)
            self._advance(r)
            self._save()
            return r

    @_whole
    def pause(self, rollout_id, reason="operator"):
        return self._set(rollout_id, ("running",), "paused", reason)

    @_whole
    def resume(self, rollout_id):
        with self._lock:
            r = self._set(rollout_id, ("paused",), "running", "", save=False)
            if all(p["state"] in DONE for p in r["devices"].values() if p["canary"]):
                r["phase"] = "rest"           # the operator goes on past a failed canary
            self._advance(r)
            self._save()
            return r

    @_whole
    def cancel(self, rollout_id):
        with self._lock:
            r = self._set(rollout_id, ACTIVE, "cancelled", "", save=False)
            for p in r["devices"].values():
                if p["state"] not in DONE and p["state"] not in ("switching", "switched"):
                    p["state"] = "cancelled"    # a device that switched finishes its trial alone
            r["finished"] = self.clock()
            self._save()
            return r

    def _set(self, rollout_id, allowed, status, reason, save=True):
        with self._lock:
            r = self.get(rollout_id)
            if r is None:
                raise RolloutError("no rollout %s" % str(rollout_id)[:40], 404)
            if r["status"] not in allowed:
                raise RolloutError("rollout %s is %s" % (r["id"], r["status"]))
            r["status"] = status
            r["paused_reason"] = reason
            if save:
                self._save()
            return r

    # --- the transports --------------------------------------------------------------------
    def _mine(self, device_id):
        """(rollout, progress, release) for a device in the running rollout, else None."""
        r = self.active()
        if r is None or r["status"] != "running":
            return None
        p = r["devices"].get(device_id)
        if p is None or p["state"] in DONE or p["state"] in ("pending", "waiting"):
            return None
        release = self.releases.get(r["release"])
        if release is None:
            return None
        return r, p, release

    def next_step(self, device_id, max_data, window=1):
        """What to send to `device_id` now, or None: ("offer", release), ("chunk", release, file,
        offset, data), ("commit", release) or ("query", release). `window` > 1 lets a chunk go
        before the last is acknowledged (MQTT, QoS 1); RS-485 asks with 1."""
        with self._lock:
            mine = self._mine(device_id)
            if mine is None:
                return None
            r, p, release = mine
            now = self.clock()
            state = p["state"]
            if state == "offering":
                if now - p["at"] < OFFER_EVERY_S:
                    return None              # unanswered: offered again after a while
                p["at"] = now
                return ("offer", release)
            if state == "receiving":
                if p.get("busy") and now - p["at"] < STALL_S:
                    return None               # working on its own (copying, hashing)
                f, off = p["file"], p["offset"]
                if window > 1:
                    cur = self._cursor.get(device_id)
                    if cur is not None and now - cur[2] < STALL_S:
                        if release.position(cur[0], cur[1]) - p["acked"] >= window * max_data:
                            return None
                        f, off = cur[0], cur[1]
                data = release.chunk(f, off, max_data)
                while data is not None and not data and f + 1 < len(release.data):
                    f, off = f + 1, 0          # the end of a file: the next one's start
                    data = release.chunk(f, off, max_data)
                if not data:
                    return None
                if window > 1:
                    self._cursor[device_id] = (f, off + len(data), now)
                p["sent"] = max(p["sent"], release.position(f, off) + len(data))
                self._keep(force=False)
                return ("chunk", release, f, off, data)
            if state == "verified":
                if self.busy(device_id):
                    return None               # no switch while a case is open at the window
                p["state"] = "switching"
                p["at"] = now
                self._keep()
                return ("commit", release)
            if state in ("switching", "switched") and now - p["at"] >= QUERY_EVERY_S and \
                    not self.busy(device_id):
                p["at"] = now
                return ("commit", release)
            return None

    def report(self, device_id, state, release_id, file=0, offset=0, reason="", version="",
               busy=False):
        """An UPDATE_STATE from `device_id` (`busy`: receiving, but copying or hashing on its own,
        no bytes wanted now). True when it concerned the running rollout."""
        with self._lock:
            r = self.active()
            if r is None or release_id != r["release"]:
                return False
            p = r["devices"].get(device_id)
            release = self.releases.get(r["release"])
            if p is None or release is None or p["state"] in DONE:
                return False
            before = p["state"]
            p["at"] = p["heard"] = self.clock()
            if before == "waiting":
                before = p["state"] = "offering"   # back: it answers an offer made before
            why = reason.split(":")[0]
            if state in ("refused", "idle") and (why in RETRY or state == "idle"):
                if before in ("offering", "receiving", "verified", "switching"):
                    p["state"] = RETRY.get(why, "offering")
                    p["reason"] = reason
                state = ""                    # handled: not a failure
            p["busy"] = bool(busy) and state == "receiving"
            if p["busy"]:
                state = ""                    # its place is not news: it asks again when done
            if state == "receiving":
                had = p["acked"]
                p["file"], p["offset"] = file, offset
                p["acked"] = release.position(file, offset)
                p["sent"] = max(p["sent"], p["acked"])
                cur = self._cursor.get(device_id)
                if p["acked"] > had:
                    self._restarted.pop(device_id, None)
                # the same need again (a chunk it could not use: one before it was lost) or a
                # need past what was sent: send from what the device has. Only once per need:
                # the chunks already on their way behind the lost one each get the same answer,
                # and a restart for every one of them would send the window again and again
                if cur is not None and release.position(cur[0], cur[1]) < p["acked"]:
                    self._cursor.pop(device_id, None)
                elif cur is not None and p["acked"] <= had and \
                        self._restarted.get(device_id) != p["acked"]:
                    self._cursor.pop(device_id, None)
                    self._restarted[device_id] = p["acked"]
                if before in ("offering", "receiving"):
                    p["state"] = "receiving"
            elif state == "verified":
                p["acked"] = p["sent"] = release.total
                if before in ("offering", "receiving", "verified"):
                    p["state"] = "verified"
            elif state == "switched":
                p["state"] = "switched"
            elif state == "confirmed":
                p["state"] = "confirmed"
                p["acked"] = release.total
                p["version_after"] = version or release.version
            elif state in FAILED:
                p["state"] = state
                p["reason"] = reason or state
                p["version_after"] = version or p["version_before"]
                if p["canary"] and r["status"] == "running":
                    r["status"] = "paused"
                    r["paused_reason"] = "canary %s %s: %s" % (device_id, state, p["reason"])
                    if self.alarm:
                        self.alarm("rollout_paused", r["paused_reason"])
            if state != "receiving":
                self._cursor.pop(device_id, None)
                self._restarted.pop(device_id, None)
            if p["state"] != before:
                self._advance(r)
                self._keep()
            else:
                self._keep(force=False)
            return True

    def _sweep(self):
        """A device silent for SILENT_S while offered or receiving gives its place up (waiting);
        a waiting one gets its turn again after AGAIN_S (_advance)."""
        r = self.active()
        if r is None or r["status"] != "running":
            return
        now = self.clock()
        changed = False
        for p in r["devices"].values():
            if p["state"] in TRANSFERRING and now - p.get("heard", now) >= SILENT_S:
                p["state"] = "waiting"
                p["reason"] = "no_answer: nothing heard for %d s" % SILENT_S
                p["heard"] = now
                self._cursor.pop(p["device"], None)
                self._restarted.pop(p["device"], None)
                changed = True
        waiting = any(p["state"] == "waiting" and now - p.get("heard", 0) >= AGAIN_S
                      for p in r["devices"].values())
        if changed or waiting:
            before = [p["state"] for p in r["devices"].values()]
            self._advance(r)
            if changed or before != [p["state"] for p in r["devices"].values()]:
                self._keep()

    def _advance(self, r):
        """Start the devices whose phase has come; finish the rollout when nothing is left."""
        devices = r["devices"].values()
        if r["phase"] == "canary" and all(p["state"] in DONE for p in devices if p["canary"]):
            if all(p["state"] == "confirmed" for p in devices if p["canary"]):
                r["phase"] = "rest"
        if r["status"] != "running":
            return
        active = sum(p["state"] in TRANSFERRING for p in devices)
        now = self.clock()
        turn = [p for p in devices if p["state"] == "pending"] + sorted(
            (p for p in devices if p["state"] == "waiting" and now - p.get("heard", 0) >= AGAIN_S),
            key=lambda p: p.get("heard", 0))
        for p in turn:
            if active >= self.parallel:
                break
            if p["canary"] or r["phase"] == "rest":
                p["state"] = "offering"
                p["at"] = 0.0
                p["heard"] = now              # the silence is counted from the offer
                active += 1
        if all(p["state"] in DONE for p in devices):
            r["status"] = "done"
            r["finished"] = self.clock()

    def public(self, r):
        """A rollout as the API shows it: counts and each device's progress."""
        counts = {}
        for p in r["devices"].values():
            counts[p["state"]] = counts.get(p["state"], 0) + 1
        out = dict(r, counts=counts)
        out["devices"] = list(r["devices"].values())
        return out
