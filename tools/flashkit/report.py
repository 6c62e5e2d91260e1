"""What the technician sees: progress lines, a summary table, secrets masked.

Every line goes through Reporter.say(), which masks every secret registered with it (device
keys, Wi-Fi and MQTT passwords), so a secret cannot leak even through an error message.
"""

import sys
import threading

from tools.flashkit.errors import describe

SECRET_KEYS = ("key", "password", "psk", "token")


def mask(value):
    text = str(value)
    return "****" if len(text) < 12 else text[:2] + "…" + "*" * 4


def redact(obj):
    """A copy of a config dict with every secret value masked (nested dicts too)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if any(s in str(k).lower() for s in SECRET_KEYS) and not isinstance(v, dict):
                out[k] = "****" if v else v
            else:
                out[k] = redact(v)
        return out
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


class Reporter:
    def __init__(self, stream=None, quiet=False):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self._lock = threading.Lock()
        self._secrets = set()

    def secret(self, value):
        if value:
            self._secrets.add(str(value))

    def clean(self, text):
        for s in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(s, "****")
        return text

    def say(self, text):
        with self._lock:
            self.stream.write(self.clean(text) + "\n")
            self.stream.flush()

    def progress(self, port, step, done=None, total=None, what=""):
        if self.quiet:
            return
        if total:
            width = 20
            fill = int(width * done / total) if total else width
            bar = "[%s%s] %d/%d" % ("#" * fill, "." * (width - fill), done, total)
            self.say("%-14s %-9s %s %s" % (port, step, bar, what))
        else:
            self.say("%-14s %-9s %s" % (port, step, what))


class Result:
    """The outcome on one port: ok or an exit-code bit, a device id, a one-line detail."""

    def __init__(self, port):
        self.port = port
        self.device = "-"
        self.version = "-"
        self.code = 0
        self.detail = ""
        self.seconds = 0.0

    @property
    def ok(self):
        return self.code == 0


def table(results):
    rows = [("PORT", "DEVICE", "VERSION", "RESULT", "TIME", "DETAIL")]
    for r in results:
        rows.append((r.port, r.device, r.version, "ok" if r.ok else "FAIL(%d %s)" % (r.code, describe(r.code)),
                     "%.1fs" % r.seconds, r.detail))
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        lines.append("  ".join(str(row[i]).ljust(widths[i]) for i in range(5)) + "  " + str(row[5]))
    failed = sum(1 for r in results if not r.ok)
    lines.append("%d port(s): %d ok, %d failed" % (len(results), len(results) - failed, failed))
    return "\n".join(lines)


def exit_code(results):
    code = 0
    for r in results:
        code |= r.code
    return code
