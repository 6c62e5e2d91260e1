"""The gateway's log lines: JSON (one object a line, for journald, Loki, Elasticsearch) or text.

A JSON line: {"time": ISO 8601 with the zone offset, "level", "logger", "event": the message,
then what the caller passed with `extra=` (device, window, case, kind, ...), "exc": a traceback
as one string}. UTF-8 as it is (王䶮明 stays readable); a newline in a message is escaped, so a
record is always exactly one line.

Never identity (rules Art. 16): every handler set up here carries
- privacy.IdentityLogFilter: ID-number- and mobile-shaped runs in the message are masked;
- NoIdentity: a field named in IDENTITY_FIELDS (the case's `applicant`) is dropped from the
  record, at any depth of a dict or list passed as a field, and ID-number-shaped text in other
  fields is masked, before any formatter sees it.

Which format (`choose`): `--log-format` on the command line, else `[gateway] log_format`, else
"auto": JSON when the output is not a terminal or systemd's journal reads it (JOURNAL_STREAM set),
text on a terminal, where a person reads it.
"""

import datetime
import json
import logging
import os
import sys

from gateway.privacy import IdentityLogFilter, mask_text

FORMATS = ("auto", "json", "text")
IDENTITY_FIELDS = frozenset(("applicant",))
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has: anything else on a record came in by `extra=`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _scrub(value):
    if isinstance(value, dict):
        return dict((k, _scrub(v)) for k, v in value.items() if k not in IDENTITY_FIELDS)
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


class NoIdentity(logging.Filter):
    """Drops identity fields from a record and masks identity-shaped text in the others; never
    drops the record itself."""

    def filter(self, record):
        for name in [k for k in record.__dict__ if k not in _STANDARD]:
            if name in IDENTITY_FIELDS:
                delattr(record, name)
            else:
                setattr(record, name, _scrub(getattr(record, name)))
        return True


def _plain(value):
    """A field as JSON can hold it (bytes, sets, objects by their text)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return dict((str(k), _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    def format(self, record):
        out = {"time": datetime.datetime.fromtimestamp(record.created).astimezone()
               .isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "event": record.getMessage()}
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name not in out:
                out[name] = _plain(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        text = json.dumps(out, ensure_ascii=False, separators=(",", ":"))
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:   # a lone surrogate: that line \\u-escaped, never lost
            text = json.dumps(out, separators=(",", ":"))
        return text


def choose(requested=None, configured="auto", environ=None, stream=None):
    """"json" or "text": the command line's choice, else the config's, else by where the lines go
    (module docstring)."""
    for choice in (requested, configured):
        if choice and choice != "auto":
            if choice not in FORMATS:
                raise ValueError("log format must be one of %s, not %r" % (", ".join(FORMATS), choice))
            return choice
    environ = os.environ if environ is None else environ
    stream = stream or sys.stderr
    if environ.get("JOURNAL_STREAM"):
        return "json"
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return "json"


def handler(fmt, stream=None):
    """A StreamHandler writing `fmt` ("json" | "text") with the identity filters on."""
    out = logging.StreamHandler(stream)
    out.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    out.addFilter(IdentityLogFilter())
    out.addFilter(NoIdentity())
    return out


def setup(level, fmt, stream=None):
    """The root logger writes to one handler(fmt, stream) at `level` (replacing what was set)."""
    logging.basicConfig(level=level, handlers=[handler(fmt, stream)], force=True)
