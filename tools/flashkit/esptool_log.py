"""esptool's messages, each line prefixed with the port it is about, through our Reporter.

esptool writes through one process-wide logger (esptool.logger.log); boards flashed in parallel
would interleave its lines with nothing saying which board a line is about. While capture() is
active, that logger is one of ours (esptool's documented custom-logger interface) that sends
every line to the Reporter with the port the calling thread is working on (for_port()), and
its progress bar as one line per 10 %.
"""

import contextlib
import re
import threading

from esptool.logger import TemplateLogger, log

_current = threading.local()


def _plain(text):
    """esptool's text without its Rich markup ([bold], [/bold], ...)."""
    try:
        from rich.text import Text
        return Text.from_markup(text).plain
    except Exception:  # not markup after all (a literal "[" in a message)
        return re.sub(r"\[/?[a-z_ ]+\]", "", text)


class PortLog(TemplateLogger):
    def __init__(self, reporter):
        self.reporter = reporter
        self._tenths = {}

    def _say(self, text):
        port = getattr(_current, "port", None) or "-"
        for line in _plain(str(text)).splitlines():
            if line.strip():
                self.reporter.progress(port, "esptool", what=line.strip())

    def print(self, *args, **kwargs):
        self._say(kwargs.get("sep", " ").join(str(a) for a in args))

    def note(self, message):
        self._say("Note: %s" % message)

    def warning(self, message):
        self._say("Warning: %s" % message)

    def error(self, message):
        self._say("Error: %s" % message)

    def stage(self, finish=False):
        pass

    def progress_bar(self, cur_iter, total_iters, prefix="", suffix="", bar_length=30):
        port = getattr(_current, "port", None) or "-"
        tenth = cur_iter * 10 // max(1, total_iters)
        if self._tenths.get(port) != tenth or cur_iter == total_iters:
            self._tenths[port] = tenth
            self._say("%s%d %% %s" % (_plain(prefix), cur_iter * 100 // max(1, total_iters), _plain(suffix)))

    def set_verbosity(self, verbosity):
        pass


@contextlib.contextmanager
def capture(reporter):
    """esptool's output goes to `reporter`, prefixed with ports, until the block ends."""
    try:
        from esp_pylib.logger import EspLog  # esptool 5.x with esp-pylib: the logger is EspLog.instance
        saved = EspLog.instance

        def restore():
            EspLog.instance = saved
    except ImportError:  # earlier esptool 5: set_logger takes over the `log` object itself
        saved = (log.__class__, dict(log.__dict__))

        def restore():
            log.__class__ = saved[0]
            log.__dict__.clear()
            log.__dict__.update(saved[1])
    log.set_logger(PortLog(reporter))
    try:
        yield
    finally:
        restore()


@contextlib.contextmanager
def for_port(port):
    """esptool lines logged by this thread inside the block name `port`."""
    before = getattr(_current, "port", None)
    _current.port = port
    try:
        yield
    finally:
        _current.port = before
