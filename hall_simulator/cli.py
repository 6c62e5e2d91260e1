"""`hall-sim`: run a virtual hall, or a benchmark.

    hall-sim --windows 16 --duration 45 --seed 11 --report r.json
    hall-sim --chaos standard --rs485 8 --mqtt 8 --touch 4 --speed 10
    hall-sim --chaos-kinds gateway_replaced --outage 600 --windows 32 --speed 5 --duration 1500
    hall-sim bench rs485 --json

The hall itself lives in hall_simulator.hall (run(options) -> exit status); benchmarks are the
modules hall_simulator.bench.<name>, each with main(argv) -> exit status.
"""

import argparse
import importlib
import pkgutil
import random
import sys

CHAOS_LEVELS = ("none", "standard", "harsh", "hostile")
DEFAULT_WINDOWS = 12
MAX_RS485 = 247          # protocol.frame.MAX_ADDRESS: one bus address per evaluator
BAUDS = (9600, 19200, 38400, 57600, 115200)
BASE_BAUD = 9600


def auto_baud(speed):
    """The line speed of an accelerated hall: the bus is real time while cases come `speed` times
    faster, so it needs `speed` times the bytes per second to be as loaded as a hall at 9600."""
    for baud in BAUDS:
        if baud >= BASE_BAUD * speed - 1e-9:
            return baud
    return BAUDS[-1]


def _positive_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("%s is negative" % text)
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("%s is not above zero" % text)
    return value


def _version():
    """The installed package's version (importlib.metadata), for --version."""
    from importlib import metadata
    try:
        return metadata.version("hall-rating")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install .)"


def build_parser():
    p = argparse.ArgumentParser(
        prog="hall-sim",
        description="A whole virtual service hall (evaluators, gateway, queueing system, central "
                    "rating API) on the real code.",
        epilog="Benchmarks: hall-sim bench NAME [--json]  (NAME: %s)" % ", ".join(bench_names()))
    p.add_argument("--version", action="version", version="%(prog)s " + _version())
    p.add_argument("--windows", type=_positive_int, help="evaluators in the hall (default %d, "
                   "split between RS-485 and MQTT)" % DEFAULT_WINDOWS)
    p.add_argument("--rs485", type=_positive_int, help="evaluators on the RS-485 bus")
    p.add_argument("--mqtt", type=_positive_int, help="evaluators on Wi-Fi/MQTT")
    p.add_argument("--touch", metavar="N|SHARE", help="how many MQTT evaluators are touch boards: "
                   "a count (4), or a share of them (0.5 or 50%%); default half, rounded down")
    p.add_argument("--baud", type=int, choices=BAUDS, help="RS-485 line speed (default: 9600 at "
                   "--speed 1; in an accelerated run 9600 x speed, rounded up to a standard rate, "
                   "so the bus is as loaded as a real-time hall's at 9600)")
    p.add_argument("--duration", type=_positive_float, default=60.0,
                   help="simulated seconds of opening hours (default 60)")
    p.add_argument("--speed", type=_positive_float, default=1.0,
                   help="time acceleration: simulated seconds per real second (default 1)")
    p.add_argument("--seed", type=int, help="makes a run repeatable (default: random, printed)")
    p.add_argument("--chaos", choices=CHAOS_LEVELS, default="none", help="fault injection level")
    p.add_argument("--chaos-kinds", metavar="KIND[,KIND...]",
                   help="only these fault kinds (e.g. gateway_replaced), at the --chaos level's "
                        "rate; default every kind")
    p.add_argument("--outage", type=_positive_float, metavar="SECONDS",
                   help="simulated seconds the central API is down around a gateway_replaced "
                        "(real seconds: SECONDS / --speed): the gateway dies two thirds into it, "
                        "the spare runs the last third; default the schedule's few seconds")
    p.add_argument("--custody", choices=("on", "off"), default="on",
                   help="the gateway's [custody] (evaluators keep what it acknowledged until the "
                        "central API holds it, and offer it again to a new store); off: a lost "
                        "store loses what it held (default on)")
    p.add_argument("--rollout", action="store_true",
                   help="a staged over-the-air update while citizens rate: idle for half the "
                        "opening hours, then a canary and the rest, a power cut mid-transfer, a "
                        "broken release rolling back; the hall stays open until it is done")
    p.add_argument("--report", metavar="PATH", help="write the JSON report here")
    p.add_argument("--screenshots", metavar="DIR", help="save every screen as PNG here")
    p.add_argument("--console-port", type=_positive_int, metavar="PORT",
                   help="the gateway's console and API on this port (default: any free port)")
    p.add_argument("--console-host", default="127.0.0.1", metavar="ADDR",
                   help="address the console listens on (default 127.0.0.1; 0.0.0.0 to watch "
                        "from another machine)")
    return p


def plan_devices(windows=None, rs485=None, mqtt=None):
    """(rs485, mqtt) evaluator counts from whichever of the three options were given."""
    if rs485 is None and mqtt is None:
        total = DEFAULT_WINDOWS if windows is None else windows
        rs485, mqtt = (total + 1) // 2, total // 2
    elif windows is None:
        rs485, mqtt = rs485 or 0, mqtt or 0
    elif rs485 is None:
        rs485 = windows - mqtt
    elif mqtt is None:
        mqtt = windows - rs485
    if rs485 < 0 or mqtt < 0 or (windows is not None and rs485 + mqtt != windows):
        raise ValueError("--windows must equal --rs485 + --mqtt")
    if rs485 + mqtt == 0:
        raise ValueError("a hall needs at least one evaluator")
    if rs485 > MAX_RS485:
        raise ValueError("at most %d evaluators on RS-485" % MAX_RS485)
    return rs485, mqtt


def plan_touch(text, mqtt):
    """The number of touch boards among `mqtt` MQTT evaluators, from --touch's text."""
    if text is None:
        return mqtt // 2
    text = text.strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1]) / 100.0
        elif "." in text:
            share = float(text)
        else:
            count = int(text)
            if not 0 <= count <= mqtt:
                raise ValueError("--touch %d: there are %d MQTT evaluators" % (count, mqtt))
            return count
    except ValueError as e:
        if "MQTT" in str(e):
            raise
        raise ValueError("--touch wants a count (4) or a share (0.5, 50%%), not %r" % text) from None
    if not 0.0 <= share <= 1.0:
        raise ValueError("--touch share must be within 0..1 (0%%..100%%)")
    return int(round(share * mqtt))


def parse_hall_args(argv):
    parser = build_parser()
    options = parser.parse_args(argv)
    try:
        options.rs485, options.mqtt = plan_devices(options.windows, options.rs485, options.mqtt)
        options.touch = plan_touch(options.touch, options.mqtt)
    except ValueError as e:
        parser.error(str(e))
    if options.chaos_kinds is not None:
        from hall_simulator import chaos
        options.chaos_kinds = [k.strip() for k in options.chaos_kinds.split(",") if k.strip()]
        unknown = sorted(set(options.chaos_kinds) - set(chaos.KINDS))
        if unknown or not options.chaos_kinds:
            parser.error("--chaos-kinds: %s (known: %s)" % (", ".join(unknown) or "none given",
                                                            ", ".join(chaos.KINDS)))
        if options.chaos == "none":
            options.chaos = "standard"
    if options.outage is not None:
        from hall_simulator import chaos
        # the warmup, the spare's start after a down time, the quiet tail (real seconds)
        need = options.outage / options.speed + 5.0 + 4.0 + chaos.KILL_START_S + 15.0
        if options.duration / options.speed < need:
            parser.error("--outage %g needs --duration %.0f at least (at --speed %g)"
                         % (options.outage, need * options.speed, options.speed))
    if options.baud is None:
        options.baud = auto_baud(options.speed)
    options.default_files = True     # report and screenshots in the run's directory unless given
    options.windows = options.rs485 + options.mqtt
    if options.seed is None:
        options.seed = random.SystemRandom().randrange(1, 1 << 31)
    return options


def bench_names():
    from hall_simulator import bench
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))


def run_bench(argv):
    parser = argparse.ArgumentParser(prog="hall-sim bench",
                                     description="Run one benchmark; its own options follow NAME.")
    parser.add_argument("name", help="one of: %s" % ", ".join(bench_names()))
    options, rest = parser.parse_known_args(argv)
    if options.name not in bench_names():
        parser.error("no benchmark %r (available: %s)" % (options.name, ", ".join(bench_names())))
    module = importlib.import_module("hall_simulator.bench." + options.name)
    return module.main(rest) or 0


def run_hall(options):
    try:
        hall = importlib.import_module("hall_simulator.hall_run")
    except ModuleNotFoundError as e:
        if e.name not in ("hall_simulator.hall", "hall_simulator.hall_run"):
            raise
        print("hall-sim: not wired yet (rs485=%d mqtt=%d seed=%d)"
              % (options.rs485, options.mqtt, options.seed))
        return 2
    return hall.run(options) or 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":
        return run_bench(argv[1:])
    return run_hall(parse_hall_args(argv))


if __name__ == "__main__":
    sys.exit(main())
