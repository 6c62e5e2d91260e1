"""What counts as text in anything the gateway is sent over HTTP: names, matters, windows.

A lone surrogate (JSON "\\ud800" decodes to one) cannot be written as UTF-8: it would fail later,
in the registry file, the store or a response, after the change was half made. Control characters
have no place in a name on a screen or in a log line. Both are refused where text comes in.
"""


def bad_char(value):
    """The first character of `value` that text may not hold, or None."""
    for c in value:
        o = ord(c)
        if o < 0x20 or 0x7F <= o <= 0x9F or 0xD800 <= o <= 0xDFFF:
            return c
    return None


def is_text(value, limit, allow_empty=True):
    """True for a str of at most `limit` characters with nothing bad_char refuses."""
    return (isinstance(value, str) and len(value) <= limit and (allow_empty or bool(value))
            and bad_char(value) is None)
