"""verify: every device file against the bundle's sums, plus the device's version and health.

Fails (exit bit 16) naming each file that is missing, differs (tampered or old) or is
unexpected in firmware/ or protocol/, and when the device config is missing or invalid.
On a device with a ROMFS partition (the layout provision chose, session.layout) the partition's
image must have the bundle's ROMFS sha256, and the code must not also sit on the filesystem.
With a registry, also checks the gateway holds the device's key (without showing it). With the
gateway's config (`hall`: hallcfg.hall_facts), also that an RS-485 device listens at its bus's
speed (a device at another speed is a silent bus) and holds the hall's release key.
"""

import time

from tools.flashkit import bundle as bundle_mod
from tools.flashkit import devconfig, session
from tools.flashkit.errors import BadInput, ToolError, VerifyFailed
from tools.flashkit.report import Result


def verify(port, bundle, reporter, registry=None, baud=115200, timeout=5.0, hall=None):
    res = Result(port)
    t0 = time.monotonic()
    try:
        _verify(res, port, bundle, reporter, registry, baud, timeout, hall)
    except ToolError as exc:
        res.code = exc.code
        res.detail = reporter.clean(str(exc))
        reporter.progress(port, "FAILED", what=res.detail)
    res.seconds = time.monotonic() - t0
    return res


def _verify(res, port, bundle, reporter, registry, baud, timeout, hall):
    reporter.progress(port, "connect")
    with session.device(port, baud, timeout) as (fs, ident):
        res.device = devconfig.device_id(ident["uid"])
        cfg_file = devconfig.device_file()
        rom = fs.rom_info()
        where, why = session.layout(bundle, rom)
        sums = session.device_sums(fs, bundle, cfg_file)
        missing, different, unexpected = session.compare(bundle, sums, where)
        running = _running_version(fs)
        res.version = running or "-"
        cfg = devconfig.decode(fs.read(cfg_file)) if cfg_file in sums else None
        free, total = fs.free()
    problems = ["differs: %s" % p for p in different] + ["missing: %s" % p for p in missing] + \
               ["unexpected: %s" % p for p in unexpected]
    rom_note = "no ROMFS (%s)" % why
    if where == "romfs":
        want = bundle.meta["romfs"]["sha256"]
        if rom["sha256"] is None:
            problems.insert(0, "missing: ROMFS image (the partition holds none)")
        elif rom["sha256"] != want:
            problems.insert(0, "differs: ROMFS image (partition sha256 %s..., bundle %s...)"
                            % (rom["sha256"][:12], want[:12]))
        rom_note = "ROMFS image %s... matches" % want[:12]
    if cfg is None:
        problems.append("not provisioned: no valid %s" % cfg_file)
    else:
        reporter.secret(cfg.get("key"))
        res.device = cfg.get("device", res.device)
        try:
            devconfig.validate(cfg)
        except BadInput as exc:
            problems.append(str(exc))
        if registry and not problems:
            problems.extend(_registry_problems(registry, cfg))
        if hall and not problems:
            problems.extend(_hall_problems(hall, registry, cfg))
    health = "MicroPython %s, flash %d/%d KB free" % (".".join(str(x) for x in ident["version"]),
                                                      free // 1024, total // 1024)
    if running and running != bundle.version:
        problems.append("running version %s, bundle is %s" % (running, bundle.version))
    if problems:
        raise VerifyFailed("; ".join(problems))
    res.detail = "%d files match, %s, version %s; %s" % (len(bundle.device_files(where)), rom_note, running, health)
    reporter.progress(port, "verified", what=res.detail)


def _running_version(fs):
    raw = fs.read(bundle_mod.DEVICE_MANIFEST)
    m = devconfig.decode(raw)
    return m.get("version") if m else None


def _hall_problems(hall, registry, cfg):
    out = []
    if cfg.get("transport") == "rs485" and hall["bauds"]:
        bus = 0
        if registry and not registry.startswith(("http://", "https://")):
            from gateway.registry import Registry
            dev = Registry(path=registry).get(cfg["device"])
            bus = dev.bus if dev is not None else 0
        if bus < len(hall["bauds"]) and cfg.get("baud") != hall["bauds"][bus]:
            out.append("the device listens at %s baud, its bus %d runs at %d (re-run provision with "
                       "--gateway-config)" % (cfg.get("baud"), bus, hall["bauds"][bus]))
    if hall["release_key"] and cfg.get("release_key") != hall["release_key"]:
        out.append("the device %s the hall's release key, so it would refuse the hall's updates (re-run "
                   "provision with --gateway-config)" % ("holds another key than" if cfg.get("release_key")
                                                         else "lacks"))
    return out


def _registry_problems(registry, cfg):
    if registry.startswith(("http://", "https://")):
        return []  # the HTTP API never returns keys; provisioning registered it
    from gateway.registry import Registry
    dev = Registry(path=registry).get(cfg["device"])
    if dev is None:
        return ["device %s is not in the gateway registry" % cfg["device"]]
    if dev.key.hex() != cfg["key"]:
        return ["the gateway holds a different key for %s (re-run provision)" % cfg["device"]]
    return []
