"""Device registry: who the devices are (config + provisioning) and how they are doing (live state).

A device's id is permanent: it is in its MQTT topics, its key and every rating id it makes. What
an operator may change at run time (HTTP API, no restart) is its name, window, board, transport,
bus address, key and firmware; such changes are saved atomically to the registry file, which
overrides the config file's [[devices]] at the next start. Listeners hear every change (the MQTT
bridge republishes the retained registry, the RS-485 master picks up new addresses).
Keys are secrets: snapshot() never includes them. Thread-safe: paho's thread, the bus thread and
the asyncio loop all use it.
A change is all or nothing: checked in full before it is made (text that cannot be written as
UTF-8 never gets in), and a save that fails undoes it in memory and raises RegistryUnavailable;
the temp file (it holds the keys: mode 0600) is removed.
"""

import json
import logging
import os
import threading
import time

from gateway import atomic_file
from gateway.fastcodec import is_token, verify_mac
from gateway.text_rules import is_text
from protocol import auth, errors, vocab
from protocol import rating as rating_rules

log = logging.getLogger("gateway.registry")

TRANSPORTS = ("mqtt", "rs485")
EDITABLE = ("name", "window", "board", "transport", "bus", "address", "key", "firmware")


class RegistryError(ValueError):
    pass


class RegistryUnavailable(RegistryError):
    """The registry file could not be saved (disk full, read-only ...): nothing was changed."""


def _token(value, what, limit):
    if not value or not is_token(value, limit):      # protocol's token rule, and not empty
        raise RegistryError("%s must be 1..%d of [A-Za-z0-9._-], got %s"
                            % (what, limit, ascii(value)[:40]))
    return value


def _key(value):
    if isinstance(value, (bytes, bytearray)):
        key = bytes(value)
    else:
        try:
            key = bytes.fromhex(value or "")
        except (TypeError, ValueError):
            raise RegistryError("key must be %d bytes in hex" % auth.KEY_LEN) from None
    if len(key) != auth.KEY_LEN:
        raise RegistryError("key must be %d bytes in hex" % auth.KEY_LEN)
    return key


class RegisteredDevice:
    """One device as the registry holds it: its spec (config + provisioning) and its live state
    (not firmware.device.Device, the evaluator itself)."""

    def __init__(self, spec):
        self.id = _token(spec.get("id"), "device id", 24)
        self.name = ""
        self.window = ""
        self.board = ""
        self.transport = "mqtt"
        self.bus = 0
        self.address = 0
        self.key = b""
        self.firmware = ""
        # live state
        self.online = False
        self.since = 0.0           # when `online` last changed (0: not since this start)
        self.last_seen = 0.0
        self.rssi = None           # Wi-Fi signal in dBm, from STATUS (None: not reported)
        self.outbox = 0
        self.custody = 0           # ratings it keeps until the central API holds them (SPEC 3.11)
        self.custody_oldest = 0    # device_time of the oldest of them (STATUS), 0: none/unknown
        self.case_id = 0
        self.counter = 0
        self.errors = {}
        self.lane = "fast"
        self.ratings = 0
        self.apply(spec)

    def apply(self, spec):
        for name in EDITABLE:
            if name not in spec or spec[name] is None:
                continue
            value = spec[name]
            if name == "window":     # "": at no window (how spec() saves a device without one)
                value = _token(value, "window", 16) if value != "" else ""
            elif name == "transport" and value not in TRANSPORTS:
                raise RegistryError("transport must be one of %s" % (TRANSPORTS,))
            elif name in ("bus", "address"):
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 247:
                    raise RegistryError("%s must be an integer 0..247" % name)
            elif name == "key":
                value = _key(value)
            elif not is_text(value, 60):
                raise RegistryError("%s must be text of at most 60 characters, without control"
                                    " characters or lone surrogates" % name)
            setattr(self, name, value)
        if self.transport == "rs485" and not 1 <= self.address <= 247:
            raise RegistryError("an RS-485 device needs an address 1..247")
        if not self.key:
            raise RegistryError("device %s has no key" % self.id)

    def spec(self):
        """What the registry file keeps (with the key: the file is private)."""
        return {"id": self.id, "name": self.name, "window": self.window, "board": self.board,
                "transport": self.transport, "bus": self.bus, "address": self.address,
                "key": self.key.hex(), "firmware": self.firmware}

    def public(self):
        out = self.spec()
        del out["key"]
        out.update({"online": self.online, "since": round(self.since, 3),
                    "last_seen": round(self.last_seen, 3), "rssi": self.rssi,
                    "outbox": self.outbox, "custody": self.custody,
                    "custody_oldest": self.custody_oldest or None,
                    "case_id": self.case_id, "counter": self.counter,
                    "errors": dict(self.errors), "lane": self.lane, "ratings": self.ratings})
        return out


class Registry:
    def __init__(self, devices=(), path=None, clock=time.time):
        self.path = path
        self.clock = clock
        self._lock = threading.RLock()
        self._devices = {}
        self.listeners = []
        for spec in devices:
            self._put(RegisteredDevice(spec))
        if path and os.path.exists(path):
            with open(path, "r", encoding="utf-8") as f:
                saved = json.load(f)
            for spec in saved.get("devices", []):
                self._put(RegisteredDevice(spec))

    def _put(self, device):
        self._devices[device.id] = device

    # --- lookups ---------------------------------------------------------------------------
    def get(self, device_id):
        with self._lock:
            return self._devices.get(device_id)

    def all(self):
        with self._lock:
            return list(self._devices.values())

    def by_window(self, window):
        with self._lock:
            return [d for d in self._devices.values() if d.window == window]

    def rs485(self, bus=None):
        with self._lock:
            return [d for d in self._devices.values()
                    if d.transport == "rs485" and (bus is None or d.bus == bus)]

    def snapshot(self):
        with self._lock:
            return [d.public() for d in sorted(self._devices.values(), key=lambda d: d.id)]

    def counts(self):
        with self._lock:
            devices = list(self._devices.values())
        return {"total": len(devices), "online": sum(1 for d in devices if d.online)}

    # --- changes (HTTP API, provisioning) -------------------------------------------------
    def add(self, spec):
        with self._lock:
            if _token(spec.get("id"), "device id", 24) in self._devices:
                raise RegistryError("device %s exists" % spec.get("id"))
            device = RegisteredDevice(spec)
            self._check_address(device)
            self._devices[device.id] = device
            self._save(undo=lambda: self._devices.pop(device.id))
        self._changed(device, "added")
        return device

    def update(self, device_id, changes):
        bad = [k for k in changes if k not in EDITABLE]
        if bad:
            raise RegistryError("cannot change %s (the id is permanent)" % ", ".join(bad))
        with self._lock:
            device = self._devices.get(device_id)
            if device is None:
                raise KeyError(device_id)
            trial = RegisteredDevice(device.spec())
            trial.apply(changes)
            self._check_address(trial, ignore=device_id)
            before = dict((name, getattr(device, name)) for name in EDITABLE)
            device.apply(changes)
            self._save(undo=lambda: [setattr(device, k, v) for k, v in before.items()])
        self._changed(device, "updated")
        return device

    def remove(self, device_id):
        with self._lock:
            device = self._devices.pop(device_id)
            self._save(undo=lambda: self._devices.__setitem__(device_id, device))
        self._changed(device, "removed")
        return device

    def _check_address(self, device, ignore=None):
        if device.transport != "rs485":
            return
        for other in self._devices.values():
            if (other.id != ignore and other.id != device.id and other.transport == "rs485"
                    and other.bus == device.bus and other.address == device.address):
                raise RegistryError("address %d on bus %d is taken by %s"
                                    % (device.address, device.bus, other.id))

    def _save(self, undo):
        """Write the registry file (under the lock, the change already made in memory); on any
        failure undo() puts memory back as the file still has it, and RegistryUnavailable says why."""
        if not self.path:
            return
        try:
            self._write()
        except Exception as e:
            undo()
            log.error("registry %s not saved (%s); the change was undone", self.path, type(e).__name__)
            raise RegistryUnavailable("the device registry could not be saved (%s); nothing changed"
                                      % type(e).__name__) from None

    def _write(self):
        # 0600 from the start, the keys are in it (gateway.atomic_file)
        text = json.dumps({"devices": [d.spec() for d in self._devices.values()]},
                          ensure_ascii=False, indent=1).encode("utf-8")
        atomic_file.write(self.path, text, prefix=".registry-")

    def _changed(self, device, what):
        """Tell the listeners; the change is made and saved, so a listener's failure is logged,
        never raised to whoever made the change."""
        for listener in list(self.listeners):
            try:
                listener(device, what)
            except Exception:
                log.exception("registry listener failed on %s %s", what, device.id)

    # --- live state -----------------------------------------------------------------------
    def seen(self, device_id, **state):
        online = state.pop("online", True)

        def apply(device):
            for name, value in state.items():
                setattr(device, name, value)
        return self._touch(device_id, online, apply)

    def rated(self, device_id, counter, stored):
        """seen(), and the device's highest counter and stored-ratings count moved on under the
        lock (the MQTT intake and paho's thread both update devices)."""
        def apply(device):
            device.counter = max(counter, device.counter)
            device.ratings += 1 if stored else 0
        return self._touch(device_id, True, apply)

    def _touch(self, device_id, online, apply):
        with self._lock:
            device = self._devices.get(device_id)
            if device is None:
                return None
            was = device.online
            device.last_seen = self.clock()
            device.online = online
            if was != online:
                device.since = device.last_seen
            apply(device)
        if was != device.online:
            self._changed(device, "online" if device.online else "offline")
        return device

    def set_offline(self, device_id):
        with self._lock:
            device = self._devices.get(device_id)
            if device is None or not device.online:
                return
            device.online = False
            device.since = self.clock()
        self._changed(device, "offline")

    def count_error(self, device_id, name):
        with self._lock:
            device = self._devices.get(device_id)
            if device is not None:
                device.errors[name] = device.errors.get(name, 0) + 1

    def status_report(self, device_id, status):
        """A STATUS record from the device."""
        errors_ = dict((c.get("name", "?"), c.get("count", 0)) for c in status.get("errors", []))
        changes = {"outbox": status.get("outbox", 0), "case_id": status.get("case_id", 0),
                   "counter": status.get("counter", 0), "custody": status.get("custody", 0),
                   "custody_oldest": status.get("custody_oldest", 0)}
        device = self.seen(device_id, **changes)
        if device is not None:
            with self._lock:
                if status.get("firmware"):
                    device.firmware = status["firmware"]
                if status.get("rssi_neg"):     # 0: not on Wi-Fi (or not measured)
                    device.rssi = -status["rssi_neg"]
                device.errors.update(("device." + k, v) for k, v in errors_.items())
        return device

    # --- ratings --------------------------------------------------------------------------
    def check_rating(self, rating, via_device, signed=None):
        """None if the rating may be committed, else (R_*, detail). `via_device`: who sent it;
        `signed`: the bytes the MAC covers, when the caller has them (fastcodec.rating_from_json)."""
        device = self.get(rating.get("device"))
        if device is None:
            return errors.R_UNKNOWN_DEVICE, "device %r not in the registry" % rating.get("device")
        if via_device is not None and via_device != device.id:
            return errors.R_UNKNOWN_DEVICE, "%s sent a rating of %s" % (via_device, device.id)
        if not verify_mac(device.key, rating, signed):
            return errors.R_BAD_MAC, "MAC does not verify"
        try:
            check_at_node(rating)
        except errors.ProtocolError as e:
            return e.reason, e.detail
        return None


def check_at_node(rating):
    """rating_rules.check under the indicators of the rating's own node (a MAC-covered field), and
    what the central side requires besides (hall_simulator/central_store._check_rating): a rule
    broken here would only come back as a rejection from upstream, after the device let it go."""
    node = rating.get("node")
    if not rating.get("serials") or not node:
        raise errors.ProtocolError(errors.R_MISSING, "a rating names its case's serials and node")
    indicators = vocab.NODE_INDICATORS.get(node)
    if indicators is None:
        raise errors.ProtocolError(errors.R_OUT_OF_RANGE, "node %r" % (node,))
    rating_rules.check(rating, indicators)
