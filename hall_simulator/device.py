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
"""

import argparse
import binascii
import hashlib
import io
import json
import os
import posixpath
import select
import sys
import threading
import time
import traceback
import tty

BANNER_RAW = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY = b"MicroPython v1.29.0 on 2026-01-01; Virtual evaluator with ESP32\r\nType \"help()\" for more information.\r\n>>> "
CONFIG_NAME = "data/device.json"  # firmware.main.DEFAULT_ROOT + firmware.config.DEVICE_FILE
FONT_NAME = "fonts/unifont16.bin"  # firmware.main.DEFAULT_FONT
RAW_PASTE_WINDOW = 128  # small, so flow control is exercised on every file


ROM_ERASE_BLOCK = 4096
ROM_MIN_WRITE = 4
_EINVAL, _EIO = 22, 5


def rom_path(files_dir):
    """The file holding a virtual device's ROMFS partition (beside its files, not inside)."""
    return os.path.abspath(files_dir).rstrip(os.sep) + ".romfs0"


class RomRegion:
    """A ROMFS partition of `size` bytes in a file, reached as MicroPython's vfs.rom_ioctl."""

    def __init__(self, path, size):
        self.path = path
        self.size = size
        if not os.path.exists(path) or os.path.getsize(path) != size:
            with open(path, "wb") as f:
                f.write(b"\xff" * size)

    def data(self):
        with open(self.path, "rb") as f:
            return f.read()

    def ioctl(self, op, *args):
        if op == 1:
            return 1
        if not args or args[0] != 0:
            return -_EINVAL
        if op == 2:
            return memoryview(self.data())  # a snapshot: the tool reads it right after asking
        if op == 3:
            n = args[1] if len(args) > 1 else self.size
            if not 0 <= n <= self.size:
                return -_EINVAL
            n = (n + ROM_ERASE_BLOCK - 1) // ROM_ERASE_BLOCK * ROM_ERASE_BLOCK
            self._patch(0, b"\xff" * min(n, self.size), erase=True)
            return ROM_MIN_WRITE
        if op == 4:
            offset, buf = args[1], bytes(args[2])
            if offset < 0 or offset + len(buf) > self.size or offset % ROM_MIN_WRITE or len(buf) % ROM_MIN_WRITE:
                return -_EINVAL
            self._patch(offset, buf, erase=False)
            return 0
        if op == 5:
            return 0
        if op == 6:
            return ROM_ERASE_BLOCK
        return -_EINVAL

    def _patch(self, offset, buf, erase):
        with open(self.path, "r+b") as f:
            f.seek(offset)
            old = f.read(len(buf))
            new = buf if erase else bytes(a & b for a, b in zip(old, buf))  # NOR flash: 1 -> 0 only
            f.seek(offset)
            f.write(new)
            f.flush()
            os.fsync(f.fileno())


class _VfsRom:
    def __init__(self, buf):
        from tools.flashkit import romfs
        try:
            self.files = romfs.read(bytes(buf))
        except ValueError:
            raise OSError(19, "ENODEV") from None


def _vfs_module(rom):
    mounts = {}

    def mount(fs, point):
        mounts[point] = fs

    def umount(point):
        if point not in mounts:
            raise OSError(22, "EINVAL")
        del mounts[point]

    return _Namespace(rom_ioctl=rom.ioctl, VfsRom=_VfsRom, mount=mount, umount=umount)


class _Reset(BaseException):
    """machine.reset() called inside the sandbox: finish the reply, then reboot."""


# -- the sandbox: MicroPython-like modules rooted in a directory -----------------------------

class _Namespace:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class _Files:
    """Path mapping from device paths ("/a/b", "a/b") to the host directory, never outside."""

    def __init__(self, root):
        self.root = os.path.abspath(root)

    def host(self, path):
        dev = posixpath.normpath(posixpath.join("/", str(path)))
        return os.path.join(self.root, dev.lstrip("/")) if dev != "/" else self.root

    def open(self, path, mode="r", *args, **kw):
        return open(self.host(path), mode, *args, **kw)

    def listdir(self, path="/"):
        return sorted(os.listdir(self.host(path)))

    def ilistdir(self, path="/"):
        for name in self.listdir(path):
            st = os.stat(os.path.join(self.host(path), name))
            yield (name, 0x4000 if os.path.isdir(os.path.join(self.host(path), name)) else 0x8000, 0, st.st_size)

    def stat(self, path):
        st = os.stat(self.host(path))
        kind = 0x4000 if os.path.isdir(self.host(path)) else 0x8000
        return (kind, 0, 0, 0, 0, 0, st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime))

    def remove(self, path):
        os.remove(self.host(path))

    def mkdir(self, path):
        os.mkdir(self.host(path))

    def rmdir(self, path):
        os.rmdir(self.host(path))

    def rename(self, old, new):
        os.replace(self.host(old), self.host(new))

    def statvfs(self, path="/"):
        # a 2 MB LittleFS partition of 4 KB blocks, minus what the files use
        used = 0
        for base, _dirs, names in os.walk(self.root):
            for n in names:
                used += (os.path.getsize(os.path.join(base, n)) + 4095) // 4096
        total = 512
        return (4096, 4096, total, max(0, total - used), max(0, total - used), 0, 0, 0, 0, 255)


class _Sha256:
    """MicroPython's hashlib.sha256: update() and digest() only (no hexdigest)."""

    def __init__(self, data=b""):
        self._h = hashlib.sha256(data)

    def update(self, data):
        self._h.update(data)

    def digest(self):
        return self._h.digest()


class Sandbox:
    def __init__(self, files, uid, on_reset, rom=None):
        self.files = files
        fs = files
        self.modules = {
            "os": _Namespace(listdir=fs.listdir, ilistdir=fs.ilistdir, stat=fs.stat, remove=fs.remove,
                             mkdir=fs.mkdir, rmdir=fs.rmdir, rename=fs.rename, statvfs=fs.statvfs,
                             sep="/", uname=lambda: ("esp32", "evaluator", "1.29.0", "v1.29.0", "ESP32")),
            "hashlib": _Namespace(sha256=_Sha256),
            "binascii": _Namespace(hexlify=binascii.hexlify, unhexlify=binascii.unhexlify,
                                   a2b_base64=binascii.a2b_base64, b2a_base64=binascii.b2a_base64),
            "json": _Namespace(dumps=json.dumps, loads=json.loads),
            "machine": _Namespace(unique_id=lambda: bytes(uid), reset=on_reset, soft_reset=on_reset),
            "sys": _Namespace(implementation=_Namespace(name="micropython", version=(1, 29, 0, ""),
                                                         _machine="Virtual evaluator with ESP32", _mpy=0x0306),
                              platform="esp32", version="3.4.0; MicroPython v1.29.0"),
            "gc": _Namespace(collect=lambda: None, mem_free=lambda: 96 * 1024, mem_alloc=lambda: 32 * 1024),
            "time": _Namespace(sleep=time.sleep, sleep_ms=lambda ms: time.sleep(ms / 1000.0),
                               ticks_ms=lambda: int(time.monotonic() * 1000) & 0x3FFFFFFF, time=time.time),
        }
        if rom is not None:
            self.modules["vfs"] = _vfs_module(rom)
        self.globals = None

    def run(self, source, out):
        def _import(name, globals=None, locals=None, fromlist=(), level=0):
            top = name.split(".")[0]
            if top in self.modules and "." not in name:
                return self.modules[top]
            raise ImportError("no module named '%s'" % name)

        def _print(*args, sep=" ", end="\n", file=None):
            out.write(sep.join(str(a) for a in args) + end)

        import builtins
        safe = dict((k, getattr(builtins, k)) for k in dir(builtins) if not k.startswith("_")
                    and k not in ("open", "exec", "eval", "compile", "input", "breakpoint", "help", "exit", "quit"))
        safe.update(__import__=_import, print=_print, open=self.files.open, __name__="__main__",
                    __build_class__=builtins.__build_class__)
        code = compile(source, "<stdin>", "exec")
        if self.globals is None:  # like MicroPython, names persist between REPL commands
            self.globals = {"__name__": "__main__"}
        self.globals["__builtins__"] = safe
        exec(code, self.globals)


def _micropython_traceback(exc):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<stdin>"]
    line = frames[-1].lineno if frames else getattr(exc, "lineno", None) or 1
    name = type(exc).__name__
    if isinstance(exc, OSError) and exc.errno:
        text = "[Errno %d] %s" % (exc.errno, {2: "ENOENT", 17: "EEXIST", 13: "EACCES", 39: "ENOTEMPTY"}.get(exc.errno, "EIO"))
        name = "OSError"
    else:
        text = str(exc)
    msg = "Traceback (most recent call last):\n  File \"<stdin>\", line %d, in <module>\n%s: %s\n" % (line, name, text)
    return msg.replace("\n", "\r\n").encode("utf-8")


# -- the device: REPL state machine ----------------------------------------------------------

class VirtualDevice:
    """Feed it host bytes with feed(); it answers through `write` (bytes -> None).

    Fault switches: mute (never answers), silent_after (stops answering after that many input
    bytes, like a board pulled out mid-copy), raw_paste (False: answers "R\\x00").
    """

    def __init__(self, files_dir, write, uid=b"\x24\x0a\xc4\x12\x34\x56", mute=False, silent_after=None,
                 raw_paste=True, app_runner=None, rom_size=None):
        os.makedirs(files_dir, exist_ok=True)
        self.files = _Files(files_dir)
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
            raise _Reset()

        err = b""
        if self.sandbox is None:
            self.sandbox = Sandbox(self.files, self.uid, None, self.rom)
        self.sandbox.modules["machine"].reset = on_reset
        self.sandbox.modules["machine"].soft_reset = on_reset
        try:
            self.sandbox.run(code.decode("utf-8"), buf)
        except _Reset:
            pass
        except BaseException as exc:  # the device reports whatever the code raised
            err = _micropython_traceback(exc)
        text = buf.getvalue().replace("\n", "\r\n").encode("utf-8")
        if reset:
            self.resets += 1  # counted before the reply leaves (the host may look right after)
        if raw:
            self.out(lead + text + b"\x04" + err + b"\x04")
        else:
            self.out(lead + text + err)
        if reset:
            self.power_on()


class FirmwareApp:
    """The app runner that boots the real firmware (firmware.device.Device + its transport, as
    firmware.main wires them) on the sim board, from what provisioning put in the files directory:
    its data/device.json and its font. The firmware's code is the repo's Python source (CPython
    cannot run the .mpy files the device holds), so boot first checks every file against the
    device's bundle.json and refuses to start a device whose files were damaged. With a ROMFS
    partition, boot mounts it as MicroPython does (parses the image in `<files>.romfs0`): a file
    the filesystem lacks is looked up there (filesystem first, as sys.path puts '' before /rom),
    and code taken from it needs the image's sha256 to be the manifest's; `code_from` says
    whether the last boot's code came from "romfs" or "fs".
    RS-485 devices reach the simulated bus at `bus_url` (hall_simulator.bus_uart); MQTT devices
    use real TCP to the broker named in their config."""

    def __init__(self, bus_url=None, loop_s=0.005):
        self.bus_url = bus_url
        self.loop_s = loop_s
        self.board = None
        self.device = None
        self.boots = 0
        self.code_from = None
        self.booted = threading.Event()

    def __call__(self, root, stop, out):
        from firmware import main as fw_main
        from firmware.boards.sim import make_board
        from firmware.config import load_device
        from firmware.device import Device
        from firmware.flashfs import Fs

        damaged, self.code_from = _damaged_files(root)
        if damaged:
            out(("boot refused: damaged files %s\r\n" % ", ".join(damaged)).encode())
            return
        data = os.path.join(root, posixpath.dirname(CONFIG_NAME))
        fs = Fs()
        cfg = load_device(fs, data)
        uart = None
        if cfg["transport"] == "rs485":
            from hall_simulator.bus_uart import BusUart
            uart = BusUart(self.bus_url, baud=cfg["baud"])
        board = make_board({"profile": cfg["board"]["profile"], "fs_root": data, "uart": uart,
                            "net": "tcp" if cfg["transport"] == "mqtt" else None,
                            "clock": lambda: int(time.monotonic() * 1000)})
        device = Device(board, cfg, fs, font_path=os.path.join(root, FONT_NAME))
        fw_main.attach_transport(device, board, cfg)
        self.board, self.device = board, device
        self.boots += 1
        out(("evaluator %s booted (%s, code from %s)\r\n" % (cfg["device"], cfg["transport"], self.code_from)).encode())
        self.booted.set()
        try:
            while not stop.is_set():
                device.step()
                stop.wait(self.loop_s)
        finally:
            self.booted.clear()
            if uart is not None:
                uart.close()


def _mounted_rom(root):
    """(files of the ROMFS image in the device's ROM partition, the image's sha256), or ({}, None)."""
    from tools.flashkit import romfs
    try:
        with open(rom_path(root), "rb") as f:
            data = f.read()
        size = romfs.image_size(data)
        return romfs.read(data), hashlib.sha256(data[:size]).hexdigest()
    except (OSError, ValueError, TypeError):
        return {}, None


def _damaged_files(root):
    """([damaged or missing files], "romfs" or "fs": where the code was found)."""
    try:
        with open(os.path.join(root, "bundle.json"), "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return ["bundle.json"], None
    rom, rom_sha = _mounted_rom(root)
    bad = []
    from_rom = False
    for path, entry in sorted(manifest.get("files", {}).items()):
        try:
            with open(os.path.join(root, path), "rb") as f:
                data = f.read()
        except OSError:
            data = rom.get(path)
            from_rom = from_rom or data is not None
        if data is None or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            bad.append(path)
    if from_rom and rom_sha != (manifest.get("romfs") or {}).get("sha256"):
        bad.append("ROMFS image")
    return bad, "romfs" if from_rom else "fs"


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
