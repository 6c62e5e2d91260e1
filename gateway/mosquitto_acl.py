"""Mosquitto password and ACL files from the registry, so a device can publish only under its own
topics and read only what is addressed to it (protocol.topics), kept in step at run time.

- Each device logs in with its id as user name and a password derived from its own 32-byte key
  (mqtt_password): the provisioning tool writes the same value into the device's config, so no
  second secret has to be handed around, and the broker file holds only a salted PBKDF2 hash.
- Hashes use Mosquitto 2's "$7$" format: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte hash, base64.
- The gateway logs in twice (the broker runs with use_username_as_clientid, so a device that
  presents another's client id takes over only its own session): its control plane as the
  [mqtt] user, which may read and write everything of its hall, and its rating intake as
  "<user>-ingest" (gateway.mqtt_ingest), same password, which may only read the ratings and
  write the ACKs. Nobody else gets a wildcard.
- Files are written atomically (own temp name, fsync, rename) with mode 0640 and the directory's
  group: the broker runs as its own user (Debian: `mosquitto`), so on a Pi the directory is
  hall-gateway:mosquitto with the setgid bit (README) and Mosquitto reads the files through its
  group; nobody else can. (0600 would lock Mosquitto out: "Unable to open pwfile".)
- BrokerFiles rewrites both files when a device is added, re-keyed, moved between transports or
  removed, then asks the broker to reload (Mosquitto re-reads both files on SIGHUP and drops
  clients whose login is gone): by SIGHUP to the pid in broker_pid_file when the gateway may
  signal the broker (the simulator: same user), else by leaving RELOAD_FLAG in the directory for
  a systemd path unit (docs/mosquitto/hall-broker-reload.path) that deletes the flag and then
  reloads Mosquitto. The flag is level-triggered on purpose: a change written while a reload runs
  leaves the flag behind, and systemd checks PathExists= again when the reload ends.
"""

import base64
import hashlib
import logging
import os
import signal
import threading

from gateway import atomic_file
from gateway.mqtt_ingest import ingest_username
from protocol import topics
from protocol.auth import mqtt_password  # the device computes the same (SPEC 6.2)

PBKDF2_ITERATIONS = 101
FILE_MODE = 0o640
PASSWORDS = "passwords"
ACL = "acl"
RELOAD_FLAG = "reload"

log = logging.getLogger("gateway.mosquitto_acl")


def hash_password(password, salt=None, iterations=PBKDF2_ITERATIONS):
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def _gateway_logins(gateway_user):
    return (gateway_user, ingest_username(gateway_user))


def _mqtt_devices(registry, gateway_user=None):
    """The registry's MQTT devices, but none whose id is one of the gateway's logins: it would
    give that device the gateway's client id (and a second password line for the login)."""
    taken = _gateway_logins(gateway_user) if gateway_user else ()
    return sorted((d for d in registry.all() if d.transport == "mqtt" and d.id not in taken),
                  key=lambda d: d.id)


def password_file(hall, registry, gateway_user, gateway_password):
    lines = ["%s:%s" % (user, hash_password(gateway_password))
             for user in _gateway_logins(gateway_user)]
    clashing = sorted(d.id for d in registry.all() if d.transport == "mqtt"
                      and d.id in _gateway_logins(gateway_user))
    if clashing:
        log.error("devices %s have an id that is the gateway's MQTT login: they get no broker login",
                  ", ".join(clashing))
    for device in _mqtt_devices(registry, gateway_user):
        lines.append("%s:%s" % (device.id, hash_password(mqtt_password(device.key))))
    return "\n".join(lines) + "\n"


def acl_file(hall, registry, gateway_user):
    out = ["# generated from the gateway registry: do not edit",
           "user %s" % gateway_user, "topic readwrite %s/%s/#" % (topics.ROOT, hall), "",
           "user %s" % ingest_username(gateway_user),
           "topic read %s" % topics.gateway_subscriptions(hall, ("rating",))[0],
           "topic write %s/%s/dev/+/ack" % (topics.ROOT, hall), ""]
    for device in _mqtt_devices(registry, gateway_user):
        out.append("user %s" % device.id)
        for kind in topics.DEVICE_TO_GATEWAY:
            out.append("topic write %s" % topics.device_topic(hall, device.id, kind))
        for kind in topics.GATEWAY_TO_DEVICE:
            out.append("topic read %s" % topics.device_topic(hall, device.id, kind))
        out.append("topic read %s" % topics.gateway_topic(hall, "state"))
        out.append("")
    return "\n".join(out)


def _write(path, text):
    def prepare(fd):     # readable by the broker's group, never by others
        os.fchmod(fd, FILE_MODE)
        group = os.stat(os.path.dirname(path)).st_gid
        if os.fstat(fd).st_gid != group:      # no setgid bit on the directory: try to set it
            try:
                os.fchown(fd, -1, group)
            except PermissionError:
                pass
    atomic_file.write(path, text.encode("utf-8"), prepare=prepare)


def file_paths(directory):
    return {"password_file": os.path.join(directory, PASSWORDS), "acl_file": os.path.join(directory, ACL)}


def write_files(directory, hall, registry, gateway_user, gateway_password):
    """Both files, passwords first: a reload between the two renames lets nobody new in."""
    os.makedirs(directory, mode=0o750, exist_ok=True)
    paths = file_paths(directory)
    _write(paths["password_file"], password_file(hall, registry, gateway_user, gateway_password))
    _write(paths["acl_file"], acl_file(hall, registry, gateway_user))
    atomic_file.sync_folder(directory)
    return paths


def signal_broker(pid_file):
    """SIGHUP to the Mosquitto whose pid is in pid_file; False (and why, logged) if it cannot be."""
    try:
        with open(pid_file, encoding="ascii") as f:
            pid = int(f.read().strip())
        try:   # a stale pid file must not hang up somebody else's process
            with open("/proc/%d/comm" % pid, encoding="utf-8") as f:
                if not f.read().startswith("mosquitto"):
                    raise ProcessLookupError("pid %d is not mosquitto" % pid)
        except FileNotFoundError:
            if os.path.isdir("/proc"):
                raise ProcessLookupError("no process %d" % pid) from None
        os.kill(pid, signal.SIGHUP)
        return True
    except (OSError, ValueError) as e:
        log.warning("broker reload by %s failed: %s", pid_file, e)
        return False


class BrokerFiles:
    """The broker's password and ACL files for one registry; sync() after each device change."""

    def __init__(self, directory, hall, registry, user, password, pid_file="", alarm=None):
        self.directory = directory
        self.hall = hall
        self.registry = registry
        self.user = user
        self.password = password
        self.pid_file = pid_file
        self.alarm = alarm
        self.flag = os.path.join(directory, RELOAD_FLAG)
        self.writes = 0
        self._lock = threading.Lock()
        self._written = None

    def _fingerprint(self):
        h = hashlib.sha256(("%s\0%s\0%s" % (self.hall, self.user, self.password)).encode("utf-8"))
        for device in _mqtt_devices(self.registry):
            h.update(b"\0" + device.id.encode("utf-8") + b"\0" + bytes(device.key))
        return h.digest()

    def sync(self, force=False):
        """Rewrite and reload if a login or a device's topics changed (a rename does not):
        True when written. Never raises: a failure is logged and raised as an alarm."""
        try:
            with self._lock:
                fingerprint = self._fingerprint()
                if fingerprint == self._written and not force:
                    return False
                write_files(self.directory, self.hall, self.registry, self.user, self.password)
                self._written = fingerprint
                self.writes += 1
                self.request_reload()
                return True
        except Exception as e:   # the registry change stands; the broker lags until the next sync
            log.error("writing the broker files in %s failed: %s", self.directory, e)
            if self.alarm is not None:
                self.alarm("broker_files", str(e))
            return False

    def request_reload(self):
        if self.pid_file:
            return signal_broker(self.pid_file)
        fd = os.open(self.flag, os.O_WRONLY | os.O_CREAT, FILE_MODE)
        os.close(fd)
        return True


def from_config(cfg, registry, alarm=None):
    """BrokerFiles for [mqtt] broker_files (relative to data_dir), or None when it is not set."""
    m = cfg.mqtt
    if not m.broker_files:
        return None
    return BrokerFiles(cfg.path(m.broker_files), cfg.hall, registry, m.username, m.password,
                       pid_file=cfg.path(m.broker_pid_file) if m.broker_pid_file else "", alarm=alarm)
