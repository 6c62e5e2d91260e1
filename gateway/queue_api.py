"""HTTP API of the gateway (aiohttp), for the hall's queueing system (排队叫号) and the operator.
Documented in docs/queue-api.yaml (OpenAPI 3). Who may call what (gateway.http_auth):

    POST   /api/v1/windows/{window}/sign-in    queue, operator   staff signs in {staff_id, staff_name}
    POST   /api/v1/windows/{window}/sign-out   queue, operator
    GET    /api/v1/windows                     all roles         staff names for the operator only
    POST   /api/v1/cases                       queue, operator   case event (node, success, serials ...)
    GET    /api/v1/cases/{case_id}             queue, operator
    GET    /api/v1/devices[/{id}]              all roles         registry with live state (never keys)
    POST   /api/v1/devices                     operator, technician   add a device
    PATCH  /api/v1/devices/{id}                operator, technician   rename, move, re-key ...
    DELETE /api/v1/devices/{id}                operator, technician
    GET    /api/v1/dead-letters                operator          paged: ?device=&before_id=&limit=
    GET    /api/v1/dead-letters/export         operator          all of them, NDJSON
    DELETE /api/v1/dead-letters                operator          ?device=&up_to_id=
    GET    /status, /metrics                   anyone            levels and staff names: operator only
    GET    /healthz                            anyone            liveness, no data
No credential: 401; a credential of a role that may not: 403 (a bearer token or a console session:
gateway.http_guard, which also checks CSRF and answers every refusal). Every answer is 2xx or 4xx, never
5xx, and a refused request changed nothing: bodies are checked before anything is done (size,
nesting depth, UTF-8, no lone surrogates or control characters in any text, bool is no number),
and a save that fails is undone (409 store_unavailable). Every refused request is answered
{"error": <reason>, "detail": ...}, counted by reason, and logged rate-limited; request bodies
are never logged (they may hold the applicant's identity).
The queueing system is called back (POST callback_url, JSON) when a case is rated or the device
timed out; see Callbacks.
Handlers that commit (case events, sign-in/out, device changes: each waits for an fsync) or read
the store (/status, /metrics, dead letters: its lock is held through a group commit) run in the
loop's executor, so the loop never stalls behind a disk write.
"""

import asyncio
import json
import logging
import math
import time

from aiohttp import web, ClientSession, ClientTimeout
from prometheus_client import CONTENT_TYPE_LATEST

from gateway import http_auth, http_guard
from gateway.cases import CaseError
from gateway.http_guard import ROLE, USER, dumps as _dumps  # noqa: F401 (ROLE, USER: route modules)
from gateway.text_rules import bad_char, is_text
from protocol import errors

log = logging.getLogger("gateway.http")

MAX_BODY = 64 * 1024
MAX_DEPTH = 8             # JSON nesting: a case event needs 3 (body, items, item)
MAX_ID = 2 ** 63 - 1      # SQLite's integer
EXPORT_PAGE = 500
QUEUE, OPERATOR, TECHNICIAN, VIEWER = http_auth.ROLES
ANYONE = (None,) + http_auth.ROLES
READERS = http_auth.ROLES


def _refuse(reason, detail):
    return CaseError(reason, detail)


def _depth_ok(text):
    """No JSON nesting deeper than MAX_DEPTH (brackets inside strings do not count); checked
    before parsing, so a 10 000-deep body costs one pass, not the parser's recursion."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return True
    depth, in_string, escaped = 0, False, False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif c in "]}":
            depth -= 1
    return True


def _check_values(value):
    """Every text (keys too) free of control characters and lone surrogates; numbers finite."""
    if isinstance(value, str):
        if bad_char(value) is not None:
            raise _refuse(errors.R_OUT_OF_RANGE, "text must not hold control characters or lone"
                                                 " surrogates (U+%04X)" % ord(bad_char(value)))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _refuse(errors.R_OUT_OF_RANGE, "numbers must be finite")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_values(k)
            _check_values(v)
    elif isinstance(value, list):
        for v in value:
            _check_values(v)


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


def parse_body(raw):
    """The request body as checked JSON (CaseError if it is not); an empty body is {}."""
    if not raw:
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(errors.R_MALFORMED, "the body is not UTF-8") from None
    if not _depth_ok(text):
        raise _refuse(errors.R_OVERSIZE, "JSON nested deeper than %d" % MAX_DEPTH)
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise _refuse(errors.R_MALFORMED, "the body is not JSON") from None
    _check_values(data)
    return data


def _query_int(request, name, default=None, low=1, high=MAX_ID):
    value = request.query.get(name)
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 19) or not low <= int(value) <= high:
        raise _refuse(errors.R_OUT_OF_RANGE, "%s must be a whole number from %d to %d" % (name, low, high))
    return int(value)


def _query_device(request):
    value = request.query.get("device")
    if value is None or value == "":
        return None
    if not is_text(value, 64):
        raise _refuse(errors.R_OUT_OF_RANGE, "device must be text of at most 64 characters")
    return value


def _without_staff_names(windows):
    return dict((w, dict((k, v) for k, v in state.items() if k != "staff_name"))
                for w, state in windows.items())


def make_app(gw, credentials=None):
    """The aiohttp application over a gateway object with .cfg .cases .registry .store .rejections
    .status() and .metrics_text(). `credentials` {role: token} default to gw.credentials, else to
    those in gw.cfg.http; a role without one is refused everything but the open routes."""
    if credentials is None:
        credentials = getattr(gw, "credentials", None) or http_auth.configured(gw.cfg.http)
    guard = http_guard.Guard(gw, credentials)

    async def body(request):
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
        return parse_body(await request.read())

    async def body_object(request):
        data = await body(request)
        if not isinstance(data, dict):
            raise _refuse(errors.R_MALFORMED, "the body must be a JSON object")
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
        if request[ROLE] != OPERATOR:
            snap = _without_staff_names(snap)
        for device in gw.registry.all():
            if device.window:
                snap.setdefault(device.window, dict({"staff_id": "", "case_id": 0}, **(
                    {"staff_name": ""} if request[ROLE] == OPERATOR else {})))
                snap[device.window].setdefault("devices", []).append(device.id)
        return ok(snap)

    async def case_event(request):
        status, answer = await off_loop(gw.cases.event, await body(request))
        return ok(answer, status)

    async def case_get(request):
        text = request.match_info["case_id"]
        case = None
        if text.isascii() and text.isdigit() and len(text) <= 19:
            case = gw.cases.cases.get(int(text))
        if case is None:
            raise web.HTTPNotFound(reason="no such open or recent case")
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
        spec = await body_object(request)
        return ok((await off_loop(gw.registry.add, spec)).public(), 201)

    async def device_patch(request):
        device = device_or_404(request)
        changes = await body_object(request)
        return ok((await off_loop(gw.registry.update, device.id, changes)).public())

    async def device_delete(request):
        device = device_or_404(request)
        await off_loop(gw.registry.remove, device.id)
        return ok({"removed": device.id})

    # --- dead letters (operator) ------------------------------------------------------------
    async def dead_letters(request):
        limit = _query_int(request, "limit", 100, 1, 1000)
        device, before_id = _query_device(request), _query_int(request, "before_id")
        return ok(await off_loop(lambda: gw.store.dead_letters(limit=limit, device=device,
                                                               before_id=before_id)))

    async def dead_letters_export(request):
        """Every dead letter (of one device with ?device=), newest first, one JSON object a line."""
        device = _query_device(request)
        page = await off_loop(lambda: gw.store.dead_letters(limit=EXPORT_PAGE, device=device))
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson; charset=utf-8",
                                           "X-Content-Type-Options": "nosniff"})
        await resp.prepare(request)
        while page:
            await resp.write("".join(_dumps(row) + "\n" for row in page).encode("utf-8"))
            last = page[-1]["id"]
            page = await off_loop(lambda: gw.store.dead_letters(limit=EXPORT_PAGE, device=device,
                                                                before_id=last))
        await resp.write_eof()
        return resp

    async def dead_letters_clear(request):
        device, up_to_id = _query_device(request), _query_int(request, "up_to_id")
        deleted = await off_loop(lambda: gw.store.clear_dead_letters(device=device, up_to_id=up_to_id))
        return ok({"deleted": deleted})

    # --- status ---------------------------------------------------------------------------
    async def status(request):     # reads the store, whose lock a group commit holds over its fsync
        return ok(await off_loop(gw.status, request[ROLE] == OPERATOR))

    async def metrics(request):
        return web.Response(body=(await off_loop(gw.metrics_text)).encode("utf-8"),
                            headers={"Content-Type": CONTENT_TYPE_LATEST,
                                     "X-Content-Type-Options": "nosniff"})

    async def healthz(request):
        return ok({"ok": True})

    app = web.Application(middlewares=[guard.middleware], client_max_size=MAX_BODY)
    guard.install(app)
    allow = guard.allow
    writers, devices_writers = (QUEUE, OPERATOR), (OPERATOR, TECHNICIAN)
    for method, path, handler, roles in (
            ("POST", "/api/v1/windows/{window}/sign-in", sign_in, writers),
            ("POST", "/api/v1/windows/{window}/sign-out", sign_out, writers),
            ("GET", "/api/v1/windows", windows, READERS),
            ("POST", "/api/v1/cases", case_event, writers),
            ("GET", "/api/v1/cases/{case_id}", case_get, writers),
            ("GET", "/api/v1/devices", devices, READERS),
            ("POST", "/api/v1/devices", device_add, devices_writers),
            ("GET", "/api/v1/devices/{device_id}", device_get, READERS),
            ("PATCH", "/api/v1/devices/{device_id}", device_patch, devices_writers),
            ("DELETE", "/api/v1/devices/{device_id}", device_delete, devices_writers),
            ("GET", "/api/v1/dead-letters", dead_letters, (OPERATOR,)),
            ("GET", "/api/v1/dead-letters/export", dead_letters_export, (OPERATOR,)),
            ("DELETE", "/api/v1/dead-letters", dead_letters_clear, (OPERATOR,)),
            ("GET", "/status", status, ANYONE),
            ("GET", "/metrics", metrics, ANYONE),
            ("GET", "/healthz", healthz, ANYONE)):
        app.router.add_route(method, path, allow(roles, handler))
    for add_routes in getattr(gw, "http_routes", ()):   # other parts' routes, behind the same guard
        add_routes(app, gw, allow)
    return app


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
