"""Over-the-air updates over HTTP, for the operator only (registered through Gateway.http_routes,
behind the API's one guard; every other role gets 401/403 from it):

    GET  /api/v1/releases                     {"releases": [{id, version, files, bytes, path}]}
    POST /api/v1/releases                     {"path": "<bundle dir or .zip on the gateway>"}
                                              -> 201 {id, version, files, bytes, path}
    GET  /api/v1/rollouts                     {"rollouts": [rollout]}
    POST /api/v1/rollouts                     {"release": id, "canary": [ids], "devices": [ids]?}
                                              -> 201 rollout (devices: every registered one)
    POST /api/v1/rollouts/{id}/pause|resume|cancel   -> 200 rollout

A change that cannot be saved (rollout.json, releases.json) is undone and answered 409 by the
guard. A rollout: {id, release, version, bytes, status (running/paused/cancelled/done), phase
(canary/rest), paused_reason, created, finished, counts, devices: [{device, canary, state, sent,
acked, file, offset, version_before, version_after, reason}]} (gateway.rollout).
"""

from aiohttp import web

from gateway.cases import CaseError
from gateway.http_guard import dumps
from gateway.ota import ReleaseError
from gateway.queue_api import parse_body
from gateway.rollout import RolloutError
from protocol import errors

OPERATOR = "operator"
MAX_BODY = 16384
MAX_DEVICES = 1024


def _body(request, raw):
    if len(raw) > MAX_BODY:
        raise CaseError(errors.R_OVERSIZE, "the body is larger than %d bytes" % MAX_BODY, status=413)
    body = parse_body(raw)
    if not isinstance(body, dict):
        raise CaseError(errors.R_MALFORMED, "the body is a JSON object")
    return body


def _ids(body, name, required):
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, list) or len(value) > MAX_DEVICES or \
            not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value):
        raise CaseError(errors.R_MALFORMED, '"%s" is a list of device ids' % name)
    return list(dict.fromkeys(value))


def _refused(e):
    return CaseError(errors.R_BAD_STATE if e.status == 409 else errors.R_MISSING
                     if e.status == 404 else errors.R_OUT_OF_RANGE, e.detail, status=e.status)


def add_routes(app, gw, allow):
    rollouts = getattr(gw, "rollouts", None)       # None: a stub listing the routes (API document)
    releases = rollouts.releases if rollouts is not None else None

    async def list_releases(request):
        return web.json_response({"releases": [r.public() for r in releases.all()]}, dumps=dumps)

    async def add_release(request):
        body = _body(request, await request.read())
        path = body.get("path")
        if not isinstance(path, str) or not path or len(path) > 4096:
            raise CaseError(errors.R_MISSING, 'the body names a bundle: {"path": "<dir or .zip>"}')
        try:
            release = releases.add(path)
        except ReleaseError as e:
            raise CaseError(errors.R_MALFORMED, str(e)) from None
        return web.json_response(release.public(), status=201, dumps=dumps)

    async def list_rollouts(request):
        return web.json_response({"rollouts": [rollouts.public(r) for r in rollouts.snapshot()]},
                                 dumps=dumps)

    async def start(request):
        body = _body(request, await request.read())
        release = body.get("release")
        if not isinstance(release, str) or not release:
            raise CaseError(errors.R_MISSING, 'the body names a release: {"release": id, "canary": [ids]}')
        canary = _ids(body, "canary", True)
        devices = _ids(body, "devices", False)
        known = [d.id for d in gw.registry.all()]
        if devices is None:
            devices = known
        missing = [d for d in devices + canary if d not in known]
        if missing:
            raise CaseError(errors.R_UNKNOWN_DEVICE, "no device %s" % missing[0], status=404)
        try:
            r = rollouts.start(release, devices, canary)
        except RolloutError as e:
            raise _refused(e) from None
        return web.json_response(rollouts.public(r), status=201, dumps=dumps)

    def action(name):
        async def handler(request):
            try:
                r = getattr(rollouts, name)(request.match_info["rollout"])
            except RolloutError as e:
                raise _refused(e) from None
            return web.json_response(rollouts.public(r), dumps=dumps)
        return handler

    app.router.add_route("GET", "/api/v1/releases", allow((OPERATOR,), list_releases))
    app.router.add_route("POST", "/api/v1/releases", allow((OPERATOR,), add_release))
    app.router.add_route("GET", "/api/v1/rollouts", allow((OPERATOR,), list_rollouts))
    app.router.add_route("POST", "/api/v1/rollouts", allow((OPERATOR,), start))
    for name in ("pause", "resume", "cancel"):
        app.router.add_route("POST", "/api/v1/rollouts/{rollout}/" + name, allow((OPERATOR,), action(name)))
