"""File operations on a device through the raw REPL, written so they run on MicroPython.

Snippets use only open/read/write, os.listdir/stat/remove/mkdir/rename, hashlib.sha256 (no
hexdigest on MicroPython), binascii and json. A file is written to `<path>.part`, its sha256 is
checked on the device, and only then renamed over the old one, so a copy cut off half-way never
leaves a half file under a real name (verify names it as missing or old, provision resumes).

The ROMFS partition is reached through vfs.rom_ioctl as `mpremote romfs deploy` does: 1 number
of partitions, 2 the partition as a memoryview, 3 erase (prepare) the first n bytes, answering
the minimum write size, 4 write bytes at an offset, 5 write complete. rom_write() then checks the
sha256 of what the partition holds.
"""

import ast
import binascii

from tools.flashkit import romfs
from tools.flashkit.errors import DeviceError, TransferError

CHUNK = 3072  # raw bytes per exec: 4 KB of base64 keeps the device's compile buffer small

_HELPERS = """
import os, hashlib, binascii
def _sum(p):
    h = hashlib.sha256()
    f = open(p, 'rb')
    try:
        while True:
            b = f.read(2048)
            if not b:
                break
            h.update(b)
    finally:
        f.close()
    return binascii.hexlify(h.digest()).decode()
def _isdir(p):
    return os.stat(p)[0] & 0x4000 != 0
def _walk(d, out):
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        p = d + '/' + n
        if _isdir(p):
            _walk(p, out)
        else:
            out[p[1:]] = _sum(p)
def _rom():
    try:
        import vfs
        if vfs.rom_ioctl(1) < 1:
            return None
        d = vfs.rom_ioctl(2, 0)
    except (ImportError, AttributeError, OSError):
        return None
    return None if isinstance(d, int) else d
def _romsum(n):
    d = _rom()
    h = hashlib.sha256()
    i = 0
    while i < n:
        h.update(d[i:min(n, i + 2048)])
        i += 2048
    return binascii.hexlify(h.digest()).decode()
def _rmtree(p):
    try:
        names = os.listdir(p)
    except OSError:
        return
    for n in names:
        q = p + '/' + n
        if _isdir(q):
            _rmtree(q)
        else:
            os.remove(q)
    os.rmdir(p)
def _mkdirs(p):
    parts = p.split('/')[:-1]
    d = ''
    for x in parts:
        d = d + '/' + x
        try:
            os.mkdir(d)
        except OSError:
            pass
"""


def _lit(out):
    text = out.decode("utf-8", "replace").strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise DeviceError("unexpected answer from the device: %r" % text[:80]) from None


class DeviceFs:
    def __init__(self, repl):
        self.repl = repl
        self.repl.exec(_HELPERS)

    def identity(self):
        out = self.repl.exec(
            "import machine, sys\n"
            "print(repr((binascii.hexlify(machine.unique_id()).decode(), sys.implementation.name,"
            " tuple(sys.implementation.version[:3]), getattr(sys.implementation, '_machine', ''))))")
        uid, impl, version, machine = _lit(out)
        return {"uid": uid, "implementation": impl, "version": tuple(version), "machine": machine}

    def sums(self, trees, names):
        """{path: sha256} of every file under `trees` and of the root files in `names`."""
        code = "_o = {}\nfor _t in %r:\n    _walk('/' + _t, _o)\n" % (list(trees),)
        code += "for _n in %r:\n    try:\n        _o[_n] = _sum('/' + _n)\n    except OSError:\n        pass\n" % (list(names),)
        code += "print(repr(_o))"
        return _lit(self.repl.exec(code))

    def read(self, path):
        """File bytes, or None when it does not exist."""
        out = self.repl.exec(
            "try:\n    _f = open(%r, 'rb')\n    print(repr(binascii.hexlify(_f.read()).decode()))\n"
            "    _f.close()\nexcept OSError:\n    print('None')" % ("/" + path))
        value = _lit(out)
        return None if value is None else binascii.unhexlify(value)

    def write(self, path, data, sha, progress=None):
        """Write `data` to `path` atomically; TransferError if the device's sum disagrees."""
        dev = "/" + path
        self.repl.exec("_mkdirs(%r)\n_f = open(%r, 'wb')" % (dev, dev + ".part"))
        for i in range(0, len(data), CHUNK):
            b64 = binascii.b2a_base64(data[i: i + CHUNK], newline=False)  # a bytes literal: any port
            self.repl.exec("_f.write(binascii.a2b_base64(%r))" % b64)
            if progress:
                progress(min(len(data), i + CHUNK), len(data))
        got = _lit(self.repl.exec("_f.close()\nprint(repr(_sum(%r)))" % (dev + ".part")))
        if got != sha:
            raise TransferError("%s arrived damaged on the device (sha256 differs); re-run provision" % path)
        self.repl.exec("os.rename(%r, %r)" % (dev + ".part", dev))

    def rom_info(self):
        """None without a ROMFS partition; else {"size": partition bytes, "image_size": bytes of
        the image it holds (None: no valid image), "sha256": that image's sum (or None)}."""
        got = _lit(self.repl.exec("_d = _rom()\nprint('None' if _d is None else repr((len(_d), bytes(_d[:8]))))"))
        if got is None:
            return None
        size, head = got
        image = romfs.image_size(head)
        if image is None or image > size:
            return {"size": size, "image_size": None, "sha256": None}
        return {"size": size, "image_size": image, "sha256": _lit(self.repl.exec("print(repr(_romsum(%d)))" % image))}

    def rom_write(self, image, sha, progress=None):
        """Erase the ROMFS partition's first len(image) bytes, write the image in chunks, complete,
        and check the partition's sum; TransferError when it disagrees."""
        self.repl.exec("import vfs\ntry:\n    vfs.umount('/rom')\nexcept OSError:\n    pass")
        min_write = _lit(self.repl.exec("print(vfs.rom_ioctl(3, 0, %d))" % len(image)))
        if not isinstance(min_write, int) or min_write < 0:
            raise DeviceError("erasing the ROMFS partition failed (%r)" % (min_write,))
        min_write = max(1, min_write)
        chunk = max(min_write, CHUNK // min_write * min_write)
        for i in range(0, len(image), chunk):
            part = image[i: i + chunk]
            part += b"\xff" * (-len(part) % min_write)  # whole write units; erased flash is 0xff
            b64 = binascii.b2a_base64(part, newline=False)
            r = _lit(self.repl.exec("print(vfs.rom_ioctl(4, 0, %d, binascii.a2b_base64(%r)))" % (i, b64)))
            if isinstance(r, int) and r < 0:
                raise DeviceError("writing the ROMFS partition at %d failed (error %d)" % (i, -r))
            if progress:
                progress(min(len(image), i + chunk), len(image))
        self.repl.exec("vfs.rom_ioctl(5, 0)")
        got = _lit(self.repl.exec("print(repr(_romsum(%d)))" % len(image)))
        if got != sha:
            raise TransferError("the ROMFS image arrived damaged on the device (sha256 differs); re-run provision")

    def rmtree(self, path):
        """Remove a folder of the filesystem with everything in it (nothing if it is absent)."""
        self.repl.exec("_rmtree(%r)" % ("/" + path))

    def remove(self, path):
        self.repl.exec("try:\n    os.remove(%r)\nexcept OSError:\n    pass" % ("/" + path))

    def free(self):
        """(free bytes, total bytes) of the filesystem."""
        s = _lit(self.repl.exec("_s = os.statvfs('/')\nprint(repr((_s[0] * _s[3], _s[0] * _s[2])))"))
        return tuple(s)

    def reset(self):
        """machine.reset(): the device reboots, so no reply is awaited beyond the OK."""
        self.repl.exec_nowait("import machine\nmachine.reset()")
