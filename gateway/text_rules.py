"""What counts as text in anything the gateway is sent over HTTP: names, matters, windows.

It is protocol's text rule (gateway.fastcodec.bad_text_char, read off protocol.codec: no C0
control, no DEL, no lone surrogate), since such text ends up in records sent to the devices, plus
the C1 controls (U+0080-U+009F), which protocol's wire rule lets through but which have no place
in a name on a screen or in a log line. A lone surrogate (JSON "\\ud800" decodes to one) cannot be
written as UTF-8: it would fail later, in the registry file, the store or a response, after the
change was half made. All are refused where text comes in.
"""

import re

from gateway.fastcodec import bad_text_char

_C1 = re.compile("[\x80-\x9f]")


def bad_char(value):
    """The first character of `value` that text may not hold, or None."""
    found = _C1.search(value)
    bad = bad_text_char(value if found is None else value[:found.start()])
    if bad is not None:
        return bad
    return found.group() if found else None


def is_text(value, limit, allow_empty=True):
    """True for a str of at most `limit` characters with nothing bad_char refuses."""
    return (isinstance(value, str) and len(value) <= limit and (allow_empty or bool(value))
            and bad_char(value) is None)
