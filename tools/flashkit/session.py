"""Opening a device: port -> raw REPL -> DeviceFs, closed again whatever happens."""

import contextlib

from tools.flashkit import bundle as bundle_mod
from tools.flashkit.devfs import DeviceFs
from tools.flashkit.errors import BadInput, NotAnswering
from tools.flashkit.rawrepl import RawRepl, open_port


@contextlib.contextmanager
def device(port, baud=115200, timeout=5.0):
    repl = RawRepl(open_port(port, baud), timeout=timeout, name=port)
    try:
        repl.enter()
        fs = DeviceFs(repl)
        ident = fs.identity()
        if ident["implementation"] != "micropython":
            raise BadInput("%s runs %s, not MicroPython" % (port, ident["implementation"]))
        if tuple(ident["version"][:2]) < (1, 29):
            raise BadInput("%s runs MicroPython %s; flash MicroPython 1.29 first (`flash.py flash`)"
                           % (port, ".".join(str(x) for x in ident["version"])))
        yield fs, ident
    finally:
        repl.close()


def layout(bundle, rom):
    """Where the bundle's code goes on a device whose ROMFS partition is `rom` (DeviceFs.rom_info):
    "romfs" when the bundle has an image and the partition holds it, else "fs" (with the reason).
    provision and verify decide alike, so verify expects what provision wrote."""
    if bundle.romfs is None:
        return "fs", "the bundle has no ROMFS image"
    if rom is None:
        return "fs", "no ROMFS partition in this MicroPython image: code as .mpy files on the filesystem"
    if len(bundle.romfs) > rom["size"]:
        return "fs", ("ROMFS partition too small (%d KB for a %d KB image): code as .mpy files on the filesystem"
                      % (rom["size"] // 1024, (len(bundle.romfs) + 1023) // 1024))
    return "romfs", "code in the ROMFS partition (%d of %d KB)" % ((len(bundle.romfs) + 1023) // 1024, rom["size"] // 1024)


def device_sums(fs, bundle, config_file):
    roots = [p for p in bundle.device_files() if "/" not in p] + [config_file]
    return fs.sums(bundle_mod.TREES, sorted(set(roots)))


def compare(bundle, sums, where="fs"):
    """(missing, different, unexpected) device paths against the bundle in layout `where`."""
    want = dict((p, bundle_mod.sha256(d)) for p, d in bundle.device_files(where).items())
    missing = sorted(p for p in want if p not in sums)
    different = sorted(p for p in want if p in sums and sums[p] != want[p])
    unexpected = sorted(p for p in sums if p not in want and p.split("/")[0] in bundle_mod.TREES)
    return missing, different, unexpected


__all__ = ["device", "device_sums", "compare", "layout", "NotAnswering"]
