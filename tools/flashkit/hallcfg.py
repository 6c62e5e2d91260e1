"""What provisioning takes from the hall's gateway rather than from the technician's memory.

The RS-485 line speed a device is given must be its bus's: a device at 9,600 baud on a 19,200 bus
is silent, with nothing on either side saying why. So the speed comes from the gateway's own
config (`--gateway-config gateway.toml`: the [[rs485]] table of the device's bus, read by
gateway.config as the gateway reads it), and a `--rs485-baud` that disagrees is refused; with no
gateway config, `--rs485-baud` must be said. There is no default.

The hall's release key ([ota] release_key of gateway.toml) goes into every device's config as
`release_key`: a device installs over the air only what its hall's gateway MACed with it.

The registry must exist: a mistyped path would otherwise become a new, empty registry the
gateway never reads. `--new-registry` allows creating one.
"""

import os

from tools.flashkit.errors import BadInput


def load_gateway_config(path):
    from gateway import config as gw_config
    try:
        return gw_config.load(path)
    except OSError as exc:
        raise BadInput("gateway config %s: %s" % (path, exc.strerror or exc)) from None
    except gw_config.ConfigError as exc:
        raise BadInput("gateway config %s: %s" % (path, exc)) from None


def bus_settings(gateway_config, bus, baud, transport):
    """(baud, bus index) for an RS-485 device; (None, None) for MQTT. BadInput when they cannot be
    known or disagree with the gateway."""
    if transport != "rs485":
        return None, None
    if gateway_config is None:
        if baud is None:
            raise BadInput("RS-485 needs the bus speed: --gateway-config gateway.toml (its [[rs485]] baud) "
                           "or --rs485-baud N")
        return baud, bus
    cfg = load_gateway_config(gateway_config)
    if not cfg.buses:
        raise BadInput("gateway config %s has no [[rs485]] bus" % gateway_config)
    if bus is None:
        if len(cfg.buses) > 1:
            raise BadInput("gateway config %s has %d RS-485 buses: say which with --bus 0..%d"
                           % (gateway_config, len(cfg.buses), len(cfg.buses) - 1))
        bus = 0
    if not 0 <= bus < len(cfg.buses):
        raise BadInput("--bus %d: gateway config %s has buses 0..%d" % (bus, gateway_config, len(cfg.buses) - 1))
    have = cfg.buses[bus].baud
    if baud is not None and baud != have:
        raise BadInput("--rs485-baud %d disagrees with the gateway's bus %d (%s) at %d baud; leave it out"
                       % (baud, bus, cfg.buses[bus].url, have))
    return have, bus


def release_key(gateway_config):
    """The hall's [ota] release_key (64 hex digits) from gateway.toml, or None when it has none."""
    if gateway_config is None:
        return None
    value = (load_gateway_config(gateway_config).raw.get("ota") or {}).get("release_key")
    if not value:
        return None
    try:
        ok = isinstance(value, str) and len(bytes.fromhex(value)) == 32
    except ValueError:
        ok = False
    if not ok:
        raise BadInput("gateway config %s: [ota] release_key must be 32 bytes as 64 hex digits" % gateway_config)
    return value.lower()


def hall_facts(gateway_config):
    """What verify checks a device against: {"bauds": [each bus's baud], "release_key": hex or None}."""
    cfg = load_gateway_config(gateway_config)
    return {"bauds": [b.baud for b in cfg.buses], "release_key": release_key(gateway_config)}


def registry_target(registry, gateway_config, new_registry):
    """The registry to register with: the given file or URL, else the gateway config's registry
    file. A file that does not exist is refused unless `new_registry`."""
    if not registry and gateway_config:
        registry = load_gateway_config(gateway_config).registry_path
    if not registry:
        raise BadInput("say where to register the device: --registry FILE_OR_URL, --gateway-config "
                       "gateway.toml (or --no-register)")
    if registry.startswith(("http://", "https://")):
        return registry
    check_registry_file(registry, new_registry)
    return registry


def check_registry_file(path, new_registry=False):
    if os.path.isdir(path):
        raise BadInput("registry %s is a directory, not the gateway's registry file" % path)
    if os.path.exists(path):
        return
    if not new_registry:
        raise BadInput("registry %s does not exist (mistyped? the gateway's is <data_dir>/registry.json); "
                       "--new-registry creates it" % path)
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise BadInput("registry %s: its folder does not exist" % path)
