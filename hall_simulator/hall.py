"""The whole virtual hall on the real code, and its verdict.

    hall-sim --windows 16 --duration 45 --seed 11 --report r.json

Parts (each the production code, wired here only):
- a private Mosquitto (hall_simulator.broker), the virtual RS-485 bus (hall_simulator.bus, in its
  own thread so line timing does not wait for anything else);
- the reference central rating API (hall_simulator.central_api) with its SQLite database;
- the REAL gateway as a child process (`python -m gateway.cli run --config gateway.toml`), so chaos
  can SIGKILL it and start it again;
- N evaluators (hall_simulator.evaluator): the firmware on the sim board, each in a thread with its
  own flash directory, split between the bus and MQTT, a simulated citizen at each; the bus
  evaluators are five-button boards, a share of the MQTT ones (`touch`) touch boards;
- the queueing system (hall_simulator.queue_sim) talking to the gateway's queueing API and
  receiving its callbacks;
- chaos (hall_simulator.chaos), a live progress line, and at the end a drain (no new citizens;
  wait, bounded, until every confirmed rating is at the central API and the outboxes are empty),
  the report (hall_simulator.report), and screenshots (hall_simulator.screens).
Time: --duration is simulated seconds of opening hours; the hall runs --speed times faster than
the wall clock (firmware timers, service and think times, the central API's 7-day window).
Stopping: SIGINT (Ctrl-C) / SIGTERM end the opening hours early; the hall still drains (bounded;
a second Ctrl-C skips it), stops its children in order and prints the summary. The children run
in their own session (a terminal's Ctrl-C reaches the simulator only) and die with it.
"""

import asyncio
import hashlib
import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

from gateway import mosquitto_acl
from gateway.registry import Registry
from hall_simulator import chaos as chaos_mod
from hall_simulator import citizens, queue_sim, report
from hall_simulator.broker import Broker, child_popen_args
from hall_simulator.bus_runners import BusThread
from hall_simulator.central_api import CentralServer
from hall_simulator.central_store import CentralStore
from hall_simulator.clock import SimClock
from hall_simulator.evaluator import Evaluator, Spec

log = logging.getLogger("hall_simulator.hall")

HALL_ID = "hall-sim"
BAUD = 9600
RATING_TIMEOUT_S = 30
THANKS_S = 3
OLED_PNG = "oled.png"          # the gateway's status OLED frame, in its data_dir
DRAIN_MAX_S = 90.0            # real seconds the end-of-run drain may take at most
INTERRUPTED_DRAIN_S = 20.0    # ... after a Ctrl-C
GATEWAY_START_S = 20.0
TAGS = (
    (501, "态度不积极", 4), (502, "来回跑", 4), (503, "窗口无人", 4),
    (601, "超时办结", 2), (602, "材料超出清单", 2),
    (701, "等待时间长", 1), (702, "服务态度差", 1), (703, "办事效率低", 1), (709, "其他原因", 7),
)


# the ingest PUBACKs at once and commits in groups: let the broker keep 100 QoS 1 ratings in
# flight to it (Mosquitto's default, 20, caps the groups); docs/mosquitto/hall-gateway.conf
BROKER_CONFIG = "max_inflight_messages 100"


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
        self.proc = subprocess.Popen(**child_popen_args(gateway_command(self.config_path)),
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

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

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
                 duration_s=60.0, out=None, touch=0, chaos_events=None):
        self.n_rs485 = rs485
        self.n_mqtt = mqtt
        if not 0 <= touch <= mqtt:
            raise ValueError("touch boards are MQTT evaluators: 0..%d" % mqtt)
        self.n_touch = touch
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
        self.chaos_events = chaos_events      # a fault schedule of one's own (tests) instead
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
        self.interrupted = None               # asyncio.Event, set by SIGINT / SIGTERM
        self.hurry = False                    # a second interrupt: skip the drain
        self._outage_end = None
        self._incident_locks = {}             # central-side incident kind -> asyncio.Lock
        self._killing = False                 # a gateway kill and restart in progress
        self._running = set()                 # fault kinds that never overlap, in progress
        self.hostile = None                   # hall_simulator.hostile.Ledger, once attacked
        self.started_at = None
        self.started_wall = None
        self.screenshots = []

    # --- wiring -------------------------------------------------------------------------------
    def _confirm(self, entry):
        self.confirmations.append(entry)      # list.append is atomic: called from device threads
        self.confirm_log.write(entry)

    def device_ids(self):
        rs = ["w%02d" % (i + 1) for i in range(self.n_rs485)]
        mq = ["w%02d" % (self.n_rs485 + i + 1) for i in range(self.n_mqtt)]
        return rs, mq

    def board_of(self, device):
        """Bus evaluators are five-button boards; the last `n_touch` MQTT ones are touch boards."""
        rs, mq = self.device_ids()
        return "touch" if device in mq[len(mq) - self.n_touch:] and self.n_touch else "five_button"

    def _devices(self):
        rs, mq = self.device_ids()
        devices = []
        for i, dev in enumerate(rs):
            devices.append({"id": dev, "window": dev[1:], "board": "five_button", "transport": "rs485",
                            "bus": 0, "address": i + 1, "key": device_key(self.seed, dev)})
        for dev in mq:
            devices.append({"id": dev, "window": dev[1:], "board": self.board_of(dev), "transport": "mqtt",
                            "key": device_key(self.seed, dev)})
        return devices

    def _start_broker(self):
        """Mosquitto as on a Pi: no anonymous clients, the login as client id, each device only
        on its own topics (the gateway's password + ACL files, which it keeps in step with its
        registry and reloads by SIGHUP through the broker's pid file); the gateway's login (and
        its intake's, "<user>-ingest") is new each run."""
        self.mqtt_login = ("gateway-" + HALL_ID, secrets.token_urlsafe(24))
        self.broker_files = os.path.join(self.workdir, "broker", "hall")
        paths = mosquitto_acl.write_files(self.broker_files, HALL_ID, Registry(self._devices()),
                                          *self.mqtt_login)
        self.broker = Broker(workdir=os.path.join(self.workdir, "broker"),
                             password_file=paths["password_file"], acl_file=paths["acl_file"],
                             extra_config=BROKER_CONFIG)
        self.broker.start()

    def _gateway_config(self, http_port, central_url, callback_url):
        rs, mq = self.device_ids()
        devices = self._devices()
        sections = {
            "gateway": {"hall": HALL_ID, "data_dir": os.path.join(self.workdir, "gateway"),
                        "rating_days": 7},
            "mqtt": {"host": self.broker.host, "port": self.broker.port, "keepalive": 10,
                     "username": self.mqtt_login[0], "password": self.mqtt_login[1],
                     "broker_files": self.broker_files, "broker_pid_file": self.broker.pid_file},
            "http": {"host": "127.0.0.1", "port": http_port, "callback_url": callback_url,
                     "queue_token": self.queue_token},
            "uplink": {"url": central_url, "profile": "gbt39046", "gateway_id": "gw-" + HALL_ID},
            # the status OLED as it would run on the Pi (gateway/panel.py), drawn into a PNG here
            "display": {"png_path": OLED_PNG, "refresh_s": 1.0},
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
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w",
                  encoding="utf-8") as f:   # it holds the gateway's broker password
            f.write(gateway_toml(sections))
        return path

    async def start(self):
        await asyncio.to_thread(self._start_broker)
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
        self.queue_token = os.urandom(24).hex()     # the gateway's [http] queue_token
        self.api = queue_sim.QueueApiClient(http_url, token=self.queue_token)
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
                        profile=self.board_of(dev), hall=HALL_ID, mqtt=mqtt_cfg)
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
        """{kind: async hook(**params)}; each returns how many operations its fault hit (the
        hostile kind: a dict per attack), or raises chaos.Skipped when one of its kind still runs."""
        loop_time = asyncio.get_running_loop().time
        central_faults = self.central.faults

        async def gateway_kill(down_s):
            if self._killing:            # a restart still in progress: two gateways never run
                raise chaos_mod.Skipped("the gateway is still being restarted")
            self._killing = True
            try:
                hit = 1 if self.gateway.running else 0
                self.gateway.kill()
                await asyncio.sleep(down_s)
                self.gateway.start()
                await self.gateway.wait_ready()
                return hit
            finally:
                self._killing = False

        async def broker_restart(down_s):
            if self._busy("broker"):
                raise chaos_mod.Skipped("the broker is still being restarted")
            try:
                hit = 1 if self.broker.running else 0
                await asyncio.to_thread(self.broker.restart, down_s)
                return hit
            finally:
                self._free("broker")

        async def uplink_outage(seconds, cap_s=chaos_mod.CAP_S):
            # The central API's port answers nothing: each connection is cut at once (counted,
            # so an outage nobody tried to reach is not reported as tested). It lasts `seconds`,
            # longer (up to cap_s) until the first connection was cut.
            if self._outage_end is not None:
                raise chaos_mod.Skipped("an outage is in progress")
            cut = [0]

            def refuse(reader, writer):
                cut[0] += 1
                transport = writer.transport
                try:       # linger 0: a reset, as a host that lost its service
                    transport.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except (OSError, AttributeError):
                    pass
                transport.abort()

            start = time.monotonic()
            self._outage_end = start + seconds
            await self.central.stop_listening()
            refuser = None
            try:
                refuser = await asyncio.start_server(refuse, self.central.host, self.central.port)
                while True:
                    now = time.monotonic()
                    if self._outage_end == 0.0 or (now >= self._outage_end and (
                            cut[0] or now >= start + max(seconds, cap_s))):
                        break     # (0.0: recover() ends it now)
                    await asyncio.sleep(0.05)
            finally:
                self._outage_end = None
                if refuser is not None:
                    refuser.close()
                    await refuser.wait_closed()
                await self.central.listen()
            return cut[0]

        async def incident(kind, arm, disarm, armed, window_s, cap_s):
            """A central-side incident: armed until it altered an answer (or cap_s passed); what
            is left of it is dropped window_s after the first. One incident of a kind at a time,
            so the answers it altered are its own; another one meanwhile is skipped, not queued
            (queued, they would keep the central API failing for the whole run)."""
            lock = self._incident_locks.setdefault(kind, asyncio.Lock())
            if lock.locked():
                raise chaos_mod.Skipped("a %s incident is armed" % kind)
            async with lock:
                before = central_faults.injected[kind]
                central_faults.set(**arm)
                end = loop_time() + cap_s
                first = None
                try:
                    while loop_time() < end and armed():
                        if first is None and central_faults.injected[kind] > before:
                            first = loop_time()
                            end = min(end, first + window_s)
                        await asyncio.sleep(0.05)
                finally:
                    central_faults.set(**disarm)
                return central_faults.injected[kind] - before

        async def uplink_5xx(count, status=500, window_s=chaos_mod.WINDOW_S, cap_s=chaos_mod.CAP_S):
            return await incident("5xx", {"fail_next": count, "status": status}, {"fail_next": 0},
                                  lambda: central_faults.fail_next > 0, window_s, cap_s)

        async def uplink_429(count, retry_after=1, window_s=chaos_mod.WINDOW_S, cap_s=chaos_mod.CAP_S):
            return await incident("429", {"throttle_next": count, "retry_after": retry_after},
                                  {"throttle_next": 0}, lambda: central_faults.throttle_next > 0,
                                  window_s, cap_s)

        async def uplink_slow(count, delay_s, window_s=chaos_mod.WINDOW_S, cap_s=chaos_mod.CAP_S):
            return await incident("slow", {"delay_s": delay_s, "delay_next": count},
                                  {"delay_s": 0.0, "delay_next": 0}, lambda: central_faults.delay_s > 0,
                                  window_s, cap_s)

        def corrupted():
            st = self.bus.stats()
            return st["bit_flips"] + st["dropped_bytes"]

        async def bus_noise(seconds, ber, drop_rate, cap_s=chaos_mod.CAP_S):
            """Bits flipped and bytes dropped on the line; longer (up to cap_s) until one was."""
            if self._busy("bus_noise"):
                raise chaos_mod.Skipped("bus noise already on")
            try:
                before = corrupted()
                start = time.monotonic()
                self.bus.set_noise(ber, drop_rate)
                try:
                    await asyncio.sleep(seconds)
                    while corrupted() == before and time.monotonic() < start + max(seconds, cap_s):
                        await asyncio.sleep(0.1)
                finally:
                    self.bus.set_noise(0.0, 0.0)
                return corrupted() - before
            finally:
                self._free("bus_noise")

        async def bus_cut(seconds, device=None):
            """Bytes the cut kept off the line or from a receiver."""
            if self._busy("bus_cut"):
                raise chaos_mod.Skipped("a cut is in progress")
            try:
                node = None
                if device is not None:
                    uart = self.evaluators[device].uart
                    if uart is None or not uart.local_port:
                        raise RuntimeError("%s is not on the bus right now" % device)
                    node = uart.local_port
                before = self.bus.stats()["cut_bytes"]
                self.bus.cut(seconds, node)
                await asyncio.sleep(seconds)
                return self.bus.stats()["cut_bytes"] - before
            finally:
                self._free("bus_cut")

        async def power_cut(device, down_s, instant, cap_s=chaos_mod.CAP_S):
            """Boots after the cut (1, or 0 when the device never went down and up again)."""
            ev = self.evaluators[device]
            boots = ev.boots
            ev.power_cut(down_s, instant)
            end = time.monotonic() + down_s + cap_s
            while ev.boots == boots and time.monotonic() < end:
                await asyncio.sleep(0.05)
            return ev.boots - boots

        async def wifi_drop(device, seconds):
            """1 when the device was on the network (its connections were dropped)."""
            ev = self.evaluators[device]
            hit = 1 if ev.net is not None and ev.net.isconnected() else 0
            ev.wifi_drop(seconds)
            return hit

        async def hostile(flood, seed, limit_s):
            if self._busy("hostile"):
                raise chaos_mod.Skipped("an attack campaign is in progress")
            try:
                from hall_simulator import hostile as hostile_mod
                return await hostile_mod.campaign(self, flood=flood, seed=seed, limit_s=limit_s)
            finally:
                self._free("hostile")

        return {"gateway_kill": gateway_kill, "broker_restart": broker_restart,
                "uplink_outage": uplink_outage, "uplink_5xx": uplink_5xx, "uplink_429": uplink_429,
                "uplink_slow": uplink_slow, "bus_noise": bus_noise, "bus_cut": bus_cut,
                "power_cut": power_cut, "wifi_drop": wifi_drop, "hostile": hostile}

    def _busy(self, kind):
        """True when a fault of `kind` is in progress; else marks one as started."""
        if kind in self._running:
            return True
        self._running.add(kind)
        return False

    def _free(self, kind):
        self._running.discard(kind)

    # --- figures ------------------------------------------------------------------------------
    def confirmed_ids(self):
        return {e["rating_id"] for e in list(self.confirmations) if e["source"] == 1}

    def central_ids(self):
        db = self.store.db
        ids = {r for (r,) in db.execute("SELECT rating_id FROM ratings WHERE source=1")}
        ids.update(r for (r,) in db.execute("SELECT rating_id FROM duplicate_ratings"))
        return ids

    @property
    def oled_png(self):
        """Where the running gateway draws its status OLED (gateway [display] png_path)."""
        return os.path.join(self.workdir, "gateway", OLED_PNG)

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
        events = self.chaos_events
        if events is None:
            events = chaos_mod.schedule(self.chaos_level, real_duration, self.seed, rs485=rs,
                                        mqtt=mq, warmup_s=min(5.0, real_duration * 0.1))
        self.chaos = chaos_mod.Chaos(events, self.chaos_hooks())
        if self.interrupted is None:
            self.interrupted = asyncio.Event()
        started = self.started_at = time.monotonic()
        self.started_wall = time.time()
        queue_task = asyncio.ensure_future(self.queue.run())
        chaos_task = asyncio.ensure_future(self.chaos.run(asyncio.get_running_loop().time()))
        tick = 1.0 if self.out.isatty() else 5.0
        while time.monotonic() - started < real_duration and not self.interrupted.is_set():
            left = max(0.0, real_duration - (time.monotonic() - started))
            try:
                await asyncio.wait_for(self.interrupted.wait(), min(tick, left))
            except asyncio.TimeoutError:
                pass
            await self.progress(started, real_duration)
        if self.interrupted.is_set():
            for ev in self.evaluators.values():
                ev.citizens = False      # no press after the interrupt: what was confirmed drains
            chaos_task.cancel()
            await asyncio.gather(chaos_task, return_exceptions=True)
            await self.recover()
        if screenshots:
            from hall_simulator import screens
            self.screenshots = await asyncio.to_thread(screens.save_all, self, screenshots)
        self.queue.stop_new_cases()
        try:
            await asyncio.wait_for(chaos_task, 60)
        except asyncio.TimeoutError:
            chaos_task.cancel()
            await asyncio.gather(chaos_task, return_exceptions=True)
            await self.recover()
        except asyncio.CancelledError:
            if not chaos_task.cancelled():
                raise
        if not self.interrupted.is_set():
            if self.out.isatty():
                self.out.write("\n")
            self.out.write("hall-sim: the hall closes: no new tickets; waiting for the citizens still "
                           "rating and for every rating to reach the central API (at most %.0f s)\n"
                           % DRAIN_MAX_S)
            self.out.flush()
        drained = await self.drain(queue_task, lambda: self.progress(started, real_duration))
        await self.progress(started, real_duration)
        if self.out.isatty():
            self.out.write("\n")
        self.faults = dict(self.chaos.injected)
        return drained

    async def recover(self):
        """After chaos was cut short: every part the hall needs is up again."""
        if self.bus is not None:
            self.bus.set_noise(0.0, 0.0)
        if self._outage_end is not None:
            self._outage_end = 0.0
        if not self.broker.running:
            await asyncio.to_thread(self.broker.start)
        if not self.gateway.running:
            self.gateway.start()
            await self.gateway.wait_ready()

    def interrupt(self, what):
        """SIGINT / SIGTERM: the first ends the opening hours, the second skips the drain."""
        if self.interrupted is None:
            self.interrupted = asyncio.Event()
        if self.interrupted.is_set():
            self.hurry = True
            self.out.write("\nhall-sim: %s again: skipping the drain\n" % what)
        else:
            self.interrupted.set()
            self.out.write("\nhall-sim: %s: closing the hall early; waiting (at most %.0f s) for "
                           "ratings in flight, then the summary. Press Ctrl-C again to skip the "
                           "wait.\n" % (what, INTERRUPTED_DRAIN_S))
        self.out.flush()

    async def drain(self, queue_task, progress=None):
        """Stop new citizens, then wait (bounded) until every confirmed rating is at the central
        API, no evaluator and not the gateway holds a rating, and every window's case settled."""
        interrupted = False
        end = time.monotonic() + DRAIN_MAX_S
        tick = 1.0 if self.out.isatty() else 5.0
        next_line = time.monotonic() + tick
        while time.monotonic() < end and not self.hurry:
            if progress is not None and time.monotonic() >= next_line:
                next_line += tick
                await progress()
            if not interrupted and self.interrupted is not None and self.interrupted.is_set():
                interrupted = True                    # (also a Ctrl-C during this drain)
                end = min(end, time.monotonic() + INTERRUPTED_DRAIN_S)
                for ev in self.evaluators.values():
                    ev.citizens = False
            # after an interrupt the open cases are not waited for (nobody rates them any more)
            settled = interrupted or (queue_task.done() and all(
                ev.state() in ("idle", "thanks", "not_rated", "no_case")
                for ev in self.evaluators.values()))
            if settled and self.outboxes() == 0 and self.confirmed_ids() <= self.central_ids() \
                    and await self.gateway_backlog() == 0:
                break
            await asyncio.sleep(0.25)
        else:
            queue_task.cancel()
            await asyncio.gather(queue_task, return_exceptions=True)
            return False
        if not queue_task.done():
            queue_task.cancel()
            await asyncio.gather(queue_task, return_exceptions=True)
        return True

    def acked_at(self):
        """{rating id: wall time the gateway's ACK released it from the device}."""
        out = {}
        for ev in self.evaluators.values():
            for (device, counter), at in list(ev.acked_at.items()):
                out["%s:%d" % (device, counter)] = at
        return out

    def report(self, drained):
        view = report.central_view(self.store.path)
        boards = {}
        for dev in self.evaluators:
            boards[self.board_of(dev)] = boards.get(self.board_of(dev), 0) + 1
        extra = {"drained": drained, "seed": self.seed, "speed": self.clock.speed,
                 "duration_s": self.duration_s, "chaos": self.chaos_level, "baud": self.baud,
                 "interrupted": bool(self.interrupted is not None and self.interrupted.is_set()),
                 "devices": {"rs485": self.n_rs485, "mqtt": self.n_mqtt, "touch": self.n_touch,
                             "boards": boards},
                 "queue": dict(self.queue.stats), "case_kinds": dict(self.queue.maker.counts),
                 "gateway": {"starts": self.gateway.starts, "kills": self.gateway.kills},
                 "evaluators": _sum_stats(self.evaluators.values()), "chaos_failed": self.chaos.failed,
                 "chaos_skipped": dict(self.chaos.skipped), "fault_hits": dict(self.chaos.hits),
                 "fault_hit_detail": dict(self.chaos.hit_detail), "faults_unhit": self.chaos.unhit(),
                 "chaos_log": list(self.chaos.log),
                 "central_faults_applied": dict(self.central.faults.injected), "workdir": self.workdir}
        if self.bus is not None:
            extra["bus"] = self.bus.stats()
        from hall_simulator import hostile
        issued = {dev: (ev.device.outbox.high if ev.device is not None else ev.seen_counter)
                  for dev, ev in self.evaluators.items()}
        acked_at = self.acked_at()
        extra.update(hostile.figures(self, self.hostile, self.confirmations, view, acked_at, issued))
        return report.compute(self.confirmations, view, self.faults, extra, acked_at=acked_at,
                              t0=self.started_wall)


def _sum_stats(evaluators):
    total = {}
    for ev in evaluators:
        for k, v in ev.stats.items():
            total[k] = total.get(k, 0) + v
    return total


def intro(options, hall, touch):
    """What a first-time user needs to know before the progress lines start."""
    five = options.mqtt - touch
    lines = [
        "hall-sim: a virtual service hall on the real code (seed %d; repeat it with --seed %d)"
        % (options.seed, options.seed),
        "  %d evaluators: %d on the RS-485 bus (five-button, %d baud), %d on Wi-Fi/MQTT "
        "(%d five-button, %d touch)" % (options.rs485 + options.mqtt, options.rs485, hall.baud,
                                        options.mqtt, five, touch),
        "  %g simulated seconds of opening hours at x%g speed (about %.0f s), chaos: %s"
        % (options.duration, options.speed, options.duration / options.speed, options.chaos),
        "  files: %s  (gateway.log, central.db, confirmed.jsonl)" % hall.workdir,
    ]
    return "\n".join(lines) + "\n"


def where(hall):
    """Once the hall is up: where each part listens."""
    return ("  broker  %s (private Mosquitto)\n"
            "  gateway %s/status (the real gateway, a child process)\n"
            "  central %s (reference rating API)\n"
            "  Ctrl-C closes the hall early and still prints the summary.\n"
            % (hall.broker.url, hall.gateway.http_url, hall.central.url))


async def run_async(options, out=None, hall_kwargs=None):
    """Run one hall from the parsed hall-sim options; returns (exit status, report)."""
    out = out or sys.stdout
    touch = getattr(options, "touch", 0) or 0
    kwargs = dict(hall_kwargs or {})
    if getattr(options, "baud", None):
        kwargs.setdefault("baud", options.baud)
    hall = Hall(options.rs485, options.mqtt, options.seed, speed=options.speed,
                chaos=options.chaos, duration_s=options.duration, out=out, touch=touch, **kwargs)
    report_path = getattr(options, "report", None) or os.path.join(hall.workdir, "report.json")
    shots = getattr(options, "screenshots", None)
    if shots is None and getattr(options, "default_files", False):
        shots = os.path.join(hall.workdir, "screenshots")
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
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await hall.stop()
    result["options"] = {"windows": options.rs485 + options.mqtt, "rs485": options.rs485,
                         "mqtt": options.mqtt, "touch": touch, "duration": options.duration,
                         "speed": options.speed, "seed": options.seed, "chaos": options.chaos,
                         "baud": hall.baud, "report": report_path, "screenshots": shots}
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


def threading_main():
    import threading
    return threading.current_thread() is threading.main_thread()


def run(options):
    """hall-sim's hall command (wired in hall_simulator/cli.py)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    status, _ = asyncio.run(run_async(options))
    return status
