"""The whole gateway (gateway.app.Gateway, real Mosquitto, its real aiohttp server on loopback) run
on a loop thread of its own, called with plain blocking HTTP: the HTTP API's security and
robustness tests (tests/test_gw_api_auth.py, tests/test_gw_api_robust.py) and their hypothesis
runs, which want one gateway for many requests."""

import asyncio
import http.client
import json
import os
import threading

from gateway import config as config_mod
from gateway.app import Gateway
from gw_support import HALL, device_key

STAFF = "王䶮明"          # a staff name with a CJK Extension A character
STAFF_2 = "𠈌丽"          # and one outside the BMP
DEVICES = ("dev-a", "dev-b")


def gateway_config(broker, data_dir, http=None, **gateway):
    return config_mod.from_dict({
        "gateway": dict({"hall": HALL, "data_dir": str(data_dir), "privacy_key": "11" * 32}, **gateway),
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "gw-live-" + os.urandom(3).hex()},
        "http": dict({"host": "127.0.0.1", "port": 0}, **(http or {})),
        "device_config": {"version": 2, "rating_timeout_s": 30},
        "devices": [{"id": d, "window": "A0%d" % (i + 1), "key": device_key(d).hex()}
                    for i, d in enumerate(DEVICES)],
    })


class LiveGateway:
    def __init__(self, cfg):
        self.cfg = cfg
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        self.gw = Gateway(self.cfg)
        self.run(self.gw.start())
        self.gw.bridge.connected.wait(10)
        self.port = self.gw.http_port
        return self

    def __exit__(self, *exc):
        try:
            self.run(self.gw.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def run(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def token(self, role):
        """The role's credential; None on a gateway without roles (the code before them)."""
        return (getattr(self.gw, "credentials", None) or {}).get(role)

    def request(self, method, path, body=None, raw=None, role=None, token=None, timeout=30):
        """(status, parsed JSON or text). `body` is sent as JSON (lone surrogates \\u-escaped)."""
        if raw is None and body is not None:
            raw = json.dumps(body).encode("ascii")
        headers = {"Content-Type": "application/json"}
        token = token or (self.token(role) if role else None)
        if token:
            headers["Authorization"] = "Bearer " + token
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=raw, headers=headers)
            resp = conn.getresponse()
            data = resp.read().decode("utf-8")
        finally:
            conn.close()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, data


def state(gw):
    """What a refused request must leave as it was: registry, cases, windows, the store's state
    and counts, the data directory's files and the registry file."""
    data_dir = gw.cfg.data_dir
    registry = gw.cfg.registry_path
    return {"registry": json.dumps(gw.registry.snapshot(), sort_keys=True, ensure_ascii=True),
            "keys": sorted((d.id, d.key.hex()) for d in gw.registry.all()),
            "cases": json.dumps(gw.cases.snapshot(), sort_keys=True, ensure_ascii=True),
            "case_ids": sorted(gw.cases.cases),
            "store_state": json.dumps(gw.store.state_items(""), sort_keys=True, ensure_ascii=True),
            "backlog": gw.store.backlog(),
            "files": sorted(n for n in os.listdir(data_dir) if not n.startswith("outbox.db")),
            "registry_file": open(registry, "rb").read() if os.path.exists(registry) else None}


def temp_files(gw):
    folder = os.path.dirname(os.path.abspath(gw.cfg.registry_path))
    return [n for n in os.listdir(folder) if n.startswith(".registry-")]
