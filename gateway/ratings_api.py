"""The console's ratings routes, for the operator only (rules Art. 4: nobody else sees a level):

    GET /api/v1/ratings/summary?from=&to=&by=window|staff|matter|hour|day
    GET /api/v1/ratings/bad?from=&to=&state=&window=&staff_id=&level=&limit=
    PUT /api/v1/ratings/{rating_id}/follow-up          {"state", "note"}
    GET /api/v1/ratings/export?from=&to=               CSV (UTF-8 with BOM) for a spreadsheet

Dates are the hall's local days (YYYY-MM-DD, [console] timezone), both ends included; either
left out is today (from defaults to `to`); a period is at most MAX_DAYS days. Unknown query
parameters are refused (400), as is anything malformed; an illegal follow-up transition is 409
and changes nothing. Queries run in the executor (SQLite reads off the loop). Data: gateway.history;
figures: gateway.grading.
"""

import asyncio
import csv
import datetime
import io
import json
import re

from aiohttp import web

from gateway import grading, history as history_mod
from gateway.cases import CaseError
from gateway.http_guard import USER
from gateway.queue_api import parse_body
from gateway.text_rules import is_text
from protocol import errors, vocab

OPERATOR = "operator"
MAX_DAYS = 400
FIRST_YEAR, LAST_YEAR = 2000, 2099
BAD_LIMIT = 500
MAX_BODY = 4096
STORE_UNAVAILABLE = "store_unavailable"
_DATE = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_RATING_ID = re.compile(r"\A[A-Za-z0-9._-]{1,24}:[0-9]{1,10}\Z")
EXPORT_COLUMNS = ("rating_id", "time", "day", "hour", "window", "device", "staff_id", "staff_name",
                  "matter_code", "matter_name", "case_id", "serial", "source", "level",
                  "level_name", "overall", "business", "service", "bad", "tags", "text",
                  "follow_up_state", "follow_up_note", "follow_up_by", "follow_up_at")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")   # a cell a spreadsheet would run as a formula


def _dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _bad_request(detail, reason=errors.R_OUT_OF_RANGE):
    return CaseError(reason, detail, 400)


class RatingsApi:
    def __init__(self, gw):
        self.gw = gw

    @property
    def history(self):
        return self.gw.history

    @property
    def grading(self):
        return self.gw.grading

    # --- parameters -------------------------------------------------------------------------
    def _query(self, request, allowed):
        unknown = sorted(set(request.query) - set(allowed))
        if unknown:
            raise _bad_request("unknown query parameter(s): %s" % ", ".join(unknown)[:80],
                               errors.R_MALFORMED)
        if any(len(request.query.getall(k)) > 1 for k in request.query):
            raise _bad_request("a query parameter is given twice", errors.R_MALFORMED)
        return request.query

    def _day(self, query, name):
        text = query.get(name)
        if text is None or text == "":
            return None
        try:
            day = datetime.date.fromisoformat(text) if _DATE.match(text) else None
        except ValueError:
            day = None
        if day is None or not FIRST_YEAR <= day.year <= LAST_YEAR:
            raise _bad_request("%s must be a date YYYY-MM-DD from %d to %d" % (name, FIRST_YEAR,
                                                                                LAST_YEAR))
        return day

    def _period(self, query):
        day_to = self._day(query, "to") or datetime.date.fromisoformat(self.history.today())
        day_from = self._day(query, "from") or day_to
        if day_from > day_to:
            raise _bad_request("from must not be after to")
        if (day_to - day_from).days + 1 > MAX_DAYS:
            raise _bad_request("a period is at most %d days" % MAX_DAYS)
        return day_from.isoformat(), day_to.isoformat()

    @staticmethod
    def _token(query, name, limit):
        value = query.get(name)
        if value is None or value == "":
            return None
        if not is_text(value, limit):
            raise _bad_request("%s must be text of at most %d characters" % (name, limit))
        return value

    @staticmethod
    def _choice(query, name, choices):
        value = query.get(name)
        if value is None or value == "":
            return None
        if value not in choices:
            raise _bad_request("%s must be one of %s" % (name, ", ".join(choices)))
        return value

    async def _off_loop(self, fn, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        except history_mod.HistoryUnavailable as e:
            raise CaseError(STORE_UNAVAILABLE, "%s; try again later" % e, 409) from None

    # --- routes -------------------------------------------------------------------------------
    async def summary(self, request):
        query = self._query(request, ("from", "to", "by"))
        day_from, day_to = self._period(query)
        by = self._choice(query, "by", tuple(history_mod.GROUPS)) or "window"
        rows, (total, not_rated) = await self._off_loop(self.history.summary, day_from, day_to, by)
        return self._json({"from": day_from, "to": day_to, "by": by,
                           "rows": [dict({"key": key, "label": label or key or "未知"},
                                         **grading.summarize(counts, unrated, self.grading))
                                    for key, label, counts, unrated in rows],
                           "total": grading.summarize(total, not_rated, self.grading)})

    async def bad(self, request):
        query = self._query(request, ("from", "to", "state", "window", "staff_id", "level", "limit"))
        day_from, day_to = self._period(query)
        state = self._choice(query, "state", history_mod.STATES)
        level = self._choice(query, "level", ("4", "5"))
        window, staff_id = self._token(query, "window", 16), self._token(query, "staff_id", 20)
        limit = _limit(query.get("limit"))
        items = await self._off_loop(lambda: self.history.bad(
            day_from, day_to, state=state, window=window, staff_id=staff_id,
            level=int(level) if level else None, limit=limit))
        labels = self._tag_labels()
        return self._json({"from": day_from, "to": day_to,
                           "items": [self._item(i, labels) for i in items]})

    async def follow_up(self, request):
        rid = request.match_info["rating_id"]
        if not _RATING_ID.match(rid):
            raise _bad_request("a rating id is <device>:<counter>")
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise CaseError(errors.R_OVERSIZE, "the body is at most %d bytes" % MAX_BODY, 413)
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise CaseError(errors.R_OVERSIZE, "the body is at most %d bytes" % MAX_BODY, 413)
        body = parse_body(raw)
        if not isinstance(body, dict) or set(body) - {"state", "note"} or "state" not in body:
            raise _bad_request('the body is {"state": pending|verified|handled, "note": text}',
                               errors.R_MALFORMED)
        state, note = body["state"], body.get("note", "")
        if not isinstance(state, str) or not isinstance(note, str):
            raise _bad_request("state and note are text", errors.R_MALFORMED)
        by = request.get(USER) or OPERATOR         # the console user; a bearer token: its role
        try:
            item = await self._off_loop(self.history.follow_up, rid, state, note, by)
        except history_mod.FollowUpError as e:
            status = 404 if e.conflict is None else 409 if e.conflict else 400
            raise CaseError(e.reason, e.detail, status) from None
        return self._json(self._item(item, self._tag_labels()))

    async def export(self, request):
        query = self._query(request, ("from", "to"))
        day_from, day_to = self._period(query)
        position, items = await self._off_loop(self.history.export, day_from, day_to)
        name = "ratings-%s-%s.csv" % (day_from, day_to)
        resp = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8", "X-Content-Type-Options": "nosniff",
            "Content-Disposition": 'attachment; filename="%s"' % name})
        await resp.prepare(request)
        await resp.write(("\ufeff" + _csv_line(EXPORT_COLUMNS)).encode("utf-8"))
        while items:
            labels = self._tag_labels()
            await resp.write("".join(_csv_line(self._export_row(i, labels))
                                     for i in items).encode("utf-8"))
            position, items = await self._off_loop(self.history.export, day_from, day_to, position)
        await resp.write_eof()
        return resp

    # --- shapes ---------------------------------------------------------------------------------
    def _json(self, data):
        return web.json_response(data, dumps=_dumps)

    def _tag_labels(self):
        config = getattr(self.gw, "device_config", None) or {}
        return dict((t.get("code"), t.get("label", "")) for t in config.get("tags") or ())

    def _item(self, row, labels):
        out = dict((k, row[k]) for k in ("rating_id", "time", "window", "device", "staff_id",
                                          "staff_name", "matter_code", "matter_name", "case_id",
                                          "serial", "level", "overall", "business", "service",
                                          "text", "follow_up"))
        out["level_name"] = vocab.LEVEL_NAMES.get(row["level"], "")
        out["tags"] = [{"code": code, "label": labels.get(code, "")} for code in row["tags"]]
        return out

    def _export_row(self, row, labels):
        when = datetime.datetime.fromtimestamp(row["time"], self.history.tz).isoformat()
        f = row["follow_up"]
        at = (datetime.datetime.fromtimestamp(f["at"], self.history.tz).isoformat()
              if f["at"] else "")
        return (row["rating_id"], when, row["day"], row["hour"], row["window"], row["device"],
                row["staff_id"], row["staff_name"], row["matter_code"], row["matter_name"],
                row["case_id"] or "", row["serial"],
                vocab.SOURCE_NAMES.get(row["source"], row["source"]), row["level"] or "",
                vocab.LEVEL_NAMES.get(row["level"], ""), row["overall"] or "",
                row["business"] or "", row["service"] or "", 1 if row["bad"] else 0,
                ";".join(labels.get(c) or str(c) for c in row["tags"]), row["text"],
                f["state"] if row["bad"] else "", f["note"], f["by"] or "", at)


def _limit(text):
    if text is None or text == "":
        return BAD_LIMIT
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or not 1 <= int(text) <= 5000:
        raise _bad_request("limit must be a whole number from 1 to 5000")
    return int(text)


def _cell(value):
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def _csv_line(values):
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([_cell(v) for v in values])
    return out.getvalue()


def add_routes(app, gw, allow):
    """Register the ratings routes on `app`, each behind `allow` for the operator only."""
    api = RatingsApi(gw)
    for method, path, handler in (
            ("GET", "/api/v1/ratings/summary", api.summary),
            ("GET", "/api/v1/ratings/bad", api.bad),
            ("PUT", "/api/v1/ratings/{rating_id}/follow-up", api.follow_up),
            ("GET", "/api/v1/ratings/export", api.export)):
        app.router.add_route(method, path, allow((OPERATOR,), handler))
