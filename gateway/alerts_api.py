"""The alert queue over HTTP (registered through Gateway.http_routes, behind the API's one guard):

    GET  /api/v1/alerts        operator, technician   {"pending","sent","failed","dropped",
                               "counters","channels":[{name,type,kinds}],"recent":[{id,alert,kind,
                               channel,window,device,at,time,state,attempts,error}]}
    POST /api/v1/alerts/test   operator               {"channel": name} -> {"channel","sent","detail"}

Only the operator's view of a recent alert carries its title, levels, tags and staff, and only the
operator sees bad-rating alerts listed at all (rules Art. 4: a technician never learns how a window
was rated; the counts include them); a channel's URL and secret are never
shown (a robot's key is in its URL). The test alert goes straight to the channel, outside the
queue, and its outcome is answered as it is (a channel that refuses is a 200 with sent: false).
"""

from aiohttp import web

from gateway.cases import CaseError
from gateway.http_guard import ROLE, dumps
from gateway.queue_api import parse_body
from protocol import errors

OPERATOR, TECHNICIAN = "operator", "technician"
# What only the operator sees of an alert (the same words as gateway.app.PRIVATE_KEYS)
OPERATOR_FIELDS = ("title", "level", "level_name", "levels", "tags", "staff_name", "staff_id",
                   "matter_name", "matter_code", "serials", "rating_id", "case_id")
# Alerts only the operator sees listed: that a window was rated 不满意 is a level (the technician
# still sees them in the counts)
OPERATOR_KINDS = ("bad_rating",)
MAX_BODY = 4096


def _item(row, operator):
    body = row["body"]
    data = body.get("data", {})
    out = {"id": row["id"], "alert": row["alert"], "kind": row["kind"], "channel": row["channel"],
           "window": data.get("window", ""), "device": data.get("device", ""), "at": row["at"],
           "time": data.get("time", ""), "state": row["state"], "attempts": row["attempts"],
           "error": row["error"]}
    if operator:
        out["title"] = body.get("title", "")
        out.update((k, data[k]) for k in OPERATOR_FIELDS if k in data)
    return out


def add_routes(app, gw, allow):
    async def list_alerts(request):
        operator = request[ROLE] == OPERATOR
        status = await gw.alerts.status()
        counts = status["counts"]
        return web.json_response(
            {"pending": counts.get("pending", 0), "sent": counts.get("sent", 0),
             "failed": counts.get("failed", 0), "dropped": counts.get("dropped", 0),
             "counters": status["counters"],
             "channels": [c.public() for c in gw.alerts.channels],
             "recent": [_item(r, operator) for r in status["recent"]
                        if operator or r["kind"] not in OPERATOR_KINDS]},
            dumps=dumps)

    async def send_test(request):
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise CaseError(errors.R_OVERSIZE, "the body is larger than %d bytes" % MAX_BODY, status=413)
        body = parse_body(await request.read())     # UTF-8 JSON, bounded depth, clean text
        name = body.get("channel") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            raise CaseError(errors.R_MISSING, 'the body names a channel: {"channel": "<name>"}')
        try:
            ok, detail = await gw.alerts.send_test(name)
        except KeyError:
            raise CaseError(errors.R_MISSING, "no alert channel %r" % name[:40], status=404) from None
        return web.json_response({"channel": name, "sent": ok, "detail": detail},
                                 dumps=dumps)

    app.router.add_route("GET", "/api/v1/alerts", allow((OPERATOR, TECHNICIAN), list_alerts))
    app.router.add_route("POST", "/api/v1/alerts/test", allow((OPERATOR,), send_test))

