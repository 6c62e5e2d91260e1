"""Provision and verify against virtual evaluators on real pseudo-terminals."""

import json
import os
import time

import serial

from tests.flash_support import bundle_dir, provision_args, run, virtual_device
from tools.flashkit import bundle as bundle_mod


def _device_cfg(srv):
    with open(os.path.join(srv.device.files.root, "data", "device.json"), encoding="utf-8") as f:
        return json.load(f)


def _registry(path):
    with open(path, encoding="utf-8") as f:
        return dict((d["id"], d) for d in json.load(f)["devices"])


def test_provision_then_verify_passes_and_registers_the_key(tmp_path):
    reg = str(tmp_path / "registry.json")
    with virtual_device(tmp_path) as srv:
        code, out = run(*provision_args(srv.path, reg))
        assert code == 0, out
        cfg = _device_cfg(srv)
        assert cfg["device"] == "ev-240ac4123456" and cfg["address"] == 7 and cfg["board"] == {"profile": "five_button"}
        assert len(bytes.fromhex(cfg["key"])) == 32
        assert _registry(reg)["ev-240ac4123456"]["key"] == cfg["key"]
        assert cfg["key"] not in out and cfg["key"][:16] not in out
        assert srv.device.overruns == 0  # raw-paste flow control was respected
        b = bundle_mod.load(bundle_dir())
        for path, data in b.device_files().items():  # the device holds exactly the bundle's bytes
            with open(os.path.join(srv.device.files.root, path), "rb") as f:
                assert f.read() == data, path
        code, out = run("verify", "--port", srv.path, "--bundle", bundle_dir(), "--registry", reg)
        assert code == 0, out
        assert "version test-1" in out and "MicroPython 1.29.0" in out and "1 ok, 0 failed" in out


def test_rerun_changes_nothing_and_keeps_the_key(tmp_path):
    reg = str(tmp_path / "registry.json")
    with virtual_device(tmp_path) as srv:
        assert run(*provision_args(srv.path, reg))[0] == 0
        key = _device_cfg(srv)["key"]
        code, out = run(*provision_args(srv.path, reg))
        assert code == 0, out
        assert "copied 0, removed 0, config unchanged, registered (unchanged)" in out
        assert _device_cfg(srv)["key"] == key
        code, out = run(*provision_args(srv.path, reg, window="8"))  # moved to window 8: config + registry follow
        assert code == 0 and "copied 0" in out and "config written" in out and "registered (updated)" in out
        assert _device_cfg(srv)["key"] == key and _registry(reg)["ev-240ac4123456"]["window"] == "8"
        code, out = run(*provision_args(srv.path, reg, extra=["--new-key"]))
        assert code == 0 and _device_cfg(srv)["key"] != key
        assert _registry(reg)["ev-240ac4123456"]["key"] == _device_cfg(srv)["key"]


def test_a_wiped_device_gets_a_counter_floor_above_its_old_counters(tmp_path):
    """Rating ids (device:counter) are unique for ever (SPEC 7.2): a config made anew carries the
    provisioning time as counter floor; a re-run and a new key keep it; a wiped flash gets a new one."""
    reg = str(tmp_path / "registry.json")
    with virtual_device(tmp_path) as srv:
        before = int(time.time())
        assert run(*provision_args(srv.path, reg))[0] == 0
        floor = _device_cfg(srv)["counter_floor"]
        assert before <= floor <= time.time()
        assert run(*provision_args(srv.path, reg, extra=["--new-key"]))[0] == 0
        assert _device_cfg(srv)["counter_floor"] == floor
        os.remove(os.path.join(srv.device.files.root, "data", "device.json"))  # flash wiped
        time.sleep(1.1)
        assert run(*provision_args(srv.path, reg))[0] == 0
        assert _device_cfg(srv)["counter_floor"] > floor


def test_tampered_missing_and_unexpected_files_fail_verify_by_name(tmp_path):
    reg = str(tmp_path / "registry.json")
    with virtual_device(tmp_path) as srv:
        assert run(*provision_args(srv.path, reg))[0] == 0
        root = srv.device.files.root
        with open(os.path.join(root, "protocol", "auth.mpy"), "r+b") as f:
            f.seek(20)
            f.write(b"\x00")
        code, out = run("verify", "--port", srv.path, "--bundle", bundle_dir())
        assert code == 16, out
        assert "differs: protocol/auth.mpy" in out and "FAIL(16 verify)" in out
        os.remove(os.path.join(root, "firmware", "views.mpy"))
        with open(os.path.join(root, "firmware", "backdoor.mpy"), "wb") as f:
            f.write(b"M\x06")
        code, out = run("verify", "--port", srv.path, "--bundle", bundle_dir())
        assert code == 16
        assert "missing: firmware/views.mpy" in out and "unexpected: firmware/backdoor.mpy" in out
        code, out = run(*provision_args(srv.path, reg))  # provisioning repairs exactly those three
        assert code == 0 and "copied 2, removed 1" in out, out
        assert run("verify", "--port", srv.path, "--bundle", bundle_dir())[0] == 0


def test_gateway_holding_another_key_fails_verify(tmp_path):
    reg = str(tmp_path / "registry.json")
    with virtual_device(tmp_path) as srv:
        assert run(*provision_args(srv.path, reg))[0] == 0
        data = json.load(open(reg))
        data["devices"][0]["key"] = "11" * 32
        json.dump(data, open(reg, "w"))
        code, out = run("verify", "--port", srv.path, "--bundle", bundle_dir(), "--registry", reg)
        assert code == 16 and "different key" in out and "11" * 32 not in out


def test_wrong_port_busy_port_and_silent_device(tmp_path):
    reg = str(tmp_path / "registry.json")
    code, out = run(*provision_args("/dev/ttyNOSUCH0", reg))
    assert code == 2 and "no such serial port" in out
    with virtual_device(tmp_path) as srv:
        holder = serial.Serial(srv.path, exclusive=True)
        try:
            code, out = run(*provision_args(srv.path, reg))
        finally:
            holder.close()
        assert code == 2 and "port busy" in out
    with virtual_device(tmp_path, name="mute", mute=True) as srv:
        code, out = run(*provision_args(srv.path, reg))
        assert code == 4 and "did not answer" in out and "raw REPL banner" in out
    assert not os.path.exists(reg)  # nothing was registered for devices never provisioned


def test_half_finished_copy_fails_clearly_then_resumes(tmp_path):
    reg = str(tmp_path / "registry.json")
    with virtual_device(tmp_path, silent_after=60000) as srv:  # pulled out after ~60 KB
        code, out = run(*provision_args(srv.path, reg))
        assert code == 8, out
        assert "copy stopped at" in out and "re-run provision to resume" in out
        assert not os.path.exists(os.path.join(srv.device.files.root, "bundle.json"))
        srv.device.silent_after = None  # plugged back in
        srv.device.mute = False
        code, out = run("verify", "--port", srv.path, "--bundle", bundle_dir())
        assert code == 16 and "missing: bundle.json" in out and "not provisioned" in out
        code, out = run(*provision_args(srv.path, reg))
        assert code == 0, out
        copied = int(out.split("copied ")[1].split(",")[0])
        assert 0 < copied < len(bundle_mod.load(bundle_dir()).files)  # only what was not there yet
        assert run("verify", "--port", srv.path, "--bundle", bundle_dir())[0] == 0


def test_a_box_of_boards_at_once_with_summary_and_combined_exit_code(tmp_path):
    reg = str(tmp_path / "registry.json")
    servers = [virtual_device(tmp_path, name="d%d" % i, uid=bytes([0x24, 0x0A, 0xC4, 0, 0, i])) for i in range(3)]
    for s in servers:
        s.start()
    try:
        args = ["provision", "--bundle", bundle_dir(), "--board", "touch", "--transport", "rs485",
                "--rs485-baud", "9600", "--registry", reg, "--new-registry", "--timeout", "1.5", "--no-reset"]
        for i, s in enumerate(servers):
            args += ["--port", s.path, "--window", str(10 + i)]
        args += ["--port", "/dev/ttyNOSUCH1", "--window", "13"]
        code, out = run(*args)
        assert code == 2, out  # the missing fourth port, nothing else
        assert "3 ok, 1 failed" in out
        devices = _registry(reg)
        assert sorted(d["address"] for d in devices.values()) == [10, 11, 12]
        assert len(set(d["key"] for d in devices.values())) == 3
        with open(os.path.join(servers[1].device.files.root, "main.py"), "ab") as f:
            f.write(b"\n# tampered\n")
        code, out = run("verify", "--bundle", bundle_dir(), *sum((["--port", s.path] for s in servers), []))
        assert code == 16 and "2 ok, 1 failed" in out and "differs: main.py" in out
    finally:
        for s in servers:
            s.stop()


def test_mqtt_secrets_are_never_printed(tmp_path):
    reg = str(tmp_path / "registry.json")
    with virtual_device(tmp_path) as srv:
        code, out = run("provision", "--port", srv.path, "--bundle", bundle_dir(), "--board", "touch",
                        "--transport", "mqtt", "--hall", "hall-1", "--window", "3", "--wifi-ssid", "政务大厅",
                        "--wifi-password", "wifi-Secret-王喆", "--mqtt-host", "10.0.0.2", "--mqtt-user", "dev",
                        "--mqtt-password", "mqtt-Secret-李堃", "--registry", reg, "--new-registry", "--timeout", "1.5")
        assert code == 0, out
        cfg = _device_cfg(srv)
        assert cfg["wifi"] == {"ssid": "政务大厅", "password": "wifi-Secret-王喆"}
        assert "wifi" not in cfg["board"]               # one place: firmware.main.make_board passes it
        assert cfg["mqtt"]["password"] == "mqtt-Secret-李堃" and cfg["transport"] == "mqtt"
        for secret in ("wifi-Secret", "mqtt-Secret", cfg["key"]):
            assert secret not in out
        assert "reset" in out and srv.device.resets == 1


def test_bad_settings_touch_nothing(tmp_path):
    reg = str(tmp_path / "registry.json")
    with virtual_device(tmp_path) as srv:
        code, out = run("provision", "--port", srv.path, "--bundle", bundle_dir(), "--board", "touch",
                        "--transport", "mqtt", "--registry", reg)
        assert code == 1 and "mqtt needs hall and mqtt.host" in out
        code, out = run("provision", "--port", srv.path, "--bundle", str(tmp_path / "nope"), "--board", "touch",
                        "--transport", "rs485", "--window", "3", "--registry", reg)
        assert code == 1 and "does not exist" in out
        assert srv.device.received == 0 or os.listdir(srv.device.files.root) == []
