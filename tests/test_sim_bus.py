"""The virtual RS-485 bus, driven as the real parts use it: pyserial socket:// as the master,
BusUart clients as devices."""

import random
import time

import pytest
import serial

from hall_simulator.bus_runners import BusProcess, BusThread
from hall_simulator.bus_uart import BusUart
from protocol.frame import FrameDecoder, encode_frame


def read_uart(uart, n, timeout=5.0):
    """Collect n bytes from a BusUart (or everything that comes within timeout)."""
    out = bytearray()
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        data = uart.read()
        if data:
            out += data
        else:
            time.sleep(0.002)
    return bytes(out)


def read_serial(ser, n, timeout=5.0):
    out = bytearray()
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        out += ser.read(n - len(out))
    return bytes(out)


def wait_nodes(bus, n):
    end = time.monotonic() + 5
    while bus.node_count() < n and time.monotonic() < end:
        time.sleep(0.005)
    assert bus.node_count() == n


def talk(uart, data):
    uart.set_de(True)
    uart.write(data)
    uart.flush()
    uart.set_de(False)


@pytest.fixture
def hall_bus(request):
    options = getattr(request, "param", {})
    with BusThread(**options) as bus:
        yield bus


def join(bus, devices=2, baud=None):
    master = serial.serial_for_url(bus.url, timeout=0.05)
    uarts = [BusUart(bus.url, baud=baud or bus.bus.baud) for _ in range(devices)]
    wait_nodes(bus, devices + 1)
    return master, uarts


def test_bytes_reach_every_other_node_and_never_echo(hall_bus):
    master, (a, b) = join(hall_bus)
    request = encode_frame(7, 0x01, 1, "王喆 李堃 朱镕".encode("utf-8"))
    master.write(request)
    assert read_uart(a, len(request)) == request
    assert read_uart(b, len(request)) == request
    talk(a, b"\xa5\x5a reply from a")
    assert read_serial(master, 15) == b"\xa5\x5a reply from a"
    assert read_uart(b, 15) == b"\xa5\x5a reply from a"
    time.sleep(0.05)
    assert a.read() is None            # no echo of its own bytes
    assert master.read(100) == b""     # nor of the master's
    s = hall_bus.stats()
    assert s["bytes_on_line"] == len(request) + 15
    assert s["bytes_delivered"] == 2 * (len(request) + 15)
    assert s["collisions"] == 0 and s["collided_bytes"] == 0
    master.close()


def test_writes_with_driver_disabled_stay_off_the_line(hall_bus):
    master, (a, b) = join(hall_bus)
    a.write(b"no driver")
    time.sleep(0.1)
    assert master.read(100) == b"" and b.read() is None
    assert a.stats["tx_without_de"] == 9
    assert hall_bus.stats()["bytes_written"] == 0
    master.close()


def test_a_big_write_is_paced_by_the_baud_rate(hall_bus):
    # default 9,600 baud: 1,000 bytes need 1,000 x 10 bits = 1.0417 s of line time
    master, (a, b) = join(hall_bus)
    data = bytes(range(256)) * 3 + bytes(232)
    t0 = time.monotonic()
    master.write(data)
    got = read_uart(a, len(data), timeout=5)
    elapsed = time.monotonic() - t0
    assert got == data
    byte_s = 10 / 9600
    master_node = hall_bus.node_stats()[0]
    line = master_node["last_tx_end"] - master_node["first_tx_start"]
    assert line == pytest.approx(1000 * byte_s, abs=1e-6)
    assert hall_bus.stats()["line_time_s"] == pytest.approx(1000 * byte_s)
    assert elapsed > 0.95 * 1000 * byte_s
    master.close()


@pytest.mark.parametrize("hall_bus", [{"baud": 115200}], indirect=True)
def test_many_small_writes_cannot_beat_the_wire(hall_bus):
    master, (a,) = join(hall_bus, devices=1)
    data = bytes(random.Random(1).randrange(256) for _ in range(6000))
    t0 = time.monotonic()
    for i in range(0, len(data), 7):       # small TCP chunks, written as fast as possible
        master.write(data[i:i + 7])
    got = read_uart(a, len(data), timeout=5)
    elapsed = time.monotonic() - t0
    assert got == data
    wire = 6000 * 10 / 115200               # 0.52 s
    node = hall_bus.node_stats()[0]
    assert node["last_tx_end"] - node["first_tx_start"] >= wire - 1e-6
    assert elapsed > 0.95 * wire
    master.close()


def test_overlapping_talkers_garble_each_other_for_every_receiver(hall_bus):
    master, (a, b) = join(hall_bus)
    long_frame = encode_frame(3, 0x01, 9, bytes(190))   # 200 bytes: 208 ms at 9,600 baud
    short_frame = encode_frame(3, 0x81, 9, bytes(40))   # 50 bytes: 52 ms
    master.write(long_frame)
    time.sleep(0.03)                                    # device answers far too early
    talk(a, short_frame)
    heard = read_uart(b, 250, timeout=3)
    assert len(heard) == 250
    s = hall_bus.stats()
    assert s["collisions"] == 1
    # all 50 bytes of the device, and the 50 or 51 bytes of the master under them
    assert 100 <= s["collided_bytes"] <= 102
    dec = FrameDecoder()
    dec.receive_data(heard)
    assert dec.next_frame() is None            # neither frame survives
    master_heard = read_serial(master, 50, timeout=1)
    assert len(master_heard) == 50 and master_heard != short_frame
    # once the line is quiet again, frames get through untouched
    time.sleep(0.05)
    master.write(short_frame)
    dec.receive_data(read_uart(b, 50))
    frame = dec.next_frame()
    assert frame is not None and frame.payload == bytes(40)
    assert hall_bus.stats()["collisions"] == 1
    master.close()


def _noisy_run(seed, ber=0.0, drop_rate=0.0, size=20000):
    data = bytes(random.Random(99).randrange(256) for _ in range(size))
    with BusThread(baud=1000000, rng=random.Random(seed), ber=ber, drop_rate=drop_rate) as bus:
        master, (a,) = join(bus, devices=1)
        master.write(data)
        end = time.monotonic() + 5
        got = bytearray()
        while time.monotonic() < end:
            s = bus.stats()
            if s["bytes_delivered"] + s["dropped_bytes"] == size and len(got) == s["bytes_delivered"]:
                break
            chunk = a.read()
            if chunk:
                got += chunk
            else:
                time.sleep(0.002)
        master.close()
        return data, bytes(got), bus.stats()


def test_bit_errors_follow_the_configured_rate_and_are_counted():
    data, got, s = _noisy_run(seed=5, ber=0.01)
    assert len(got) == len(data)
    flipped = sum(bin(x ^ y).count("1") for x, y in zip(data, got))
    assert flipped == s["bit_flips"]
    expected = 0.01 * 8 * len(data)                 # 1,600, standard deviation ~40
    assert abs(flipped - expected) < 5 * expected ** 0.5
    # the same seed corrupts the same bits, whatever the timing
    assert _noisy_run(seed=5, ber=0.01)[1] == got
    assert _noisy_run(seed=6, ber=0.01)[1] != got


def test_dropped_bytes_follow_the_configured_rate_and_are_counted():
    data, got, s = _noisy_run(seed=8, drop_rate=0.02)
    assert len(got) == len(data) - s["dropped_bytes"]
    expected = 0.02 * len(data)                     # 400, standard deviation ~20
    assert abs(s["dropped_bytes"] - expected) < 5 * expected ** 0.5
    it = iter(data)                                 # what arrives is the original minus the drops
    assert all(byte in it for byte in got)
    assert s["bit_flips"] == 0


def test_cut_node_and_cut_bus_hear_and_say_nothing(hall_bus):
    master, (a, b) = join(hall_bus)
    hall_bus.cut(0.3, node=a.local_port)
    master.write(b"while a is cut")
    assert read_uart(b, 14) == b"while a is cut"
    talk(a, b"from a")
    time.sleep(0.05)
    assert a.read() is None
    assert master.read(100) == b""
    assert hall_bus.stats()["cut_bytes"] == 14 + 6
    time.sleep(0.3)
    master.write(b"back")
    assert read_uart(a, 4) == b"back"
    assert read_uart(b, 4) == b"back"

    hall_bus.cut(0.3)                                  # the whole bus
    master.write(b"void")
    time.sleep(0.1)
    assert a.read() is None and b.read() is None
    time.sleep(0.25)
    master.write(b"ok")
    assert read_uart(a, 2) == b"ok"
    s = hall_bus.stats()
    assert s["cuts"] == 2 and s["cut_bytes"] == 14 + 6 + 4
    master.close()


def test_random_cuts_are_injected_and_counted():
    with BusThread(rng=random.Random(1), cuts_per_minute=600, cut_seconds=(0.01, 0.02)) as bus:
        master, (a,) = join(bus, devices=1)
        time.sleep(0.6)
        assert bus.stats()["cuts"] >= 1
        master.close()


def test_uart_survives_the_bus_going_away_and_reconnects():
    bus = BusThread().start()
    port = bus.port
    uart = BusUart(bus.url)
    wait_nodes(bus, 1)
    bus.stop()
    time.sleep(0.05)
    assert uart.read() is None
    uart.set_de(True)
    assert uart.write(b"lost") == 4
    assert uart.stats["lost_offline"] == 4
    again = BusThread(port=port).start()
    try:
        time.sleep(0.6)                              # past the reconnect back-off
        uart.any()
        wait_nodes(again, 1)
        assert uart.stats["connects"] == 2
    finally:
        uart.close()
        again.stop()


def test_the_bus_in_a_child_process_works_the_same():
    with BusProcess(baud=9600, rng=random.Random(2)) as bus:
        master, (a, b) = join(bus, baud=9600)
        data = encode_frame(9, 0x01, 3, "朱镕".encode("utf-8") * 40)     # 250 bytes: 0.26 s of line
        t0 = time.monotonic()
        master.write(data)
        assert read_uart(a, len(data)) == data
        assert time.monotonic() - t0 > 0.95 * len(data) * 10 / 9600
        assert read_uart(b, len(data)) == data and master.read(10) == b""
        bus.cut(0.2, node=b.local_port)
        talk(a, b"hello")
        assert read_serial(master, 5) == b"hello"
        time.sleep(0.05)
        assert b.read() is None
        with pytest.raises(RuntimeError, match="KeyError"):
            bus.cut(1, node=99)                   # nobody has id or port 99
        s = bus.stats()
        assert s["bytes_on_line"] == len(data) + 5 and s["cut_bytes"] == 5 and s["cuts"] >= 1
        master.close()
    assert bus.final_stats["bytes_on_line"] == len(data) + 5


def test_the_bus_runs_as_a_program_and_reports_its_counters():
    import json
    import signal
    import subprocess
    import sys
    from pathlib import Path
    proc = subprocess.Popen([sys.executable, "-m", "hall_simulator.bus", "--baud", "19200"],
                            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split()[-1]
        assert url.startswith("socket://127.0.0.1:")
        master = serial.serial_for_url(url, timeout=0.05)
        uart = BusUart(url, baud=19200)
        time.sleep(0.1)
        master.write(b"ping")
        assert read_uart(uart, 4) == b"ping"
        master.close()
        uart.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["bytes_on_line"] == 4 and stats["bytes_delivered"] == 4
