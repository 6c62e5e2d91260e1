"""Over-the-air update on the device (SPEC.md 3.10): take a release in chunks beside the running
one, check it, switch to it, confirm it or let boot_select roll it back. Imported only when an
update record arrives or one is under way (firmware/device.py), never on an ordinary boot.

Durable state, in the data root, each file replaced atomically:
  ota.json          the release being received: id, version, manifest size and MAC, slot, the
                    file being received (`file`: every file before it is in place and hashed),
                    state (_NEXT), why it was refused, files to fetch rather than copy
  ota_manifest.txt  the manifest while it arrives (file 0)
  rel_<slot>.txt    the manifest of what release directory rel/<slot> holds
  boot.json         the pointer (firmware/boot_select.py)
The bytes of the file being received are themselves the progress: a chunk is appended where the
file ends, and the file's length is the next offset. A power cut mid-append leaves a prefix of
the chunk (asked for again from there) or garbage the file's sha256 catches (fetched again).
A file the running release holds with the same path and sha256 is copied on the device, a step at
a time (the font is not sent over the bus). Running sha256 of the file being written; after a
reboot the bytes already there are hashed again first (`busy` meanwhile).
"""

import hashlib
import json
from binascii import hexlify, unhexlify

from protocol import ota, schema
from protocol.errors import ProtocolError
from firmware import boot_select, ota_files as fio
from firmware.flashfs import join
from firmware.health import FIRMWARE_VERSION

PROGRESS = "ota.json"
NEW_MANIFEST = "ota_manifest.txt"
_STEP = 4096                 # bytes copied or hashed per main-loop turn
ROMFS = "/rom"               # where a ROMFS partition is mounted
TRIAL_S = 600

IDLE, RECEIVING, VERIFIED, REFUSED = ota.ST_IDLE, ota.ST_RECEIVING, ota.ST_VERIFIED, ota.ST_REFUSED
# screens a citizen who has just rated (or not) still reads: no switch (a reboot) under them; the
# rating they made goes out meanwhile, ahead of the restart
_CITIZEN = ("thanks", "not_rated")

# (state, event) -> next state of ota.json: every move the updater makes with it. The trial states
# (switched, confirmed, rolled back) live in the pointer (boot_select).
_NEXT = {
    (IDLE, "offer"): RECEIVING, (RECEIVING, "offer"): RECEIVING, (VERIFIED, "offer"): RECEIVING,
    (REFUSED, "offer"): RECEIVING,
    (RECEIVING, "refuse"): REFUSED,
    (RECEIVING, "verified"): VERIFIED,
    (RECEIVING, "cancel"): IDLE, (VERIFIED, "cancel"): IDLE, (REFUSED, "cancel"): IDLE,
    (VERIFIED, "commit"): IDLE,          # the pointer takes over: ota.json goes
}


def image_capable():
    """1 when the board's partition table has ota_0 and ota_1 (a full image could be written)."""
    try:
        import esp32   # pyright: ignore[reportMissingImports]
        part = esp32.Partition
        return 1 if part.find(part.TYPE_APP, label="ota_0") and part.find(part.TYPE_APP, label="ota_1") else 0
    except Exception:   # not an ESP32, or no such partitions
        return 0


def _key(text):
    try:
        key = unhexlify(text) if isinstance(text, str) else b""
    except Exception:
        key = b""
    return key if len(key) == ota.KEY_LEN else None


def _number(value, low, high, default):
    """A device config number, or its default when it is absent or not a whole number in range."""
    return value if isinstance(value, int) and low <= value <= high else default


def _hex(b):
    return hexlify(bytes(b)).decode()


class Updater:
    def __init__(self, device, top="/"):
        self.dev = device
        self.fs = device.fs
        self.root = device.board.fs_root
        self.top = top
        cfg = device.cfg
        self.key = _key(cfg.get("release_key"))
        self.limit = _number(cfg.get("trial_boots"), 1, 20, boot_select.TRIAL_BOOTS)
        self.trial_ms = _number(cfg.get("trial_s"), 10, 86400, TRIAL_S) * 1000
        self.pointer = boot_select.read(self.fs, self.root)
        self.p = self._load()
        self.files = None         # [(path, sha256 hex, size)] of the release being received
        self._running = None      # {path: sha256 hex} of the running release
        self._hash = None         # [file, sha256 object, bytes hashed] of the file being written
        self._reset_due = False
        if self.p and self.p.get("release") == self.pointer.get("release"):
            self._drop()          # cut after the switch's pointer write: the switch is done
        self.news = bool(self.p) or bool(self.pointer.get("news"))

    # --- durable state -------------------------------------------------------------------------
    def _load(self):
        raw = self.fs.read(join(self.root, PROGRESS))
        try:
            p = json.loads(raw) if raw else {}
        except ValueError:
            p = {}
        return p if isinstance(p, dict) and "release" in p else {}

    def _save(self):
        self.fs.write_atomic(join(self.root, PROGRESS), json.dumps(self.p).encode())

    def _go(self, event):
        nxt = _NEXT.get((self.p.get("state", IDLE), event))
        if nxt is None:
            raise ValueError("ota: %s while %s" % (event, ota.state_name(self.p.get("state", IDLE))))
        return nxt

    def _drop(self):
        path = join(self.root, PROGRESS)
        if self.fs.exists(path):
            self.fs.remove(path)
        self.p = {}
        self.files = None
        self._hash = None

    # --- where things are ----------------------------------------------------------------------
    def _base(self):
        return self.pointer.get("base", "")

    def _slot_dir(self, base):
        return join(self.top, base) if base else self.top

    def _slot_manifest(self, base):
        return join(self.root, base.replace("/", "_") + ".txt")

    def _target(self, path):
        return join(self._slot_dir(self.p["slot"]), path)

    def _other_slot(self):
        return "rel/b" if self._base() == "rel/a" else "rel/a"

    def _running_files(self):
        """{path: sha256} of the release that runs now (its manifest, or the top's bundle.json)."""
        if self._running is None:
            run = {}
            base = self._base()
            try:
                if base:
                    for path, sha, _ in ota.parse_manifest(self.fs.read(self._slot_manifest(base)) or b""
                                                           )["files"]:
                        run[path] = sha
                else:
                    bundle = json.loads(self.fs.read(join(self.top, "bundle.json")) or "{}")
                    for path, f in bundle.get("files", {}).items():
                        run[path] = f.get("sha256")
            except (ProtocolError, ValueError, AttributeError):
                pass   # an unknown running release: every file is sent
            self._running = run
        return self._running

    def _manifest_files(self):
        if self.files is None:
            data = self.fs.read(self._slot_manifest(self.p["slot"])) or b""
            self.files = ota.parse_manifest(data)["files"]
        return self.files

    def _source(self, k, path, sha):
        """Where file k can be copied from on the device, or None (the gateway sends it)."""
        if k in self.p.get("fetch", ()) or self._running_files().get(path) != sha:
            return None
        src = join(self._slot_dir(self._base()), path)
        if self.fs.exists(src):
            return src
        if not self._base() and self.fs.exists(join(ROMFS, path)):
            return join(ROMFS, path)     # the top release's code in a ROMFS partition (flash.py)
        return None

    # --- what the gateway asks -----------------------------------------------------------------
    def handle(self, msg_type, rec):
        """Act on an UPDATE_* record; the UPDATE_STATE record to answer with."""
        rid = _hex(rec.get("release_id", b""))
        if msg_type == schema.UPDATE_OFFER:
            return self._offer(rid, rec)
        mine = bool(self.p) and self.p["release"] == rid
        if msg_type == schema.UPDATE_CHUNK:
            if not mine:
                return self.state(ota.ST_REFUSED, ota.WHY_UNKNOWN)
            if self.p["state"] == RECEIVING:
                self._chunk(rec)
            return self.state()
        if msg_type == schema.UPDATE_COMMIT:
            return self._commit(rid, mine)
        if msg_type == schema.UPDATE_CANCEL:
            if mine:
                self._go("cancel")
                self._drop()
            return self.state()
        return self.state()

    def _offer(self, rid, rec):
        if self.key is None:
            return self.state(ota.ST_REFUSED, ota.WHY_NO_KEY)
        if self.pointer.get("trial"):
            return self.state(ota.ST_REFUSED, ota.WHY_BUSY)
        if rid == self.pointer.get("release") and not self.p:
            return self.state()                      # running it already
        if self.p and self.p["release"] == rid and self.p["state"] != REFUSED:
            return self.state()                      # the same offer again
        state = self._go("offer")
        fio.remove(self.fs, join(self.root, NEW_MANIFEST))
        self.p = {"release": rid, "version": rec.get("version", ""), "size": rec["manifest_size"],
                  "mac": _hex(rec["mac"]), "total": rec.get("total", 0), "slot": self._other_slot(),
                  "file": 0, "state": state, "why": 0}
        self.files = None
        self._hash = None
        self._save()
        return self.state()

    def _chunk(self, rec):
        need = self.need()
        data = rec["data"]
        if need is None or need != (rec.get("file", 0), rec.get("offset", 0)):
            return                                   # not what we asked for: ignore, say again
        k, off = need
        if k == 0:
            if off + len(data) > self.p["size"]:
                return
            fio.append(self.fs, join(self.root, NEW_MANIFEST), data)
        else:
            path, _, size = self._manifest_files()[k - 1]
            h = self._hash                           # need() says it covers the bytes up to off
            if h is None or off + len(data) > size:
                return
            if off == 0:
                self._mkdirs(path)
            fio.append(self.fs, self._target(path), data)
            h[1].update(data)
            h[2] += len(data)
        self._advance()

    def _commit(self, rid, mine):
        if not mine:
            if rid in (self.pointer.get("release"), self.pointer.get("failed")):
                return self.state()                  # switched to it or back from it: say so
            return self.state(ota.ST_REFUSED, ota.WHY_UNKNOWN)
        if self.p["state"] != VERIFIED:
            return self.state(ota.ST_REFUSED, ota.WHY_NOT_READY)
        app = self.dev.app
        if app.case_id() or app.state in _CITIZEN:
            return self.state(ota.ST_REFUSED, ota.WHY_CASE_OPEN)   # ask again once it is closed
        self._go("commit")
        self.pointer = boot_select.switch(self.fs, self.root, self.p["slot"], rid, self.p["version"],
                                          self.limit)
        self._drop()
        self._reset_due = True                       # after the reply has gone out
        self.news = True
        return self.state()

    def _mkdirs(self, path):
        fio.mkdirs(self.fs, self.top, self.p["slot"] + "/" + path.rsplit("/", 1)[0] if "/" in path
                     else self.p["slot"])

    # --- progress ------------------------------------------------------------------------------
    def need(self):
        """(file, offset) of the bytes the gateway should send next, or None (nothing, or the
        device is busy copying or hashing on its own)."""
        p = self.p
        if not p or p["state"] != RECEIVING:
            return None
        k = p["file"]
        if k == 0:
            n = fio.size(self.fs, join(self.root, NEW_MANIFEST))
            return (0, n) if n < p["size"] else None
        path, sha, size = self._manifest_files()[k - 1]
        n = fio.size(self.fs, self._target(path))
        h = self._hash
        if n >= size or h is None or h[0] != k or h[2] != n or self._source(k, path, sha):
            return None
        return (k, n)

    def _advance(self):
        """Take every step that needs no bytes from anyone: check the manifest when whole, hash
        and move past a file when whole. Local copying and re-hashing are step()'s."""
        while self.p and self.p["state"] == RECEIVING:
            k = self.p["file"]
            if k == 0:
                if not self._manifest_in():
                    return
                continue
            files = self._manifest_files()
            if k > len(files):
                self.p["state"] = self._go("verified")
                self._save()
                self.news = True
                return
            path, sha, size = files[k - 1]
            target = self._target(path)
            n = fio.size(self.fs, target)
            h = self._hash
            if h is None or h[0] != k:
                if n:
                    return                           # bytes from before a reboot: step() hashes them
                h = self._hash = [k, hashlib.sha256(), 0]
            if n > size or h[2] != n:
                if n > size:
                    fio.remove(self.fs, target)
                    self._hash = None
                    continue
                return
            if n < size:
                if self.need() is not None:
                    self.news = True                 # the gateway must send: say so
                return
            if _hex(h[1].digest()) == sha:
                self.p["file"] = k + 1
            else:
                fio.remove(self.fs, target)                 # fetch it again, from the gateway this time
                self.p["fetch"] = self.p.get("fetch", []) + [k]
                self.p["why"] = ota.WHY_BAD_HASH
            self._hash = None
            self._save()

    def _manifest_in(self):
        """File 0 done? Check and install a whole manifest; False while bytes are missing."""
        p = self.p
        slot_manifest = self._slot_manifest(p["slot"])
        new = join(self.root, NEW_MANIFEST)
        data = self.fs.read(new)
        if data is None:                             # cut after the install's rename
            data = self.fs.read(slot_manifest) or b""
            if _hex(ota.release_id(data)) != p["release"]:
                return False
        elif len(data) < p["size"]:
            return False
        else:
            why = self._manifest_problem(data)
            if why:
                p["state"] = self._go("refuse")
                p["why"] = why
                fio.remove(self.fs, new)
                self._save()
                self.news = True
                return True
            old = self.fs.read(slot_manifest)
            if old:
                try:
                    for path, _, _ in ota.parse_manifest(old)["files"]:
                        fio.remove(self.fs, self._target(path))
                except ProtocolError:
                    pass
            self.fs.rename(new, slot_manifest)
        p["file"] = 1
        self.files = None
        self._save()
        return True

    def _manifest_problem(self, data):
        if len(data) != self.p["size"] or _hex(ota.release_id(data)) != self.p["release"]:
            return ota.WHY_BAD_MANIFEST
        if not ota.verify_release(self.key, data, unhexlify(self.p["mac"])):
            return ota.WHY_BAD_MAC
        try:
            info = ota.parse_manifest(data)
        except ProtocolError:
            return ota.WHY_BAD_MANIFEST
        if info["boards"] and self.dev.board.profile not in info["boards"]:
            return ota.WHY_WRONG_BOARD
        return 0

    # --- the main loop's share -----------------------------------------------------------------
    def step(self):
        """One bounded piece of local work (copy or hash _STEP bytes), the trial deadline."""
        if self._reset_due:
            self._reset_due = False
            self.dev.board.reset()
        pointer = self.pointer
        if pointer.get("trial") and self.dev.uptime.now() >= self.trial_ms:
            self.pointer = boot_select.rollback(pointer, ota.WHY_NO_CONFIRM)
            boot_select.write(self.fs, self.root, self.pointer)
            self.news = True
            self.dev.board.reset()
            return
        p = self.p
        if not p or p["state"] != RECEIVING:
            return
        if p["file"] == 0:
            return self._advance()                   # a whole manifest from before a reboot
        files = self._manifest_files()
        k = p["file"]
        if k > len(files):
            return self._advance()
        path, sha, size = files[k - 1]
        target = self._target(path)
        n = fio.size(self.fs, target)
        h = self._hash
        if h is None or h[0] != k:
            h = self._hash = [k, hashlib.sha256(), 0]
        if h[2] < n:                                 # re-hash what a previous boot wrote
            data = fio.read_at(self.fs, target, h[2], min(_STEP, n - h[2]))
            h[1].update(data)
            h[2] += len(data)
        elif n < size:
            src = self._source(k, path, sha)
            if src is None:
                return self._advance()
            try:
                data = fio.read_at(self.fs, src, n, min(_STEP, size - n))
            except OSError:
                data = b""
            if not data:                             # the source went: fetch it instead
                p["fetch"] = p.get("fetch", []) + [k]
                self._save()
                return self._advance()
            if n == 0:
                self._mkdirs(path)
            fio.append(self.fs, target, data)
            h[1].update(data)
            h[2] += len(data)
        self._advance()

    def online(self):
        """The transport reached the gateway (answered a poll, or published): a trial release
        has proven itself."""
        if self.pointer.get("trial"):
            self.pointer = boot_select.confirm(self.fs, self.root, self.pointer)
            self.news = True

    # --- UPDATE_STATE --------------------------------------------------------------------------
    def state(self, state=None, why=0):
        """The UPDATE_STATE record; `state`/`why` for an answer that changes nothing durable."""
        ptr = self.pointer
        image = image_capable()   # said, not used: the application bundle is what is updated
        rec = {"device": self.dev.cfg["device"], "running": ptr.get("version") or FIRMWARE_VERSION,
               "image": image, "detail": "application bundle" + ("" if image else "; no ota_0/ota_1")}
        p = self.p
        if p:
            rec["release_id"] = unhexlify(p["release"])
            rec["state"] = p["state"]
            rec["version"] = p["version"]
            rec["reason"] = p.get("why", 0)
            if p["state"] == RECEIVING:
                need = self.need()
                if need is None:
                    rec["busy"] = 1
                else:
                    rec["file"], rec["offset"] = need
            if p["state"] != REFUSED:
                self._progress(rec)
        elif ptr.get("state"):
            rolled = ptr["state"] == ota.ST_ROLLED_BACK
            rid = ptr.get("failed" if rolled else "release", "")
            if rid:
                rec["release_id"] = unhexlify(rid)
            rec["state"] = ptr["state"]
            rec["reason"] = ptr.get("why", 0)
            rec["version"] = ptr.get("failed_version" if rolled else "version", "")
            rec["boots"] = min(ptr.get("boots", 0), 255)
        if state is not None:
            rec["state"] = state
            rec["reason"] = why
        return rec

    def _progress(self, rec):
        if self.p["file"] == 0:
            rec["received"] = fio.size(self.fs, join(self.root, NEW_MANIFEST))
            return
        files = self._manifest_files()
        k = self.p["file"]
        done = 0
        for i in range(min(k - 1, len(files))):
            done += files[i][2]
        if k <= len(files):
            done += fio.size(self.fs, self._target(files[k - 1][0]))
        rec["received"] = done
        rec["total"] = sum(f[2] for f in files)

    def reported(self):
        """The gateway has been told: clear the news (the pointer's too, once)."""
        self.news = False
        if self.pointer.get("news"):
            self.pointer["news"] = 0
            try:
                boot_select.write(self.fs, self.root, self.pointer)
            except OSError:
                pass

    def idle(self):
        """Nothing under way nor to tell: the device may drop this module."""
        return not self.p and not self.news and not self.pointer.get("trial") and not self._reset_due
