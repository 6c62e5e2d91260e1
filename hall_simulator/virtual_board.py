"""The virtual evaluator board behind hall_simulator.device's REPL: its flash (a host directory,
never left), its optional ROMFS partition (a file beside it, with NOR flash semantics), the
MicroPython-like modules the flash tool's snippets use (a sandbox run under CPython), and
`FirmwareApp`, which boots the real firmware from what provisioning wrote.
"""

import binascii
import hashlib
import json
import os
import posixpath
import threading
import time
import traceback

CONFIG_NAME = "data/device.json"  # firmware.main.DEFAULT_ROOT + firmware.config.DEVICE_FILE
FONT_NAME = "fonts/unifont16.bin"  # firmware.main.DEFAULT_FONT


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


class Reset(BaseException):
    """machine.reset() called inside the sandbox: finish the reply, then reboot."""


# -- the sandbox: MicroPython-like modules rooted in a directory -----------------------------

class _Namespace:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class Files:
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


def micropython_traceback(exc):
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
