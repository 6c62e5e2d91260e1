"""What a firmware file is, before it goes near a board: a full MicroPython image for one chip.

A MicroPython firmware .bin for an ESP32-family chip (ESP32_GENERIC-v1.29.0.bin and the like) is
written at the chip's bootloader offset and holds, from there: the second-stage bootloader (an
ESP image: magic 0xE9, the chip id in its extended header), the partition table at flash 0x8000
(entries with magic 0xAA50) and the application in the first app partition, whose first DROM
segment starts with the ESP-IDF app description (magic 0xABCD5432) naming the project,
"micropython" for MicroPython. esptool's own image loader (esptool.bin_image.LoadFirmwareImage)
parses both images, checking their magic, segment count and lengths.

inspect() reads the chip from the header when none is given and refuses a given chip that
disagrees, random bytes, an image for another chip, an application-only file and any other
ESP-IDF project, each with a one-line reason.
"""

import struct

from tools.flashkit.errors import BadInput

PARTITION_TABLE = 0x8000
PARTITION_MAGIC = 0xAA50
APP_DESC_MAGIC = 0xABCD5432
PROJECT = "micropython"


def _chips():
    """{normalised name: (image chip id, bootloader offset, esptool's name)} from esptool's targets."""
    from esptool.targets import CHIP_DEFS
    out = {}
    for name, rom in CHIP_DEFS.items():
        if getattr(rom, "IMAGE_CHIP_ID", None) is not None:
            out[name] = (rom.IMAGE_CHIP_ID, rom.BOOTLOADER_FLASH_OFFSET, rom.CHIP_NAME)
    return out


def normalise(name):
    return name.lower().replace("-", "").replace("_", "")


def chip_of(data):
    """The chip an ESP image's header names, or None (not an ESP32-family image)."""
    if len(data) < 24 or data[0] != 0xE9:
        return None
    chip_id = struct.unpack_from("<H", data, 12)[0]
    for name, (cid, _off, _n) in _chips().items():
        if cid == chip_id:
            return name
    return None


def _load(chip, data, what):
    from esptool.bin_image import LoadFirmwareImage
    try:
        return LoadFirmwareImage(chip, data)
    except Exception as exc:  # esptool raises FatalError, struct.error or RuntimeError on bad bytes
        raise BadInput("%s is not a valid ESP image (%s)" % (what, _reason(exc))) from None


def _reason(exc):
    args = exc.args
    try:  # one of esptool's errors carries its format and values apart
        text = args[0] % tuple(args[1:]) if len(args) > 1 else str(exc)
    except (TypeError, ValueError):
        text = str(exc)
    return (text.splitlines() or [type(exc).__name__])[0]


def _app_offsets(table):
    """Flash offsets of the app partitions (type 0) in a partition table, in table order."""
    out = []
    for i in range(0, min(len(table), 0xC00) - 31, 32):
        magic, ptype, _sub, offset, _size = struct.unpack_from("<HBBII", table, i)
        if magic != PARTITION_MAGIC:
            break
        if ptype == 0:
            out.append(offset)
    return out


def inspect(path, chip=None):
    """{"chip", "offset", "project", "version", "size"} of a MicroPython firmware file;
    BadInput saying why when it is not one for `chip` (default: the chip its header names)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise BadInput("firmware image %s: %s" % (path, exc.strerror)) from None
    return inspect_bytes(data, chip, path)


def inspect_bytes(data, chip=None, name="the image"):
    if not data or data[0] != 0xE9:
        raise BadInput("%s is not an ESP firmware image (first byte 0x%02x, expected 0xE9)"
                       % (name, data[0] if data else 0))
    found = chip_of(data)
    if found is None:
        raise BadInput("%s names no known chip in its header (chip id %d)"
                       % (name, struct.unpack_from("<H", data, 12)[0] if len(data) >= 14 else -1))
    chips = _chips()
    if chip is not None:
        want = normalise(chip)
        if want not in chips:
            raise BadInput("unknown chip %r (choose from %s)" % (chip, ", ".join(sorted(chips))))
        if want != found:
            raise BadInput("%s is for %s, not %s (its header says so); leave out --chip or give the right image"
                           % (name, chips[found][2], chips[want][2]))
    offset = chips[found][1]
    _load(found, data, "%s's bootloader" % name)
    table = data[PARTITION_TABLE - offset:PARTITION_TABLE - offset + 0xC00]
    apps = _app_offsets(table)
    if not apps:
        raise BadInput("%s has no partition table at 0x%x: not a full MicroPython firmware image "
                       "(use the .bin from micropython.org, written at 0x%x)" % (name, PARTITION_TABLE, offset))
    start = apps[0] - offset
    if not 0 < start < len(data):
        raise BadInput("%s ends before its application at 0x%x" % (name, apps[0]))
    app = _load(found, data[start:], "%s's application" % name)
    desc = _app_desc(app)
    if desc is None:
        raise BadInput("%s's application has no ESP-IDF app description" % name)
    project, version = desc
    if project != PROJECT:
        raise BadInput("%s is the ESP-IDF project %r, not MicroPython" % (name, project))
    return {"chip": found, "offset": offset, "project": project, "version": version, "size": len(data)}


def _app_desc(app):
    """(project name, version) from the app description at the start of the first DROM segment."""
    for seg in app.segments:
        if "DROM" in seg.get_memory_type(app) and len(seg.data) >= 80:
            magic, = struct.unpack_from("<I", seg.data, 0)
            if magic != APP_DESC_MAGIC:
                return None
            version = seg.data[16:48].split(b"\0")[0].decode("ascii", "replace")
            project = seg.data[48:80].split(b"\0")[0].decode("ascii", "replace")
            return project, version
    return None
