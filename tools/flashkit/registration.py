"""Registering a provisioned device and its key with the hall gateway: the one place that knows how.

Target is either the gateway's registry file (gateway.registry.Registry keeps it; use while the
gateway is stopped, it reads the file at start) or the URL of the running gateway's HTTP API
(gateway/queue_api.py: GET/POST /api/v1/devices, PATCH /api/v1/devices/{id}, bearer token).
Re-registering the same settings changes nothing; a changed key or window is an update.

A box of boards is provisioned by parallel worker threads (and maybe by two flash.py runs at
once): each registration of a file is a read-modify-write of the whole file, so they are
serialised, within the process by a lock per file and across processes by an flock on a
`<registry>.lock` file next to it. Without that, two registrations lost each other's devices or
collided on the registry's temporary file.
"""

import contextlib
import fcntl
import json
import os
import threading
import urllib.error
import urllib.request

from tools.flashkit.errors import GatewayError

FIELDS = ("window", "board", "transport", "bus", "address", "key", "firmware")


def spec_for(cfg, version, bus=None):
    """The registry's device spec from the device config (gateway field names); `bus` is the
    gateway's [[rs485]] index the device is on, when known."""
    spec = {"id": cfg["device"], "window": cfg.get("window") or "", "board": cfg["board"]["profile"],
            "transport": cfg["transport"], "key": cfg["key"], "firmware": version}
    if cfg["transport"] == "rs485":
        spec["address"] = cfg["address"]
        if bus is not None:
            spec["bus"] = bus
    return spec


def register(target, spec, token=None):
    """'added', 'updated' or 'unchanged'; GatewayError with the gateway's reason otherwise."""
    if target.startswith(("http://", "https://")):
        return _register_http(target.rstrip("/"), spec, token)
    return _register_file(target, spec)


_LOCKS = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def file_lock(path):
    """Exclusive use of the registry file `path` (threads of this process, and other processes)."""
    real = os.path.realpath(path)
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(real, threading.Lock())
    with lock:
        fd = os.open(real + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock


def _register_file(path, spec):
    try:
        with file_lock(path):
            return _register_file_locked(path, spec)
    except OSError as exc:
        raise GatewayError("gateway registry %s: %s" % (path, exc)) from None


def _register_file_locked(path, spec):
    from gateway.registry import Registry, RegistryError
    try:
        reg = Registry(path=path)
        old = reg.get(spec["id"])
        if old is None:
            reg.add(spec)
            return "added"
        have = old.spec()
        changes = dict((k, spec[k]) for k in FIELDS if k in spec and have.get(k) != spec[k])
        if not changes:
            return "unchanged"
        reg.update(spec["id"], changes)
        return "updated"
    except (RegistryError, OSError, ValueError) as exc:
        raise GatewayError("gateway registry %s: %s" % (path, exc)) from None


def _request(method, url, body=None, token=None):
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")[:200]
        return exc.code, text
    except (urllib.error.URLError, OSError) as exc:
        raise GatewayError("gateway %s does not answer (%s)" % (url, getattr(exc, "reason", exc))) from None


def _register_http(base, spec, token):
    url = "%s/api/v1/devices/%s" % (base, spec["id"])
    status, body = _request("GET", url, token=token)
    if status == 404:
        status, body = _request("POST", base + "/api/v1/devices", spec, token)
        if status in (200, 201):
            return "added"
    elif status == 200:
        have = body if isinstance(body, dict) else {}
        # the API never shows keys, so the key is always sent; the rest only when it differs
        changes = dict((k, spec[k]) for k in FIELDS if k in spec and (k == "key" or have.get(k) != spec[k]))
        status, body = _request("PATCH", url, changes, token)
        if status == 200:
            return "updated"
    raise GatewayError("gateway refused device %s: HTTP %s %s" % (spec["id"], status, body))
