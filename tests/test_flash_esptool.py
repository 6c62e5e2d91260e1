"""flash verb error paths through the real esptool, against fake ports (no chip here)."""

import os
import select
import struct
import threading
import tty

import serial

from tests.flash_support import micropython_image, run

WRITES = {0x02, 0x03, 0x05, 0x07, 0x10, 0x11, 0xD0, 0xD1}  # flash/mem begin+data, erase


class FakeRom:
    """An ESP32-S3 ROM bootloader on a pty: SLIP framing, answers SYNC, GET_SECURITY_INFO (chip id 9),
    READ_REG/WRITE_REG; records every command so the test can see nothing was written to flash.
    Commands in `fail` are answered with an error (MEM_BEGIN: the stub cannot be loaded)."""

    def __init__(self, chip_id=9, fail=()):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.chip_id = chip_id
        self.fail = set(fail)
        self.ops = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)
        os.close(self.master)
        os.close(self.slave)

    def _reply(self, op, val, data):
        pkt = struct.pack("<BBHI", 1, op, len(data), val) + data
        body = pkt.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
        os.write(self.master, b"\xc0" + body + b"\xc0")

    def _serve(self):
        buf = b""
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                buf += os.read(self.master, 4096)
            except OSError:
                continue
            while buf.count(b"\xc0") >= 2:
                start = buf.index(b"\xc0")
                end = buf.index(b"\xc0", start + 1)
                frame, buf = buf[start + 1:end], buf[end + 1:]
                if not frame:
                    buf = b"\xc0" + buf
                    continue
                frame = frame.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")
                if len(frame) < 8 or frame[0] != 0:
                    continue
                op = frame[1]
                self.ops.append(op)
                ok = b"\x00\x00\x00\x00"
                if op == 0x08:  # SYNC: the ROM answers eight times
                    for _ in range(8):
                        self._reply(op, 0x20120707, ok)
                elif op == 0x14:  # GET_SECURITY_INFO
                    self._reply(op, 0, struct.pack("<IBBBBBBBBII", 0, 0, 0, 0, 0, 0, 0, 0, 0, self.chip_id, 0) + ok)
                elif op in self.fail:
                    self._reply(op, 0, b"\x01\x05\x00\x00")
                else:
                    self._reply(op, 0, ok)


def _image(tmp_path):
    path = tmp_path / "micropython.bin"
    path.write_bytes(micropython_image("esp32"))
    return str(path)


def test_wrong_chip_is_refused_before_anything_is_written(tmp_path):
    with FakeRom() as rom:
        code, out = run("flash", "--port", rom.path, "--image", _image(tmp_path), "--chip", "esp32", "--erase")
    assert code == 64, out
    assert "wrong chip - found ESP32-S3, the image is for esp32; nothing was written" in out
    assert 0x08 in rom.ops and 0x14 in rom.ops
    assert not WRITES & set(rom.ops)


def test_no_bootloader_answer_busy_port_and_missing_port(tmp_path):
    image = _image(tmp_path)
    master, slave = os.openpty()  # a port where nothing answers
    tty.setraw(slave)
    path = os.ttyname(slave)
    try:
        code, out = run("flash", "--port", path, "--image", image, "--connect-attempts", "1")
        assert code == 64 and "no ESP bootloader answered" in out
        holder = serial.Serial(path, exclusive=True)
        try:
            code, out = run("flash", "--port", path, "--image", image)
        finally:
            holder.close()
        assert code == 2 and "port busy" in out
    finally:
        os.close(master)
        os.close(slave)
    code, out = run("flash", "--port", "/dev/ttyNOSUCH9", "--image", image)
    assert code == 2 and "no such serial port" in out
    code, out = run("flash", "--port", "/dev/ttyNOSUCH9", "--image", str(tmp_path / "missing.bin"))
    assert code == 1 and "does not exist" in out
