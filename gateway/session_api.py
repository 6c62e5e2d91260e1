"""The console's login over HTTP (docs/queue-api.yaml, Session):

    POST   /api/v1/session   {"user", "password"} -> {"user", "role", "csrf"} + the hall_session cookie
    GET    /api/v1/session   the current session's {"user", "role", "csrf"}, else 401
    DELETE /api/v1/session   logout (the cookie is cleared)
A wrong name or password is one answer, 401 unauthorized; too many failures 429 rate_limited with
Retry-After (gateway.console_sessions). The body is JSON only (Content-Type application/json), so a
plain HTML form on another site cannot log a browser in; the guard (gateway.http_guard) checks
Origin on the login and the csrf token on the logout.
"""

from aiohttp import web

from gateway import queue_api
from gateway.console_sessions import LoginRefused
from gateway.console_users import NAME_MAX, PASSWORD_MAX
from gateway.http_guard import COOKIE, SESSION, UNAUTHORIZED, Refusal, dumps
from protocol import errors

RATE_LIMITED = "rate_limited"
NO_STORE = {"Cache-Control": "no-store"}


def _answer(session):
    return web.json_response({"user": session.user, "role": session.role, "csrf": session.csrf},
                             dumps=dumps, headers=NO_STORE)


async def _credentials(request):
    if request.content_type != "application/json":
        raise Refusal(415, errors.R_MALFORMED, "the body must be JSON (Content-Type: application/json)")
    if request.content_length is not None and request.content_length > queue_api.MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=queue_api.MAX_BODY,
                                            actual_size=request.content_length)
    data = queue_api.parse_body(await request.read())
    if (not isinstance(data, dict) or set(data) != {"user", "password"}
            or not isinstance(data["user"], str) or not 0 < len(data["user"]) <= NAME_MAX
            or not isinstance(data["password"], str) or len(data["password"]) > PASSWORD_MAX):
        raise Refusal(400, errors.R_MALFORMED, 'the body is {"user": name, "password": text}'
                                               " (at most %d characters)" % PASSWORD_MAX)
    return data["user"], data["password"]


def add_routes(app, gw, allow):
    sessions = getattr(gw, "sessions", None)
    if sessions is None:        # a gateway without console users: bearer credentials only
        return

    async def login(request):
        user, password = await _credentials(request)
        try:
            found = await sessions.login(request.remote, user, password)
        except LoginRefused as e:
            raise Refusal(429, RATE_LIMITED, e.detail, {"Retry-After": str(e.retry_after)}) from None
        if found is None:
            raise Refusal(401, UNAUTHORIZED, "wrong user name or password")
        if request[SESSION] is not None:     # logging in again replaces the old session
            sessions.end(request[SESSION])
        token, session = found
        resp = _answer(session)
        resp.set_cookie(COOKIE, token, path="/", httponly=True, samesite="Strict",
                        secure=sessions.secure_cookies)
        return resp

    async def current(request):
        if request[SESSION] is None:
            raise Refusal(401, UNAUTHORIZED, "not logged in to the console")
        return _answer(request[SESSION])

    async def logout(request):
        if request[SESSION] is not None:
            sessions.end(request[SESSION])
        resp = web.json_response({"logged_out": True}, headers=NO_STORE)
        resp.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict",
                        secure=sessions.secure_cookies)
        return resp

    anyone = queue_api.ANYONE
    app.router.add_route("POST", "/api/v1/session", allow(anyone, login))
    app.router.add_route("GET", "/api/v1/session", allow(anyone, current))
    app.router.add_route("DELETE", "/api/v1/session", allow(anyone, logout))
