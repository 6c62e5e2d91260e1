"""Our own client for the MicroPython raw REPL over pyserial, including raw-paste mode.

Raw REPL: Ctrl-A enters it (banner "raw REPL; CTRL-B to exit\\r\\n>"), the host sends code and
Ctrl-D, the device answers "OK", the code's output, \\x04, its error output, \\x04, then ">".
Raw-paste: after ">", the host sends "\\x05A\\x01"; a device that supports it answers "R\\x01" and
a 16-bit little-endian window size, then grants one more window with each \\x01 it sends; the
host ends the code with \\x04, the device acknowledges with \\x04 and then runs it (no "OK").
A device that answers anything else gets plain raw mode for the rest of the connection.

Bytes 0x01-0x05 are control characters in both modes, so file data travels base64-encoded.
"""

import errno
import time

import serial

from tools.flashkit.errors import DeviceError, NotAnswering, PortError

BANNER = b"raw REPL; CTRL-B to exit\r\n"
_POLL = 0.02


def open_port(port, baud=115200):
    """A pyserial port, opened exclusively; PortError with a plain reason when that fails."""
    try:
        if "://" in port:
            return serial.serial_for_url(port, baudrate=baud, timeout=_POLL)
        return serial.Serial(port, baudrate=baud, timeout=_POLL, exclusive=True)
    except serial.SerialException as exc:
        raise PortError(_port_reason(port, exc)) from None
    except OSError as exc:
        raise PortError(_port_reason(port, exc)) from None


def _port_reason(port, exc):
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code == errno.ENOENT or "No such file" in text or "could not open port" in text and "[Errno 2]" in text:
        return "%s: no such serial port (is the board plugged in? try `flash.py list`)" % port
    if code in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in text or "busy" in text.lower():
        return "%s: port busy - another program (a serial monitor?) has it open" % port
    if code == errno.EACCES or "Permission denied" in text:
        return "%s: permission denied - add your user to the 'dialout' group" % port
    return "%s: cannot open port (%s)" % (port, text)


class RawRepl:
    """One raw-REPL session on an open serial port."""

    def __init__(self, ser, timeout=5.0, name=None):
        self.ser = ser
        self.timeout = timeout
        self.name = name or getattr(ser, "port", "?")
        self.use_raw_paste = True
        self._buf = b""

    # -- bytes -----------------------------------------------------------------------------

    def _write(self, data):
        try:
            self.ser.write(data)
            self.ser.flush()
        except (serial.SerialException, OSError) as exc:
            raise NotAnswering("%s: the port went away while writing (%s)" % (self.name, exc)) from None

    def _fill(self):
        try:
            n = max(1, self.ser.in_waiting)
            chunk = self.ser.read(n)
        except (serial.SerialException, OSError) as exc:
            raise NotAnswering("%s: the port went away while reading (%s)" % (self.name, exc)) from None
        self._buf += chunk
        return len(chunk)

    def read_until(self, ending, timeout=None, what="an answer"):
        """Bytes up to and including `ending`; NotAnswering when the device stays silent."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            i = self._buf.find(ending)
            if i >= 0:
                out, self._buf = self._buf[: i + len(ending)], self._buf[i + len(ending):]
                return out
            if time.monotonic() > deadline:
                raise NotAnswering("%s: device did not answer (waiting for %s)" % (self.name, what))
            self._fill()

    def read_exact(self, n, timeout=None, what="an answer"):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self._buf) < n:
            if time.monotonic() > deadline:
                raise NotAnswering("%s: device did not answer (waiting for %s)" % (self.name, what))
            self._fill()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _drain(self, quiet=0.1):
        """Discard whatever the device is still printing."""
        end = time.monotonic() + quiet
        while time.monotonic() < end:
            if self._fill():
                end = time.monotonic() + quiet
        self._buf = b""

    # -- sessions --------------------------------------------------------------------------

    def enter(self):
        """Stop whatever runs (Ctrl-C twice) and enter the raw REPL."""
        self._write(b"\r\x03")
        time.sleep(0.05)
        self._write(b"\x03")
        self._drain()
        self._write(b"\r\x01")
        self.read_until(BANNER, what="the raw REPL banner - is MicroPython on this board?")

    def exit(self):
        self._write(b"\x02")

    def close(self):
        try:
            self.exit()
        except NotAnswering:
            pass
        try:
            self.ser.close()
        except Exception:
            pass

    def exec(self, code, timeout=None):
        """Run `code` on the device; its printed output as bytes. DeviceError if it raised."""
        if isinstance(code, str):
            code = code.encode("utf-8")
        self.read_until(b">", what="the raw REPL prompt")
        if self.use_raw_paste and self._try_raw_paste(code):
            pass
        else:
            for i in range(0, len(code), 256):
                self._write(code[i: i + 256])
            self._write(b"\x04")
            ok = self.read_exact(2, what="OK after the code")
            if ok != b"OK":
                raise NotAnswering("%s: raw REPL did not accept the code (got %r)" % (self.name, ok))
        out = self.read_until(b"\x04", timeout, what="the code's output")[:-1]
        err = self.read_until(b"\x04", timeout, what="the code's error output")[:-1]
        if err:
            text = err.decode("utf-8", "replace").strip()
            last = text.splitlines()[-1] if text else "error"
            raise DeviceError("%s: device raised %s" % (self.name, last), remote=text)
        return out

    def exec_nowait(self, code):
        """Send `code` in plain raw mode and return after the device's OK (for a reset)."""
        self.read_until(b">", what="the raw REPL prompt")
        self._write(code.encode("utf-8") + b"\x04")
        self.read_until(b"OK", what="OK after the code")

    def _try_raw_paste(self, code):
        self._write(b"\x05A\x01")
        answer = self.read_exact(2, what="the raw-paste answer")
        if answer == b"R\x00":
            self.use_raw_paste = False
            return False
        if answer != b"R\x01":
            # An old device took the bytes as code: it re-prints the banner; plain raw mode from now.
            self._buf = answer + self._buf
            self.read_until(BANNER[4:] + b">", what="the raw REPL banner")
            self.use_raw_paste = False
            return False
        window = int.from_bytes(self.read_exact(2, what="the raw-paste window"), "little")
        remain = window
        i = 0
        while i < len(code):
            while remain == 0 or self._pending():
                b = self.read_exact(1, what="raw-paste flow control")
                if b == b"\x01":
                    remain += window
                elif b == b"\x04":
                    self._write(b"\x04")
                    raise NotAnswering("%s: device ended raw-paste early" % self.name)
                else:
                    raise NotAnswering("%s: unexpected byte %r in raw-paste" % (self.name, b))
            n = min(remain, len(code) - i)
            self._write(code[i: i + n])
            i += n
            remain -= n
        self._write(b"\x04")
        self.read_until(b"\x04", what="the end of raw-paste")
        return True

    def _pending(self):
        if self._buf:
            return True
        try:
            if self.ser.in_waiting:
                self._fill()
        except (serial.SerialException, OSError):
            return False
        return bool(self._buf)
