"""build and image: the bundle's sums, and a merged image whose LittleFS holds exactly the files."""

import json
import os
import shutil
import zipfile

from tests.flash_support import bundle_dir, micropython_image, run
from tools.flashkit import bundle as bundle_mod
from tools.flashkit import image
from tools.flashkit.cli import REPO


def test_build_compiles_every_module_and_sums_every_file(tmp_path):
    out = str(tmp_path / "b.zip")
    code, text = run("build", "--out", out, "--board", "touch")
    assert code == 0, text
    b = bundle_mod.load(out)
    sources = [dev for dev, _host in bundle_mod.source_files(REPO, "touch")]
    for dev in sources:
        name = dev[:-3] + ".mpy" if dev.endswith(".py") else dev.replace(
            "firmware/fonts/", "fonts/").replace("firmware/prompts/", "prompts/")
        assert name in b.files, name
        if name.endswith(".mpy"):
            assert b.files[name][:2] == b"M\x06", name  # mpy-cross 1.29 output (mpy v6)
    assert "prompts/greet.ima" in b.files and not any(p.endswith(".md") for p in b.files)
    assert "fonts/unifont16.bin" in b.files and b.files["main.py"].endswith(b"main.run()\n") and b.boards == ["touch"]
    assert not any(p.endswith(".py") and p != "main.py" for p in b.files)
    assert "firmware/boards/sim.mpy" not in b.files
    m = json.loads(zipfile.ZipFile(out).read("manifest.json"))
    assert m["version"] == b.version and m["version"].startswith(bundle_mod.firmware_version(REPO) + "+")
    assert set(m["files"]) == set(b.files)
    assert all(m["files"][p]["sha256"] == bundle_mod.sha256(b.files[p]) for p in b.files)


def test_a_tampered_or_incomplete_bundle_is_refused(tmp_path):
    copy = str(tmp_path / "b")
    shutil.copytree(bundle_dir(), copy)
    with open(os.path.join(copy, "protocol", "codec.mpy"), "ab") as f:
        f.write(b"\0")
    code, out = run("verify", "--port", "/dev/null", "--bundle", copy)
    assert code == 1 and "protocol/codec.mpy does not match its sha256" in out
    os.remove(os.path.join(copy, "protocol", "codec.mpy"))
    code, out = run("verify", "--port", "/dev/null", "--bundle", copy)
    assert code == 1 and "incomplete: protocol/codec.mpy is missing" in out


def test_image_filesystem_mounts_and_holds_exactly_the_expected_files(tmp_path):
    fw = tmp_path / "micropython.bin"
    fake = micropython_image("esp32", app_size=300 * 1024)  # laid out as MicroPython's image is
    fw.write_bytes(fake)
    out = tmp_path / "factory.bin"
    reg = str(tmp_path / "registry.json")
    code, text = run("image", "--firmware", fw, "--bundle", bundle_dir(), "--chip", "esp32", "--out", out,
                     "--device", "ev-0000aabbccdd", "--board", "five_button", "--transport", "rs485",
                     "--window", "12", "--rs485-baud", "19200", "--registry", reg, "--new-registry")
    assert code == 0, text
    data = out.read_bytes()
    assert data[0x1000:0x1000 + len(fake)] == fake
    assert len(data) == 0x200000 + 0x200000
    files = image.read_littlefs(data[0x200000:0x400000])
    b = bundle_mod.load(bundle_dir())
    expected = dict(b.device_files())
    assert set(files) == set(expected) | {"data/device.json"}
    for path in expected:
        assert files[path] == expected[path], path
    cfg = json.loads(files["data/device.json"])
    assert cfg["device"] == "ev-0000aabbccdd" and cfg["address"] == 12
    with open(reg) as f:
        assert json.load(f)["devices"][0]["key"] == cfg["key"]
    assert cfg["key"] not in text


def test_image_without_device_has_no_config_and_too_small_fs_is_refused(tmp_path):
    fw = tmp_path / "mp.bin"
    fw.write_bytes(micropython_image("esp32"))
    out = tmp_path / "plain.bin"
    code, text = run("image", "--firmware", fw, "--bundle", bundle_dir(), "--out", out)
    assert code == 0, text
    files = image.read_littlefs(out.read_bytes()[0x200000:])
    assert set(files) == set(bundle_mod.load(bundle_dir()).device_files())
    code, text = run("image", "--firmware", fw, "--bundle", bundle_dir(), "--out", tmp_path / "small.bin",
                     "--fs-size", "0x40000")
    assert code == 1 and "do not fit" in text
