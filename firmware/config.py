"""The device's own configuration file (written by tools/flash.py at provisioning), and the
gateway's CONFIG record (tags, texts, timeouts) kept beside it.

Device file `device.json`:
  device      token id, e.g. "win07"                         (required)
  key         64 hex digits: the device's 32-byte rating key  (required)
  board       {"profile": "five_button" | "touch", ...board-specific pins}
  transport   "rs485" | "mqtt"
  address     RS-485 address 1..247, baud (default 9600)
  hall        MQTT hall id; mqtt {"host", "port", "keepalive", optional "user", "password":
              by default the device id and protocol.auth.mqtt_password(key)}
  wifi        {"ssid", "password"}: here only, never inside `board`; main.make_board hands it
              to the board of an MQTT device
  window      window number shown on idle, outbox_capacity (default 500)
  custody     keep acknowledged ratings until the gateway says the central API holds them, and
              offer them again to a new gateway store (SPEC 3.11; default true)
  counter_floor  rating counters start above it (default 0); provisioning a wiped device sets it
              to the unix time, so a rating id (device:counter) is never used twice (SPEC 7.2)
"""

import json
from binascii import unhexlify

from firmware.flashfs import join
# the CONFIG record's side, resident on the device (this module is needed at boot only and
# firmware.main drops it again); re-exported for the tools and tests that know it from here
from firmware.rating_config import (RATING_CONFIG_FILE, RATING_DEFAULTS,  # noqa: F401
                                    load_rating_config, rating_config, save_rating_config)

DEVICE_FILE = "device.json"
COUNTER_FLOOR_MAX = 0xF0000000   # leaves 2^28 counters of headroom below the u32 limit


class ConfigError(Exception):
    pass


def _token(v):
    if not isinstance(v, str) or not v or len(v) > 24:
        return False
    for c in v:
        if not (c.isalpha() or c.isdigit() or c in "._-") or ord(c) > 127:
            return False
    return True


def validate(cfg):
    """The device config with defaults filled in; ConfigError naming the first problem."""
    if not isinstance(cfg, dict):
        raise ConfigError("not an object")
    out = {"board": {"profile": "five_button"}, "transport": "rs485", "address": 1, "baud": 9600,
           "hall": "", "mqtt": {}, "wifi": {}, "window": "", "outbox_capacity": 500, "counter_floor": 0,
           "custody": True}
    out.update(cfg)
    if not _token(out.get("device")):
        raise ConfigError("device: a token of 1..24 characters [A-Za-z0-9._-]")
    key = out.get("key")
    try:
        raw = unhexlify(key) if isinstance(key, str) else b""
    except Exception:
        raw = b""
    if len(raw) != 32:
        raise ConfigError("key: 64 hex digits")
    out["key_bytes"] = raw
    board = out["board"]
    if not isinstance(board, dict) or board.get("profile") not in ("five_button", "touch"):
        raise ConfigError("board.profile: five_button or touch")
    if out["transport"] not in ("rs485", "mqtt"):
        raise ConfigError("transport: rs485 or mqtt")
    if out["transport"] == "rs485":
        a = out["address"]
        if not isinstance(a, int) or not 1 <= a <= 247:
            raise ConfigError("address: 1..247")
        if out["baud"] not in (9600, 19200, 38400, 57600, 115200):
            raise ConfigError("baud: 9600..115200")
    else:
        if not _token(out["hall"]) or not out["mqtt"].get("host"):
            raise ConfigError("mqtt needs hall and mqtt.host")
        wifi = out["wifi"]
        if wifi and not (isinstance(wifi, dict) and isinstance(wifi.get("ssid"), str) and wifi["ssid"]
                         and isinstance(wifi.get("password", ""), str)):
            raise ConfigError("wifi: {\"ssid\": text, \"password\": text}")
    cap = out["outbox_capacity"]
    if not isinstance(cap, int) or not 1 <= cap <= 5000:
        raise ConfigError("outbox_capacity: 1..5000")
    if not isinstance(out["custody"], bool):
        raise ConfigError("custody: true or false")
    floor = out["counter_floor"]
    if not isinstance(floor, int) or not 0 <= floor <= COUNTER_FLOOR_MAX:
        raise ConfigError("counter_floor: 0..%d" % COUNTER_FLOOR_MAX)
    return out


def load_device(fs, root):
    raw = fs.read(join(root, DEVICE_FILE))
    if raw is None:
        raise ConfigError("no %s" % DEVICE_FILE)
    try:
        cfg = json.loads(raw)
    except ValueError:
        raise ConfigError("%s is not JSON" % DEVICE_FILE)
    return validate(cfg)


def save_device(fs, root, cfg):
    clean = {}
    for k in cfg:
        if k != "key_bytes":
            clean[k] = cfg[k]
    validate(clean)
    fs.write_atomic(join(root, DEVICE_FILE), json.dumps(clean).encode())
