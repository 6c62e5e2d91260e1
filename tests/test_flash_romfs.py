"""The bundle's code as a ROMFS image: built with the bundle, written by provision through
vfs.rom_ioctl to a virtual device with a ROMFS partition, checked by verify, booted from; a
device without a partition (the stock ESP32 images) or with one too small gets .mpy files."""

import json
import os
import shutil

from hall_simulator.virtual_board import FirmwareApp, rom_path
from tests.flash_support import bundle_dir, provision_args, run, virtual_device
from tools.flashkit import bundle as bundle_mod
from tools.flashkit import romfs
from tools.flashkit.errors import BadInput

ROM = 128 * 1024  # the ESP32_GENERIC ROMFS variant's partition

PROMPTS = {"prompts/greet.ima", "prompts/reason.ima", "prompts/thanks.ima"}   # beside the font, outside the image

WORDS = {"fonts/words_%d.bin" % px for px in (24, 32, 48)}   # the touch board's smooth words, on the fs

def _rom_image(srv):
    with open(rom_path(srv.device.files.root), "rb") as f:
        data = f.read()
    return data[: romfs.image_size(data)]


def _fs_files(root):
    out = set()
    for base, _dirs, names in os.walk(root):
        for n in names:
            out.add(os.path.relpath(os.path.join(base, n), root).replace(os.sep, "/"))
    return out


def test_image_holds_exactly_the_bundles_code():
    b = bundle_mod.load(bundle_dir())
    code = dict((p, d) for p, d in b.files.items() if p.startswith(("firmware/", "protocol/")))
    assert code and romfs.read(b.romfs) == code
    assert b.manifest()["romfs"]["files"] == sorted(code)
    assert romfs.image_size(b.romfs) == len(b.romfs) and b.romfs[:3] == romfs.MAGIC
    assert set(b.device_files("romfs")) == {"fonts/unifont16.bin", "main.py", "board.json", "bundle.json"} | PROMPTS | WORDS


def test_a_damaged_or_inconsistent_image_makes_the_bundle_unusable(tmp_path):
    copy = str(tmp_path / "bundle")
    shutil.copytree(bundle_dir(), copy)
    img = os.path.join(copy, bundle_mod.ROMFS_FILE)
    good = open(img, "rb").read()
    with open(img, "wb") as f:
        f.write(good[:-1] + bytes([good[-1] ^ 1]))
    try:
        bundle_mod.load(copy)
        raise AssertionError("a corrupt image was accepted")
    except BadInput as exc:
        assert "romfs.img does not match its sha256" in str(exc)
    other = romfs.image({"firmware/x.mpy": b"M\x06"})
    with open(img, "wb") as f:
        f.write(other)
    m = json.load(open(os.path.join(copy, "manifest.json")))
    m["romfs"]["sha256"] = bundle_mod.sha256(other)
    json.dump(m, open(os.path.join(copy, "manifest.json"), "w"))
    try:
        bundle_mod.load(copy)
        raise AssertionError("an image without the bundle's code was accepted")
    except BadInput as exc:
        assert "does not hold the bundle's code" in str(exc)


def test_provision_writes_the_image_verify_checks_it_and_repairs_a_damaged_one(tmp_path):
    reg = str(tmp_path / "registry.json")
    b = bundle_mod.load(bundle_dir())
    with virtual_device(tmp_path, rom_size=ROM) as srv:
        code, out = run(*provision_args(srv.path, reg))
        assert code == 0, out
        assert "code in the ROMFS partition (%d of 128 KB)" % ((len(b.romfs) + 1023) // 1024) in out
        assert "ROMFS image written" in out
        assert _rom_image(srv) == b.romfs
        root = srv.device.files.root
        # code only in ROM: no firmware/ or protocol/ folder left to shadow /rom; config on the fs
        assert _fs_files(root) == {"fonts/unifont16.bin", "main.py", "board.json", "bundle.json",
                                   "data/device.json"} | PROMPTS | WORDS
        code, out = run("verify", "--port", srv.path, "--bundle", bundle_dir(), "--registry", reg)
        assert code == 0, out
        assert "ROMFS image %s... matches" % b.meta["romfs"]["sha256"][:12] in out
        code, out = run(*provision_args(srv.path, reg))
        assert code == 0 and "copied 0, removed 0" in out and "ROMFS image unchanged" in out, out

        with open(rom_path(root), "r+b") as f:  # one flipped byte inside the image
            f.seek(len(b.romfs) // 2)
            byte = f.read(1)
            f.seek(len(b.romfs) // 2)
            f.write(bytes([byte[0] ^ 0x10]))
        code, out = run("verify", "--port", srv.path, "--bundle", bundle_dir())
        assert code == 16 and "differs: ROMFS image" in out, out
        os.makedirs(os.path.join(root, "firmware"))
        with open(os.path.join(root, "firmware", "app.mpy"), "wb") as f:  # would shadow /rom/firmware
            f.write(b"M\x06")
        code, out = run("verify", "--port", srv.path, "--bundle", bundle_dir())
        assert code == 16 and "unexpected: firmware/app.mpy" in out, out
        code, out = run(*provision_args(srv.path, reg))
        assert code == 0 and "ROMFS image written" in out and "removed 1" in out, out
        assert not os.path.exists(os.path.join(root, "firmware"))
        assert run("verify", "--port", srv.path, "--bundle", bundle_dir())[0] == 0


def test_no_partition_or_one_too_small_falls_back_to_mpy_files(tmp_path):
    reg = str(tmp_path / "registry.json")
    b = bundle_mod.load(bundle_dir())
    for name, size, why in (("stock", None, "no ROMFS partition in this MicroPython image"),
                            ("small", 32 * 1024, "ROMFS partition too small (32 KB")):
        with virtual_device(tmp_path, name=name, rom_size=size) as srv:
            code, out = run(*provision_args(srv.path, reg, window="9" if size else "7"))
            assert code == 0, out
            assert why in out and "no ROMFS: .mpy files on the filesystem" in out
            assert _fs_files(srv.device.files.root) >= set(b.device_files("fs"))
            code, out = run("verify", "--port", srv.path, "--bundle", bundle_dir())
            assert code == 0 and why in out, out


def test_the_device_boots_its_code_from_the_rom_and_refuses_a_damaged_image(tmp_path):
    reg = str(tmp_path / "registry.json")
    app = FirmwareApp()
    with virtual_device(tmp_path, rom_size=ROM, app_runner=app) as srv:
        code, out = run("provision", "--port", srv.path, "--bundle", bundle_dir(), "--board", "five_button",
                        "--transport", "mqtt", "--hall", "hall-1", "--window", "3", "--mqtt-host", "127.0.0.1",
                        "--mqtt-port", "9", "--registry", reg, "--new-registry", "--timeout", "2")
        assert code == 0, out
        assert app.booted.wait(15) and app.code_from == "romfs"
        b = bundle_mod.load(bundle_dir())
        lines = []
        with srv.device.lock:
            srv.device._stop_app()
            with open(rom_path(srv.device.files.root), "r+b") as f:
                f.seek(len(b.romfs) - 10)
                f.write(b"\x00")
            srv.device._write, write = (lambda data: lines.append(data)), srv.device._write
            srv.device.power_on()  # unplugged and plugged in again
        try:
            srv.device._app.join(10)  # the boot gives up at once
            assert not srv.device._app.is_alive()
        finally:
            srv.device._write = write
        text = b"".join(lines).decode("utf-8", "replace")
        assert "boot refused: damaged files" in text and "ROMFS image" in text, text
        assert app.boots == 1


class _RecordingRepl:
    """Collects the code DeviceFs sends and answers as a device with a 128 KiB partition would,
    so the whole exchange can then be replayed under real MicroPython."""

    def __init__(self, image):
        self.image = image
        self.sent = []

    def exec(self, code, timeout=None):
        self.sent.append(code)
        if "rom_ioctl(3," in code:
            return b"4\r\n"
        if "rom_ioctl(4," in code:
            return b"0\r\n"
        if "_romsum(" in code:
            return repr(bundle_mod.sha256(self.image)).encode()
        return b""


_FAKE_VFS = """
import sys
class _Vfs:
    rom = bytearray(b'\\xff' * %d)
    def rom_ioctl(self, op, *a):
        if op == 1:
            return 1
        if op == 2:
            return memoryview(self.rom)
        if op == 3:
            self.rom[0:a[1]] = b'\\xff' * a[1]
            return 4
        if op == 4:
            self.rom[a[1]:a[1] + len(a[2])] = a[2]
            return 0
        return 0
    def umount(self, p):
        raise OSError(22)
sys.modules['vfs'] = _Vfs()
"""


def test_the_rom_write_code_runs_on_real_micropython(micropython):
    """Every snippet DeviceFs sends to write and check the partition, replayed in order under
    MicroPython 1.29 against a vfs whose rom_ioctl keeps the partition in a bytearray: the
    partition ends up holding the image, and the device-side sum is the bundle's."""
    from tools.flashkit.devfs import DeviceFs
    b = bundle_mod.load(bundle_dir())
    repl = _RecordingRepl(b.romfs)
    fs = DeviceFs(repl)
    fs.rom_write(b.romfs, b.meta["romfs"]["sha256"])
    script = _FAKE_VFS % ROM + "\n".join(repl.sent) + (
        "\nprint('IMAGE', binascii.hexlify(bytes(_rom()[:%d])).decode())" % len(b.romfs))
    r = micropython(script, trees=())
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-2] == repr(b.meta["romfs"]["sha256"])  # rom_write's own check, on the device
    assert bytes.fromhex(lines[-1].split()[1]) == b.romfs
    assert sum(1 for c in repl.sent if "rom_ioctl(4," in c) == -(-len(b.romfs) // 3072)
