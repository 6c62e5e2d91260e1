"""Our raw-REPL client against the virtual device: raw-paste flow control, fallback, errors."""

import os
import subprocess
import sys

from hypothesis import given, settings, strategies as st
from serial.tools.list_ports_common import ListPortInfo

from hall_simulator.device import RAW_PASTE_WINDOW, PtyServer, VirtualDevice
from tools.flashkit import ports
from tools.flashkit.devfs import DeviceFs
from tools.flashkit.errors import DeviceError, NotAnswering
from tools.flashkit.rawrepl import RawRepl, open_port
from tools.flashkit.bundle import sha256


def _session(srv, timeout=2.0):
    r = RawRepl(open_port(srv.path), timeout=timeout)
    r.enter()
    return r


def test_raw_paste_respects_the_window_and_plain_raw_is_the_fallback(tmp_path):
    code = "n = 0\n" + "n += 1\n" * 3000 + "print(n, '王喆')"
    assert len(code) > 100 * RAW_PASTE_WINDOW
    with PtyServer(str(tmp_path / "a")) as srv:
        r = _session(srv)
        assert r.exec(code) == "3000 王喆\r\n".encode()
        assert r.use_raw_paste and srv.device.overruns == 0
        r.close()
    with PtyServer(str(tmp_path / "b"), raw_paste=False) as srv:
        r = _session(srv)
        assert r.exec(code) == "3000 王喆\r\n".encode()
        assert not r.use_raw_paste  # device said R\x00: plain raw mode from then on
        assert r.exec("print(1 + 1)") == b"2\r\n"
        r.close()


def test_a_host_ignoring_flow_control_is_caught_by_the_device():
    sent = []
    dev = VirtualDevice("/tmp/unused-virtual-device-dir", sent.append)
    dev.feed(b"\x01\x05A\x01")
    dev.feed(b"x" * (RAW_PASTE_WINDOW + 50))  # no waiting for \x01 grants: a real UART would drop bytes
    assert dev.overruns == 50 and b"R\x01" in b"".join(sent)


def test_remote_exceptions_and_silence_are_reported(tmp_path):
    with PtyServer(str(tmp_path / "c")) as srv:
        r = _session(srv)
        try:
            r.exec("x = 1\nopen('/no/such/file')")
        except DeviceError as exc:
            assert "OSError: [Errno 2] ENOENT" in str(exc) and 'line 2' in exc.remote
        else:
            raise AssertionError("no DeviceError")
        assert r.exec("print(x)") == b"1\r\n"  # globals persist between commands, as on MicroPython
        srv.device.mute = True
        try:
            r.exec("print(2)", timeout=0.3)
        except NotAnswering as exc:
            assert "did not answer" in str(exc)
        else:
            raise AssertionError("no NotAnswering")
        r.ser.close()


@settings(max_examples=15, deadline=None)
@given(st.binary(max_size=9000))
def test_any_bytes_survive_the_copy(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("bin")
    with PtyServer(str(root)) as srv:
        r = _session(srv)
        fs = DeviceFs(r)
        fs.write("firmware/blob.bin", data, sha256(data))
        assert fs.read("firmware/blob.bin") == data
        assert fs.sums(["firmware"], []) == {"firmware/blob.bin": sha256(data)}
        r.close()
    with open(os.path.join(str(root), "firmware", "blob.bin"), "rb") as f:
        assert f.read() == data
    assert not os.path.exists(os.path.join(str(root), "firmware", "blob.bin.part"))


def test_list_picks_esp32_bridges_only():
    def port(dev, vid, pid):
        p = ListPortInfo(dev)
        p.vid, p.pid, p.serial_number = vid, pid, "X1"
        return p
    found = ports.evaluator_ports([port("/dev/ttyUSB0", 0x10C4, 0xEA60), port("/dev/ttyUSB1", 0x1A86, 0x7523),
                                   port("/dev/ttyACM0", 0x303A, 0x1001), port("/dev/ttyACM1", 0x2341, 0x0043),
                                   port("/dev/ttyS0", None, None)])
    assert [(d, n) for d, n, _ in found] == [("/dev/ttyACM0", "ESP32-S3/C3 native USB"),
                                             ("/dev/ttyUSB0", "CP210x"), ("/dev/ttyUSB1", "CH340")]


def test_command_line_device_and_tool_as_processes(tmp_path):
    """The documented entry points: `python -m hall_simulator.device --pty` and `python tools/flash.py`."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dev = subprocess.Popen([sys.executable, "-m", "hall_simulator.device", "--pty", "--files", str(tmp_path / "d"),
                            "--no-app"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        path = dev.stdout.readline().strip()
        assert path.startswith("/dev/pts/")
        out = str(tmp_path / "b.zip")
        tool = [sys.executable, os.path.join(repo, "tools", "flash.py")]
        assert subprocess.run(tool + ["build", "--out", out], capture_output=True).returncode == 0
        p = subprocess.run(tool + ["provision", "--port", path, "--bundle", out, "--board", "five_button",
                                   "--transport", "rs485", "--window", "5", "--rs485-baud", "9600", "--no-register"],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        p = subprocess.run(tool + ["verify", "--port", path, "--bundle", out], capture_output=True, text=True)
        assert p.returncode == 0 and "1 ok, 0 failed" in p.stdout
        p = subprocess.run(tool + ["verify", "--port", "/dev/ttyNOSUCH7", "--bundle", out], capture_output=True, text=True)
        assert p.returncode == 2 and "no such serial port" in p.stdout
        p = subprocess.run(tool + ["provision", "--bundle", out], capture_output=True, text=True)
        assert p.returncode == 1 and "required" in p.stderr
    finally:
        dev.terminate()
        dev.wait(10)
