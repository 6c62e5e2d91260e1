"""gateway.toml: read with tomllib, checked once at start, with defaults for everything but the hall.

    [gateway]   hall (required), data_dir, store = "outbox.db", registry = "registry.json",
                capacity, alarm_ratio, rating_days (7), privacy_key (hex, optional),
                log_format ("auto" | "json" | "text", gateway.logjson.choose)
    [mqtt]      host, port, username, password, client_id, keepalive (ratings arrive on a second
                connection, user "<username>-ingest", client id "<client_id>-ingest", same
                password: gateway.mqtt_ingest), broker_files and
                broker_pid_file (the broker's password + ACL files, kept in step with the registry)
    [http]      host, port, queue_token, operator_token, technician_token, viewer_token (one bearer
                credential per role, gateway.http_auth; a role left empty gets a generated one,
                kept 0600 in <data_dir>/http-credentials.toml), token (older name of queue_token),
                callback_url, callback_token
    [device_config]  the CONFIG pushed to every device (rating_timeout_s, thanks_s, press_guard_ms,
                status_interval_s, idle_text, tags = [{code, label, indicator}], version, texts =
                {key = word}, volume 0..10 (voice prompts, 0 = mute), large_text true/false)
    [[rs485]]   url, baud, retries, slow_after, slow_interval_s, kernel_rs485 (a Pi UART such as
                /dev/ttyAMA0 with the kernel switching the transceiver by RTS), rts_high_for_tx
    [[devices]] id, window, board, transport ("mqtt" | "rs485"), bus (index into [[rs485]]),
                address, key (64 hex digits), name, firmware
    [display]   status OLED: enabled (true once the table is present), i2c_port (1), i2c_address
                (0x3C), refresh_s (5), png_path (off a Pi: the frame as PNG, relative to data_dir)
    [leds]      status LEDs: enabled (true once the table is present), pins = {run, uplink, alarm}
                (BCM numbers), blink_s (0.5)
    [windows."<window>"]  one window's screen words, tag labels, volume and large text over the
                hall's [device_config] (texts = {key = word}, tag_labels = {code = label}, volume
                0..10, large_text, tags, timings): gateway.window_words, which builds each CONFIG
    [devices_config."<id>"]  one device's, over its window's (the same keys)
    Live changes to these three go through the operator API (gateway.config_api), kept in
    <data_dir>/live-config.json over this file's; SIGHUP re-reads this file (gateway.live_config).
    [custody]   enabled (true): devices keep each acknowledged rating until the central API holds
                it, and re-offer it to a new store (SETTLE, SPEC 3.11, gateway.custody); false: no
                SETTLE is sent and a re-offered rating is taken as any other. rs485_every_s (60):
                a SETTLE for a moved mark to an RS-485 device, at most this often
    [uplink], [qr] ... are kept in `raw` for the parts that read them.
"""

import os
import tomllib
from dataclasses import dataclass, field

from gateway import history, http_auth
from gateway.leds import DEFAULT_PINS


class ConfigError(ValueError):
    pass


@dataclass
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = ""
    client_id: str = ""
    keepalive: int = 30
    broker_files: str = ""      # directory of the broker's password + ACL files (gateway.mosquitto_acl)
    broker_pid_file: str = ""   # SIGHUP that pid after writing them (else a flag for a systemd path unit)


@dataclass
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""             # older name of queue_token
    queue_token: str = ""
    operator_token: str = ""
    technician_token: str = ""
    viewer_token: str = ""
    callback_url: str = ""
    callback_token: str = ""


@dataclass
class BusConfig:
    url: str
    baud: int = 9600
    retries: int = 2          # resends of one request before the exchange counts as failed
    slow_after: int = 3       # failed exchanges in a row that move a device to the slow lane
    slow_interval_s: float = 5.0
    kernel_rs485: bool = False  # a UART whose driver drives the transceiver's DE pin (TIOCSRS485)
    rts_high_for_tx: bool = True  # DE polarity: RTS high while sending (most transceivers)


@dataclass
class DisplayConfig:
    enabled: bool = False
    i2c_port: int = 1
    i2c_address: int = 0x3C
    refresh_s: float = 5.0
    png_path: str = ""


LED_NAMES = tuple(DEFAULT_PINS)


@dataclass
class CustodyConfig:
    enabled: bool = True
    rs485_every_s: float = 60.0


@dataclass
class LedsConfig:
    enabled: bool = False
    pins: dict = field(default_factory=lambda: dict(DEFAULT_PINS))
    blink_s: float = 0.5


@dataclass
class Config:
    hall: str
    data_dir: str = "."
    store: str = "outbox.db"
    registry: str = "registry.json"
    capacity: int = 200_000
    alarm_ratio: float = 0.8
    rating_days: int = 7
    privacy_key: str = ""
    log_format: str = "auto"
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    buses: list = field(default_factory=list)
    devices: list = field(default_factory=list)
    device_config: dict = field(default_factory=dict)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    leds: LedsConfig = field(default_factory=LedsConfig)
    custody: CustodyConfig = field(default_factory=CustodyConfig)
    raw: dict = field(default_factory=dict)
    source: str = ""            # the gateway.toml it was read from (SIGHUP re-reads it)

    def path(self, name):
        return name if os.path.isabs(name) else os.path.join(self.data_dir, name)

    @property
    def store_path(self):
        return self.path(self.store)

    @property
    def registry_path(self):
        return self.path(self.registry)


def _section(cls, data, where):
    data = dict(data or {})
    known = cls.__dataclass_fields__
    unknown = [k for k in data if k not in known]
    if unknown:
        raise ConfigError("[%s]: unknown keys %s" % (where, ", ".join(sorted(unknown))))
    try:
        return cls(**data)
    except TypeError as e:
        raise ConfigError("[%s]: %s" % (where, e)) from None


def from_dict(data, base_dir="."):
    gw = dict(data.get("gateway") or {})
    if not gw.get("hall"):
        raise ConfigError("[gateway] hall is required")
    gw.setdefault("data_dir", base_dir)
    if not os.path.isabs(gw["data_dir"]):
        gw["data_dir"] = os.path.join(base_dir, gw["data_dir"])
    cfg = _section(Config, gw, "gateway")
    cfg.mqtt = _section(MqttConfig, data.get("mqtt"), "mqtt")
    cfg.http = _section(HttpConfig, data.get("http"), "http")
    _check_http(cfg.http)
    cfg.buses = [_section(BusConfig, b, "rs485") for b in data.get("rs485") or []]
    for bus in cfg.buses:
        if bus.kernel_rs485 and "://" in bus.url:
            raise ConfigError("[[rs485]] %s: kernel_rs485 needs a serial device path, not a URL"
                              % bus.url)
    cfg.devices = [dict(d) for d in data.get("devices") or []]
    cfg.device_config = dict(data.get("device_config") or {})
    if "guard_ms" in cfg.device_config:     # the older name of CONFIG field 6, the misuse guard
        if "press_guard_ms" in cfg.device_config:
            raise ConfigError("[device_config] has guard_ms and press_guard_ms: keep press_guard_ms")
        cfg.device_config["press_guard_ms"] = cfg.device_config.pop("guard_ms")
    cfg.display = _section(DisplayConfig, _enabled_when_present(data, "display"), "display")
    cfg.leds = _section(LedsConfig, _enabled_when_present(data, "leds"), "leds")
    _check_panel(cfg)
    cfg.custody = _section(CustodyConfig, data.get("custody"), "custody")
    every = cfg.custody.rs485_every_s
    if not isinstance(cfg.custody.enabled, bool):
        raise ConfigError("[custody] enabled must be true or false")
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not 0 < every <= 86400:
        raise ConfigError("[custody] rs485_every_s must be a number of seconds from 0 to 86400")
    cfg.raw = data
    try:   # [console] timezone, history_days and [console.grading] (gateway.history)
        history.settings(data.get("console"))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    from gateway import alerts   # [alerts] and its channels; imported here: it imports this module
    alerts.check_config(data.get("alerts"))
    from gateway import window_words   # every window's CONFIG fits one record; it imports this module
    placed = dict((d.get("id"), d.get("window")) for d in cfg.devices if isinstance(d, dict))
    window_words.WindowWords(cfg.device_config, data.get("windows"), data.get("devices_config"), placed)
    if cfg.log_format not in ("auto", "json", "text"):
        raise ConfigError("[gateway] log_format must be auto, json or text")
    if not 0 < cfg.alarm_ratio <= 1 or cfg.capacity < 1:
        raise ConfigError("[gateway] capacity must be positive and alarm_ratio in (0, 1]")
    if not cfg.mqtt.client_id:
        cfg.mqtt.client_id = "gateway-%s" % cfg.hall
    if cfg.mqtt.broker_files and not (cfg.mqtt.username and cfg.mqtt.password):
        raise ConfigError("[mqtt] broker_files needs the gateway's username and password")
    for name, value, top in (("port", cfg.mqtt.port, 65535), ("keepalive", cfg.mqtt.keepalive, 65535)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            raise ConfigError("[mqtt] %s must be a whole number from 0 to %d" % (name, top))
    return cfg


def _check_http(http):
    if http.token and http.queue_token and http.token != http.queue_token:
        raise ConfigError("[http] token is the older name of queue_token: set one of them")
    try:
        tokens = http_auth.configured(http)
        for role, token in tokens.items():
            http_auth.check_token(token, "[http] %s_token" % role)
    except http_auth.CredentialsError as e:
        raise ConfigError(str(e)) from None
    if len(set(tokens.values())) != len(tokens):
        raise ConfigError("[http]: each role needs its own token (%s)" % ", ".join(http_auth.ROLES))
    if isinstance(http.port, bool) or not isinstance(http.port, int) or not 0 <= http.port <= 65535:
        raise ConfigError("[http] port must be a whole number from 0 to 65535")


def _enabled_when_present(data, name):
    section = data.get(name)
    if section is None:
        return {}
    section = dict(section)
    section.setdefault("enabled", True)
    return section


def _check_panel(cfg):
    d, leds = cfg.display, cfg.leds
    if d.refresh_s <= 0 or leds.blink_s <= 0:
        raise ConfigError("[display] refresh_s and [leds] blink_s must be positive")
    if not 0 <= d.i2c_address <= 0x7F or d.i2c_port < 0:
        raise ConfigError("[display] i2c_address must be a 7-bit address, i2c_port a bus number")
    if d.png_path:
        d.png_path = cfg.path(d.png_path)
    pins = dict(DEFAULT_PINS, **leds.pins) if isinstance(leds.pins, dict) else {"?": None}
    bad = [k for k, v in pins.items() if k not in LED_NAMES or isinstance(v, bool)
           or not isinstance(v, int) or not 0 <= v <= 53]
    if bad or len(set(pins.values())) != len(pins):
        raise ConfigError("[leds] pins maps %s to distinct BCM pin numbers" % ", ".join(LED_NAMES))
    leds.pins = pins


def load(path):
    with open(path, "rb") as f:
        try:
            data = tomllib.load(f)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError("%s: not TOML: %s" % (path, e)) from None
    try:
        cfg = from_dict(data, os.path.dirname(os.path.abspath(path)))
    except ConfigError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as e:   # a value of the wrong kind
        raise ConfigError("%s: a value of the wrong kind (%s)" % (path, e)) from None
    cfg.source = os.path.abspath(path)
    return cfg
