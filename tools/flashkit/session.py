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


def device_sums(fs, bundle, config_file):
    roots = [p for p in bundle.device_files() if "/" not in p] + [config_file]
    return fs.sums(bundle_mod.TREES, sorted(set(roots)))


def compare(bundle, sums):
    """(missing, different, unexpected) device paths against the bundle."""
    want = dict((p, bundle_mod.sha256(d)) for p, d in bundle.device_files().items())
    missing = sorted(p for p in want if p not in sums)
    different = sorted(p for p in want if p in sums and sums[p] != want[p])
    unexpected = sorted(p for p in sums if p not in want and p.split("/")[0] in bundle_mod.TREES)
    return missing, different, unexpected


__all__ = ["device", "device_sums", "compare", "NotAnswering"]
