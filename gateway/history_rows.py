"""A stored rating as a row of the console's rating history (gateway.history), and what its
summaries group by: pure functions, no I/O.

A row holds only the named fields of the rating and of its case's enrichment: never the
applicant. Days and hours are the hall's local time ([console] timezone, default Asia/Shanghai).
"""

import datetime
import zoneinfo

from gateway.grading import Grading
from protocol.rating import is_bad, rating_id

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_DAYS = 400
LOCAL_STEP_S = 900       # every zone's offset is a whole number of quarter hours

COLUMNS = ("rating_id", "time", "day", "hour", "device", "window", "staff_id", "staff_name",
           "matter_code", "matter_name", "case_id", "serial", "source", "level", "overall",
           "business", "service", "bad", "tags", "text")
# by -> (key, label) of a summary's rows, as SQL over the ratings table (gateway.history keeps
# the daily counts with them)
GROUPS = {"window": ("window", "window"),
          "staff": ("staff_id", "MAX(staff_name)"),
          "matter": ("CASE matter_code WHEN '' THEN matter_name ELSE matter_code END",
                     "MAX(matter_name)"),
          "hour": ("printf('%02d', hour)", "printf('%02d:00', hour)"),
          "day": ("day", "day")}


def timezone(name):
    """The hall's zone; Asia/Shanghai without tzdata is UTC+8 (no daylight saving since 1991)."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        if name == DEFAULT_TIMEZONE:
            return datetime.timezone(datetime.timedelta(hours=8), DEFAULT_TIMEZONE)
        raise ValueError("[console] timezone %r is not a known time zone" % name) from None


def settings(console):
    """(zone, history days, Grading) from the [console] table (None: defaults); ValueError."""
    console = console or {}
    name = console.get("timezone", DEFAULT_TIMEZONE)
    if not isinstance(name, str):
        raise ValueError("[console] timezone is a zone name such as Asia/Shanghai")
    days = console.get("history_days", DEFAULT_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3660:
        raise ValueError("[console] history_days must be a whole number of days from 1 to 3660")
    return timezone(name), days, Grading.from_config(console.get("grading"))


def local_time(tz):
    """when -> (ISO day, hour) in `tz`, remembered per quarter hour (the writer's hot path)."""
    cache = {}

    def local(when):
        step = when - when % LOCAL_STEP_S
        found = cache.get(step)
        if found is None:
            if len(cache) > 4096:
                cache.clear()
            moment = datetime.datetime.fromtimestamp(step, tz)
            found = cache[step] = (moment.date().isoformat(), moment.hour)
        return found
    return local


def row_of(rating, enrichment, local):
    """The history row of a stored rating: its own fields, the case's names; never the applicant.
    `local` is local_time(zone)."""
    e = enrichment or {}
    when = int(rating.get("gateway_time") or 0)
    day, hour = local(when)
    level = rating.get("overall") or rating.get("service") or rating.get("business") or None
    serials = rating.get("serials") or ()
    return (rating_id(rating), when, day, hour, rating["device"],
            rating.get("window") or e.get("window") or "",
            rating.get("staff_id") or e.get("staff_id") or "", e.get("staff_name") or "",
            e.get("matter_code") or "", e.get("matter_name") or "", rating.get("case_id") or None,
            serials[0] if serials else "", rating.get("source") or 0, level,
            rating.get("overall") or None, rating.get("business") or None,
            rating.get("service") or None, 1 if is_bad(rating) else 0,
            ",".join(map(str, rating.get("tags") or ())), rating.get("text") or "")
