"""HTTP API of the gateway (aiohttp), for the hall's queueing system (排队叫号) and the operator.
Documented in docs/queue-api.yaml (OpenAPI 3).

    POST   /api/v1/windows/{window}/sign-in    staff signs in at a window {staff_id, staff_name}
    POST   /api/v1/windows/{window}/sign-out
    GET    /api/v1/windows
    POST   /api/v1/cases                       case event (node, success, serials, matter ...)
    GET    /api/v1/cases/{case_id}
    GET    /api/v1/devices                     registry with live state (never keys)
    POST   /api/v1/devices                     add a device
    PATCH  /api/v1/devices/{id}                rename, move to another window, change transport ...
    DELETE /api/v1/devices/{id}
    GET    /api/v1/dead-letters
    GET    /status                             gateway status JSON
    GET    /metrics                            Prometheus text
With [http] token set, /api/ wants "Authorization: Bearer <token>". Every refused request is
answered {"error": <reason>, "detail": ...}, counted by reason, and logged rate-limited; request
bodies are never logged (they may hold the applicant's identity).
The queueing system is called back (POST callback_url, JSON) when a case is rated or the device
timed out; see Callbacks.
Handlers that commit (case events, sign-in/out, device changes: each waits for an fsync) or read
the store (/status, /metrics: its lock is held through a group commit) run in the loop's
executor, so the loop never stalls behind a disk write.
"""

import asyncio
import hmac
import json
import logging
import time

from aiohttp import web, ClientSession, ClientTimeout

from gateway.cases import CaseError
from gateway.registry import RegistryError
from protocol import errors

log = logging.getLogger("gateway.http")

MAX_BODY = 64 * 1024
_HTTP_REASON = {400: errors.R_MALFORMED, 401: errors.R_UNKNOWN_DEVICE, 404: errors.R_MISSING,
                409: errors.R_BAD_STATE, 413: errors.R_OVERSIZE}


def _dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _error(status, reason, detail):
    return web.json_response({"error": errors.REASON_NAMES.get(reason, str(reason)), "detail": detail},
                             status=status, dumps=_dumps)


def make_app(gw):
    """The aiohttp application over a gateway object with .cfg .cases .registry .store .rejections
    .status() and .metrics_text()."""
    token = gw.cfg.http.token

    @web.middleware
    async def guard(request, handler):
        if token and request.path.startswith("/api/"):
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), ("Bearer " + token).encode()):
                gw.rejections.reject("http", errors.R_UNKNOWN_DEVICE, "bad or missing token on %s"
                                     % request.path)
                return _error(401, errors.R_UNKNOWN_DEVICE, "a valid bearer token is required")
        try:
            return await handler(request)
        except CaseError as e:
            gw.rejections.reject("http", e.reason, "%s %s: %s" % (request.method, request.path, e.detail))
            return _error(e.status, e.reason, e.detail)
        except RegistryError as e:
            gw.rejections.reject("http", errors.R_OUT_OF_RANGE, "%s: %s" % (request.path, e))
            return _error(400, errors.R_OUT_OF_RANGE, str(e))
        except web.HTTPException as e:
            if e.status >= 400:
                reason = _HTTP_REASON.get(e.status, errors.R_MALFORMED)
                gw.rejections.reject("http", reason, "%s %s: %s" % (request.method, request.path, e.reason))
                return _error(e.status, reason, e.reason)
            raise

    async def body(request):
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
        raw = await request.read()
        try:
            data = json.loads(raw.decode("utf-8")) if raw else {}
        except (UnicodeDecodeError, ValueError):
            raise CaseError(errors.R_MALFORMED, "the body is not UTF-8 JSON") from None
        return data

    def ok(data, status=200):
        return web.json_response(data, status=status, dumps=_dumps)

    async def off_loop(fn, *args):
        """Run a committing call in the executor (errors propagate to the guard as usual)."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # --- windows and cases ----------------------------------------------------------------
    async def sign_in(request):
        return ok(await off_loop(gw.cases.sign_in, request.match_info["window"], await body(request)))

    async def sign_out(request):
        return ok(await off_loop(gw.cases.sign_out, request.match_info["window"]))

    async def windows(request):
        snap = gw.cases.snapshot()["windows"]
        for device in gw.registry.all():
            if device.window:
                snap.setdefault(device.window, {"staff_id": "", "staff_name": "", "case_id": 0})
                snap[device.window].setdefault("devices", []).append(device.id)
        return ok(snap)

    async def case_event(request):
        status, answer = await off_loop(gw.cases.event, await body(request))
        return ok(answer, status)

    async def case_get(request):
        try:
            case = gw.cases.cases[int(request.match_info["case_id"])]
        except (KeyError, ValueError):
            raise web.HTTPNotFound(reason="no such open or recent case") from None
        return ok(dict((k, v) for k, v in case.items() if k != "applicant"))

    # --- devices --------------------------------------------------------------------------
    def device_or_404(request):
        device = gw.registry.get(request.match_info["device_id"])
        if device is None:
            raise web.HTTPNotFound(reason="no such device")
        return device

    async def devices(request):
        return ok(gw.registry.snapshot())

    async def device_get(request):
        return ok(device_or_404(request).public())

    async def device_add(request):
        spec = await body(request)
        if not isinstance(spec, dict):
            raise CaseError(errors.R_MALFORMED, "the body must be a JSON object")
        return ok((await off_loop(gw.registry.add, spec)).public(), 201)

    async def device_patch(request):
        device = device_or_404(request)
        changes = await body(request)
        if not isinstance(changes, dict):
            raise CaseError(errors.R_MALFORMED, "the body must be a JSON object")
        return ok((await off_loop(gw.registry.update, device.id, changes)).public())

    async def device_delete(request):
        device = device_or_404(request)
        await off_loop(gw.registry.remove, device.id)
        return ok({"removed": device.id})

    async def dead_letters(request):
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError:
            raise CaseError(errors.R_MALFORMED, "limit must be a number") from None
        return ok(gw.store.dead_letters(limit))

    # --- status ---------------------------------------------------------------------------
    async def status(request):     # reads the store, whose lock a group commit holds over its fsync
        return ok(await off_loop(gw.status))

    async def metrics(request):
        return web.Response(text=await off_loop(gw.metrics_text), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    r = app.router
    r.add_post("/api/v1/windows/{window}/sign-in", sign_in)
    r.add_post("/api/v1/windows/{window}/sign-out", sign_out)
    r.add_get("/api/v1/windows", windows)
    r.add_post("/api/v1/cases", case_event)
    r.add_get("/api/v1/cases/{case_id}", case_get)
    r.add_get("/api/v1/devices", devices)
    r.add_post("/api/v1/devices", device_add)
    r.add_get("/api/v1/devices/{device_id}", device_get)
    r.add_patch("/api/v1/devices/{device_id}", device_patch)
    r.add_delete("/api/v1/devices/{device_id}", device_delete)
    r.add_get("/api/v1/dead-letters", dead_letters)
    r.add_get("/status", status)
    r.add_get("/metrics", metrics)
    return app


# --- Prometheus text ------------------------------------------------------------------------
def _label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(families):
    """Prometheus text from [(name, type, help, value | {labels tuple: value})]."""
    lines = []
    for name, kind, text, value in families:
        lines.append("# HELP %s %s" % (name, text))
        lines.append("# TYPE %s %s" % (name, kind))
        if isinstance(value, dict):
            for labels, v in sorted(value.items()):
                pairs = ",".join('%s="%s"' % (k, _label(x)) for k, x in labels)
                lines.append("%s{%s} %s" % (name, pairs, _number(v)))
        else:
            lines.append("%s %s" % (name, _number(value)))
    return "\n".join(lines) + "\n"


def _number(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)
    return str(int(v))


# --- callbacks to the queueing system -----------------------------------------------------
PERMANENT_REFUSALS = range(400, 500)     # the queueing system will never take it; 408/429 excepted
TRANSIENT = (408, 425, 429)


class Callbacks:
    """POSTs case events ("rated", "not_rated") to the queueing system's callback URL.

    The events wait in the store's callbacks table (queued in the same transaction that closes
    the case), so a restart loses none: delivery is at least once, oldest first; the body's
    case_key and rating_id let the receiver drop a repeat. A failure (network, 5xx, 408, 429)
    pauses the whole queue with capped exponential backoff; a 4xx refusal or an event older than
    `max_age_s` is given up, counted and logged. notify() (any thread) wakes the sender."""

    def __init__(self, url, token="", store=None, base_s=0.5, cap_s=30.0, max_age_s=86400.0,
                 clock=time.time):
        self.url = url
        self.token = token
        self.store = store
        self.base_s = base_s
        self.cap_s = cap_s
        self.max_age_s = max_age_s
        self.clock = clock
        self.stats = {"sent": 0, "failed": 0, "dropped": 0, "retries": 0}
        self.loop = None
        self._wake = None

    @property
    def enabled(self):
        return bool(self.url) and self.store is not None

    def bind(self, loop):
        self.loop = loop
        self._wake = asyncio.Event()

    def notify(self, event=None):
        """A callback was queued in the store: wake the sender (the event itself is in the store)."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._wake.set)

    def status(self):
        out = dict(self.stats)
        out["pending"] = self.store.callbacks_pending() if self.store is not None else 0
        return out

    async def run(self):
        if not self.enabled:
            return
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        wait = self.base_s
        async with ClientSession(timeout=ClientTimeout(total=5)) as session:
            while True:
                self._wake.clear()
                due = await asyncio.to_thread(self.store.callbacks_due, 50)
                if not due:
                    try:
                        await asyncio.wait_for(self._wake.wait(), 30)
                    except asyncio.TimeoutError:
                        pass
                    continue
                finished, failed = [], None
                for cid, event, attempts, created in due:
                    outcome, problem = await self._post(session, event, headers)
                    if outcome == "retry" and self.clock() - created > self.max_age_s:
                        outcome = "give_up"
                    if outcome == "sent":
                        self.stats["sent"] += 1
                        finished.append(cid)
                    elif outcome == "give_up":
                        self.stats["failed"] += 1
                        finished.append(cid)
                        log.warning("callback for case %s given up after %d attempt(s): %s",
                                    event.get("case_key"), attempts + 1, problem)
                    else:
                        failed = cid
                        self.stats["retries"] += 1
                        break
                await asyncio.to_thread(self.store.callbacks_settle, finished, failed)
                if failed is None:
                    wait = self.base_s
                else:
                    await asyncio.sleep(wait)
                    wait = min(self.cap_s, wait * 2)

    async def _post(self, session, event, headers):
        """("sent" | "retry" | "give_up", problem)."""
        try:
            async with session.post(self.url, data=_dumps(event).encode(), headers=headers) as resp:
                if resp.status < 300:
                    return "sent", None
                problem = "HTTP %d" % resp.status
                if resp.status in PERMANENT_REFUSALS and resp.status not in TRANSIENT:
                    return "give_up", problem
                return "retry", problem
        except asyncio.CancelledError:
            raise
        except Exception as e:  # aiohttp.ClientError, OSError, timeouts: the receiver is away
            return "retry", type(e).__name__
