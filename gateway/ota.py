"""Firmware releases the gateway rolls out over the air: bundles made by `tools/flash.py build`.

A bundle is a directory or a .zip holding manifest.json (file name -> sha256 and size, and the
firmware version) beside its files. The gateway loads one only when every file matches its
manifest (it never sends what its own manifest contradicts), keeps the bytes in memory to cut
chunks from, and turns manifest.json into the release's canonical manifest (protocol.ota), which
it MACs with the hall's release key ([ota] release_key, 32 bytes hex; the same key `hall-flash
provision` writes onto every device). A device installs only a manifest whose MAC verifies, so it
runs only what its own hall released. The release id is the sha256 of the canonical manifest
(shown in hex). File 0 is that manifest, files 1.. follow in its order (UPDATE_CHUNK's `file`).

Registered releases are remembered by path in <data_dir>/releases.json (gateway.atomic_file), so
a restarted gateway can finish a rollout; a release whose bundle has changed on disk since is
refused at load (its id would differ).
"""

import hashlib
import json
import os
import threading
import zipfile

from gateway import atomic_file
from protocol import ota as proto
from protocol.errors import LocalProtocolError, ProtocolError

MANIFEST = "manifest.json"
KEY_BYTES = proto.KEY_LEN
MAX_BUNDLE = 8 * 1024 * 1024     # an application bundle is ~1 MB with its font
MAX_FILES = proto.FILES_MAX
FILE_NAME = "releases.json"
MQTT_WINDOW = 4          # chunks a device over MQTT may have in flight (QoS 1 keeps them in order)


class ReleaseError(ValueError):
    """A bundle the gateway will not roll out; the text says why in one line."""


def release_key(raw_config):
    """The [ota] release_key as bytes, or None when the hall has none (no updates then)."""
    value = ((raw_config or {}).get("ota") or {}).get("release_key")
    if not value:
        return None
    try:
        key = bytes.fromhex(value)
    except (TypeError, ValueError):
        raise ReleaseError("[ota] release_key is not hex") from None
    if len(key) != KEY_BYTES:
        raise ReleaseError("[ota] release_key must be %d bytes (%d hex digits)" % (KEY_BYTES, 2 * KEY_BYTES))
    return key


class Release:
    def __init__(self, meta, files, key, path=""):
        """`meta`: the bundle's manifest.json (checked), `files`: path -> bytes."""
        self.manifest = proto.from_bundle(meta)             # canonical (protocol.ota)
        info = proto.parse_manifest(self.manifest)
        self.release_id = proto.release_id(self.manifest)   # 32 bytes, as on the wire
        self.id = self.release_id.hex()
        self.offer = proto.offer(key, self.manifest)         # the UPDATE_OFFER record
        self.version = info["version"]
        self.names = [f[0] for f in info["files"]]
        self.data = [self.manifest] + [files[n] for n in self.names]
        self.total = sum(len(d) for d in self.data)
        self.path = path

    def chunk(self, index, offset, size):
        """Up to `size` bytes of file `index` from `offset` (b"" past its end); None: no such file."""
        if not 0 <= index < len(self.data) or offset < 0:
            return None
        return self.data[index][offset:offset + size]

    def position(self, index, offset):
        """Bytes of the release before (index, offset): the progress a device's next-needed means."""
        index = max(0, min(index, len(self.data)))
        return sum(len(d) for d in self.data[:index]) + (max(0, offset) if index < len(self.data) else 0)

    def public(self):
        return {"id": self.id, "version": self.version, "files": len(self.names),
                "bytes": self.total, "path": self.path}


def _reader(path):
    if os.path.isdir(path):
        def read(name):
            full = os.path.join(path, *name.split("/"))
            if os.path.getsize(full) > MAX_BUNDLE:
                raise ReleaseError("%s is larger than %d bytes" % (name, MAX_BUNDLE))
            with open(full, "rb") as f:
                return f.read()
        return read, None
    if zipfile.is_zipfile(path):
        z = zipfile.ZipFile(path)

        def read(name):
            if z.getinfo(name).file_size > MAX_BUNDLE:
                raise ReleaseError("%s is larger than %d bytes" % (name, MAX_BUNDLE))
            return z.read(name)
        return read, z
    raise ReleaseError("%s is neither a bundle directory nor a .zip" % path)


def load(path, key):
    """The release in the bundle at `path` (ReleaseError when it is not one to roll out)."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise ReleaseError("the bundle path is empty")
    if not os.path.exists(path):
        raise ReleaseError("no bundle at %s" % path)
    try:
        read, z = _reader(path)
        try:
            manifest = read(MANIFEST)
            meta = json.loads(manifest.decode("utf-8"))
            listed = meta.get("files") if isinstance(meta, dict) else None
            if not isinstance(listed, dict) or not listed or len(listed) > MAX_FILES:
                raise ReleaseError("%s lists no files" % MANIFEST)
            if not isinstance(meta.get("version"), str) or not meta["version"]:
                raise ReleaseError("%s names no version" % MANIFEST)
            files, total = {}, 0
            for name, want in listed.items():
                if not proto.path_ok(name) or not isinstance(want, dict):
                    raise ReleaseError("%s names a bad file %r" % (MANIFEST, str(name)[:60]))
                data = read(name)
                total += len(data)
                if total > MAX_BUNDLE:
                    raise ReleaseError("the bundle is larger than %d bytes" % MAX_BUNDLE)
                if hashlib.sha256(data).hexdigest() != want.get("sha256") or len(data) != want.get("size"):
                    raise ReleaseError("%s does not match its sha256/size in %s" % (name, MANIFEST))
                files[name] = data
        finally:
            if z is not None:
                z.close()
    except ReleaseError:
        raise
    except KeyError as e:
        raise ReleaseError("the bundle lacks %s" % e) from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ReleaseError("the bundle cannot be read: %s" % e) from None
    try:
        return Release(meta, files, key, path)
    except (LocalProtocolError, ProtocolError) as e:
        raise ReleaseError("the manifest cannot be released: %s" % e) from None


class Releases:
    """The releases registered on this gateway, by id; their paths persisted in releases.json."""

    def __init__(self, key, data_dir, alarm=None):
        self.key = key
        self.path = os.path.join(data_dir, FILE_NAME)
        self.alarm = alarm
        self._by_id = {}
        self._lock = threading.Lock()
        for path in self._saved():
            try:
                r = load(path, key)
                self._by_id[r.id] = r
            except ReleaseError as e:
                if alarm:
                    alarm("release_unavailable", "release %s: %s" % (path, e))

    def _saved(self):
        try:
            with open(self.path, "rb") as f:
                paths = json.loads(f.read().decode("utf-8")).get("paths", [])
            return [p for p in paths if isinstance(p, str)]
        except (OSError, ValueError, AttributeError):
            return []

    def add(self, path):
        """Load and keep the bundle at `path`; the Release (the same one if already registered)."""
        if self.key is None:
            raise ReleaseError("the hall has no [ota] release_key: it cannot release firmware")
        r = load(path, self.key)
        with self._lock:
            if r.id in self._by_id:
                return self._by_id[r.id]
            paths = [x.path for x in self._by_id.values()] + [r.path]
            atomic_file.write(self.path, json.dumps({"paths": paths}).encode("utf-8"))
            self._by_id[r.id] = r
            return r

    def get(self, release_id):
        with self._lock:
            return self._by_id.get(release_id)

    def all(self):
        with self._lock:
            return list(self._by_id.values())


def request(step):
    """(message type, record) that carries a rollout step (gateway.rollout.Rollouts.next_step)."""
    from protocol import schema
    kind, release = step[0], step[1]
    if kind == "offer":
        return schema.UPDATE_OFFER, release.offer
    if kind == "chunk":
        return schema.UPDATE_CHUNK, {"release_id": release.release_id, "file": step[2],
                                     "offset": step[3], "data": step[4]}
    if kind == "commit":
        return schema.UPDATE_COMMIT, {"release_id": release.release_id}
    raise ValueError(kind)


def report(rollouts, device_id, state):
    """Hand a device's UPDATE_STATE record to the rollout (True when it concerned it)."""
    release_id = state.get("release_id") or b""
    return rollouts.report(device_id, proto.state_name(state.get("state", 0)), bytes(release_id).hex(),
                           state.get("file", 0), state.get("offset", 0),
                           proto.why_name(state.get("reason", 0)) + (
                               ": " + state["detail"] if state.get("detail") else ""),
                           state.get("running", ""), busy=state.get("busy", 0))
