"""Device entry: load the config, make the board it names, build the device, run the loop.

On the device, boot.py (or the frozen main) calls main.run(). Without a valid config the device
shows the provisioning screen and waits for tools/flash.py. The watchdog is fed every loop turn;
a blocking Wi-Fi or broker connect must stay shorter than the board's watchdog timeout.
"""

import sys

import asyncio

from firmware.device import Device
from firmware.flashfs import Fs, join

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_LOOP_MS = const(10)
DEFAULT_ROOT = "/data"
DEFAULT_FONT = "/fonts/unifont16.bin"
DEFAULT_PROMPTS = "/prompts"         # voice prompts (tools/build_prompts.py), beside the font
DEFAULT_TOP = "/"                    # the release tools/flash.py wrote; updates go to /rel/<slot>


def board_config(cfg, root):
    """What the board module gets: the config's `board` section plus the device-wide settings the
    board acts on. The Wi-Fi credentials live only at the top level (config.py): an MQTT device
    gets them here (an RS-485 one gets none, so its board opens the UART); the UART runs at the
    top-level `baud` the RS-485 transport times its frames by."""
    out = dict(cfg["board"])
    out["fs_root"] = root
    if cfg.get("transport") == "mqtt":
        out["wifi"] = cfg.get("wifi") or None
    else:
        out.pop("wifi", None)
        out["baud"] = cfg.get("baud", 9600)
    return out


def make_board(device_cfg, root):
    """The board of a validated device config (config.validate)."""
    cfg = board_config(device_cfg, root)
    profile = cfg.get("module", cfg.get("profile"))
    if profile == "sim" or cfg.get("sim"):
        from firmware.boards import sim as mod
    elif profile == "touch":
        from firmware.boards import touch as mod
    else:
        from firmware.boards import five_button as mod
    return mod.make_board(cfg)


def attach_transport(device, board, cfg):
    """The transport the config names, made by its module's make(device, board, cfg)."""
    if cfg["transport"] == "mqtt":
        from firmware import transport_mqtt as mod
    else:
        from firmware import transport_rs485 as mod
    device.transport = mod.make(device, board, cfg)
    return device.transport


def load_config(fs, root):
    """(device config or None, error text). The device file's parsing and validation
    (firmware.config) run once, here: on MicroPython the module is dropped again afterwards, so
    its code does not stay in RAM while the device runs."""
    from firmware import config
    try:
        return config.load_device(fs, root), ""
    except config.ConfigError as e:
        return None, str(e)
    finally:
        if sys.implementation.name == "micropython":
            forget("firmware.config")


def forget(name):
    """Unload a module nothing holds any more (MicroPython keeps every import otherwise)."""
    sys.modules.pop(name, None)
    parts = name.rsplit(".", 1)
    parent = sys.modules.get(parts[0]) if len(parts) == 2 else None
    if parent is not None and parts[1] in dir(parent):
        delattr(parent, parts[1])


def build(root=DEFAULT_ROOT, font=DEFAULT_FONT, fs=None, board=None, prompts=DEFAULT_PROMPTS):
    """(device or None, board or None, error text). `board`: an already made board (the
    simulator's, tools/fw_heap.py's) instead of the one the config names."""
    fs = fs if fs is not None else Fs()
    cfg, error = load_config(fs, root)
    if cfg is None:
        return None, None, error
    if board is None:
        board = make_board(cfg, root)
    device = Device(board, cfg, fs, font, prompts)
    attach_transport(device, board, cfg)
    return device, board, ""


async def loop(device):
    while True:
        device.step()
        await asyncio.sleep_ms(_LOOP_MS) if hasattr(asyncio, "sleep_ms") else await asyncio.sleep(
            _LOOP_MS / 1000)


def run(root=DEFAULT_ROOT, font=DEFAULT_FONT, base=None, top=DEFAULT_TOP):
    """Boot. `base` None: this is the top release's code, which chooses the release to run
    (firmware/boot_select.py) and hands over to it; otherwise the release in top/base runs."""
    if base is None:
        base = select(root, top)
        if base:
            return hand_over(root, font, base, top)
    here = join(top, base).rstrip("/") if base else ""
    device, board, error = build(root, here + font, prompts=here + DEFAULT_PROMPTS)
    if device is None:
        print("provisioning needed:", error)
        return
    asyncio.run(loop(device))


def select(root, top=DEFAULT_TOP):
    """The release directory this boot runs ("" = the top), a trial boot counted."""
    from firmware import boot_select
    fs = Fs()
    try:
        base = boot_select.boot(fs, root)
    finally:
        forget("firmware.boot_select")
    return base if base and fs.exists(join(top, base)) else ""   # a directory gone: the top


def hand_over(root, font, base, top=DEFAULT_TOP):
    """Run the release in top/base: its own firmware and protocol modules from here on. A release
    that fails to start restarts the device, so the next boot counts one more failed trial boot
    and boot_select rolls back after the limit."""
    path = join(top, base)
    for name in list(sys.modules):
        if name.split(".")[0] in ("firmware", "protocol"):
            del sys.modules[name]
    sys.path.insert(0, path)
    try:
        from firmware import main as release
        release.run(root, font, base, top)
    except Exception as e:   # a BaseException (KeyboardInterrupt, the sim's Reboot) goes through
        print("release %s failed to start: %r" % (base, e))
        if sys.implementation.name != "micropython":
            raise
        import machine   # pyright: ignore[reportMissingImports]
        machine.reset()
