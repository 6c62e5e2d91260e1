"""image: one merged flash image for factory lines, built offline.

MicroPython's image at the chip's bootloader offset plus a LittleFS v2 filesystem (the bundle,
bundle.json and, when a device id is given, its device config with a fresh key) at the vfs
partition, merged by esptool's merge_bin. Defaults match MicroPython's ESP32 4 MB layout
(vfs partition at 0x200000, 2 MB, 4 KB blocks; read/prog size 32 as MicroPython mounts it).

The firmware must be a MicroPython image for the chip (tools/flashkit/fwimage.py; the chip comes
from its header unless given). With a device config the output holds the device's key, so it is
created 0600 from its first byte (written whole under a private temp name, then renamed).
"""

import littlefs

from gateway import atomic_file
from tools.flashkit import fwimage
from tools.flashkit.errors import BadInput, FlashError

FS_OFFSET = 0x200000
FS_SIZE = 0x200000
BLOCK = 4096


def littlefs_image(files, size=FS_SIZE, block=BLOCK):
    """The raw bytes of a LittleFS filesystem holding `files` ({device path: bytes})."""
    if size % block:
        raise BadInput("filesystem size must be a multiple of %d" % block)
    fs = littlefs.LittleFS(block_size=block, block_count=size // block, read_size=32, prog_size=32,
                           lookahead_size=32, mount=True)
    try:
        for path in sorted(files):
            parent = path.rsplit("/", 1)[0] if "/" in path else ""
            if parent:
                fs.makedirs(parent, exist_ok=True)
            with fs.open(path, "wb") as f:
                f.write(files[path])
    except littlefs.errors.LittleFSError as exc:
        raise BadInput("the files do not fit a %d KB filesystem (%s)" % (size // 1024, exc)) from None
    return bytes(fs.context.buffer)


def read_littlefs(data, block=BLOCK):
    """{path: bytes} of every file in a LittleFS image (used by tests and `image --check`)."""
    fs = littlefs.LittleFS(block_size=block, block_count=len(data) // block, read_size=32, prog_size=32,
                           lookahead_size=32, mount=False)
    fs.context.buffer = bytearray(data)
    fs.mount()
    out = {}
    for root, _dirs, names in fs.walk("/"):
        for n in names:
            p = (root.rstrip("/") + "/" + n).lstrip("/")
            with fs.open(p, "rb") as f:
                out[p] = f.read()
    return out


def build(firmware_image, files, chip, output, fs_offset=FS_OFFSET, fs_size=FS_SIZE):
    """Write the merged image to `output` (mode 0600); the firmware's inspect() facts."""
    info = fwimage.inspect(firmware_image, chip)
    with open(firmware_image, "rb") as f:
        mp = f.read()
    if info["offset"] + len(mp) > fs_offset:
        raise BadInput("the firmware image (%d KB) overlaps the filesystem at 0x%x" % (len(mp) // 1024, fs_offset))
    fs = littlefs_image(files, fs_size)
    import esptool.cmds
    try:
        merged = esptool.cmds.merge_bin([(info["offset"], mp), (fs_offset, fs)], info["chip"], output=None,
                                        format="raw")
    except Exception as exc:
        raise FlashError("esptool merge-bin failed: %s" % exc) from None
    try:
        atomic_file.write(output, merged)
    except OSError as exc:
        raise BadInput("cannot write %s: %s" % (output, exc.strerror or exc)) from None
    return info
