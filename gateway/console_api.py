"""The hall console's routes: its static files, the hall view, live events and alarm acks.

    GET  /                          anyone             the console page (it holds no data)
    GET  /console/{file}            anyone             its scripts, style sheet and icons
    GET  /api/v1/hall               operator, technician, viewer   the hall view (gateway.hall_view)
    GET  /api/v1/events             operator, technician, viewer   server-sent events (below)
    POST /api/v1/alarms/{name}/ack  operator, technician           acknowledge an alarm

Static files are read once at start into a table by exact name: a request names a key of that
table or gets 404, so no path (../, %2e%2e, absolute, backslashes) can reach another file.
Events: `hall` (the hall view for the connection's role) when it changed, checked at most every
HALL_EVERY_S and sent again every RESEND_S (the keepalive); `rating` as soon as a rating is stored
({"window", "time", "device"}, plus "level" and "level_name" on operator connections only). One
task per connection, at most MAX_STREAMS at once (429 beyond). A stream ends as soon as its
session does (logout, expiry), and after STREAM_MAX_S anyway, so the browser reconnects through
the guard again (which also keeps a watching lobby screen's session from idling out).
Every view is built once per tick for all connections, off the loop (it reads the store).
"""

import asyncio
import hashlib
import json
import logging
import os
import threading
import traceback

from aiohttp import web

from gateway import hall_view as hall_view_mod
from gateway import http_auth
from gateway.fastcodec import is_token
from gateway.http_guard import ROLE, SESSION, USER, Refusal

log = logging.getLogger("gateway.console")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "console", "static")
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
                 ".svg": "image/svg+xml"}
OPERATOR, TECHNICIAN, VIEWER = "operator", "technician", "viewer"
HALL_ROLES = (OPERATOR, TECHNICIAN, VIEWER)
ACK_ROLES = (OPERATOR, TECHNICIAN)
ANYONE = (None,) + http_auth.ROLES
MAX_STREAMS = 50
HALL_EVERY_S = 0.5
RESEND_S = 15.0
STREAM_MAX_S = 600.0
RATING_QUEUE = 64            # rating events a slow connection may have waiting; more are dropped
# What changes every moment without news: left out of the change digest, refreshed by the resend
VOLATILE = frozenset(("time", "last_seen", "oldest_pending_age_s", "disk_free_bytes"))
BUSY = "busy"


def load_static(folder=STATIC_DIR):
    """{url name: (body, content type, etag)} of every file directly in `folder`."""
    table = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        kind = CONTENT_TYPES.get(os.path.splitext(name)[1])
        if kind is None or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            body = f.read()
        table[name] = (body, kind, '"%s"' % hashlib.sha256(body).hexdigest()[:20])
    return table


def _dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _stable(value):
    if isinstance(value, dict):
        return dict((k, _stable(v)) for k, v in value.items() if k not in VOLATILE)
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _rating_event(summary, private):
    out = {"window": summary.get("window"), "time": summary.get("time"),
           "device": summary.get("device")}
    if private:
        out["level"] = summary.get("level")
        out["level_name"] = summary.get("level_name")
    return out


class Console:
    """The console's live side for one gateway: the last rating per window, alarm acks, and the
    event streams. rating() is called from any thread (Gateway.on_rating)."""

    def __init__(self, gw):
        self.gw = gw
        self.acks = hall_view_mod.Acks(gw.store)
        self.static = load_static()
        self._last = {}                 # window -> the gateway's last-rating summary
        self._last_lock = threading.Lock()
        self._streams = set()           # (private, asyncio.Queue) per connection
        self._loop = None
        self._views = None              # {private: (text, digest)}
        self._views_at = None
        self._build_lock = asyncio.Lock()   # bound to a loop at its first use, not here
        self._closing = asyncio.Event()

    # --- ratings (any thread) -----------------------------------------------------------
    def rating(self, summary):
        """A rating was stored: remember it for its window's card and tell every stream."""
        if not summary or not summary.get("window"):
            return
        with self._last_lock:
            self._last[summary["window"]] = dict(summary)
        loop = self._loop
        if loop is not None and self._streams:
            try:
                loop.call_soon_threadsafe(self._fan_out, dict(summary))
            except RuntimeError:        # the loop closed meanwhile (shutdown)
                pass

    def _fan_out(self, summary):
        texts = {}
        for private, queue in list(self._streams):
            if private not in texts:
                texts[private] = _dumps(_rating_event(summary, private))
            if queue.full():
                continue               # a stalled client misses a flash, never blocks the rest
            queue.put_nowait(texts[private])

    def last_ratings(self):
        with self._last_lock:
            return dict(self._last)

    # --- views ----------------------------------------------------------------------------
    def build(self):
        """{private: (JSON text, change digest)} of the hall view, for operators (True) and the
        rest (False); the store is read, so not on the loop."""
        views = hall_view_mod.hall_views(self.gw, (OPERATOR, VIEWER), self.last_ratings(),
                                         self.acks)
        out = {}
        for private, role in ((True, OPERATOR), (False, VIEWER)):
            digest = hashlib.sha256(_dumps(_stable(views[role])).encode()).hexdigest()
            out[private] = (_dumps(views[role]), digest)
        return out

    async def views(self):
        loop = asyncio.get_running_loop()
        async with self._build_lock:
            if self._views is None or loop.time() - self._views_at >= HALL_EVERY_S:
                self._views = await loop.run_in_executor(None, self.build)
                self._views_at = loop.time()
            return self._views

    # --- requests -------------------------------------------------------------------------
    async def stream(self, request, private):
        """The event stream of one connection (its own task: aiohttp's handler task)."""
        if len(self._streams) >= MAX_STREAMS:
            raise Refusal(429, BUSY, "at most %d live connections" % MAX_STREAMS,
                          headers={"Retry-After": "5"})
        self._loop = asyncio.get_running_loop()
        await self.views()              # a store that fails now is a 409, not a broken stream
        stream = (private, asyncio.Queue(RATING_QUEUE))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self._streams.add(stream)
        try:
            await resp.prepare(request)
            await resp.write(b"retry: 3000\n\n")
            await self._serve(request, resp, private, stream[1])
        except (ConnectionError, asyncio.CancelledError):
            pass                        # the browser went away, or the gateway stops
        except Exception as e:          # headers sent: end the stream whole (the page reconnects)
            log.error("event stream: %s\n%s", type(e).__name__,
                      "".join(traceback.format_tb(e.__traceback__)))
        finally:
            self._streams.discard(stream)
        return resp

    async def ack(self, name, who):
        """Acknowledge the alarm `name` (KeyError: no such alarm)."""
        if not is_token(name, 40) or name not in self.gw.alarms:
            raise KeyError(name)
        record = await asyncio.get_running_loop().run_in_executor(
            None, self.acks.ack, name, who, round(self.gw.clock(), 3))
        self._views = None              # the next view shows it
        return record

    def close(self):
        """The gateway stops: every stream ends within a tick."""
        self._closing.set()

    async def _serve(self, request, resp, private, ratings):
        loop = asyncio.get_running_loop()
        end = loop.time() + STREAM_MAX_S
        sent_digest, sent_at = None, 0.0
        session = request.get(SESSION)
        while loop.time() < end and not self._closing.is_set():
            if request.transport is None or request.transport.is_closing():
                return                  # the browser left: free its slot now, not at the next write
            if session is not None and not self.gw.sessions.valid(session):
                return                  # logged out or expired: no more data on this stream
            text, digest = (await self.views())[private]
            now = loop.time()
            if digest != sent_digest or now - sent_at >= RESEND_S:
                await resp.write(("event: hall\ndata: %s\n\n" % text).encode("utf-8"))
                sent_digest, sent_at = digest, now
            try:
                event = await asyncio.wait_for(ratings.get(), HALL_EVERY_S)
            except asyncio.TimeoutError:
                continue
            while True:
                await resp.write(("event: rating\ndata: %s\n\n" % event).encode("utf-8"))
                if ratings.empty():
                    break
                event = ratings.get_nowait()


def add_routes(app, gw, allow):
    """The console's routes behind the API's guard (a Gateway.http_routes entry); the live state
    is gw.console's (a Console), reached at request time."""

    async def static_file(request, name):
        entry = gw.console.static.get(name)
        if entry is None:
            raise web.HTTPNotFound(reason="no such file")
        body, kind, etag = entry
        headers = {"Cache-Control": "no-cache", "ETag": etag, "X-Content-Type-Options": "nosniff"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=kind, charset="utf-8", headers=headers)

    async def index(request):
        return await static_file(request, "index.html")

    async def asset(request):
        return await static_file(request, request.match_info["name"])

    async def hall(request):
        text = (await gw.console.views())[request[ROLE] == OPERATOR][0]
        return web.Response(text=text, content_type="application/json", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def events(request):
        return await gw.console.stream(request, request[ROLE] == OPERATOR)

    async def ack(request):
        name = request.match_info["name"]
        try:    # the console user's name; a bearer caller by its role
            record = await gw.console.ack(name, request.get(USER) or request[ROLE])
        except KeyError:
            raise web.HTTPNotFound(reason="no such alarm") from None
        return web.json_response({"name": name, "acked_by": record["by"], "acked_at": record["at"]},
                                 dumps=_dumps)

    async def closing(app_):
        gw.console.close()

    app.on_shutdown.append(closing)
    for method, path, handler, roles in (
            ("GET", "/", index, ANYONE),
            ("GET", "/console/{name}", asset, ANYONE),
            ("GET", "/api/v1/hall", hall, HALL_ROLES),
            ("GET", "/api/v1/events", events, HALL_ROLES),
            ("POST", "/api/v1/alarms/{name}/ack", ack, ACK_ROLES)):
        app.router.add_route(method, path, allow(roles, handler))
