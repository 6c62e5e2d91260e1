"""One hall-sim run from its parsed options: the hall (hall_simulator.hall) started, run and
stopped, Ctrl-C / SIGTERM handled, the report written and the summary printed."""

import asyncio
import json
import logging
import os
import signal
import sys

from hall_simulator import chaos, report, spare_gateway
from hall_simulator.hall import DRAIN_MAX_S, INTERRUPTED_DRAIN_S, Hall


def intro(options, hall, touch):
    """What a first-time user needs to know before the progress lines start."""
    five = options.mqtt - touch
    lines = [
        "hall-sim: a virtual service hall on the real code (seed %d; repeat it with --seed %d)"
        % (options.seed, options.seed),
        "  %d evaluators: %d on the RS-485 bus (five-button, %d baud), %d on Wi-Fi/MQTT "
        "(%d five-button, %d touch)" % (options.rs485 + options.mqtt, options.rs485, hall.baud,
                                        options.mqtt, five, touch),
        "  %g simulated seconds of opening hours at x%g speed (about %.0f s), chaos: %s%s%s"
        % (options.duration, options.speed, options.duration / options.speed, options.chaos,
           " (%s only)" % ", ".join(options.chaos_kinds) if getattr(options, "chaos_kinds", None)
           else "", ", custody off" if getattr(options, "custody", "on") == "off" else ""),
        "  files: %s  (gateway.log, central.db, confirmed.jsonl)" % hall.workdir,
    ]
    return "\n".join(lines) + "\n"


def where(hall):
    """Once the hall is up: where each part listens, and the console's logins."""
    lines = ["  broker  %s (private Mosquitto)" % hall.broker.url,
             "  gateway %s/status (the real gateway, a child process)" % hall.gateway.http_url,
             "  central %s (reference rating API)" % hall.central.url,
             "  console %s/ (the hall console in a browser), log in as:" % hall.gateway.http_url]
    lines += ["            %-6s %-10s password %s" % login for login in hall.console_logins]
    lines.append("  Ctrl-C closes the hall early and still prints the summary.")
    return "\n".join(lines) + "\n"


async def run_async(options, out=None, hall_kwargs=None):
    """Run one hall from the parsed hall-sim options; returns (exit status, report)."""
    out = out or sys.stdout
    touch = getattr(options, "touch", 0) or 0
    kwargs = dict(hall_kwargs or {})
    if getattr(options, "baud", None):
        kwargs.setdefault("baud", options.baud)
    if getattr(options, "console_port", None):
        kwargs.setdefault("console_port", options.console_port)
    if getattr(options, "console_host", None):
        kwargs.setdefault("console_host", options.console_host)
    hall = Hall(options.rs485, options.mqtt, options.seed, speed=options.speed,
                chaos=options.chaos, duration_s=options.duration, out=out, touch=touch, **kwargs)
    custody = getattr(options, "custody", "on") != "off"
    if not custody:
        hall.gateway_tables["custody"] = {"enabled": False}
    if hall.chaos_events is None and (getattr(options, "chaos_kinds", None)
                                      or getattr(options, "outage", None)):
        hall.chaos_events = chaos_events(options, hall)
    report_path = getattr(options, "report", None) or os.path.join(hall.workdir, "report.json")
    shots = getattr(options, "screenshots", None)
    if shots is None and getattr(options, "default_files", False):
        shots = os.path.join(hall.workdir, "screenshots")
    rollout = None
    if getattr(options, "rollout", False):
        from hall_simulator import rollout
        hall.script = rollout.script(idle_s=options.duration / options.speed / 2)
    out.write(intro(options, hall, touch))
    out.flush()
    loop = asyncio.get_running_loop()
    hall.interrupted = asyncio.Event()
    handled = []
    if threading_main():
        for sig, name in ((signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")):
            loop.add_signal_handler(sig, hall.interrupt, name)
            handled.append(sig)
    result = None
    try:
        await hall.start()
        out.write(where(hall))
        out.flush()
        drained = await hall.run(shots)
        result = hall.report(drained)
        figures = spare_gateway.figures(hall, custody, await spare_gateway.read_status(hall))
        if figures is not None:
            result["custody"] = figures
        if rollout is not None:
            result.update(rollout.figures(hall, hall.confirmations))
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await hall.stop()
    result["options"] = {"windows": options.rs485 + options.mqtt, "rs485": options.rs485,
                         "mqtt": options.mqtt, "touch": touch, "duration": options.duration,
                         "speed": options.speed, "seed": options.seed, "chaos": options.chaos,
                         "baud": hall.baud, "report": report_path, "screenshots": shots,
                         "chaos_kinds": getattr(options, "chaos_kinds", None),
                         "outage": getattr(options, "outage", None),
                         "custody": "on" if custody else "off"}
    with open(report_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=2, sort_keys=True)
    out.write(report.summary(result) + "\n")
    if result.get("drained") is False:
        out.write("warning: the drain did not finish within %.0f s\n"
                  % (INTERRUPTED_DRAIN_S if result.get("interrupted") else DRAIN_MAX_S))
    out.write("report: %s\n" % report_path)
    if shots:
        out.write("screenshots: %s (%d PNG)\n" % (shots, len(getattr(hall, "screenshots", ()))))
    return (0 if report.ok(result) else 1), result


def chaos_events(options, hall):
    """The fault schedule of --chaos-kinds / --outage (simulated seconds, made real by --speed),
    as Hall.run would plan it otherwise. --outage is the central API's whole outage around a
    gateway_replaced: the gateway dies two thirds into it (the dead store holds what came
    meanwhile), the spare runs the last third with the central API still away."""
    real_duration = options.duration / options.speed
    rs, mq = hall.device_ids()
    params = {}
    if getattr(options, "outage", None):      # the spare starts two thirds into the outage
        real = options.outage / options.speed
        params["gateway_replaced"] = {"before_s": round(real * 2 / 3, 3),
                                      "outage_s": round(real / 3, 3)}
    return chaos.schedule(options.chaos, real_duration, options.seed, rs485=rs, mqtt=mq,
                          warmup_s=min(5.0, real_duration * 0.1),
                          kinds=getattr(options, "chaos_kinds", None), params=params)


def threading_main():
    import threading
    return threading.current_thread() is threading.main_thread()


def run(options):
    """hall-sim's hall command (wired in hall_simulator/cli.py)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    status, _ = asyncio.run(run_async(options))
    return status
