"""`hall-gateway check`: everything `run` needs, one line per problem, never a traceback.

What it looks at, in order: the config file (TOML syntax, every section's keys and values as `run`
validates them, the console's settings); secrets (privacy_key, [ota] release_key: 32 bytes as 64
hex digits; [qr] secret and [uplink] hmac_secret: 16 characters at least; bearer tokens and the
MQTT password: 8 at least); data_dir (created if missing, writable); the device registry file
(readable JSON, every device valid) and live-config.json (valid over this config); the HTTP port
(free, or held by the running gateway named in <data_dir>/hall-gateway.pid); the glyph fonts
(the device font and at least one font of the chain; each font named in [glyphs] fonts); each
RS-485 bus (a device path that exists and this user may open, or a URL pyserial knows whose
socket:// host resolves); the MQTT broker (it answers and takes the gateway's login, within a few
seconds; while the gateway runs only a TCP connection is made, because the broker takes each
login as its client id and a second login would disconnect the running gateway). `offline` (`check --offline`) leaves out what belongs
to the gateway's machine and network (HTTP port, serial devices, broker): a config prepared elsewhere.
"""

import errno
import json
import os
import socket
import tempfile
import urllib.parse

from gateway import config as config_mod
from gateway import http_auth, live_config
from gateway.config import ConfigError

MIN_SECRET = 16       # the QR link secret and the uplink's HMAC secret (gateway.qr_links)
MIN_TOKEN = 8         # bearer tokens, the MQTT password
BROKER_TIMEOUT_S = 3.0


def problems(path, broker_timeout=BROKER_TIMEOUT_S, offline=False):
    """(cfg or None, [problem lines]); no problem: `run` has what it needs."""
    try:
        cfg = config_mod.load(path)
    except OSError as e:
        return None, ["%s: cannot be read (%s)" % (path, e.strerror or e)]
    except ConfigError as e:
        return None, [" ".join(str(e).split())]
    except Exception as e:      # a shape load() does not expect: still one line
        return None, ["%s: not a valid gateway config (%s)" % (path, type(e).__name__)]
    out = []
    checks = (_console, _secrets, _data_dir, _registry, _live, _fonts)
    for check in checks + (() if offline else (_http_port, _buses)):
        try:
            out.extend(check(cfg))
        except Exception as e:  # a check that trips over a value: that value is the problem
            out.append("%s: %s" % (check.__name__.strip("_"), " ".join(str(e).split()) or type(e).__name__))
    if not offline:
        out.extend(_broker(cfg, broker_timeout))
    return cfg, out


def _console(cfg):
    from gateway import console_sessions
    try:
        console_sessions.settings(cfg.raw.get("console"))
    except console_sessions.SettingsError as e:
        return [str(e)]
    return []


def _hex_key(value, where):
    if not isinstance(value, str) or len(value.strip()) != 64:
        return ["%s must be 32 bytes as 64 hex digits" % where]
    try:
        bytes.fromhex(value)
    except ValueError:
        return ["%s must be 32 bytes as 64 hex digits (it is not hex)" % where]
    return []


def _secrets(cfg):
    raw, out = cfg.raw, []
    if cfg.privacy_key:
        from gateway.privacy import load_key
        try:
            load_key(cfg.privacy_key)
        except ValueError as e:
            out.append("[gateway] privacy_key: %s (64 hex digits)" % e)
    ota = raw.get("ota") or {}
    if ota.get("release_key"):
        out += _hex_key(ota["release_key"], "[ota] release_key")
    for table, key, low in (("qr", "secret", MIN_SECRET), ("uplink", "hmac_secret", MIN_SECRET),
                            ("uplink", "token", MIN_TOKEN)):
        value = (raw.get(table) or {}).get(key)
        if value is not None and (not isinstance(value, str) or len(value) < low):
            out.append("[%s] %s must be at least %d characters" % (table, key, low))
    if cfg.http.callback_token:
        try:
            http_auth.check_token(cfg.http.callback_token, "[http] callback_token")
        except http_auth.CredentialsError as e:
            out.append(str(e))
    if cfg.mqtt.username and len(cfg.mqtt.password or "") < MIN_TOKEN:
        out.append("[mqtt] password must be at least %d characters when a username is set" % MIN_TOKEN)
    return out


def _data_dir(cfg):
    try:
        os.makedirs(cfg.data_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=cfg.data_dir):
            pass
    except OSError as e:
        return ["[gateway] data_dir %s is not writable (%s)" % (cfg.data_dir, e.strerror or e)]
    return []


def _registry(cfg):
    from gateway.registry import Registry, RegistryError
    try:
        Registry(cfg.devices)
    except RegistryError as e:
        return ["[[devices]]: %s" % e]
    path = cfg.registry_path
    if not os.path.exists(path):
        return []
    try:
        with open(path, "r", encoding="utf-8") as f:
            saved = json.load(f)
        if not isinstance(saved, dict) or not isinstance(saved.get("devices", []), list):
            return ["registry %s: not {\"devices\": [...]}" % path]
        Registry([], path)
    except OSError as e:
        return ["registry %s cannot be read (%s)" % (path, e.strerror or e)]
    except (ValueError, RegistryError, TypeError, AttributeError, KeyError) as e:
        return ["registry %s is not valid (%s)" % (path, " ".join(str(e).split())[:120])]
    return []


def _live(cfg):
    path = cfg.path(live_config.FILE_NAME)
    if not os.path.exists(path):
        return []
    alarms = []
    live = live_config.LiveConfig(cfg, lambda: [], lambda d, r: None,
                                  alarm=lambda name, detail: alarms.append(detail))
    del live
    return ["%s (the gateway would run without it)" % a for a in alarms]


def _http_port(cfg):
    host, port = cfg.http.host, cfg.http.port
    if port == 0:
        return []
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as e:
        return ["[http] host %r does not resolve (%s)" % (host, e.strerror or e)]
    family, kind, proto, _name, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE and live_config.running_pid(cfg):
                return []           # the running gateway holds it
            if e.errno == errno.EADDRINUSE:
                return ["[http] port %d on %s is in use by another program" % (port, host)]
            return ["[http] cannot listen on %s:%d (%s)" % (host, port, e.strerror or e)]
    return []


def _fonts(cfg):
    from gateway import glyphs
    conf = cfg.raw.get("glyphs") or {}
    out = []
    device_font = conf.get("device_font", glyphs.DEVICE_FONT)
    if not os.path.isfile(device_font):
        out.append("[glyphs] device_font %s is missing (no glyph supplement for rare characters)"
                   % device_font)
    fonts = conf.get("fonts")
    if fonts is not None:
        out += ["[glyphs] font %s is missing" % f for f in fonts if not os.path.isfile(f)]
    elif not any(os.path.isfile(f) for f in glyphs.DEFAULT_FONTS):
        out.append("no font of the glyph chain is installed (apt-get install fonts-unifont "
                   "fonts-babelstone-han): rare characters would show as placeholders")
    return out


def _buses(cfg):
    import serial
    out = []
    for bus in cfg.buses:
        url = bus.url
        where = "[[rs485]] %s" % url
        if "://" not in url:
            if not os.path.exists(url):
                out.append("%s: no such serial device" % where)
            elif not os.access(url, os.R_OK | os.W_OK):
                out.append("%s: this user may not open it (the dialout group?)" % where)
            continue
        try:
            serial.serial_for_url(url, do_not_open=True)
        except (ValueError, serial.SerialException) as e:
            out.append("%s: %s" % (where, e))
            continue
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("socket", "rfc2217"):
            try:
                socket.getaddrinfo(parts.hostname, parts.port or 0)
            except (OSError, ValueError) as e:
                out.append("%s: host %r does not resolve (%s)" % (where, parts.hostname, e))
    return out


def _broker(cfg, timeout):
    m = cfg.mqtt
    where = "[mqtt] broker %s:%d" % (m.host, m.port)
    try:
        sock = socket.create_connection((m.host, m.port), timeout)
        sock.close()
    except OSError as e:
        return ["%s does not answer (%s)" % (where, e.strerror or e)]
    if live_config.running_pid(cfg):
        return []                   # a second login as the gateway would disconnect it
    import threading
    import paho.mqtt.client as paho
    done, answer = threading.Event(), []

    def on_connect(client, userdata, flags, reason, properties=None):
        answer.append(reason)
        done.set()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=m.client_id + "-check")
    if m.username:
        client.username_pw_set(m.username, m.password)
    client.on_connect = on_connect
    try:
        client.connect(m.host, m.port, keepalive=10)
        client.loop_start()
        done.wait(timeout)
    except OSError as e:
        return ["%s does not answer (%s)" % (where, e.strerror or e)]
    finally:
        client.disconnect()
        client.loop_stop()
    if not answer:
        return ["%s did not answer the login within %.0f s" % (where, timeout)]
    if answer[0].is_failure:
        return ["%s refused the gateway's login (%s)" % (where, answer[0])]
    return []
