"""Device entry: load the config, make the board it names, build the device, run the loop.

On the device, boot.py (or the frozen main) calls main.run(). Without a valid config the device
shows the provisioning screen and waits for tools/flash.py. The watchdog is fed every loop turn;
a blocking Wi-Fi or broker connect must stay shorter than the board's watchdog timeout.
"""

import time

import asyncio

from firmware.config import ConfigError, load_device
from firmware.device import Device
from firmware.flashfs import Fs

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_LOOP_MS = const(10)
DEFAULT_ROOT = "/data"
DEFAULT_FONT = "/fonts/unifont16.bin"


def _us_clock():
    if hasattr(time, "ticks_us"):
        return time.ticks_us, time.sleep_us
    perf_counter = getattr(time, "perf_counter")   # CPython (the hall simulator): no ticks_us
    return (lambda: int(perf_counter() * 1000000)), (lambda us: time.sleep(us / 1000000))


def make_board(board_cfg, root):
    profile = board_cfg.get("module", board_cfg.get("profile"))
    cfg = dict(board_cfg)
    cfg["fs_root"] = root
    if profile == "sim" or board_cfg.get("sim"):
        from firmware.boards import sim as mod
    elif profile == "touch":
        from firmware.boards import touch as mod
    else:
        from firmware.boards import five_button as mod
    return mod.make_board(cfg)


def attach_transport(device, board, cfg):
    """The transport named in the config, wired to the board's UART or network."""
    if cfg["transport"] == "mqtt":
        from firmware.transport_mqtt import MqttTransport
        device.transport = MqttTransport(device, board.net, cfg["hall"], cfg["mqtt"],
                                         device.uptime.now)
    else:
        from firmware.transport_rs485 import Rs485Transport
        ticks_us, sleep_us = _us_clock()
        set_de = getattr(board.uart, "set_de", None) or board.set_de
        device.transport = Rs485Transport(device, board.uart, cfg["address"], cfg["baud"], set_de,
                                          ticks_us, sleep_us)
    return device.transport


def build(root=DEFAULT_ROOT, font=DEFAULT_FONT, fs=None):
    """(device or None, board or None, error text)."""
    fs = fs if fs is not None else Fs()
    try:
        cfg = load_device(fs, root)
    except ConfigError as e:
        return None, None, str(e)
    board = make_board(cfg["board"], root)
    device = Device(board, cfg, fs, font)
    attach_transport(device, board, cfg)
    return device, board, ""


async def loop(device):
    while True:
        device.step()
        await asyncio.sleep_ms(_LOOP_MS) if hasattr(asyncio, "sleep_ms") else await asyncio.sleep(
            _LOOP_MS / 1000)


def run(root=DEFAULT_ROOT, font=DEFAULT_FONT):
    device, board, error = build(root, font)
    if device is None:
        print("provisioning needed:", error)
        return
    asyncio.run(loop(device))
