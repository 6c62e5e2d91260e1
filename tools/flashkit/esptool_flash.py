"""flash: write a MicroPython firmware image with esptool, after checking the chip.

Uses esptool's Python API (esptool.cmds: detect_chip, erase_flash, write_flash). The image was
checked first (tools/flashkit/fwimage.inspect: a MicroPython image, its chip and offset from its
header); a board with another chip stops before anything is erased. esptool's own lines are
prefixed with the port (tools/flashkit/esptool_log), so boards flashed in parallel stay apart.
"""

import os
import time

from tools.flashkit import esptool_log
from tools.flashkit.errors import FlashError, PortError, ToolError
from tools.flashkit.fwimage import normalise
from tools.flashkit.report import Result


def flash(port, image, info, reporter, erase=False, baud=460800, connect_attempts=2, esptool_api=None):
    """Write `image` (whose fwimage.inspect() facts are `info`) to the board on `port`."""
    res = Result(port)
    t0 = time.monotonic()
    try:
        with esptool_log.for_port(port):
            res.detail = _flash(port, image, info["chip"], info["offset"], reporter, erase, baud,
                                connect_attempts, esptool_api)
        reporter.progress(port, "done", what=res.detail)
    except ToolError as exc:
        res.code = exc.code
        res.detail = str(exc)
        reporter.progress(port, "FAILED", what=res.detail)
    res.seconds = time.monotonic() - t0
    return res


def _api():
    import esptool.cmds
    return esptool.cmds


def _flash(port, image, chip, offset, reporter, erase, baud, attempts, api):
    api = api or _api()
    reporter.progress(port, "detect")
    try:
        esp = api.detect_chip(port=port, baud=115200, connect_attempts=attempts)
    except Exception as exc:
        raise _classify(port, exc) from None
    try:
        found = normalise(getattr(esp, "CHIP_NAME", "?"))
        if found != chip:
            raise FlashError("%s: wrong chip - found %s, the image is for %s; nothing was written"
                             % (port, esp.CHIP_NAME, chip))
        reporter.progress(port, "chip", what=esp.CHIP_NAME)
        try:
            esp = esp.run_stub()
            if baud != 115200:
                esp.change_baud(baud)
            api.attach_flash(esp)
            if erase:
                reporter.progress(port, "erase")
                api.erase_flash(esp)
            reporter.progress(port, "write", what=os.path.basename(image))
            api.write_flash(esp, [(offset, image)])
            api.reset_chip(esp, "hard-reset")
        except ToolError:
            raise
        except Exception as exc:
            raise FlashError("%s: esptool failed while writing: %s" % (port, exc)) from None
    finally:
        try:
            esp._port.close()
        except Exception:
            pass
    return "%s: %s%s written at 0x%x" % (esp.CHIP_NAME, "erased, " if erase else "", os.path.basename(image),
                                         offset)


def _classify(port, exc):
    text = str(exc)
    low = text.lower()
    if "no such file" in low or "could not open port" in low and "errno 2" in low:
        return PortError("%s: no such serial port" % port)
    if "busy" in low or "exclusively lock" in low or "resource temporarily unavailable" in low:
        return PortError("%s: port busy - close the serial monitor or other tool using it" % port)
    if "permission denied" in low:
        return PortError("%s: permission denied - add your user to the 'dialout' group" % port)
    if "failed to connect" in low or "no serial data received" in low or "timed out" in low:
        return FlashError("%s: no ESP bootloader answered - hold BOOT, tap EN/RESET, and try again (%s)"
                          % (port, text.splitlines()[0] if text else "no answer"))
    return FlashError("%s: esptool could not talk to the chip: %s" % (port, text.splitlines()[0] if text else exc))
