"""The devices' configuration, changed while the gateway runs: from the operator API and on SIGHUP.

Three levels, each from gateway.toml and from <data_dir>/live-config.json over it (gateway.window_words
builds a device's CONFIG from them): the hall ([device_config]), a window ([windows."<window>"]),
a device ([devices_config."<id>"]). live-config.json holds what the operator API set:

    {"hall": {...}, "windows": {"A05": {...}}, "devices": {"ev-1": {...}}}

each table replacing the file's keys of that level one by one (an empty table gives the level
back to the file). A change is validated exactly as at start (every level, and every registered
device at its window); a bad one changes nothing. A good one is written atomically
(gateway.atomic_file), then the new words are swapped in and every device whose CONFIG version
changed is sent its new CONFIG (RS-485: at its next poll; MQTT: published retained), so it arrives
within one poll or publish cycle.

SIGHUP (`hall-gateway reload`) re-reads gateway.toml, validates it entirely, and applies the three
levels above live; changes elsewhere (ports, data_dir, buses, MQTT, devices, uplink ...) need a
restart and are only reported (one log line naming the sections). Any error keeps the running
config: one log line and the alarm `config_reload_failed`.
"""

import copy
import json
import logging
import os
import threading

from gateway import atomic_file
from gateway import config as config_mod
from gateway.config import ConfigError
from gateway.window_words import WindowWords

log = logging.getLogger("gateway.live_config")

FILE_NAME = "live-config.json"
SCOPES = ("hall", "windows", "devices")
LIVE_SECTIONS = ("device_config", "windows", "devices_config")   # what SIGHUP applies live
MAX_FILE = 256 * 1024


def file_levels(cfg):
    """The three levels as gateway.toml gives them."""
    raw = cfg.raw or {}
    return {"hall": dict(cfg.device_config or {}), "windows": dict(raw.get("windows") or {}),
            "devices": dict(raw.get("devices_config") or {})}


def merged(file, live):
    """The levels with live's tables over the file's, key by key."""
    hall = dict(file["hall"], **live.get("hall", {}))
    out = {"hall": hall}
    for scope in ("windows", "devices"):
        tables = dict(file[scope])
        for name, table in live.get(scope, {}).items():
            tables[name] = dict(tables.get(name) or {}, **table)
        out[scope] = tables
    return out


def restart_sections(old_raw, new_raw):
    """Top-level sections of gateway.toml that differ and cannot change live."""
    names = set(old_raw) | set(new_raw)
    return sorted(n for n in names if n not in LIVE_SECTIONS and old_raw.get(n) != new_raw.get(n))


class LiveConfig:
    """The gateway's words (a WindowWords), their sources, and the changes to them.
    `send(device, record)` gives a device its CONFIG; `devices()` lists the registered devices."""

    def __init__(self, cfg, devices, send, alarm=None):
        self.cfg = cfg
        self.devices = devices
        self.send = send
        self.alarm = alarm or (lambda name, detail: None)
        self.path = cfg.path(FILE_NAME)
        self.file = file_levels(cfg)
        self.live = {"hall": {}, "windows": {}, "devices": {}}
        self._lock = threading.RLock()
        self.sent = {}            # device id -> the CONFIG version last given to it
        self.reloads = {"applied": 0, "refused": 0, "restart_needed": [], "error": ""}
        self.listeners = []       # called after each change applied (the alerts' tag labels)
        self.words = self._build(self.file, self.live, check_devices=False)
        saved = self._read()
        if saved is not None:
            try:
                self.words = self._build(self.file, saved, check_devices=False)
                self.live = saved
            except ConfigError as e:       # gateway.toml changed under it: the file's words run
                self.alarm("config_live_ignored", "%s: %s" % (FILE_NAME, e))

    # --- building -----------------------------------------------------------------------------
    def _read(self):
        try:
            with open(self.path, "rb") as f:
                data = json.loads(f.read(MAX_FILE + 1).decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            self.alarm("config_live_ignored", "%s: %s" % (FILE_NAME, e))
            return None
        if not isinstance(data, dict) or not all(isinstance(data.get(s, {}), dict) for s in SCOPES):
            self.alarm("config_live_ignored", "%s: not {hall, windows, devices}" % FILE_NAME)
            return None
        return dict((s, data.get(s, {})) for s in SCOPES)

    def _build(self, file, live, check_devices=True):
        levels = merged(file, live)
        placed = dict((d.id, d.window) for d in self.devices()) if check_devices else None
        words = WindowWords(levels["hall"], levels["windows"], levels["devices"], placed)
        if check_devices:           # every registered device's CONFIG, at its window, is valid
            for device in self.devices():
                words.config_for(device.window, device.id)
        return words

    # --- what a device gets -------------------------------------------------------------------
    def config_for(self, device):
        """The device's CONFIG (None: no CONFIG configured); falls back to its window's if its own
        table makes none at that window (a device moved there after the change: alarmed)."""
        try:
            return self.words.config_for(device.window, device.id)
        except ConfigError as e:
            self.alarm("config_invalid", "%s at window %s: %s" % (device.id, device.window, e))
            return self.words.config_for(device.window)

    def provision(self, device, force=True):
        """Send the device its CONFIG if `force` or its version changed; True when sent."""
        with self._lock:
            record = self.config_for(device)
            if record is None or (not force and self.sent.get(device.id) == record["version"]):
                return False
            self.send(device, record)
            self.sent[device.id] = record["version"]
            return True

    def tag_labels(self):
        """{code: label} of every tag any device is offered; the hall's label where it has one."""
        records = [self.config_for(d) for d in self.devices()]
        records += [self.words.config_for(w) for w in sorted(self.words.windows)]
        records.append(self.words.config_for(None))
        out = {}
        for record in records:
            out.update((t.get("code"), t.get("label", "")) for t in (record or {}).get("tags") or ())
        return out

    def _changed(self):
        for listener in self.listeners:
            listener()

    def version_for(self, device):
        record = self.config_for(device)
        return record["version"] if record is not None else 0

    def status(self):
        """/status "config": reloads applied and refused, sections waiting for a restart."""
        return dict(self.reloads, live_file=os.path.exists(self.path))

    def view(self):
        """GET /api/v1/config: the levels (file and live) and each device's effective CONFIG with
        the level of each value."""
        with self._lock:
            out = {"file": copy.deepcopy(self.file), "live": copy.deepcopy(self.live), "devices": [],
                   "windows": {}}
            for device in sorted(self.devices(), key=lambda d: d.id):
                record = self.config_for(device)
                if record is None:
                    continue
                out["devices"].append({"device": device.id, "window": device.window,
                                       "version": record["version"], "sent": self.sent.get(device.id),
                                       "config": record, "source": self._sources(device.window, device.id)})
            for window in sorted(self.words.windows):
                record = self.words.config_for(window)
                out["windows"][window] = {"version": record["version"], "config": record,
                                          "source": self._sources(window, None)}
            hall = self.words.config_for(None)
            if hall is not None:
                out["hall"] = {"version": hall["version"], "config": hall,
                               "source": self._sources(None, None)}
            return out

    def _sources(self, window, device):
        """{key: "<level>:<file|live>"} for every key a level sets; others are "default"."""
        out = {}
        for key, level in self.words.sources(window, device).items():
            scope, name = {"hall": ("hall", None), "window": ("windows", window),
                           "device": ("devices", device)}[level]
            table = self.live[scope] if name is None else self.live[scope].get(name, {})
            top = key.split(".")[0]
            live = top in table or (top == "texts" and "idle_text" in table and key == "texts.idle")
            if key == "tags" and "tag_labels" in table:
                live = True
            out[key] = "%s:%s" % (level, "live" if live else "file")
        return out

    # --- changing -----------------------------------------------------------------------------
    def put(self, scope, name, table):
        """Replace the live table of one level (scope hall / windows / devices; name None for the
        hall); ConfigError and nothing changed if the result is not valid everywhere."""
        if not isinstance(table, dict):
            raise ConfigError("the body is a table of the level's keys, e.g. {\"volume\": 3}")
        with self._lock:
            live = copy.deepcopy(self.live)
            if scope == "hall":
                live["hall"] = table
            elif table:
                live[scope][name] = table
            else:
                live[scope].pop(name, None)
            words = self._build(self.file, live)
            text = json.dumps(live, ensure_ascii=False, sort_keys=True, indent=1)
            if len(text.encode("utf-8")) > MAX_FILE:
                raise ConfigError("the live configuration would exceed %d bytes" % MAX_FILE)
            atomic_file.write(self.path, text.encode("utf-8"), sync_dir=True)
            self.live, self.words = live, words
            sent = self._resend()
        self._changed()
        return sent

    def _resend(self):
        """Give every device whose CONFIG version changed its new CONFIG; the ids sent to."""
        return [d.id for d in self.devices() if self.provision(d, force=False)]

    def reload(self, path=None):
        """SIGHUP: re-read gateway.toml; (applied device ids, sections needing a restart), or
        None when it was refused (logged, alarmed: the running config stays)."""
        path = path or self.cfg.source
        try:
            cfg = config_mod.load(path)
            file = file_levels(cfg)
            with self._lock:
                words = self._build(file, self.live)
                self.file, self.words = file, words
                restart = restart_sections(self.cfg.raw, cfg.raw)
                sent = self._resend()
        except (OSError, ConfigError) as e:
            log.error("reload refused, the running config stays: %s", " ".join(str(e).split()))
            self.alarm("config_reload_failed", str(e))
            self.reloads.update(refused=self.reloads["refused"] + 1, error=str(e))
            return None
        self.reloads.update(applied=self.reloads["applied"] + 1, restart_needed=restart, error="")
        self._changed()
        if restart:
            log.warning("reload: [%s] changed and need a restart (not applied)", "], [".join(restart))
        log.info("reload: device config applied, %d device(s) sent a new CONFIG", len(sent))
        return sent, restart


def pid_path(cfg):
    """Where the running gateway keeps its process id (`hall-gateway reload` reads it)."""
    return cfg.path("hall-gateway.pid")


def write_pid(cfg):
    atomic_file.write(pid_path(cfg), b"%d\n" % os.getpid())


def remove_pid(cfg):
    try:
        with open(pid_path(cfg), "rb") as f:
            mine = f.read().strip() == str(os.getpid()).encode()
        if mine:
            os.unlink(pid_path(cfg))
    except OSError:
        pass


def running_pid(cfg):
    """The pid in the pid file if that process is alive, else None."""
    try:
        with open(pid_path(cfg), "rb") as f:
            pid = int(f.read(32).strip())
        os.kill(pid, 0)
    except PermissionError:       # alive, another user's
        return pid
    except (OSError, ValueError):
        return None
    return pid
