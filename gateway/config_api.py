"""The devices' configuration over HTTP (registered through Gateway.http_routes, behind the API's guard):

    GET /api/v1/config                     operator, technician (read only)
        {"file": {hall, windows, devices}, "live": {...}, "hall": {version, config, source},
         "windows": {w: {version, config, source}}, "devices": [{device, window, version, sent,
         config, source}]}; source maps each key to "<hall|window|device>:<file|live>" (texts by
         texts.<key>), a key absent there is the evaluator's default
    PUT /api/v1/config/hall                operator   body: the hall's keys ({"volume": 3, ...})
    PUT /api/v1/config/windows/{window}    operator   body: that window's keys
    PUT /api/v1/config/devices/{device}    operator   body: that device's keys
        -> {"sent": [device ids given a new CONFIG], "config": <the GET view>}

A PUT body replaces the live table of that level (an empty {} gives it back to gateway.toml); it is
validated as gateway.toml is at start, every registered device at its window included: a bad one is
a 400 and nothing changes. A good one is kept in <data_dir>/live-config.json and reaches every
affected device within one poll or publish cycle (gateway.live_config). Keys: gateway.window_words.
"""

import asyncio

from aiohttp import web

from gateway.cases import CaseError
from gateway.config import ConfigError
from gateway.http_guard import dumps
from gateway.queue_api import parse_body
from gateway.window_words import is_token
from protocol import errors

OPERATOR, TECHNICIAN = "operator", "technician"
MAX_BODY = 64 * 1024


def add_routes(app, gw, allow):
    async def show(request):
        view = await asyncio.get_running_loop().run_in_executor(None, gw.live_config.view)
        return web.json_response(view, dumps=dumps)

    async def _put(request, scope, name):
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise CaseError(errors.R_OVERSIZE, "the body is larger than %d bytes" % MAX_BODY, status=413)
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise CaseError(errors.R_OVERSIZE, "the body is larger than %d bytes" % MAX_BODY, status=413)
        body = parse_body(raw)          # UTF-8 JSON, bounded depth, clean text
        if not isinstance(body, dict):
            raise CaseError(errors.R_MALFORMED, "the body is a JSON object of the level's keys")
        loop = asyncio.get_running_loop()
        try:
            sent = await loop.run_in_executor(None, gw.live_config.put, scope, name, body)
        except ConfigError as e:
            raise CaseError(errors.R_OUT_OF_RANGE, str(e)) from None
        except OSError as e:            # the file could not be written: nothing changed
            raise CaseError(errors.R_STORE_FULL, "the change could not be saved (%s)" % e.strerror,
                            status=409) from None
        view = await loop.run_in_executor(None, gw.live_config.view)
        return web.json_response({"sent": sent, "config": view}, dumps=dumps)

    def _name(request, key, limit, what):
        name = request.match_info[key]
        if not is_token(name, limit):
            raise CaseError(errors.R_OUT_OF_RANGE, "%s: [A-Za-z0-9._-], up to %d" % (what, limit))
        return name

    async def put_hall(request):
        return await _put(request, "hall", None)

    async def put_window(request):
        return await _put(request, "windows", _name(request, "window", 16, "a window number"))

    async def put_device(request):
        return await _put(request, "devices", _name(request, "device", 24, "a device id"))

    app.router.add_route("GET", "/api/v1/config", allow((OPERATOR, TECHNICIAN), show))
    app.router.add_route("PUT", "/api/v1/config/hall", allow((OPERATOR,), put_hall))
    app.router.add_route("PUT", "/api/v1/config/windows/{window}", allow((OPERATOR,), put_window))
    app.router.add_route("PUT", "/api/v1/config/devices/{device}", allow((OPERATOR,), put_device))
