"""The sim board's interface (what the flow and the transports rely on) and the framebuf fallback."""

import socket

import pytest

from firmware.boards import sim
from firmware.ui import fb


def test_input_clock_uart_de_watchdog_reset(tmp_path):
    board = sim.make_board({"profile": "five_button", "fs_root": str(tmp_path / "a" / "b")})
    assert board.profile == "five_button" and (tmp_path / "a" / "b").is_dir()
    assert (board.display.width, board.display.height, len(board.display.buf)) == (128, 64, 1024)
    assert board.read_input() == []
    board.press(0), board.touch(5, 6), board.press(4)
    assert board.read_input() == [("key", 0), ("touch", 5, 6), ("key", 4)]
    assert board.read_input() == []
    with pytest.raises(ValueError):
        board.press(5)
    assert board.ticks_ms() == 0
    board.advance(250)
    assert board.ticks_ms() == 250
    assert board.uart.write(b"\x01\x02") == 2 and board.uart.take_tx() == b"\x01\x02"
    assert board.uart.read() is None and board.uart.any() == 0
    board.uart.feed(b"abc")
    assert board.uart.any() == 3 and board.uart.read(2) == b"ab" and board.uart.read() == b"c"
    board.set_de(True), board.set_de(True), board.advance(3), board.set_de(False)
    assert board.de_log == [(250, True), (253, False)]
    board.wdt_feed(), board.wdt_feed()
    assert board.wdt_feeds == 2
    with pytest.raises(sim.Reboot):
        board.reset()
    assert board.free_heap() == 100000 and board.net is None


def test_injected_clock_uart_and_touch_profile(tmp_path):
    ticks = [1000]
    uart = object()
    board = sim.make_board({"profile": "touch", "fs_root": str(tmp_path), "uart": uart,
                            "clock": lambda: ticks[0], "free_heap": 5})
    assert board.uart is uart and board.ticks_ms() == 1000 and board.free_heap() == 5
    ticks[0] = 1500
    assert board.ticks_ms() == 1500
    assert (board.display.width, board.display.height, len(board.display.buf)) == (320, 240, 38400)
    with pytest.raises(ValueError):
        sim.make_board({"profile": "tablet", "fs_root": str(tmp_path)})


def test_tcp_net_reaches_a_real_socket_and_drops(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    board = sim.make_board({"profile": "touch", "fs_root": str(tmp_path), "net": "tcp"})
    with pytest.raises(OSError):
        board.net.socket_factory("127.0.0.1", server.getsockname()[1])   # Wi-Fi not up yet
    board.net.connect()
    assert board.net.isconnected()
    s = board.net.socket_factory("127.0.0.1", server.getsockname()[1])
    peer, _ = server.accept()
    s.sendall(b"hi")
    assert peer.recv(2) == b"hi"
    board.net.drop()
    assert not board.net.isconnected() and peer.recv(2) == b""
    peer.close(), server.close()


@pytest.mark.parametrize("fmt,w,h", [(fb.MONO_VLSB, 13, 11), (fb.MONO_HLSB, 13, 11), (fb.GS4_HMSB, 13, 5)])
def test_fallback_framebuf_pixels_rects_and_blit(fmt, w, h):
    top = 1 if fmt != fb.GS4_HMSB else 9
    size = {fb.MONO_VLSB: w * 2, fb.MONO_HLSB: 2 * h, fb.GS4_HMSB: 7 * h}[fmt]
    f = fb.FrameBuffer(bytearray(size), w, h, fmt)
    f.fill(0)
    f.fill_rect(1, 1, 5, 3, top)
    f.pixel(12, h - 1, top)
    f.pixel(40, 40, top)                              # outside: ignored
    got = {(x, y) for x in range(w) for y in range(h) if f.pixel(x, y)}
    assert got == {(x, y) for x in range(1, 6) for y in range(1, 4)} | {(12, h - 1)}
    f.fill(top)
    assert all(f.pixel(x, y) == top for x in range(w) for y in range(h))
    f.fill(0)
    f.rect(0, 0, 4, 3, top)
    assert sum(1 for x in range(w) for y in range(h) if f.pixel(x, y)) == 10
    glyph = fb.FrameBuffer(bytearray(b"\xa0\x40"), 3, 2, fb.MONO_HLSB)  # 1 0 1 / 0 1 0
    pal = fb.FrameBuffer(bytearray(1), 2, 1, fb.GS4_HMSB if fmt == fb.GS4_HMSB else fb.MONO_HLSB)
    pal.pixel(0, 0, 0), pal.pixel(1, 0, top)
    f.fill(0)
    f.blit(glyph, 5, 1, 0, pal)
    assert {(x, y) for x in range(w) for y in range(h) if f.pixel(x, y)} == {(5, 1), (7, 1), (6, 2)}


def test_save_png_writes_a_valid_image(tmp_path):
    board = sim.make_board({"profile": "five_button", "fs_root": str(tmp_path)})
    board.display.fill_rect(0, 0, 2, 1, 1)
    board.save_png(str(tmp_path / "s.png"))
    from tests.test_screens_committed import png_pixels
    w, h, raw = png_pixels(tmp_path / "s.png")
    assert (w, h) == (384, 192)
    assert raw[1:4] == bytes((0x9E, 0xE6, 0xFF)) and raw[1 + 3 * 6:4 + 3 * 6] == bytes((0x08, 0x0C, 0x14))
