"""Argument parsing and the run over many ports (a box of boards) for tools/flash.py."""

import argparse
import concurrent.futures
import os
import sys
import time

from tools.flashkit import bundle as bundle_mod
from tools.flashkit import errors, hallcfg, ports as ports_mod
from tools.flashkit.errors import BadInput, ToolError
from tools.flashkit.report import Reporter, exit_code, table

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# in a checkout the bundle lives in its build/; installed (`pip install .`), in the working directory's
BUILD = os.path.join(REPO if os.path.exists(os.path.join(REPO, "pyproject.toml")) else os.curdir, "build", "bundle")


def package_version():
    """This package's version as installed (importlib.metadata), for --version."""
    from importlib import metadata
    try:
        return metadata.version("hall-rating")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install .)"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors are "bad input" (1), keeping 2 for port problems
        self.print_usage(sys.stderr)
        sys.stderr.write("%s: error: %s\n" % (self.prog, message))
        sys.exit(errors.BAD_INPUT)


def _port_args(p):
    p.add_argument("--port", action="append", default=[], help="serial port (repeat for several boards)")
    p.add_argument("--all-ports", action="store_true", help="every port that looks like an evaluator")
    p.add_argument("--jobs", type=int, default=8, help="boards worked on at once (default 8)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a device's answer")
    p.add_argument("--baud", type=int, default=115200, help="REPL baud rate (default 115200)")


def _settings_args(p, per_port=True):
    p.add_argument("--board", required=True, choices=bundle_mod.BOARDS)
    p.add_argument("--transport", required=True, choices=("rs485", "mqtt"))
    p.add_argument("--hall", default="", help="hall id (required for MQTT)")
    p.add_argument("--window", action="append", default=[], help="window number; one per port, in port order")
    p.add_argument("--address", action="append", type=int, default=[],
                   help="RS-485 address 1..247; one per port (default: the window number)")
    p.add_argument("--gateway-config", help="the hall gateway's gateway.toml: the RS-485 bus speed (and the "
                   "registry file, when --registry is not given) come from it")
    p.add_argument("--bus", type=int, help="index of the gateway's [[rs485]] bus the device is on "
                   "(needed when it has several)")
    p.add_argument("--rs485-baud", type=int, help="bus speed, when there is no --gateway-config; "
                   "refused if it disagrees with the gateway's")
    p.add_argument("--amp", action="store_true",
                   help="the board has an I2S amplifier (MAX98357A, default pins): voice prompts")
    p.add_argument("--wifi-ssid")
    p.add_argument("--wifi-password", help="or set FLASH_WIFI_PASSWORD (keeps it out of shell history)")
    p.add_argument("--mqtt-host")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--mqtt-user")
    p.add_argument("--mqtt-password", help="or set FLASH_MQTT_PASSWORD")
    p.add_argument("--registry", help="gateway registry file, or the gateway's URL (http://host:port)")
    p.add_argument("--new-registry", action="store_true", help="create the registry file if it does not exist")
    p.add_argument("--gateway-token", help="the gateway API's operator token (or FLASH_GATEWAY_TOKEN)")
    p.add_argument("--no-register", action="store_true", help="skip registering with the gateway")


def parser():
    top = _Parser(prog="hall-flash", description="Flash, provision and verify hall evaluators.",
                  epilog=errors.__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version="%(prog)s " + package_version())
    sub = top.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    p = sub.add_parser("build", help="compile firmware/ and protocol/ into a bundle")
    p.add_argument("--out", default=BUILD, help="bundle directory, or a .zip")
    p.add_argument("--board", default="all", choices=("all",) + bundle_mod.BOARDS)
    p.add_argument("--version", dest="bundle_version", help="version name (default: firmware version + content hash)")

    p = sub.add_parser("flash", help="write a MicroPython image with esptool")
    _port_args(p)
    p.add_argument("--image", required=True, help="MicroPython firmware .bin")
    p.add_argument("--chip", help="chip the image is for (default: what the image's header says; "
                   "refused if it disagrees)")
    p.add_argument("--erase", action="store_true", help="erase the whole flash first (wipes config and keys)")
    p.add_argument("--flash-baud", type=int, default=460800)
    p.add_argument("--connect-attempts", type=int, default=3, help="esptool bootloader connect attempts")

    p = sub.add_parser("provision", help="copy the bundle, configure, register")
    _port_args(p)
    p.add_argument("--bundle", default=BUILD)
    _settings_args(p)
    p.add_argument("--device", help="device id (single port only; default from the chip's unique id)")
    p.add_argument("--new-key", action="store_true", help="replace the device key even if it has one")
    p.add_argument("--no-reset", action="store_true", help="leave the device in the REPL afterwards")

    p = sub.add_parser("verify", help="check device files against the bundle; version and health")
    _port_args(p)
    p.add_argument("--bundle", default=BUILD)
    p.add_argument("--registry", help="also check the gateway registry file holds the device's key")
    p.add_argument("--gateway-config", help="gateway.toml: also check the device's bus speed and release key "
                   "(and its registry file, when --registry is not given)")

    p = sub.add_parser("image", help="offline merged flash image (MicroPython + LittleFS)")
    p.add_argument("--firmware", required=True, help="MicroPython firmware .bin")
    p.add_argument("--bundle", default=BUILD)
    p.add_argument("--chip", help="default: what the firmware image's header says")
    p.add_argument("--out", required=True)
    p.add_argument("--fs-offset", type=lambda s: int(s, 0), default=0x200000)
    p.add_argument("--fs-size", type=lambda s: int(s, 0), default=0x200000)
    p.add_argument("--device", help="device id: adds its config with a fresh key (else provision later)")
    _settings_args(p)
    for action in p._actions:
        if action.dest in ("board", "transport"):
            action.required = False

    sub.add_parser("list", help="serial ports that look like evaluators")
    return top


def main(argv=None, out=None):
    args = parser().parse_args(argv)
    rep = Reporter(out)
    try:
        return VERBS[args.verb](args, rep)
    except ToolError as exc:
        rep.say("error: %s" % exc)
        return exc.code
    except ModuleNotFoundError as exc:
        if exc.name not in TOOLS_MODULES:
            raise
        rep.say("error: %s is not installed: %s" % (exc.name, bundle_mod.TOOLS_EXTRA))
        return errors.BAD_INPUT


TOOLS_MODULES = ("esptool", "littlefs", "mpremote")  # the tools extra, imported by the verbs that need them


# -- verbs -----------------------------------------------------------------------------------

def _ports(args):
    ports = list(args.port)
    if args.all_ports:
        ports += [p for p, _n, _d in ports_mod.evaluator_ports() if p not in ports]
    if not ports:
        raise BadInput("no port given (use --port, or --all-ports; `flash.py list` shows candidates)")
    return ports


def _run_all(ports, job, rep, jobs):
    """Run job(port) on every port, `jobs` at a time; print the table; the OR-ed exit code."""
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(jobs, len(ports)))) as pool:
        for res in pool.map(job, ports):
            results.append(res)
    rep.say(table(results))
    return exit_code(results)


def _settings(args, ports):
    n = len(ports)
    windows = list(args.window)
    if len(windows) not in (0, n):
        raise BadInput("give one --window per port (%d ports, %d windows)" % (n, len(windows)))
    addresses = list(args.address)
    if len(addresses) not in (0, n):
        raise BadInput("give one --address per port (%d ports, %d addresses)" % (n, len(addresses)))
    baud, bus = hallcfg.bus_settings(args.gateway_config, args.bus, args.rs485_baud, args.transport)
    release_key = hallcfg.release_key(args.gateway_config)
    wifi_pw = args.wifi_password or os.environ.get("FLASH_WIFI_PASSWORD")
    mqtt_pw = args.mqtt_password or os.environ.get("FLASH_MQTT_PASSWORD")
    out = []
    for i in range(n):
        window = windows[i] if windows else ""
        address = addresses[i] if addresses else None
        if args.transport == "rs485" and address is None:
            if not window.isdigit() or not 1 <= int(window) <= 247:
                raise BadInput("RS-485 needs --address (or a numeric --window 1..247 to use as the address)")
            address = int(window)
        out.append({"board": args.board, "transport": args.transport, "hall": args.hall, "window": window,
                    "address": address, "baud": baud, "bus": bus, "release_key": release_key, "wifi_ssid": args.wifi_ssid,
                    "wifi_password": wifi_pw, "mqtt_host": args.mqtt_host, "mqtt_port": args.mqtt_port,
                    "mqtt_user": args.mqtt_user, "mqtt_password": mqtt_pw, "amp": args.amp})
    from tools.flashkit import devconfig
    for s in out:  # every port's settings are checked before any board is touched
        devconfig.build("ev-000000000000", "00" * 32, s["board"], s["transport"], window=s["window"],
                        hall=s["hall"], address=s["address"], baud=s["baud"], mqtt_host=s["mqtt_host"])
    if getattr(args, "device", None):
        if n != 1:
            raise BadInput("--device names one device; give exactly one --port")
        out[0]["device"] = args.device
    return out


def _registry(args, rep):
    if args.no_register:
        return None
    return hallcfg.registry_target(args.registry, args.gateway_config, args.new_registry)


def _gateway_token(args, rep):
    """The gateway API's bearer token (flag or FLASH_GATEWAY_TOKEN), masked in all output."""
    token = args.gateway_token or os.environ.get("FLASH_GATEWAY_TOKEN")
    rep.secret(token)
    return token


def cmd_build(args, rep):
    bundle_mod.check_out(args.out)  # before a minute of compiling
    b = bundle_mod.build(REPO, board=args.board, version=args.bundle_version)
    b.save(args.out)
    size = sum(len(d) for d in b.files.values())
    rep.say("bundle %s: %d files, %d KB, boards %s -> %s" % (b.version, len(b.files), size // 1024,
                                                           ",".join(b.boards), args.out))
    rom = b.meta["romfs"]
    rep.say("ROMFS image %s: %d KB, sha256 %s (%d modules); provision writes it to a board whose "
            "MicroPython image has a ROMFS partition, else the .mpy files go onto the filesystem"
            % (bundle_mod.ROMFS_FILE, (rom["size"] + 1023) // 1024, rom["sha256"], len(rom["files"])))
    return 0


def cmd_flash(args, rep):
    from tools.flashkit import esptool_log, fwimage
    from tools.flashkit.esptool_flash import flash
    ports = _ports(args)
    if not os.path.isfile(args.image):
        raise BadInput("firmware image %s does not exist" % args.image)
    info = fwimage.inspect(args.image, args.chip)
    rep.say("%s: MicroPython %s for %s, written at 0x%x" % (args.image, info["version"], info["chip"], info["offset"]))
    with esptool_log.capture(rep):
        return _run_all(ports, lambda p: flash(p, args.image, info, rep, erase=args.erase,
                                               baud=args.flash_baud, connect_attempts=args.connect_attempts),
                        rep, args.jobs)


def cmd_provision(args, rep):
    from tools.flashkit.provision import provision
    ports = _ports(args)
    b = bundle_mod.load(args.bundle)
    settings = _settings(args, ports)
    for s in settings:
        rep.secret(s["wifi_password"])
        rep.secret(s["mqtt_password"])
        rep.secret(s["release_key"])
    registry = _registry(args, rep)
    token = _gateway_token(args, rep)
    by_port = dict(zip(ports, settings))
    return _run_all(ports, lambda p: provision(p, b, by_port[p], rep, registry=registry, token=token,
                                               new_key=args.new_key, reset=not args.no_reset,
                                               baud=args.baud, timeout=args.timeout), rep, args.jobs)


def cmd_verify(args, rep):
    from tools.flashkit.verify import verify
    ports = _ports(args)
    b = bundle_mod.load(args.bundle)
    hall = registry = None
    if args.gateway_config:
        hall = hallcfg.hall_facts(args.gateway_config)
        rep.secret(hall["release_key"])
        registry = args.registry or hallcfg.load_gateway_config(args.gateway_config).registry_path
    registry = args.registry or registry
    if registry and not registry.startswith(("http://", "https://")):
        hallcfg.check_registry_file(registry)
    return _run_all(ports, lambda p: verify(p, b, rep, registry=registry, baud=args.baud,
                                            timeout=args.timeout, hall=hall), rep, args.jobs)


def cmd_image(args, rep):
    from tools.flashkit import devconfig, fwimage, image, registration
    b = bundle_mod.load(args.bundle)
    fwimage.inspect(args.firmware, args.chip)  # a wrong firmware stops before a device is registered
    files = b.device_files()
    what = "no device config (provision it later)"
    if args.device:
        if not args.board or not args.transport:
            raise BadInput("--device needs --board and --transport")
        s = _settings(args, ["image"])[0]
        rep.secret(s["wifi_password"])
        rep.secret(s["mqtt_password"])
        rep.secret(s["release_key"])
        key = devconfig.new_key()
        rep.secret(key)
        cfg = devconfig.build(args.device, key, s["board"], s["transport"], window=s["window"], hall=s["hall"],
                              address=s["address"], baud=s["baud"], wifi_ssid=s["wifi_ssid"],
                              wifi_password=s["wifi_password"], mqtt_host=s["mqtt_host"],
                              mqtt_port=s["mqtt_port"], mqtt_user=s["mqtt_user"], mqtt_password=s["mqtt_password"],
                              counter_floor=devconfig.new_counter_floor(time.time()), amp=s["amp"],
                              release_key=s["release_key"])
        files[devconfig.device_file()] = devconfig.encode(cfg)
        registry = _registry(args, rep)
        what = "config for %s" % args.device
        if registry:
            what += ", %s" % registration.register(registry, registration.spec_for(cfg, b.version, s["bus"]),
                                                       _gateway_token(args, rep))
    info = image.build(args.firmware, files, args.chip, args.out, args.fs_offset, args.fs_size)
    rep.say("image %s: MicroPython %s for %s + LittleFS (%d files, bundle %s) at 0x%x; %s"
            % (args.out, info["version"], info["chip"], len(files), b.version, args.fs_offset, what))
    return 0


def cmd_list(args, rep):
    found = ports_mod.evaluator_ports()
    if not found:
        rep.say("no serial port looks like an evaluator (CP210x, CH340/CH9102, FTDI, ESP32 native USB)")
        return 0
    for dev, name, desc in found:
        rep.say("%-20s %-32s %s" % (dev, name, desc))
    return 0


VERBS = {"build": cmd_build, "flash": cmd_flash, "provision": cmd_provision, "verify": cmd_verify,
         "image": cmd_image, "list": cmd_list}
