"""A virtual evaluator on a real pseudo-terminal: MicroPython's REPL as the flash tool sees it.

    python -m hall_simulator.device --pty [--files DIR] [--uid HEX]

prints the pty path, then serves until killed. The device keeps its "flash" in a host directory
and speaks the raw REPL: Ctrl-A enters it, Ctrl-B leaves, Ctrl-C interrupts, Ctrl-D executes
(or soft-resets on an empty line); raw-paste ("\\x05A\\x01") with window flow control. Code runs
under CPython in a sandbox that offers what the flash tool's snippets use on MicroPython (open,
os, hashlib, binascii, json, machine.unique_id/reset, sys.implementation) rooted in the files
directory. Fault switches (mute, go silent after N bytes, no raw-paste) exercise the tool's
error paths. After a reset a provisioned device (config present) boots the app through
`app_runner`, which hall_simulator wires to the real firmware.

With --rom-size N (rom_size=N) the device emulates a MicroPython image with a ROMFS partition of
N bytes (the ESP32_GENERIC ROMFS variant has 128 KiB): vfs.rom_ioctl over a ROM region kept in
the file `<files dir>.romfs0` (flash semantics: erase to 0xff, writes can only clear bits), and
vfs.VfsRom/mount/umount. Without it (the default, like the stock ESP32 images) there is no
ROMFS partition and the flash tool falls back to .mpy files on the filesystem.

The board behind the REPL (files, ROM partition, sandbox, firmware runner) is
hall_simulator.virtual_board; this module is the REPL and the pty.
"""

import argparse
import binascii
import io
import os
import select
import sys
import threading
import time
import traceback
import tty

from hall_simulator.virtual_board import (CONFIG_NAME, FirmwareApp, Files, Reset, RomRegion, Sandbox,
                                         micropython_traceback, rom_path)

BANNER_RAW = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY = b"MicroPython v1.29.0 on 2026-01-01; Virtual evaluator with ESP32\r\nType \"help()\" for more information.\r\n>>> "
RAW_PASTE_WINDOW = 128  # small, so flow control is exercised on every file


# -- the device: REPL state machine ----------------------------------------------------------

class VirtualDevice:
    """Feed it host bytes with feed(); it answers through `write` (bytes -> None).

    Fault switches: mute (never answers), silent_after (stops answering after that many input
    bytes, like a board pulled out mid-copy), raw_paste (False: answers "R\\x00").
    """

    def __init__(self, files_dir, write, uid=b"\x24\x0a\xc4\x12\x34\x56", mute=False, silent_after=None,
                 raw_paste=True, app_runner=None, rom_size=None):
        os.makedirs(files_dir, exist_ok=True)
        self.files = Files(files_dir)
        self.rom = RomRegion(rom_path(files_dir), rom_size) if rom_size else None
        self.uid = uid
        self._write = write
        self.mute = mute
        self.silent_after = silent_after
        self.raw_paste = raw_paste
        self.app_runner = app_runner
        self.received = 0
        self.overruns = 0
        self.resets = 0
        self.mode = "friendly"
        self.line = bytearray()
        self._paste = None
        self._app = None
        self._app_stop = None
        self.sandbox = None
        self.lock = threading.RLock()

    def out(self, data):
        if not self.mute:
            self._write(data)

    # power on / reset ------------------------------------------------------------------

    def power_on(self):
        self.sandbox = None
        self.mode = "friendly"
        self.line = bytearray()
        self.out(b"\r\nets Jun  8 2016 00:22:57\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n")
        if self.provisioned() and self.app_runner is not None:
            self._start_app()
        else:
            self.out(FRIENDLY)

    def provisioned(self):
        return os.path.exists(self.files.host(CONFIG_NAME))

    def _start_app(self):
        self.mode = "app"
        self._app_stop = threading.Event()

        def run():
            try:
                self.app_runner(self.files.root, self._app_stop, self.out)
            except Exception:
                self.out(traceback.format_exc().replace("\n", "\r\n").encode())
            if not self._app_stop.is_set():
                with self.lock:
                    self.mode = "friendly"
                    self.out(FRIENDLY)

        self._app = threading.Thread(target=run, name="virtual-device-app", daemon=True)
        self._app.start()

    def _stop_app(self):
        if self._app is not None:
            self._app_stop.set()
            self._app.join(10)
            self._app = None

    def shutdown(self):
        self._stop_app()

    # input ----------------------------------------------------------------------------

    def feed(self, data):
        with self.lock:
            for b in data:
                self.received += 1
                if self.silent_after is not None and self.received > self.silent_after:
                    self.mute = True
                self._byte(b)
            p = self._paste
            if self.mode == "paste" and p["consumed"] == p["granted"]:
                # the buffer is drained once this read is processed: grant the next window now, so
                # bytes a host sent without waiting for the grant land in the same read as overruns
                p["granted"] += RAW_PASTE_WINDOW
                self.out(b"\x01")

    def _byte(self, b):
        if self.mode == "app":
            if b == 0x03:
                self._stop_app()
                self.mode = "friendly"
                self.out(b"Traceback (most recent call last):\r\nKeyboardInterrupt: \r\n" + FRIENDLY)
            return
        if self.mode == "paste":
            return self._paste_byte(b)
        if self.mode == "friendly":
            return self._friendly_byte(b)
        return self._raw_byte(b)

    def _friendly_byte(self, b):
        if b == 0x01:
            self.mode = "raw"
            self.line = bytearray()
            self.out(b"\r\n" + BANNER_RAW + b">")
        elif b == 0x03:
            self.line = bytearray()
            self.out(b"\r\n>>> ")
        elif b == 0x04:
            self._soft_reset(b"")
        elif b in (0x0D, 0x0A):
            text = bytes(self.line).decode("utf-8", "replace")
            self.line = bytearray()
            self.out(b"\r\n")
            if text.strip():
                self._run(text.encode(), raw=False)
            self.out(b">>> ")
        elif b >= 0x20:
            self.line.append(b)
            self.out(bytes([b]))

    def _raw_byte(self, b):
        if b == 0x01:
            if len(self.line) == 2 and self.line[0] == 0x05:
                self._start_paste(self.line[1])
                return
            self.line = bytearray()
            self.out(BANNER_RAW + b">")
        elif b == 0x02:
            self.mode = "friendly"
            self.line = bytearray()
            self.out(b"\r\n" + FRIENDLY)
        elif b == 0x03:
            self.line = bytearray()
        elif b == 0x04:
            if not self.line:
                self.out(b"OK")
                self._soft_reset(b"\r\n")
                return
            code, self.line = bytes(self.line), bytearray()
            self._run(code, raw=True, lead=b"OK")
            if self.mode == "raw":
                self.out(b">")
        else:
            self.line.append(b)

    def _start_paste(self, cmd):
        self.line = bytearray()
        if cmd != ord("A") or not self.raw_paste:
            self.out(b"R\x00")
            return
        self.out(b"R\x01" + bytes([RAW_PASTE_WINDOW & 0xFF, RAW_PASTE_WINDOW >> 8]))
        self.mode = "paste"
        self._paste = {"code": bytearray(), "granted": RAW_PASTE_WINDOW, "consumed": 0}

    def _paste_byte(self, b):
        p = self._paste
        if b == 0x04:
            self.mode = "raw"
            self._run(bytes(p["code"]), raw=True, lead=b"\x04")
            if self.mode == "raw":
                self.out(BANNER_RAW + b">")
            return
        if b == 0x03:
            self.out(b"\x04")
            self.mode = "raw"
            self.out(BANNER_RAW + b">")
            return
        if p["consumed"] >= p["granted"]:
            self.overruns += 1  # the host ignored flow control: a real UART buffer would drop this
            return
        p["code"].append(b)
        p["consumed"] += 1

    def _soft_reset(self, lead):
        self.sandbox = None
        self.out(lead + b"MPY: soft reboot\r\n")
        if self.mode == "raw":
            self.out(BANNER_RAW + b">")
        else:
            self.out(FRIENDLY)

    def _run(self, code, raw, lead=b""):
        """Run the code and answer `lead` (the OK or raw-paste acknowledgement), its output and
        errors. The whole answer is sent only once the device's own state (reset count) is
        final: a host that acts on the OK must find the device's counters already up to date,
        however the threads are scheduled. (A real board answers the OK before running; this
        one runs the code at once, so nothing observable changes on the wire.)"""
        buf = io.StringIO()
        reset = []

        def on_reset():
            reset.append(True)
            raise Reset()

        err = b""
        if self.sandbox is None:
            self.sandbox = Sandbox(self.files, self.uid, None, self.rom)
        self.sandbox.modules["machine"].reset = on_reset
        self.sandbox.modules["machine"].soft_reset = on_reset
        try:
            self.sandbox.run(code.decode("utf-8"), buf)
        except Reset:
            pass
        except BaseException as exc:  # the device reports whatever the code raised
            err = micropython_traceback(exc)
        text = buf.getvalue().replace("\n", "\r\n").encode("utf-8")
        if reset:
            self.resets += 1  # counted before the reply leaves (the host may look right after)
        if raw:
            self.out(lead + text + b"\x04" + err + b"\x04")
        else:
            self.out(lead + text + err)
        if reset:
            self.power_on()


# -- serving on a pty ------------------------------------------------------------------------

class PtyServer:
    """A VirtualDevice behind a real pseudo-terminal; .path is what the flash tool opens."""

    def __init__(self, files_dir, **device_kw):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self._wlock = threading.Lock()
        self.device = VirtualDevice(files_dir, self._send, **device_kw)
        self._stop = threading.Event()
        self._thread = None

    def _send(self, data):
        with self._wlock:
            view = memoryview(data)
            while view:
                try:
                    n = os.write(self.master, view)
                except BlockingIOError:
                    time.sleep(0.001)
                    continue
                except OSError:
                    return
                view = view[n:]

    def serve_forever(self):
        self.device.power_on()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                time.sleep(0.01)  # EIO while no one holds the port open
                continue
            self.device.feed(data)

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, name="virtual-device", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.device.shutdown()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hall_simulator.device", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pty", action="store_true", required=True, help="serve on a new pseudo-terminal")
    parser.add_argument("--files", default=None, help="directory holding the device's flash (default: a temp dir)")
    parser.add_argument("--uid", default="240ac4123456", help="machine.unique_id() as hex (the MAC)")
    parser.add_argument("--mute", action="store_true", help="never answer (a board without MicroPython)")
    parser.add_argument("--silent-after", type=int, default=None, help="stop answering after N input bytes")
    parser.add_argument("--no-raw-paste", action="store_true", help="answer raw-paste requests with R\\x00")
    parser.add_argument("--no-app", action="store_true", help="do not boot the firmware after a reset")
    parser.add_argument("--bus", default=None, help="RS-485 bus URL of a simulated hall (socket://host:port)")
    parser.add_argument("--rom-size", type=int, default=0,
                        help="bytes of a ROMFS partition (e.g. 131072, as the ESP32_GENERIC ROMFS variant); "
                             "default none, as the stock ESP32 images")
    args = parser.parse_args(argv)
    files = args.files
    if files is None:
        import tempfile
        files = tempfile.mkdtemp(prefix="virtual-evaluator-")
    runner = None if args.no_app else FirmwareApp(bus_url=args.bus)
    server = PtyServer(files, uid=binascii.unhexlify(args.uid), mute=args.mute, silent_after=args.silent_after,
                       raw_paste=not args.no_raw_paste, app_runner=runner, rom_size=args.rom_size or None)
    print(server.path, flush=True)
    sys.stderr.write("virtual evaluator on %s, files in %s\n" % (server.path, files))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
