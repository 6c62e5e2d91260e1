"""Reference central rating API (docs/upstream-api.yaml) on aiohttp, keeping everything in SQLite.

    python -m hall_simulator.central_api --port 8700 --db central.db [--hmac-secret S] [--token T]
        [--speed X --start UNIX] [--default-level 3] [--work-order-days 10] [--holiday 2024-10-01 ...]

Fault injection for the simulator (in process: `server.faults`, or POST /v1/admin/faults):
fail the next N batches with a 5xx, answer the next N with 429 + Retry-After, delay answers, and
outages (the listening socket is closed, so clients see "connection refused", then reopened).
"""

import argparse
import asyncio
import concurrent.futures
import hashlib
import json
import logging
import signal
import time

from aiohttp import web

try:  # a batch body is ~0.5 MB of JSON: orjson parses it twice as fast and writes the answer 8x
    import orjson as _orjson
except ImportError:  # pragma: no cover - stdlib fallback
    _orjson = None

from gateway import builtin_profiles, upstream_auth
from hall_simulator import central_rules
from hall_simulator.central_store import CentralStore, Rejected
from hall_simulator.clock import SimClock

log = logging.getLogger("hall_simulator.central_api")

BATCH_PATH = "/v1/batches"
MAX_ITEMS = 5000
MAX_BODY = 16 * 1024 * 1024


class Faults:
    """What to do wrong next. Counters record what was injected."""

    def __init__(self):
        self.fail_next = 0
        self.fail_status = 500
        self.throttle_next = 0
        self.retry_after = 1
        self.delay_s = 0.0
        self.delay_next = 0          # 0 = every answer while delay_s > 0
        self.injected = {"5xx": 0, "429": 0, "slow": 0, "outage": 0}

    def set(self, fail_next=None, status=None, throttle_next=None, retry_after=None, delay_s=None,
            delay_next=None):
        if fail_next is not None:
            self.fail_next = int(fail_next)
        if status is not None:
            self.fail_status = int(status)
        if throttle_next is not None:
            self.throttle_next = int(throttle_next)
        if retry_after is not None:
            self.retry_after = retry_after
        if delay_s is not None:
            self.delay_s = float(delay_s)
        if delay_next is not None:
            self.delay_next = int(delay_next)

    def state(self):
        return {"fail_next": self.fail_next, "status": self.fail_status,
                "throttle_next": self.throttle_next, "retry_after": self.retry_after,
                "delay_s": self.delay_s, "delay_next": self.delay_next, "injected": dict(self.injected)}


def _error(status, message, **headers):
    return web.json_response({"error": message}, status=status, headers=headers or None)


class CentralServer:
    def __init__(self, store, host="127.0.0.1", port=0, secrets=None, tokens=(), admin_token=None,
                 auth_clock=time.time, close_interval=None, ssl_context=None, store_thread=False):
        self.store = store
        self.host = host
        self.port = port
        self.secrets = dict(secrets or {})
        self.tokens = tuple(tokens)
        self.admin_token = admin_token
        self.auth_clock = auth_clock
        self.close_interval = close_interval
        self.ssl_context = ssl_context
        self.faults = Faults()
        # store_thread: every store call runs on one worker thread, so a batch's commit (fsync)
        # does not stall the loop, which meanwhile reads, checks and parses the next request.
        # Only when nothing else touches `store` (the standalone process): an in-process caller
        # using the store on the loop thread would interleave with the worker's transaction.
        self._store_thread = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="central-store") if store_thread else None
        self.requests = {"batches": 0, "auth_failures": 0, "bad_requests": 0}
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.add_routes([
            web.post(BATCH_PATH, self.post_batch),
            web.get("/v1/report", self.get_report),
            web.get("/v1/statistics/{by}", self.get_statistics),
            web.get("/v1/work-orders", self.get_work_orders),
            web.get("/v1/ratings", self.get_ratings),
            web.get("/v1/ratings/{rating_id}", self.get_rating),
            web.post("/v1/admin/close-expired", self.post_close_expired),
            web.get("/v1/admin/faults", self.get_faults),
            web.post("/v1/admin/faults", self.post_faults),
            web.get("/healthz", self.healthz),
        ])
        self._runner = None
        self._site = None
        self._closer = None
        self._outage_task = None

    @property
    def url(self):
        return "%s://%s:%d" % ("https" if self.ssl_context else "http", self.host, self.port)

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self):
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await self.listen()
        if self.close_interval:
            self._closer = asyncio.get_running_loop().create_task(self._close_loop())
        return self

    async def listen(self):
        self._site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context,
                                 reuse_address=True)
        await self._site.start()
        if not self.port:
            self.port = self._site._server.sockets[0].getsockname()[1]

    async def stop_listening(self):
        """Outage: close the socket (new connections are refused) and drop open connections."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
            for connection in self._runner.server.connections:
                connection.force_close()   # keep-alive connections die too, as in a real outage
            self.faults.injected["outage"] += 1

    async def outage(self, seconds):
        await self.stop_listening()
        await asyncio.sleep(seconds)
        await self.listen()

    async def stop(self):
        if self._closer:
            self._closer.cancel()
        if self._outage_task:
            self._outage_task.cancel()
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
        if self._store_thread is not None:
            self._store_thread.shutdown(wait=True)     # the batch under way commits first

    async def _store(self, method, *args):
        """A store call: on the store thread if there is one, else right here."""
        if self._store_thread is None:
            return method(*args)
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, method, *args)

    async def _close_loop(self):
        while True:
            await asyncio.sleep(self.close_interval)
            try:
                count = await self._store(self.store.close_expired)
                if count:
                    log.info("7-day window closed for %d cases: system default", count)
            except Exception:
                log.exception("close_expired failed")

    # --- the API -------------------------------------------------------------------------
    async def post_batch(self, request):
        self.requests["batches"] += 1
        body = await request.read()
        problem = upstream_auth.verify(request.headers, request.method, request.path, body,
                                       self.secrets, self.tokens, now=self.auth_clock()) \
            if (self.secrets or self.tokens) else None
        if problem:
            self.requests["auth_failures"] += 1
            return _error(401, problem)
        faulty = await self._inject()
        if faulty is not None:
            return faulty
        try:
            envelope = _orjson.loads(body) if _orjson is not None else json.loads(body)
            problem = self._envelope_problem(envelope)
        except (ValueError, UnicodeDecodeError):
            problem = "body is not JSON"
        if problem:
            self.requests["bad_requests"] += 1
            status = 413 if problem.startswith("more than") else 400
            return _error(status, problem)
        try:
            answer = await self._store(self.store.receive_batch, envelope,
                                       hashlib.sha256(body).hexdigest())
        except Rejected as exc:
            return _error(409, str(exc))
        headers = {"Idempotent-Replayed": "true"} if answer.get("replayed") else None
        if _orjson is None:
            return web.json_response(answer, headers=headers)
        return web.Response(body=_orjson.dumps(answer), content_type="application/json",
                            charset="utf-8", headers=headers)

    @staticmethod
    def _envelope_problem(envelope):
        if not isinstance(envelope, dict):
            return "body must be an object"
        for name in ("batch_id", "gateway_id", "profile"):
            if not isinstance(envelope.get(name), str) or not envelope[name]:
                return "%s is required" % name
        items = envelope.get("items")
        if not isinstance(items, list) or not items:
            return "items must be a non-empty list"
        if len(items) > MAX_ITEMS:
            return "more than %d items" % MAX_ITEMS
        if envelope["profile"] not in builtin_profiles.BUILTIN:
            return "unknown profile %s" % envelope["profile"]
        return None

    async def _inject(self):
        f = self.faults
        if f.delay_s > 0:
            f.injected["slow"] += 1
            await asyncio.sleep(f.delay_s)
            if f.delay_next:
                f.delay_next -= 1
                if not f.delay_next:
                    f.delay_s = 0.0
        if f.fail_next > 0:
            f.fail_next -= 1
            f.injected["5xx"] += 1
            return _error(f.fail_status, "injected failure")
        if f.throttle_next > 0:
            f.throttle_next -= 1
            f.injected["429"] += 1
            return _error(429, "slow down", **{"Retry-After": str(f.retry_after)})
        return None

    def _admin_ok(self, request):
        return not self.admin_token or request.headers.get("Authorization") == \
            "Bearer %s" % self.admin_token

    async def get_report(self, request):
        report = await self._store(self.store.report)
        report["faults"] = dict(self.faults.injected)
        report["requests"] = dict(self.requests)
        return web.json_response(report)

    async def get_statistics(self, request):
        by = request.match_info["by"]
        if by not in ("window", "staff", "matter"):
            return _error(404, "statistics by window, staff or matter")
        groups = await self._store(self.store.statistics, by)
        return web.json_response({"by": by, "groups": groups})

    async def get_work_orders(self, request):
        return web.json_response({"work_orders": await self._store(self.store.work_orders)})

    async def get_ratings(self, request):
        try:
            after = int(request.query.get("after", 0))
            limit = min(int(request.query.get("limit", 1000)), 10000)
        except ValueError:
            return _error(400, "after and limit are integers")
        rows = await self._store(self.store.ratings, after, limit)
        return web.json_response({"ratings": rows})

    async def get_rating(self, request):
        row = await self._store(self.store.rating, request.match_info["rating_id"])
        return web.json_response(row) if row else _error(404, "no such rating")

    async def post_close_expired(self, request):
        if not self._admin_ok(request):
            return _error(401, "admin token")
        body = await request.json() if request.can_read_body else {}
        count = await self._store(self.store.close_expired, body.get("now"))
        return web.json_response({"closed": count})

    async def get_faults(self, request):
        return web.json_response(self.faults.state())

    async def post_faults(self, request):
        if not self._admin_ok(request):
            return _error(401, "admin token")
        body = await request.json()
        outage_s = body.pop("outage_s", None)
        try:
            self.faults.set(**body)
        except TypeError as exc:
            return _error(400, str(exc))
        if outage_s:
            # Answer first, then go dark: the caller learns the outage started.
            self._outage_task = asyncio.get_running_loop().call_later(
                0.05, lambda: asyncio.ensure_future(self.outage(float(outage_s))))
        return web.json_response(self.faults.state())

    async def healthz(self, request):
        return web.json_response({"ok": True})


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="hall_simulator.central_api", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8700)
    p.add_argument("--db", default="central.db")
    p.add_argument("--hmac-secret", action="append", default=[], metavar="[GATEWAY=]SECRET",
                   help="shared HMAC secret, for one gateway id or for all")
    p.add_argument("--token", action="append", default=[], help="accepted bearer token")
    p.add_argument("--admin-token")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument("--start", type=float, help="simulated unix time at start (default now)")
    p.add_argument("--clock-spec", help="SimClock.spec() of the simulator, to share its time")
    p.add_argument("--default-level", type=int, default=3, help="level of the 7-day default")
    p.add_argument("--work-order-days", type=int, default=10)
    p.add_argument("--holiday", action="append", default=[], help="YYYY-MM-DD, not a working day")
    p.add_argument("--workday", action="append", default=[], help="YYYY-MM-DD weekend make-up day")
    p.add_argument("--close-interval", type=float, default=5.0,
                   help="real seconds between 7-day window sweeps (0 = only on request)")
    p.add_argument("--synchronous", default="FULL", choices=("OFF", "NORMAL", "FULL"),
                   help="SQLite synchronous mode (default FULL: an answered batch survives a power"
                        " cut; NORMAL may lose the last answered batches)")
    return p.parse_args(argv)


def secrets_from(values):
    secrets = {}
    for value in values:
        gateway, sep, secret = value.partition("=")
        if sep:
            secrets[gateway] = secret
        else:
            secrets["*"] = value
    return secrets


async def serve(args):
    clock = SimClock.from_spec(args.clock_spec) if args.clock_spec else \
        SimClock(args.speed, start_unix=args.start)
    store = CentralStore(args.db, clock=clock.time, default_level=args.default_level,
                         work_order_days=args.work_order_days,
                         calendar=central_rules.WorkCalendar(args.holiday, args.workday),
                         synchronous=args.synchronous)
    server = CentralServer(store, args.host, args.port, secrets=secrets_from(args.hmac_secret),
                           store_thread=True,
                           tokens=args.token, admin_token=args.admin_token,
                           close_interval=args.close_interval or None)
    await server.start()
    print(json.dumps({"listening": server.url, "db": args.db}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    store.close()


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
