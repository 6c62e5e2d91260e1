"""The bundle's code as a ROMFS image: built with the bundle, written by provision through
vfs.rom_ioctl to a virtual device with a ROMFS partition, checked by verify, booted from; a
device without a partition (the stock ESP32 images) or with one too small gets .mpy files."""

import json
import os
import shutil

from hall_simulator.device import FirmwareApp, rom_path
from tests.flash_support import bundle_dir, provision_args, run, virtual_device
from tools.flashkit import bundle as bundle_mod
from tools.flashkit import romfs
from tools.flashkit.errors import BadInput

ROM = 128 * 1024  # the ESP32_GENERIC ROMFS variant's partition


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
    assert set(b.device_files("romfs")) == {"fonts/unifont16.bin", "main.py", "board.json", "bundle.json"}


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
        assert _fs_files(root) == {"fonts/unifont16.bin", "main.py", "board.json", "bundle.json", "data/device.json"}
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
                        "--mqtt-port", "9", "--registry", reg, "--timeout", "2")
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
