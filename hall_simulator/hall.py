"""The whole virtual hall on the real code, and its verdict.

    hall-sim --windows 16 --duration 45 --seed 11 --report r.json

Parts (each the production code, wired here only):
- a private Mosquitto (hall_simulator.broker), the virtual RS-485 bus (hall_simulator.bus, in its
  own thread so line timing does not wait for anything else);
- the reference central rating API (hall_simulator.central_api) with its SQLite database;
- the REAL gateway as a child process (`python -m gateway.cli run --config gateway.toml`), so chaos
  can SIGKILL it and start it again;
- N evaluators (hall_simulator.evaluator): the firmware on the sim board, each in a thread with its
  own flash directory, split between the bus and MQTT, a simulated citizen at each;
- the queueing system (hall_simulator.queue_sim) talking to the gateway's queueing API and
  receiving its callbacks;
- chaos (hall_simulator.chaos), a live progress line, and at the end a drain (no new citizens;
  wait, bounded, until every confirmed rating is at the central API and the outboxes are empty),
  the report (hall_simulator.report), and screenshots (hall_simulator.screens).
Time: --duration is simulated seconds of opening hours; the hall runs --speed times faster than
the wall clock (firmware timers, service and think times, the central API's 7-day window).
"""

import asyncio
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from hall_simulator import chaos as chaos_mod
from hall_simulator import citizens, queue_sim, report
from hall_simulator.broker import Broker
from hall_simulator.bus import BusThread
from hall_simulator.central_api import CentralServer
from hall_simulator.central_store import CentralStore
from hall_simulator.clock import SimClock
from hall_simulator.evaluator import Evaluator, Spec

log = logging.getLogger("hall_simulator.hall")

HALL_ID = "hall-sim"
BAUD = 9600
RATING_TIMEOUT_S = 30
THANKS_S = 3
DRAIN_MAX_S = 90.0            # real seconds the end-of-run drain may take at most
GATEWAY_START_S = 20.0
TAGS = (
    (501, "态度不积极", 4), (502, "来回跑", 4), (503, "窗口无人", 4),
    (601, "超时办结", 2), (602, "材料超出清单", 2),
    (701, "等待时间长", 1), (702, "服务态度差", 1), (703, "办事效率低", 1), (709, "其他原因", 7),
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def device_key(seed, device):
    """A repeatable 32-byte key per device (hex), as tools/flash.py would provision."""
    return hashlib.sha256(("hall-sim/%s/%s" % (seed, device)).encode()).hexdigest()


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join("%s = %s" % (k, _toml(v)) for k, v in value.items()) + "}"
    raise TypeError(value)


def gateway_toml(sections):
    """TOML text from {"table": {...}, "[[array]]": [{...}, ...]} (only what gateway.toml needs)."""
    out = []
    for name, body in sections.items():
        if isinstance(body, list):
            for entry in body:
                out.append("[[%s]]" % name)
                out.extend("%s = %s" % (k, _toml(v)) for k, v in entry.items() if v is not None)
                out.append("")
        else:
            out.append("[%s]" % name)
            out.extend("%s = %s" % (k, _toml(v)) for k, v in body.items() if v is not None)
            out.append("")
    return "\n".join(out)


_LAUNCH = ("import asyncio, logging, sys; from gateway import app, config; "
           "logging.basicConfig(level=logging.INFO); "
           "asyncio.run(app.Gateway(config.load(sys.argv[1])).run_forever())")


def gateway_command(config_path):
    """`hall-gateway run --config PATH`, by module (the same code the console script runs)."""
    import importlib.util
    if importlib.util.find_spec("gateway.cli") is not None:
        return [sys.executable, "-m", "gateway.cli", "run", "--config", config_path]
    return [sys.executable, "-c", _LAUNCH, config_path]


class GatewayProcess:
    """The real gateway in a child process: start, SIGKILL, start again; output to a log file."""

    def __init__(self, config_path, http_url, workdir, env=None):
        self.config_path = config_path
        self.http_url = http_url
        self.log_path = os.path.join(workdir, "gateway.log")
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.starts = 0
        self.kills = 0

    def start(self):
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(gateway_command(self.config_path),
            stdout=logf, stderr=subprocess.STDOUT, env=self.env,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        logf.close()
        self.starts += 1

    async def wait_ready(self, timeout=GATEWAY_START_S):
        host, port = self.http_url.split("//")[1].split(":")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("the gateway exited (%s); see %s:\n%s" % (
                    self.proc.returncode, self.log_path, self.tail()))
            try:
                _, writer = await asyncio.open_connection(host, int(port.rstrip("/")))
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError("the gateway did not listen within %.0f s; see %s" % (timeout, self.log_path))

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n=30):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class Hall:
    def __init__(self, rs485, mqtt, seed, speed=1.0, workdir=None, mix=None, case_weights=None,
                 completed_ago_s=0, rating_timeout_s=RATING_TIMEOUT_S, baud=BAUD, chaos="none",
                 duration_s=60.0, out=None):
        self.n_rs485 = rs485
        self.n_mqtt = mqtt
        self.seed = seed
        self.clock = SimClock(speed=speed)
        self.own_workdir = workdir is None
        self.workdir = tempfile.mkdtemp(prefix="hall-sim-") if workdir is None else str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.mix = mix or citizens.Mix()
        self.case_weights = case_weights
        self.completed_ago_s = completed_ago_s
        self.rating_timeout_s = rating_timeout_s
        self.baud = baud
        self.chaos_level = chaos
        self.duration_s = duration_s
        self.out = out if out is not None else sys.stdout
        self.confirm_log = report.ConfirmationLog(os.path.join(self.workdir, "confirmed.jsonl"))
        self.confirmations = []
        self.evaluators = {}
        self.windows = {}                     # device id -> window number
        self.broker = self.bus = self.central = self.store = self.gateway = None
        self.queue = self.callbacks = self.api = None
        self.chaos = None
        self.faults = {}

    # --- wiring -------------------------------------------------------------------------------
    def _confirm(self, entry):
        self.confirmations.append(entry)      # list.append is atomic: called from device threads
        self.confirm_log.write(entry)

    def device_ids(self):
        rs = ["w%02d" % (i + 1) for i in range(self.n_rs485)]
        mq = ["w%02d" % (self.n_rs485 + i + 1) for i in range(self.n_mqtt)]
        return rs, mq

    def _gateway_config(self, http_port, central_url, callback_url):
        rs, mq = self.device_ids()
        devices = []
        for i, dev in enumerate(rs):
            devices.append({"id": dev, "window": dev[1:], "board": "five_button", "transport": "rs485",
                            "bus": 0, "address": i + 1, "key": device_key(self.seed, dev)})
        for dev in mq:
            devices.append({"id": dev, "window": dev[1:], "board": "five_button", "transport": "mqtt",
                            "key": device_key(self.seed, dev)})
        sections = {
            "gateway": {"hall": HALL_ID, "data_dir": os.path.join(self.workdir, "gateway"),
                        "rating_days": 7},
            "mqtt": {"host": self.broker.host, "port": self.broker.port, "keepalive": 10},
            "http": {"host": "127.0.0.1", "port": http_port, "callback_url": callback_url},
            "uplink": {"url": central_url, "profile": "gbt39046", "gateway_id": "gw-" + HALL_ID},
            "device_config": {"version": 1, "rating_timeout_s": self.rating_timeout_s,
                              "thanks_s": THANKS_S, "guard_ms": 600, "status_interval_s": 60,
                              "idle_text": "欢迎光临",
                              "tags": [{"code": c, "label": l, "indicator": i} for c, l, i in TAGS]},
        }
        if rs:
            sections["rs485"] = [{"url": self.bus.url, "baud": self.baud}]
        sections["devices"] = devices
        os.makedirs(sections["gateway"]["data_dir"], exist_ok=True)
        path = os.path.join(self.workdir, "gateway.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(gateway_toml(sections))
        return path

    async def start(self):
        self.broker = Broker(workdir=os.path.join(self.workdir, "broker"))
        await asyncio.to_thread(self.broker.start)
        if self.n_rs485:
            self.bus = BusThread(baud=self.baud, rng=random.Random("bus/%s" % self.seed)).start()
        self.store = CentralStore(os.path.join(self.workdir, "central.db"), clock=self.clock.time)
        self.central = CentralServer(self.store, port=free_port(), close_interval=1.0)
        await self.central.start()
        windows = [d[1:] for ds in self.device_ids() for d in ds]
        self.queue = queue_sim.QueueSystem(
            None, windows, self.clock, seed=self.seed, weights=self.case_weights,
            settle_wait_s=self.rating_timeout_s + 3 * THANKS_S + 10,
            retry_s=0.5, completed_ago_s=self.completed_ago_s)
        self.callbacks = await queue_sim.CallbackServer(self.queue).start()
        http_port = free_port()
        http_url = "http://127.0.0.1:%d" % http_port
        self.api = queue_sim.QueueApiClient(http_url)
        self.queue.api = self.api
        config = self._gateway_config(http_port, self.central.url, self.callbacks.url)
        self.gateway = GatewayProcess(config, http_url, self.workdir,
                                      env={"HALL_SIM_CLOCK": self.clock.spec()})
        self.gateway.start()
        await self.gateway.wait_ready()
        rs, mq = self.device_ids()
        for i, dev in enumerate(rs + mq):
            mqtt_cfg = {"host": self.broker.host, "port": self.broker.port, "keepalive": 30}
            spec = Spec(dev, device_key(self.seed, dev), dev[1:], "rs485" if dev in rs else "mqtt",
                        os.path.join(self.workdir, "flash", dev), address=i + 1, baud=self.baud,
                        hall=HALL_ID, mqtt=mqtt_cfg)
            ev = Evaluator(spec, self.clock, self._confirm, mix=self.mix, seed=self.seed,
                           bus_url=self.bus.url if self.bus else None)
            self.evaluators[dev] = ev
            ev.start()

    async def stop(self):
        for ev in self.evaluators.values():
            await asyncio.to_thread(ev.stop)
        if self.gateway is not None:
            await asyncio.to_thread(self.gateway.stop)
        if self.api is not None:
            await self.api.close()
        if self.callbacks is not None:
            await self.callbacks.stop()
        if self.central is not None:
            await self.central.stop()
        if self.bus is not None:
            self.bus.stop()
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
        self.confirm_log.close()

    # --- chaos hooks --------------------------------------------------------------------------
    def chaos_hooks(self):
        async def gateway_kill(down_s):
            self.gateway.kill()
            await asyncio.sleep(down_s)
            self.gateway.start()
            await self.gateway.wait_ready()

        async def broker_restart(down_s):
            await asyncio.to_thread(self.broker.restart, down_s)

        async def uplink_outage(seconds):
            await self.central.outage(seconds)

        async def uplink_5xx(count, status=500):
            self.central.faults.set(fail_next=count, status=status)

        async def uplink_429(count, retry_after=1):
            self.central.faults.set(throttle_next=count, retry_after=retry_after)

        async def uplink_slow(count, delay_s):
            self.central.faults.set(delay_s=delay_s, delay_next=count)

        async def bus_noise(seconds, ber, drop_rate):
            self.bus.set_noise(ber, drop_rate)
            await asyncio.sleep(seconds)
            self.bus.set_noise(0.0, 0.0)

        async def bus_cut(seconds, device=None):
            node = None
            if device is not None:
                uart = self.evaluators[device].uart
                if uart is None or not uart.local_port:
                    raise RuntimeError("%s is not on the bus right now" % device)
                node = uart.local_port
            self.bus.cut(seconds, node)

        async def power_cut(device, down_s, instant):
            self.evaluators[device].power_cut(down_s, instant)

        async def wifi_drop(device, seconds):
            self.evaluators[device].wifi_drop(seconds)

        return {"gateway_kill": gateway_kill, "broker_restart": broker_restart,
                "uplink_outage": uplink_outage, "uplink_5xx": uplink_5xx, "uplink_429": uplink_429,
                "uplink_slow": uplink_slow, "bus_noise": bus_noise, "bus_cut": bus_cut,
                "power_cut": power_cut, "wifi_drop": wifi_drop}

    # --- figures ------------------------------------------------------------------------------
    def confirmed_ids(self):
        return {e["rating_id"] for e in list(self.confirmations) if e["source"] == 1}

    def central_ids(self):
        db = self.store.db
        ids = {r for (r,) in db.execute("SELECT rating_id FROM ratings WHERE source=1")}
        ids.update(r for (r,) in db.execute("SELECT rating_id FROM duplicate_ratings"))
        return ids

    def outboxes(self):
        depths = [ev.outbox_depth() for ev in self.evaluators.values()]
        return sum(d for d in depths if d)

    async def gateway_backlog(self):
        """Items waiting in the gateway's outbox (its /status), None while it is away."""
        try:
            from hall_simulator.screens import gateway_status
            status = await asyncio.to_thread(gateway_status, self.gateway.http_url, 0.5)
            backlog = status.get("outbox") or {}
            return backlog.get("ratings", 0) + backlog.get("cases", 0)
        except (OSError, ValueError):
            return None

    async def progress(self, started, real_duration):
        line = report.progress_line(
            time.monotonic() - started, int(real_duration), len(self.confirmed_ids()),
            len(self.central_ids()), self.outboxes(), await self.gateway_backlog(),
            self.chaos.injected if self.chaos else {})
        if self.out.isatty():
            self.out.write("\r" + line + "   ")
        else:
            self.out.write(line + "\n")
        self.out.flush()

    # --- the run ------------------------------------------------------------------------------
    async def run(self, screenshots=None):
        real_duration = self.duration_s / self.clock.speed
        rs, mq = self.device_ids()
        events = chaos_mod.schedule(self.chaos_level, real_duration, self.seed, rs485=rs, mqtt=mq,
                                    warmup_s=min(5.0, real_duration * 0.1))
        self.chaos = chaos_mod.Chaos(events, self.chaos_hooks())
        started = time.monotonic()
        queue_task = asyncio.ensure_future(self.queue.run())
        chaos_task = asyncio.ensure_future(self.chaos.run(asyncio.get_running_loop().time()))
        tick = 1.0 if self.out.isatty() else 5.0
        while time.monotonic() - started < real_duration:
            await asyncio.sleep(min(tick, max(0.0, real_duration - (time.monotonic() - started))))
            await self.progress(started, real_duration)
        if screenshots:
            from hall_simulator import screens
            await asyncio.to_thread(screens.save_all, self, screenshots)
        self.queue.stop_new_cases()
        try:
            await asyncio.wait_for(chaos_task, 60)
        except asyncio.TimeoutError:
            chaos_task.cancel()
        drained = await self.drain(queue_task)
        await self.progress(started, real_duration)
        if self.out.isatty():
            self.out.write("\n")
        self.faults = dict(self.chaos.injected)
        return drained

    async def drain(self, queue_task):
        """Stop new citizens, then wait (bounded) until every confirmed rating is at the central
        API, no evaluator and not the gateway holds a rating, and every window's case settled."""
        end = time.monotonic() + DRAIN_MAX_S
        while time.monotonic() < end:
            if queue_task.done() and self.outboxes() == 0 and \
                    self.confirmed_ids() <= self.central_ids() and \
                    all(ev.state() in ("idle", "thanks", "not_rated", "no_case")
                        for ev in self.evaluators.values()) and \
                    await self.gateway_backlog() == 0:
                return True
            await asyncio.sleep(0.25)
        queue_task.cancel()
        return False

    def report(self, drained):
        view = report.central_view(self.store.path)
        extra = {"drained": drained, "seed": self.seed, "speed": self.clock.speed,
                 "duration_s": self.duration_s, "devices": {"rs485": self.n_rs485, "mqtt": self.n_mqtt},
                 "queue": dict(self.queue.stats), "case_kinds": dict(self.queue.maker.counts),
                 "gateway": {"starts": self.gateway.starts, "kills": self.gateway.kills},
                 "evaluators": _sum_stats(self.evaluators.values()), "chaos_failed": self.chaos.failed,
                 "workdir": self.workdir}
        if self.bus is not None:
            extra["bus"] = self.bus.stats()
        return report.compute(self.confirmations, view, self.faults, extra)


def _sum_stats(evaluators):
    total = {}
    for ev in evaluators:
        for k, v in ev.stats.items():
            total[k] = total.get(k, 0) + v
    return total


async def run_async(options, out=None, hall_kwargs=None):
    """Run one hall from the parsed hall-sim options; returns (exit status, report)."""
    out = out or sys.stdout
    hall = Hall(options.rs485, options.mqtt, options.seed, speed=options.speed,
                chaos=options.chaos, duration_s=options.duration, out=out, **(hall_kwargs or {}))
    out.write("hall-sim: %d evaluators (%d RS-485, %d MQTT), %g simulated s at x%g, chaos %s, "
              "seed %d\n  workdir %s\n" % (options.rs485 + options.mqtt, options.rs485, options.mqtt,
                                           options.duration, options.speed, options.chaos,
                                           options.seed, hall.workdir))
    result = None
    try:
        await hall.start()
        drained = await hall.run(getattr(options, "screenshots", None))
        result = hall.report(drained)
    finally:
        await hall.stop()
    if getattr(options, "report", None):
        with open(options.report, "w", encoding="utf-8") as f:
            json.dump(result, f, ensure_ascii=False, indent=2, sort_keys=True)
    out.write(report.summary(result) + "\n")
    if result.get("drained") is False:
        out.write("warning: the drain did not finish within %.0f s\n" % DRAIN_MAX_S)
    return (0 if report.ok(result) else 1), result


def run(options):
    """hall-sim's hall command (wired in hall_simulator/cli.py)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    status, _ = asyncio.run(run_async(options))
    return status
