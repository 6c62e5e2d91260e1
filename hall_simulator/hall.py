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

Here: the hall's wiring, its run and its figures. The gateway child process is
hall_simulator.gateway_process, the chaos hooks hall_simulator.hall_faults, and a run from the
command-line options (signals, report file, summary) hall_simulator.hall_run.
"""

import asyncio
import hashlib
import logging
import os
import random
import secrets
import socket
import sys
import tempfile
import time

from gateway import mosquitto_acl
from gateway.registry import Registry
from hall_simulator import chaos as chaos_mod
from hall_simulator import citizens, hall_faults, queue_sim, report
from hall_simulator.broker import Broker
from hall_simulator.bus_runners import BusThread
from hall_simulator.central_api import CentralServer
from hall_simulator.central_store import CentralStore
from hall_simulator.clock import SimClock
from hall_simulator.evaluator import Evaluator, Spec
from hall_simulator.gateway_process import GatewayProcess, gateway_toml

log = logging.getLogger("hall_simulator.hall")

HALL_ID = "hall-sim"
BAUD = 9600
RATING_TIMEOUT_S = 30
THANKS_S = 3
OLED_PNG = "oled.png"          # the gateway's status OLED frame, in its data_dir
DRAIN_MAX_S = 90.0            # real seconds the end-of-run drain may take at most
INTERRUPTED_DRAIN_S = 20.0    # ... after a Ctrl-C
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


CONSOLE_USERS = (("tech", "technician"), ("lobby", "viewer"))   # besides the gateway's own admin


def console_logins(data_dir):
    """[(user, role, password)] of the gateway's console: its first-start operator `admin` (the
    password the gateway itself generates) plus a technician and a lobby screen, so a developer
    can see what each role sees. Kept when the data directory already has its users."""
    from gateway import console_users
    quiet = logging.getLogger(console_users.log.name)   # its first-start warning is for a Pi's journal;
    level = quiet.level                                 # the sim prints the logins itself
    quiet.setLevel(logging.ERROR)
    try:
        users = console_users.Users.open(data_dir)
    finally:
        quiet.setLevel(level)
    known = dict(users.list())
    out = []
    try:
        with open(users.initial_path, encoding="ascii") as f:
            out.append(("admin", "operator", f.read().strip()))
    except OSError:
        pass
    for name, role in CONSOLE_USERS:
        if name not in known:
            password = secrets.token_urlsafe(9)
            users.add(name, role, password)
            out.append((name, role, password))
    return out


def device_key(seed, device):
    """A repeatable 32-byte key per device (hex), as tools/flash.py would provision."""
    return hashlib.sha256(("hall-sim/%s/%s" % (seed, device)).encode()).hexdigest()


class Hall:
    def __init__(self, rs485, mqtt, seed, speed=1.0, workdir=None, mix=None, case_weights=None,
                 completed_ago_s=0, rating_timeout_s=RATING_TIMEOUT_S, baud=BAUD, chaos="none",
                 duration_s=60.0, out=None, touch=0, chaos_events=None, console_port=None,
                 console_host="127.0.0.1"):
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
        self.console_logins = []              # [(user, role, password)] printed at start
        self.console_port = console_port      # the gateway's HTTP port (its console); None: any free
        self.console_host = console_host
        self.script = self.script_result = None   # async fn(hall) played while the hall is open
        self.gateway_tables = {}              # more gateway.toml tables: {"custody": {...}}

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
            "http": {"host": self.console_host, "port": http_port, "callback_url": callback_url,
                     "queue_token": self.queue_token, "operator_token": self.operator_token},
            "ota": {"release_key": self.release_key},
            "uplink": {"url": central_url, "profile": "gbt39046", "gateway_id": "gw-" + HALL_ID},
            # the status OLED as it would run on the Pi (gateway/panel.py), drawn into a PNG here
            "display": {"png_path": OLED_PNG, "refresh_s": 1.0},
            "device_config": {"version": 1, "rating_timeout_s": self.rating_timeout_s,
                              "thanks_s": THANKS_S, "press_guard_ms": 600, "status_interval_s": 60,
                              "idle_text": "欢迎光临",
                              "tags": [{"code": c, "label": l, "indicator": i} for c, l, i in TAGS]},
        }
        if rs:
            sections["rs485"] = [{"url": self.bus.url, "baud": self.baud}]
        sections.update(self.gateway_tables)
        sections["devices"] = devices
        os.makedirs(sections["gateway"]["data_dir"], exist_ok=True)
        self.console_logins = console_logins(sections["gateway"]["data_dir"])
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
        http_port = self.console_port or free_port()
        http_url = "http://127.0.0.1:%d" % http_port
        self.queue_token = os.urandom(24).hex()     # the gateway's [http] queue_token
        self.operator_token = os.urandom(24).hex()  # ... operator_token (the update routes)
        self.release_key = device_key(self.seed, "release")   # [ota] release_key, on every device
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
                        profile=self.board_of(dev), hall=HALL_ID, mqtt=mqtt_cfg,
                        release_key=self.release_key)
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
        """{kind: async hook(**params)}: hall_simulator.hall_faults.hooks of this hall."""
        return hall_faults.hooks(self)

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
        # a script (hall_simulator.rollout) plays during the opening hours, which last until it ends
        script = asyncio.ensure_future(self.script(self)) if self.script else None
        tick = 1.0 if self.out.isatty() else 5.0
        next_line = started + tick
        while (time.monotonic() - started < real_duration or script and not script.done()) \
                and not self.interrupted.is_set():
            left = max(0.0, real_duration - (time.monotonic() - started))
            try:
                await asyncio.wait_for(self.interrupted.wait(), min(tick, left) if left else 0.5)
            except asyncio.TimeoutError:
                pass
            if time.monotonic() >= next_line or left == 0.0 and not script:
                next_line = time.monotonic() + tick
                await self.progress(started, real_duration)
        if script is not None:
            script.cancel()           # (done already, unless the hall was closed early)
            self.script_result = (await asyncio.gather(script, return_exceptions=True))[0]
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
