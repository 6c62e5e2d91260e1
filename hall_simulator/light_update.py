"""A light double of a device's side of an over-the-air update, for the gateway's tests and the
bus bench (hall_simulator.bench.ota_bus), where 32 firmware interpreters would measure the CPU
instead of the bus: not the firmware (firmware/ota.py is that, tested under MicroPython on its own). It keeps the protocol's
rules the gateway depends on (protocol.ota): the manifest comes as file 0 and must be canonical,
name the offered release id and carry a MAC that verifies under the device's release key; each
file's sha256 is checked; the device asks for the next (file, offset) it needs, so a transfer
resumes where its bytes stand; COMMIT is refused while a case is shown; the trial boot either
confirms or rolls back by itself (`boots_ok`); a POLL is answered with the update's news (`news`:
it needs bytes, or its state changed) when no rating waits (SPEC 3.10)."""

import hashlib

from protocol import ota


class UpdateDouble:
    def __init__(self, device_id, key, running="1.0.0", boots_ok=True, auto_boot=False):
        self.auto_boot = auto_boot   # the first poll after the switch finds the trial boot done
        self._told = None            # the last state the gateway was given
        self.device_id = device_id
        self.key = key
        self.running = running
        self.boots_ok = boots_ok
        self.case_open = False
        self.release_id = b""
        self.version = ""
        self.offered = None
        self.parts = []              # bytes received per file number
        self.info = None
        self.state = ota.ST_IDLE
        self.reason = ota.WHY_NONE
        self.log = []                # (kind, file, offset, length) of every request heard

    def _need(self):
        for f, data in enumerate(self.parts):
            size = self.offered["manifest_size"] if f == 0 else self.info["files"][f - 1][2]
            if len(data) < size:
                return f, len(data)
        return None

    def record(self):
        need = self._need() if self.state == ota.ST_RECEIVING else None
        f, off = need if need else (0, 0)
        self._told = (self.state, f, off)
        return {"device": self.device_id, "release_id": self.release_id, "state": self.state,
                "file": f, "offset": off, "reason": self.reason, "version": self.version,
                "running": self.running,
                "received": sum(len(p) for p in self.parts), "total": 0}

    def news(self):
        """The UPDATE_STATE a POLL gets instead of IDLE (no rating waiting), or None."""
        if self.auto_boot:
            self.boot()
        if self.state == ota.ST_IDLE:
            return None
        need = self._need() if self.state == ota.ST_RECEIVING else None
        f, off = need if need else (0, 0)
        if self.state == ota.ST_RECEIVING or self._told != (self.state, f, off):
            return self.record()
        return None

    def handle(self, msg_type, rec):
        """The UPDATE_STATE record answering one UPDATE_* request."""
        from protocol import schema
        if msg_type == schema.UPDATE_OFFER:
            self.log.append(("offer", 0, 0, 0))
            if rec["release_id"] == self.release_id and self.state == ota.ST_CONFIRMED:
                pass                                # it runs that release: confirmed
            elif self.state == ota.ST_SWITCHED:
                return dict(self.record(), state=ota.ST_REFUSED, reason=ota.WHY_BUSY)
            elif rec["release_id"] != self.release_id or self.state in (ota.ST_REFUSED, ota.ST_IDLE):
                self.release_id, self.version, self.offered = rec["release_id"], rec["version"], rec
                self.parts, self.info = [b""], None
                self.state, self.reason = ota.ST_RECEIVING, ota.WHY_NONE
        elif msg_type == schema.UPDATE_CHUNK:
            self.log.append(("chunk", rec.get("file", 0), rec.get("offset", 0), len(rec["data"])))
            if rec["release_id"] == self.release_id and self.state == ota.ST_RECEIVING:
                self._chunk(rec.get("file", 0), rec.get("offset", 0), rec["data"])
        elif msg_type == schema.UPDATE_COMMIT:
            self.log.append(("commit", 0, 0, 0))
            if rec["release_id"] == self.release_id and self.state == ota.ST_VERIFIED:
                if self.case_open:
                    return dict(self.record(), state=ota.ST_REFUSED, reason=ota.WHY_CASE_OPEN)
                self.state = ota.ST_SWITCHED
        return self.record()

    def _chunk(self, f, offset, data):
        need = self._need()
        if need is None or (f, offset) != need:
            return                                  # not what it asked for: ignored
        self.parts[f] += data
        if f == 0 and len(self.parts[0]) >= self.offered["manifest_size"]:
            manifest = self.parts[0]
            if not ota.verify_release(self.key, manifest, self.offered["mac"]):
                self.state, self.reason = ota.ST_REFUSED, ota.WHY_BAD_MAC
                return
            if ota.release_id(manifest) != self.release_id:
                self.state, self.reason = ota.ST_REFUSED, ota.WHY_BAD_MANIFEST
                return
            self.info = ota.parse_manifest(manifest)
            self.parts += [b""] * len(self.info["files"])
        if self._need() is None:
            for (path, digest, size), data in zip(self.info["files"], self.parts[1:]):
                if hashlib.sha256(data).hexdigest() != digest:
                    self.state, self.reason = ota.ST_REFUSED, ota.WHY_BAD_HASH
                    return
            self.state = ota.ST_VERIFIED

    def boot(self):
        """The reboot after a switch: the trial confirms, or rolls back by itself."""
        if self.state != ota.ST_SWITCHED:
            return
        if self.boots_ok:
            self.state, self.running = ota.ST_CONFIRMED, self.version
        else:
            self.state, self.reason = ota.ST_ROLLED_BACK, ota.WHY_BOOT_FAILED

    def files(self):
        return dict((f[0], d) for f, d in zip(self.info["files"], self.parts[1:])) if self.info else {}
