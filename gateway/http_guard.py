"""The one guard in front of every HTTP route (gateway.queue_api and the route modules registered
through gw.http_routes): who is calling, what they may do, and never a 5xx.

Who: a bearer credential (gateway.http_auth; a wrong one is 401 and alarmed) or, without one, the
console's session cookie `hall_session` (gateway.console_sessions; an unknown or expired session
counts as no credential, so the login page still loads). Handlers read request[ROLE] (the role or
None), request[USER] (the console user's name; None for a bearer credential) and request[SESSION].

CSRF: a browser sends the cookie by itself, so a request other than GET/HEAD that a session
authenticates must carry X-CSRF-Token equal to the session's csrf token; and any request without
a bearer credential whose Origin header names another host than its Host header is refused too
(a login from another site included). Both: 403 {"error": "csrf"}. Bearer requests need neither:
no browser adds an Authorization header on its own, and the gateway answers no CORS preflight.

Every response carries X-Frame-Options DENY, a Content-Security-Policy allowing only the gateway's
own assets (no inline script, no framing), Referrer-Policy no-referrer and nosniff.
Route modules refuse with `raise Refusal(status, error, detail)`: answered and counted like the
guard's own refusals.
"""

import asyncio
import hmac
import json
import logging
import sqlite3
import traceback

from aiohttp import web
from yarl import URL

from gateway import http_auth
from gateway.cases import CaseError
from gateway.registry import RegistryError, RegistryUnavailable
from protocol import errors

log = logging.getLogger("gateway.http")

ROLE = web.RequestKey("role", object)        # the caller's role (None: no credential)
USER = web.RequestKey("user", object)        # the console user's name (None: bearer or nobody)
SESSION = web.RequestKey("session", object)  # the console_sessions.Session (None: no session)
COOKIE = "hall_session"
CSRF_HEADER = "X-CSRF-Token"
LOGIN = ("POST", "/api/v1/session")          # no csrf token before a session exists
SAFE_METHODS = frozenset(("GET", "HEAD"))
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_HTTP_REASON = {400: errors.R_MALFORMED, 404: errors.R_MISSING, 405: errors.R_MALFORMED,
                409: errors.R_BAD_STATE, 413: errors.R_OVERSIZE}
# Refusals without an R_* code of the wire protocol (named in docs/queue-api.yaml, Error.error)
UNAUTHORIZED, FORBIDDEN, CSRF = "unauthorized", "forbidden", "csrf"
STORE_UNAVAILABLE, UNPROCESSABLE = "store_unavailable", "unprocessable"


class Refusal(Exception):
    """A route's 4xx: answered {"error": error, "detail": detail} (+ headers) and counted."""

    def __init__(self, status, error, detail, headers=None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


def dumps(obj):
    """UTF-8 JSON; text that cannot be UTF-8 (none should get this far) is sent \\u-escaped."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj, separators=(",", ":"))
    return text


def error(status, reason, detail, headers=None):
    return web.json_response({"error": errors.REASON_NAMES.get(reason, str(reason)), "detail": detail},
                             status=status, dumps=dumps, headers=headers)


def where(request):
    """Method and path for a log line: ASCII, at most 80 characters of the path."""
    return "%s %s" % (request.method, ascii(request.path)[1:-1][:80])


def same_origin(origin, host):
    """True when the Origin header names the host and port of the Host header (a browser's page
    of this gateway); "null", other schemes and anything unparsable are another origin."""
    if not origin or not host:
        return False
    try:
        url = URL(origin)
        here = URL("%s://%s" % (url.scheme, host))
    except ValueError:
        return False
    return (url.scheme in ("http", "https") and url.host is not None and url.path in ("", "/")
            and not url.user and url.host == here.host and url.port == here.port)


class Guard:
    """`middleware` for the aiohttp app, `allow(roles, handler)` for each route, `install(app)`
    for the response headers. Sessions come from gw.sessions (none: bearer credentials only)."""

    def __init__(self, gw, tokens):
        self.gw = gw
        self.tokens = dict(tokens)
        self.alarm = getattr(gw, "alarm", None)
        self.sessions = getattr(gw, "sessions", None)

        @web.middleware
        async def middleware(request, handler):
            return await self._guard(request, handler)
        self.middleware = middleware

    def install(self, app):
        app.on_response_prepare.append(self._headers)

    @staticmethod
    async def _headers(request, response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)

    def refused(self, request, status, reason, detail, headers=None):
        self.gw.rejections.reject("http", reason, "%s: %s" % (where(request), detail))
        return error(status, reason, detail, headers)

    def _session(self, request):
        token = request.cookies.get(COOKIE)
        if not token or self.sessions is None:
            return None
        return self.sessions.get(token)

    @staticmethod
    def _csrf_problem(request, session):
        if "Origin" in request.headers and not same_origin(request.headers["Origin"],
                                                           request.headers.get("Host")):
            return "the request comes from another site (Origin)"
        if session is None or (request.method, request.path) == LOGIN:
            return None
        given = request.headers.get(CSRF_HEADER, "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, session.csrf.encode("ascii")):
            return "a console session's change needs its %s header" % CSRF_HEADER
        return None

    async def _guard(self, request, handler):
        role, presented = http_auth.role_of(request.headers.get("Authorization"), self.tokens)
        if presented and role is None:
            if self.alarm is not None:
                self.alarm("http_unauthorized", "a wrong credential on " + where(request))
            return self.refused(request, 401, UNAUTHORIZED, "the credential is not valid")
        session = None if presented else self._session(request)
        if session is not None:
            role = session.role
        if not presented and request.method not in SAFE_METHODS:
            problem = self._csrf_problem(request, session)
            if problem is not None:
                return self.refused(request, 403, CSRF, problem)
        request[ROLE] = role
        request[USER] = session.user if session is not None else None
        request[SESSION] = session
        try:
            return await handler(request)
        except Refusal as e:
            return self.refused(request, e.status, e.error, e.detail, e.headers)
        except CaseError as e:
            status = e.status if e.status < 500 else 409     # store full: try again later, no 5xx
            return self.refused(request, status, e.reason, e.detail)
        except RegistryUnavailable as e:
            return self.refused(request, 409, STORE_UNAVAILABLE, str(e))
        except RegistryError as e:
            return self.refused(request, 400, errors.R_OUT_OF_RANGE, str(e))
        except web.HTTPException as e:
            if e.status >= 400:
                return self.refused(request, e.status if e.status < 500 else 409,
                                    _HTTP_REASON.get(e.status, errors.R_MALFORMED), e.reason)
            raise
        except (OSError, sqlite3.Error) as e:
            log.error("%s: the store failed (%s)", where(request), type(e).__name__)
            return self.refused(request, 409, STORE_UNAVAILABLE, "the gateway's store failed (%s); "
                                "try again later" % type(e).__name__)
        except asyncio.CancelledError:
            raise
        except Exception as e:   # never a 5xx; the trace without values (they may hold identity)
            log.error("%s: unexpected %s\n%s", where(request), type(e).__name__,
                      "".join(traceback.format_tb(e.__traceback__)))
            return self.refused(request, 422, UNPROCESSABLE, "the gateway could not process this "
                                "request (%s, logged)" % type(e).__name__)

    def allow(self, roles, handler):
        """`handler` for the callers whose role is in `roles` (None in it: also without one)."""
        async def checked(request):
            role = request[ROLE]
            if role not in roles:
                if role is None:
                    return self.refused(request, 401, UNAUTHORIZED,
                                        "a bearer credential or a console login is required")
                return self.refused(request, 403, FORBIDDEN, "the %s role may not do this" % role)
            return await handler(request)
        return checked
