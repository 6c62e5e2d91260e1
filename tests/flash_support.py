"""Helpers for the flash tool's tests: one real bundle per session, virtual devices, CLI runs."""

import io
import os
import tempfile

from hall_simulator.device import PtyServer
from tools.flashkit import bundle as bundle_mod
from tools.flashkit.cli import REPO, main

_BUNDLE = {}


def bundle_dir():
    """A bundle built once per test session by the real build (mpy-cross)."""
    if "dir" not in _BUNDLE:
        out = os.path.join(tempfile.mkdtemp(prefix="flash-bundle-"), "bundle")
        b = bundle_mod.build(REPO, version="test-1")
        b.save(out)
        _BUNDLE["dir"] = out
    return _BUNDLE["dir"]


def run(*argv):
    """(exit code, everything printed) of `flash.py argv...` run in-process."""
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue()


def virtual_device(tmp_path, name="dev", uid=b"\x24\x0a\xc4\x12\x34\x56", **kw):
    return PtyServer(str(tmp_path / name), uid=uid, **kw)


def provision_args(port, registry, window="7", board="five_button", extra=()):
    return ["provision", "--port", port, "--bundle", bundle_dir(), "--board", board, "--transport", "rs485",
            "--window", window, "--rs485-baud", "19200", "--registry", registry, "--new-registry",
            "--timeout", "1.5", "--no-reset"] + list(extra)


def micropython_image(chip="esp32", project="micropython", version="v1.29.0", app_size=64 * 1024):
    """A firmware file laid out as MicroPython's ESP32 .bin is (bootloader at the chip's offset,
    partition table at 0x8000, app at 0x10000 whose DROM segment starts with the ESP-IDF app
    description), built with esptool's own image classes; the code in it is filler."""
    import struct

    from esptool import bin_image
    from esptool.targets import CHIP_DEFS
    rom = CHIP_DEFS[chip]
    cls = getattr(bin_image, "ESP32%sFirmwareImage" % chip[5:].upper())

    def image(segments):
        img = cls()
        img.chip_id = rom.IMAGE_CHIP_ID
        img.segments = [bin_image.ELFSection(name, addr, data, 0) for name, addr, data in segments]
        img.entrypoint = segments[0][1]
        return img.save(None)

    boot = image([(b".iram", 0x40080000, bytes(4096))])
    desc = struct.pack("<II8s32s32s16s16s32s32sHHB3s72s", 0xABCD5432, 0, b"", version.encode(),
                       project.encode(), b"12:00:00", b"Dec  3 2026", b"v5.4.2", b"\x11" * 32, 0, 0, 0, b"", b"")
    app = image([(b".rodata", rom.DROM_MAP_START + 0x20, desc + bytes(1024)),
                 (b".text", rom.IROM_MAP_START + 0x20, bytes(app_size))])
    table = b""
    for ptype, sub, off, size, label in ((1, 2, 0x9000, 0x6000, b"nvs"), (1, 1, 0xF000, 0x1000, b"phy_init"),
                                         (0, 0, 0x10000, 0x1F0000, b"factory"), (1, 0x81, 0x200000, 0x200000, b"vfs")):
        table += struct.pack("<HBBII16sI", 0xAA50, ptype, sub, off, size, label, 0)
    base = rom.BOOTLOADER_FLASH_OFFSET
    out = bytearray(b"\xff" * (0x10000 - base))
    out[0:len(boot)] = boot
    out[0x8000 - base:0x8000 - base + len(table)] = table
    return bytes(out) + app
