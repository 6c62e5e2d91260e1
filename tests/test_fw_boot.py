"""Boot from the device's own config file, the way a real board does it (firmware.main.build), under
real MicroPython 1.29 with fake `machine` and `network` modules: the Wi-Fi credentials written at
the config's top level reach the board of an MQTT device, and an RS-485 device opens its UART at
the config's baud rate."""

import json

BOOT = r'''
import sys, json, os

class Pin:
    IN = 0; OUT = 1; PULL_UP = 2
    def __init__(self, n, mode=None, pull=None, value=None): self.n = n
    def value(self, v=None): return 1
    def init(self, *a, **k): pass
    def __call__(self, v=None): return 1

class Bus:
    made = []
    def __init__(self, *a, **k):
        self.args = a; self.kw = k; Bus.made.append(self)
    def writeto(self, addr, data): pass
    def writevto(self, addr, parts): pass
    def write(self, data): pass
    def init(self, **k): pass
    def write_readinto(self, tx, rx): rx[0] = rx[1] = rx[2] = 0
    def readfrom_mem_into(self, addr, reg, buf): pass
    def any(self): return 0
    def read(self, n=None): return None

class WDT:
    def __init__(self, timeout): pass
    def feed(self): pass

class machine:
    pass
machine.Pin = Pin; machine.I2C = Bus; machine.SPI = Bus; machine.UART = Bus; machine.WDT = WDT
machine.reset = lambda: None
sys.modules["machine"] = machine

class WLAN:
    joins = []
    def __init__(self, which): self.up = False
    def active(self, on=None): return True
    def isconnected(self): return False
    def connect(self, ssid, password): WLAN.joins.append((ssid, password))

class network:
    STA_IF = 0
network.WLAN = WLAN
sys.modules["network"] = network

for d in ("/data",):
    try:
        os.mkdir(d)
    except OSError:
        pass
with open("/data/device.json", "w") as f:
    f.write(%(config)r)

from firmware import main
device, board, error = main.build(font=None)
assert device is not None, error
device.step()
uarts = [b.kw for b in Bus.made if "tx" in b.kw]
print("BOOT " + json.dumps({"profile": board.profile, "net": type(board.net).__name__,
                            "joins": WLAN.joins, "uarts": uarts,
                            "transport": type(device.transport).__name__}))
'''

KEY = "5c" * 32


def _boot(micropython, cfg):
    script = BOOT % {"config": json.dumps(cfg, ensure_ascii=False)}
    result = micropython(script, trees=("protocol", "firmware")).check()
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("BOOT ")][-1]
    return json.loads(line[5:])


def test_mqtt_device_joins_the_wifi_named_at_the_top_level_of_its_config(micropython):
    cfg = {"device": "win07", "key": KEY, "board": {"profile": "five_button"}, "transport": "mqtt",
           "hall": "sz-futian", "mqtt": {"host": "10.0.0.2"},
           "wifi": {"ssid": "政务大厅", "password": "wifi-Secret-王喆"}}
    got = _boot(micropython, cfg)
    assert got["net"] == "WifiNet" and got["transport"] == "MqttTransport"
    assert got["joins"] == [["政务大厅", "wifi-Secret-王喆"]]
    assert got["uarts"] == []                       # Wi-Fi: the RS-485 UART stays closed


def test_wifi_inside_the_board_section_is_not_a_second_source(micropython):
    cfg = {"device": "win07", "key": KEY, "transport": "mqtt", "hall": "sz-futian",
           "mqtt": {"host": "10.0.0.2"}, "wifi": {"ssid": "hall-top", "password": "p1"},
           "board": {"profile": "touch", "wifi": {"ssid": "stale", "password": "p0"}}}
    got = _boot(micropython, cfg)
    assert got["profile"] == "touch" and got["joins"] == [["hall-top", "p1"]]


def test_rs485_device_opens_its_uart_at_the_config_baud_and_ignores_wifi(micropython):
    cfg = {"device": "win08", "key": KEY, "board": {"profile": "five_button"}, "transport": "rs485",
           "address": 8, "baud": 19200, "wifi": {"ssid": "unused", "password": "x"}}
    got = _boot(micropython, cfg)
    assert got["net"] == "NoneType" and got["transport"] == "Rs485Transport"
    assert len(got["uarts"]) == 1 and got["uarts"][0]["baudrate"] == 19200
    assert got["joins"] == []
