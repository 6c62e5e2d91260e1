"""The device config file the tool writes at provisioning, in the firmware's own format.

firmware/config.py owns the format (file name, keys, validation); we build the dict here and run
the firmware's validate() on it on the host, so a bad setting fails before the device is touched.
Secrets in it (key, Wi-Fi and MQTT passwords) never reach the screen: see report.redact().
"""

import binascii
import json
import secrets

from tools.flashkit.errors import BadInput


def _fw_config():
    from firmware import config  # the single source of truth for the file's format
    return config


def device_file():
    """Device path of the config: <firmware.main.DEFAULT_ROOT>/<firmware.config.DEVICE_FILE>."""
    from firmware import main
    return "%s/%s" % (main.DEFAULT_ROOT.strip("/"), _fw_config().DEVICE_FILE)


def device_id(unique_id_hex):
    """Permanent id from the chip's unique id (the MAC on ESP32): 'ev-' + 12 hex digits."""
    return "ev-" + unique_id_hex.lower()[-12:]


def new_counter_floor(now):
    """Counter floor for a device whose config is new (first provisioning, or a wiped flash):
    the unix time. It lies above every counter the same device id can have used before, since a
    device issues far fewer than one rating a second, so no rating id (device:counter) is reused
    and the gateway's replay rule holds (SPEC 7.2)."""
    return int(now)


def new_key():
    return binascii.hexlify(secrets.token_bytes(32)).decode()


def build(device, key, board, transport, window="", hall="", address=None, baud=None,
          wifi_ssid=None, wifi_password=None, mqtt_host=None, mqtt_port=1883, mqtt_user=None,
          mqtt_password=None, counter_floor=0, amp=False, release_key=None):
    cfg = {"device": device, "key": key, "board": {"profile": board}, "transport": transport,
           "window": window or "", "hall": hall or ""}
    if amp:   # an I2S amplifier (MAX98357A) on the board's default pins: voice prompts
        cfg["board"]["audio"] = True
    if counter_floor:
        cfg["counter_floor"] = counter_floor
    if release_key:  # the hall's key for over-the-air releases (firmware/ota.py checks their MAC)
        cfg["release_key"] = release_key
    if transport == "rs485":
        if baud is None:  # never a silent default: the bus's speed comes from the gateway (hallcfg)
            raise BadInput("device config: RS-485 needs the bus's baud rate")
        cfg["address"] = address
        cfg["baud"] = baud
    elif transport == "mqtt":
        mqtt = {"host": mqtt_host, "port": mqtt_port}
        if mqtt_user:
            mqtt["user"] = mqtt_user
        if mqtt_password:
            mqtt["password"] = mqtt_password
        cfg["mqtt"] = mqtt
        if wifi_ssid:
            # top level only (firmware.config): firmware.main.make_board hands it to the board
            cfg["wifi"] = {"ssid": wifi_ssid, "password": wifi_password or ""}
    validate(cfg)
    return cfg


def validate(cfg):
    fw = _fw_config()
    try:
        fw.validate(dict(cfg))
    except fw.ConfigError as exc:
        raise BadInput("device config: %s" % exc) from None
    return cfg


def encode(cfg):
    return (json.dumps(cfg, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def decode(raw):
    """The config dict from the device's file, or None when it is missing or unreadable."""
    if raw is None:
        return None
    try:
        cfg = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return cfg if isinstance(cfg, dict) else None
