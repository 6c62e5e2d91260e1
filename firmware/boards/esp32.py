# mpy_check: compile-only
"""What both ESP32 boards share: RS-485 UART with driver enable, watchdog, Wi-Fi, clock, heap.

cfg keys (with defaults): uart_id 1, baud 9600, tx 17, rx 16, de 4 (RS-485 driver enable, high =
transmit), wdt_ms 8000, wifi None or {"ssid": ..., "password": ...} (then .net is a WifiNet and
the UART is not opened), fs_root "/data", audio (an I2S amplifier: true for the board's
AUDIO_PINS, or a dict of pins, boards/i2s.py; absent: no amplifier, board.audio None).
firmware.main.board_config builds this dict from the
device config: `wifi` and `baud` come from its top level, the pins from its `board` section.
"""

import gc
import time

import machine


class WifiNet:
    def __init__(self, ssid, password):
        import network
        self._wlan = network.WLAN(network.STA_IF)
        self._ssid = ssid
        self._password = password

    def connect(self):
        self._wlan.active(True)
        if not self._wlan.isconnected():
            self._wlan.connect(self._ssid, self._password)

    def isconnected(self):
        return self._wlan.isconnected()

    def socket_factory(self, host, port):
        import socket
        addr = socket.getaddrinfo(host, port)[0][-1]
        s = socket.socket()
        s.connect(addr)
        return s


class Esp32Board:
    AUDIO_PINS = {"sck": 18, "ws": 19, "sd": 23}    # MAX98357A BCLK, LRC, DIN

    def __init__(self, cfg):
        self.fs_root = cfg.get("fs_root", "/data")
        audio = cfg.get("audio")
        self.audio = None
        if audio:
            from firmware.boards.i2s import I2sSink
            self.audio = I2sSink(audio if isinstance(audio, dict) else {}, self.AUDIO_PINS)
        wifi = cfg.get("wifi")
        self.net = WifiNet(wifi["ssid"], wifi.get("password", "")) if wifi else None
        self.uart = None
        self._de = None
        if not wifi:
            self.uart = machine.UART(cfg.get("uart_id", 1), baudrate=cfg.get("baud", 9600),
                                     tx=cfg.get("tx", 17), rx=cfg.get("rx", 16), timeout=0)
            self._de = machine.Pin(cfg.get("de", 4), machine.Pin.OUT, value=0)
        self._wdt = machine.WDT(timeout=cfg.get("wdt_ms", 8000))

    def set_de(self, on):
        if self._de is not None:
            self._de.value(1 if on else 0)

    def ticks_ms(self):
        return time.ticks_ms()

    def wdt_feed(self):
        self._wdt.feed()

    def reset(self):
        machine.reset()

    def free_heap(self):
        return gc.mem_free()
