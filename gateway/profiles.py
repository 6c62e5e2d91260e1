"""Upstream code profiles: how the canonical record is named and coded for one rating API.

Provinces name the same facts differently (GB/T 39046 counts satisfaction 1 = 非常满意, Zhejiang
5 = 非常满意; times are "YYYYMMDDThhmmss" or "yyyy-MM-dd HH:mm:ss"), so a profile is data: a table
of (canonical field, API field, converter[, constant]) rows per kind ("rating", "case").
`Profile.map_record(kind, record)` turns a canonical upload record into the API's object;
`Profile.unmap_record(kind, obj)` reverses it (the reference central API uses it to read what a
gateway sent). Converters are named, so a new province is a new table (Profile.from_dict), not
new code. The built-in tables are in gateway.builtin_profiles.

Derived fields (e.g. the satisfaction text beside its code, the first serial as the case number)
are written by `map_record` for the API's sake and ignored by `unmap_record`: the canonical field
they come from travels on its own.
"""

import datetime as _dt
import re as _re
import time as _time
from collections import namedtuple

from gateway.builtin_profiles import BUILTIN, CH_HALL_EVALUATOR
from protocol import vocab

CHINA_TZ = _dt.timezone(_dt.timedelta(hours=8))  # no daylight saving since 1991


class ProfileError(ValueError):
    """The record cannot be expressed in (or read from) this profile; `field` names the culprit."""

    def __init__(self, field, detail):
        super().__init__("%s: %s" % (field, detail))
        self.field = field
        self.detail = detail


# --- converters: name -> (to_api(value, profile), from_api(value, profile)) ----------------------
def _ident(value, profile):
    return value


def _as_text(value, profile):
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value


def _as_int(value, profile):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an integer")
    return value


def _as_text_list(value, profile):
    if not isinstance(value, list):
        raise TypeError("expected a list of text")
    for v in value:
        if not isinstance(v, str):
            raise TypeError("expected a list of text")
    return list(value)


_LAST_FAST_SECOND = 253402300799 - 8 * 3600   # 9999-12-31 23:59:59 in China


def _time_to(value, profile):
    value = _as_int(value, profile)
    if profile.plain_time_format and 0 <= value <= _LAST_FAST_SECOND:
        # Same text as the datetime path for a format without a zone, in a third of the time.
        return _time.strftime(profile.time_format, _time.gmtime(value + 8 * 3600))
    return _dt.datetime.fromtimestamp(value, CHINA_TZ).strftime(profile.time_format)


_FIELD_PATTERNS = {"%Y": "([0-9]{4})", "%m": "([0-9]{2})", "%d": "([0-9]{2})",
                   "%H": "([0-9]{2})", "%M": "([0-9]{2})", "%S": "([0-9]{2})"}
_CHINA_EPOCH = _dt.datetime(1970, 1, 1, 8)      # the Unix epoch on a China wall clock
_SECOND = _dt.timedelta(seconds=1)


def fixed_width_plan(time_format):
    """(regular expression, group of each of Y m d H M S) of a format made of %Y %m %d %H %M %S
    once each and literal characters; None for any other format."""
    pattern, order, i = [], [], 0
    while i < len(time_format):
        if time_format[i] == "%":
            code = time_format[i:i + 2]
            if code not in _FIELD_PATTERNS or code in order:
                return None
            pattern.append(_FIELD_PATTERNS[code])
            order.append(code)
            i += 2
        else:
            pattern.append(_re.escape(time_format[i]))
            i += 1
    if len(order) != len(_FIELD_PATTERNS):
        return None
    return _re.compile("".join(pattern)), tuple(order.index(code) for code in _FIELD_PATTERNS)


def _fixed_width_seconds(text, plan):
    """Unix seconds of `text` read with a fixed-width plan, or None when the general path must
    decide (another shape, a year below 1000 that %Y would not pad, an impossible date)."""
    pattern, order = plan
    match = pattern.fullmatch(text)
    if match is None:
        return None
    parts = match.groups()
    year, month, day, hour, minute, second = [int(parts[k]) for k in order]
    if year < 1000:
        return None
    try:
        moment = _dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    return (moment - _CHINA_EPOCH) // _SECOND


def _time_from(value, profile):
    text = _as_text(value, profile)
    if profile.time_plan is not None:
        seconds = _fixed_width_seconds(text, profile.time_plan)
        if seconds is not None:
            return seconds
    return general_time_from(text, profile)


def general_time_from(text, profile):
    """Unix seconds of a time text by the general path alone (what the fast path must match)."""
    try:  # both published formats are ISO 8601 forms; the round trip proves the format
        moment = _dt.datetime.fromisoformat(text)
        if moment.tzinfo is not None or moment.strftime(profile.time_format) != text:
            raise ValueError(text)
    except ValueError:
        moment = _dt.datetime.strptime(text, profile.time_format)
    return int(moment.replace(tzinfo=CHINA_TZ).timestamp())


def _table_to(table_name):
    def to_api(value, profile):
        table = getattr(profile, table_name)
        if value not in table:
            raise KeyError("no %s code for %r" % (table_name, value))
        return table[value]
    return to_api


def _table_from(table_name):
    def from_api(value, profile):
        reverse = profile.reverse(table_name)
        if value not in reverse:
            raise KeyError("unknown %s code %r" % (table_name, value))
        return reverse[value]
    return from_api


def _csv_to(value, profile):
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                              for v in value):
        raise TypeError("expected a list of integer codes")
    return ",".join("%03d" % v for v in value)


def _csv_from(value, profile):
    text = _as_text(value, profile)
    return [int(part) for part in text.split(",")] if text else []


def _rated_items_to(value, profile):
    level = _table_to("levels")
    return [{profile.item_code: _as_text(item["code"], profile),
             profile.item_level: level(item["level"], profile)} for item in value]


def _rated_items_from(value, profile):
    level = _table_from("levels")
    return [{"code": _as_text(item[profile.item_code], profile),
             "level": level(item[profile.item_level], profile)} for item in value]


def _theme_items_to(value, profile):
    return [{profile.item_code: _as_text(item["code"], profile),
             profile.item_name: _as_text(item.get("name", ""), profile)} for item in value]


def _theme_items_from(value, profile):
    return [{"code": _as_text(item[profile.item_code], profile),
             "name": _as_text(item[profile.item_name], profile)} for item in value]


def _first_serial(value, profile):
    serials = _as_text_list(value, profile)
    if not serials:
        raise ValueError("no serial")
    return serials[0]


_LEVEL_NAMES = vocab.LEVEL_NAMES   # looked up once: vocab loads its name tables per access


def _level_name(value, profile):
    return _LEVEL_NAMES[value]


CONVERTERS = {
    "text": (_as_text, _as_text),
    "int": (_as_int, _as_int),
    "texts": (_as_text_list, _as_text_list),
    "any": (_ident, _ident),
    "time": (_time_to, _time_from),
    "level": (_table_to("levels"), _table_from("levels")),
    "source": (_table_to("sources"), _table_from("sources")),
    "channel": (_table_to("channels"), _table_from("channels")),
    "node": (_table_to("nodes"), _table_from("nodes")),
    "csv": (_csv_to, _csv_from),
    "rated_items": (_rated_items_to, _rated_items_from),
    "theme_items": (_theme_items_to, _theme_items_from),
}
_PLAIN = {"text": str, "int": int}     # converters that pass such a value through unchanged
_TABLES = {"level": "levels", "source": "sources", "channel": "channels", "node": "nodes"}
_MISSING = object()
DERIVED = {  # one-way: written for the API, never read back
    "first_serial": _first_serial,
    "level_name": _level_name,
    "const": None,
}


# A row of a profile table as written: ("overall", "satisfactionCode", "level") or, for a
# constant, ("pro_status", "proStatus", "const", 3).
FieldRow = namedtuple("FieldRow", "canonical api_name converter const")
# One field of map_record's plan: `to_api` is None for a constant; `plain` (str for "text", int
# for "int") and `table` (the code table of a table converter) let it skip the converter call.
MapStep = namedtuple("MapStep", "canonical api_name to_api const plain table")
# One field of unmap_record's plan (derived fields never read back); fast paths as in MapStep.
UnmapStep = namedtuple("UnmapStep", "canonical api_name from_api plain reverse")


def field_row(row):
    """FieldRow of a table row (a 3- or 4-sequence; the constant defaults to None)."""
    if isinstance(row, FieldRow):
        return row
    return FieldRow(row[0], row[1], row[2], row[3] if len(row) > 3 else None)


class Profile:
    """One upstream code profile. Built from a plain dict so provinces are configuration."""

    KEYS = ("name", "time_format", "levels", "sources", "channels", "nodes", "rating_fields",
            "case_fields", "item_code", "item_level", "item_name", "applicant")

    def __init__(self, spec):
        missing = [k for k in self.KEYS if k not in spec]
        if missing:
            raise ValueError("profile lacks %s" % missing)
        self.spec = spec
        for key in self.KEYS:
            setattr(self, key, spec[key])
        self._reverse = {}
        self._plans = {}
        self._rows = {kind: tuple(field_row(row) for row in spec[kind + "_fields"])
                      for kind in ("rating", "case")}
        for rows in self._rows.values():
            for row in rows:
                if row.converter not in CONVERTERS and row.converter not in DERIVED:
                    raise ValueError("%s: unknown converter %r" % (self.name, row.converter))
        # A format that names no zone reads the same from a UTC struct shifted to China time.
        self.plain_time_format = "%z" not in self.time_format and "%Z" not in self.time_format
        self.time_plan = fixed_width_plan(self.time_format)    # fast reading of fixed-width times
        if self.applicant not in ("omit", "clear", "masked"):
            raise ValueError("applicant must be omit, clear or masked")

    @classmethod
    def from_dict(cls, spec):
        return cls(spec)

    def reverse(self, table_name):
        reverse = self._reverse.get(table_name)
        if reverse is None:
            reverse = self._reverse[table_name] = {v: k for k, v in getattr(self, table_name).items()}
        return reverse

    # --- canonical -> API ------------------------------------------------------------------
    def map_record(self, kind, record):
        """API object of a canonical record (kind "rating" or "case"). Raises ProfileError."""
        out = {}
        get = record.get
        # Unpacked in MapStep's field order: attribute reads would add ~40% to this hot loop.
        for canonical, api_name, to_api, const, plain, table in self._compiled(kind):
            if to_api is None:
                out[api_name] = const
                continue
            value = get(canonical)
            if value is None:
                continue
            cls = value.__class__
            if cls is plain:              # text or integer as it is: no converter call
                if value != "":
                    out[api_name] = value
                continue
            if table is not None and (cls is int or cls is str):
                code = table.get(value, _MISSING)
                if code is not _MISSING:
                    out[api_name] = code
                    continue
            if value == [] or value == "":
                continue
            out[api_name] = _converted(to_api, value, self, canonical)
        return out

    def _compiled(self, kind):
        """The MapStep of each field, built once. The fast paths serve the common case; anything
        else takes the converter, which also gives the error."""
        compiled = self._plans.get(kind)
        if compiled is None:
            compiled = []
            for row in self._fields(kind):
                conv = row.converter
                if conv == "const":
                    step = MapStep(row.canonical, row.api_name, None, row.const, None, None)
                elif conv in DERIVED:
                    step = MapStep(row.canonical, row.api_name, DERIVED[conv], None, None, None)
                else:
                    step = MapStep(row.canonical, row.api_name, CONVERTERS[conv][0], None,
                                   _PLAIN.get(conv),
                                   getattr(self, _TABLES[conv]) if conv in _TABLES else None)
                compiled.append(step)
            self._plans[kind] = compiled
        return compiled

    # --- API -> canonical ------------------------------------------------------------------
    def unmap_record(self, kind, obj):
        """Canonical record (the mapped fields only) of an API object. Raises ProfileError."""
        if not isinstance(obj, dict):
            raise ProfileError("data", "expected an object")
        record = {}
        get = obj.get
        for canonical, api_name, from_api, plain, reverse in self._unplan(kind):  # UnmapStep order
            value = get(api_name)
            if value is None:
                continue
            cls = value.__class__
            if cls is plain:
                record[canonical] = value
                continue
            if reverse is not None and (cls is int or cls is str):
                code = reverse.get(value, _MISSING)
                if code is not _MISSING:
                    record[canonical] = code
                    continue
            record[canonical] = _converted(from_api, value, self, api_name)
        return record

    def _unplan(self, kind):
        """The UnmapStep of each field that reads back (derived ones are skipped), built once."""
        key = "un:" + kind
        plan = self._plans.get(key)
        if plan is None:
            plan = [UnmapStep(row.canonical, row.api_name, CONVERTERS[row.converter][1],
                              _PLAIN.get(row.converter),
                              self.reverse(_TABLES[row.converter])
                              if row.converter in _TABLES else None)
                    for row in self._fields(kind) if row.converter not in DERIVED]
            self._plans[key] = plan
        return plan

    def mapped_fields(self, kind):
        """Canonical fields that survive a map/unmap round trip."""
        return tuple(row.canonical for row in self._fields(kind) if row.converter not in DERIVED)

    def api_name(self, kind, canonical):
        for row in self._fields(kind):
            if row.canonical == canonical and row.converter not in DERIVED:
                return row.api_name
        raise KeyError(canonical)

    def _fields(self, kind):
        """The FieldRows of a kind ("rating" or "case")."""
        rows = self._rows.get(kind)
        if rows is None:
            raise ProfileError("kind", "unknown kind %r" % kind)
        return rows


def _converted(convert, value, profile, field):
    """convert(value, profile), any conversion failure reported as a ProfileError of `field`."""
    try:
        return convert(value, profile)
    except (TypeError, KeyError, ValueError, OverflowError, OSError) as exc:
        raise ProfileError(field, str(exc)) from None


_CACHE = {}


def get(name_or_spec):
    """A Profile by built-in name, or from a dict (a province's table in the gateway config)."""
    if isinstance(name_or_spec, Profile):
        return name_or_spec
    if isinstance(name_or_spec, dict):
        return Profile(name_or_spec)
    profile = _CACHE.get(name_or_spec)
    if profile is None:
        if name_or_spec not in BUILTIN:
            raise KeyError("unknown profile %r (known: %s)" % (name_or_spec, ", ".join(BUILTIN)))
        profile = _CACHE[name_or_spec] = Profile(BUILTIN[name_or_spec])
    return profile


def canonical_rating(record):
    """Canonical fields a profile maps, from an upload record (protocol RATING object + context).

    Adds `channel` (a window evaluator unless the record says otherwise) and `evaluation_count`
    (1 = first rating). `applicant` is left out: the uplink adds it only when the profile sends it.
    """
    out = dict(record)
    out.pop("applicant", None)
    out.setdefault("channel", CH_HALL_EVALUATOR)
    out.setdefault("evaluation_count", 1)
    return out
