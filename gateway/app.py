"""The hall gateway, wired: store, registry, cases, MQTT bridge, RS-485 buses, HTTP API, uplink.

Threads: the MQTT rating intake (gateway.mqtt_ingest: reads, group-commits, ACKs), paho's network
thread (the rest of MQTT), the group committer (SQLite, for RS-485), one thread per RS-485 bus.
The asyncio loop runs the HTTP API, the queueing-system callbacks, the uplink and housekeeping.
Alarms from every part arrive at Gateway.alarm: every one counted; logged and published on
gateway/event at most once per ALARM_REPEAT_S per name, with the number held back meanwhile (a
full store refuses every batch: one line a minute, not one per batch). An alarm counts as active
for ALARM_ACTIVE_S (the alarm LED), and so does an outbox past its alarm ratio.
The front panel (gateway.panel: status OLED and LEDs, [display] / [leds]) runs as a task when on.
Extension hooks for other parts: `metrics` (name -> number, or callable returning a number or a
{labels tuple: number} dict) is rendered into /metrics; `tasks` (coroutine factories) run with the
loop; `status_hooks` (callables returning a dict) are merged into /status.
"""

import asyncio
import errno
import logging
import os
import signal
import threading
import time

from aiohttp import web

from gateway import alerts as alerts_mod
from gateway import alerts_api
from gateway import cases as cases_mod
from gateway import console_api
from gateway import custody as custody_mod
from gateway import glyphs as glyphs_mod
from gateway import history as history_mod
from gateway import console_sessions, console_users
from gateway import config_api
from gateway import http_auth
from gateway import live_config
from gateway import metrics as metrics_mod
from gateway import mosquitto_acl
from gateway import ota as ota_mod
from gateway import ota_api
from gateway import rollout as rollout_mod
from gateway import panel as panel_mod
from gateway import qr_api
from gateway import ratings_api
from gateway import window_words
from gateway import session_api
from gateway import status_display
from gateway.committer import GroupCommitter
from gateway.intake import Intake, generation_of
from gateway.mqtt_bridge import MqttBridge
from gateway.queue_api import Callbacks, make_app
from gateway.registry import Registry
from gateway.rejects import Rejections, Throttle
from gateway.rs485_master import Rs485Master
from gateway.store import Store
from protocol import vocab

log = logging.getLogger("gateway")

EXPIRE_EVERY_S = 600.0
BIND_RETRY_S = 15.0       # the HTTP port still held at a restart (the old process's last moments,
                          # another program's passing socket): try again for this long, then fail
ALARM_REPEAT_S = 60.0     # one log line / MQTT event per alarm name per minute at most
ALARM_ACTIVE_S = 600.0    # the alarm LED stays on this long after the last alarm
NOT_RATED_WORDS = "未评价"  # the status screen's word for "timed out at the window"


# What only the operator sees: how a window was rated, who works there, device keys, identities.
PRIVATE_KEYS = frozenset(("level", "level_name", "overall", "business", "service", "tags", "text",
                          "staff_name", "key", "applicant"))


def redact(value):
    """`value` (JSON-like) without any PRIVATE_KEYS entry, at any depth."""
    if isinstance(value, dict):
        return dict((k, redact(v)) for k, v in value.items() if k not in PRIVATE_KEYS)
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class Gateway:
    def __init__(self, cfg, clock=time.time):
        self.cfg = cfg
        self.clock = clock
        self.started = clock()
        self.alarms = {}
        self._alarm_at = {}
        self.alarm_details = {}   # name -> the last detail (the console's alarm list)
        self._alarm_lock = threading.Lock()
        self._alarm_throttle = Throttle(ALARM_REPEAT_S, clock=clock)
        self.metrics = {}
        self._metrics_registry = metrics_mod.make_registry(self)
        self.tasks = []
        self.status_hooks = []
        self.http_routes = []     # add_routes(app, gw, allow) of other route modules (queue_api.make_app)
        self.last_rating = None
        os.makedirs(cfg.data_dir, exist_ok=True)
        self.store = Store(cfg.store_path, capacity=cfg.capacity, alarm_ratio=cfg.alarm_ratio,
                           on_alarm=self.alarm, clock=clock)
        self.registry = Registry(cfg.devices, cfg.registry_path, clock=clock)
        # the HTTP API never serves an unauthenticated write: a role without a configured token
        # gets a generated one (<data_dir>/http-credentials.toml, 0600; gateway.http_auth)
        self.credentials = http_auth.load_or_create(cfg.http, cfg.data_dir)
        # people at the console log in instead: users in <data_dir>/console-users.toml (0600),
        # sessions in memory, both behind the same guard (gateway.http_guard, gateway.session_api)
        self.users = console_users.Users.open(cfg.data_dir)
        self.sessions = console_sessions.Sessions.from_config(cfg, self.users, alarm=self.alarm)
        self.http_routes.append(session_api.add_routes)
        # Dead letters of unregistered devices share one small bucket (gateway.deadletters).
        self.store.set_known_devices(lambda device: self.registry.get(device) is not None)
        self.rejections = Rejections(alarm=self.alarm)
        self.committer = GroupCommitter(self.store)
        # each device's CONFIG: the hall's words, tags, timings ... with its window's and its own,
        # changed live by the operator API and SIGHUP (gateway.live_config, .window_words, .config_api)
        self.live_config = live_config.LiveConfig(cfg, self.registry.all, self._send_config,
                                                  alarm=self.alarm)
        self.http_routes.append(config_api.add_routes)
        self.status_hooks.append(lambda: {"config": self.live_config.status()})
        self.sealer = self._sealer()
        self.callbacks = Callbacks(cfg.http.callback_url, cfg.http.callback_token, store=self.store)
        signer = self._qr_signer()
        self.cases = cases_mod.Cases(cfg.hall, self.store, self.registry, self.push,
                                     notify=self.callbacks.notify if self.callbacks.enabled else None,
                                     rating_days=cfg.rating_days,
                                     sealer=self.sealer, qr_token=signer and signer.token,
                                     qr_link=signer and signer.link,
                                     glyphs=glyphs_mod.from_config(cfg.raw, alarm=self.alarm),
                                     tags_version=True, clock=clock)
        if self.cases.glyphs is not None:     # glyphs sent with cases, missing from every font
            self.status_hooks.append(lambda: {"glyphs": dict(self.cases.glyphs.stats)})
        self.qr_signer = signer               # receipt printers fetch a case's QR code (gateway.qr_api)
        self.http_routes.append(qr_api.add_routes)
        self.store.case_closer = self.cases   # a rated case closes in the rating's commit
        # One rating path for every transport; the bridge and the buses only move its bytes.
        self.intake = Intake(cfg.hall, self.registry, self.rejections, enrich=self.cases.enrich,
                             on_rating=self.on_rating, clock=clock, custody=cfg.custody.enabled,
                             generation=generation_of(self.committer))
        self.bridge = MqttBridge(cfg.mqtt, cfg.hall, self.registry, self.committer, self.rejections,
                                 store=self.store, clock=clock, intake=self.intake)
        self.buses = [Rs485Master(bus, i, cfg.hall, self.registry, self.committer, self.rejections,
                                  alarm=self.alarm, clock=clock, intake=self.intake)
                      for i, bus in enumerate(cfg.buses)]
        # custody (SPEC 3.11, [custody]): SETTLE to every device, in place of a POLL on RS-485,
        # retained on MQTT; what devices hold shows in /status, the console and /metrics
        self.custody = custody_mod.Custody(self.store, self.registry, cfg.custody.enabled, clock)
        self.custody.rs485_every_s = cfg.custody.rs485_every_s
        if cfg.custody.enabled:
            self.bridge.custody = self.custody
            for bus in self.buses:
                bus.custody = self.custody
            self.tasks.append(lambda: self.custody.run(self.bridge))
        self.status_hooks.append(lambda: {"custody": self.custody.summary()})
        self.uplink = None
        self.panel = panel_mod.from_config(cfg, self.display_snapshot, self.uplink_state,
                                           self.alarms_active)
        self.broker_files = mosquitto_acl.from_config(cfg, self.registry, alarm=self.alarm)
        self.registry.listeners.append(self._registry_changed)
        # alerts to the duty manager ([alerts]; gateway.alerts, .alert_queue, .alert_channels)
        self.alerts = alerts_mod.from_gateway(self)
        self._tags_changed()          # alerts name every tag offered anywhere, as it changes live
        self.live_config.listeners.append(self._tags_changed)
        self.tasks.append(self.alerts.run)
        self.http_routes.append(alerts_api.add_routes)
        # the hall console: its pages, hall view, live events, alarm acks (gateway.console_api)
        self.console = console_api.Console(self)
        self.http_routes.append(console_api.add_routes)
        # the console's rating history, grades and ratings routes (gateway.history, .grading,
        # .ratings_api): [console] timezone, history_days, [console.grading]
        zone, days, self.grading = history_mod.settings(cfg.raw.get("console"))
        self.history = history_mod.History(cfg.path(history_mod.FILE_NAME), tz=zone, keep_days=days,
                                           alarm=self.alarm, clock=clock)
        self.status_hooks.append(lambda: {"history": dict(self.history.stats)})
        self.http_routes.append(ratings_api.add_routes)
        # over-the-air updates: releases, the staged rollout, its routes ([ota] release_key,
        # bus_share; gateway.ota, .rollout, .ota_api); the transports ask it in their free slots
        ota_cfg = cfg.raw.get("ota") or {}
        releases = ota_mod.Releases(ota_mod.release_key(cfg.raw), cfg.data_dir, alarm=self.alarm)
        self.rollouts = rollout_mod.Rollouts(cfg.data_dir, releases, busy=self._case_open,
                                             firmware=self._firmware, clock=clock, alarm=self.alarm)
        self.bridge.updates = self.rollouts
        for bus in self.buses:
            bus.updates = self.rollouts
            bus.ota_share = float(ota_cfg.get("bus_share", bus.ota_share))
        self.http_routes.append(ota_api.add_routes)
        self.tasks.append(self._pump_updates)
        self._stop = None
        self._runner = None

    def _case_open(self, device_id):
        """True while a case is open at the device's window (no update switch then)."""
        device = self.registry.get(device_id)
        return bool(device and device.window and self.cases.current_context(device.window))

    def _firmware(self, device_id):
        device = self.registry.get(device_id)
        return device.firmware if device is not None else ""

    async def _pump_updates(self):
        from gateway.mqtt_bridge import UPDATE_PUMP_S
        while True:
            await asyncio.sleep(UPDATE_PUMP_S)
            self.bridge.pump_updates()
            self.rollouts.flush(force=False)

    # --- parts from config --------------------------------------------------------------
    @staticmethod
    def _device_config(raw):
        """The hall's CONFIG from [device_config], or None; a bad one is refused at start."""
        return window_words.WindowWords(raw).config_for(None)

    @property
    def words(self):
        return self.live_config.words

    @property
    def device_config(self):
        """The hall's own CONFIG (its tag labels), as it is now."""
        return self.live_config.words.config_for(None)

    def _sealer(self):
        if not self.cfg.privacy_key:
            return None
        from gateway.privacy import Sealer
        return Sealer(self.cfg.privacy_key, context=self.cfg.hall)

    def _qr_signer(self):
        qr = self.cfg.raw.get("qr") or {}
        if not qr.get("secret"):
            return None
        from gateway.qr_links import LinkSigner
        return LinkSigner(qr["secret"], qr.get("base_url", ""))

    def _make_uplink(self):
        up = self.cfg.raw.get("uplink") or {}
        if not up.get("url"):
            return None
        from gateway.uplink import Uplink
        from gateway import upstream_auth
        auth = None
        if up.get("hmac_secret"):
            auth = upstream_auth.HmacAuth(up.get("gateway_id", self.cfg.hall), up["hmac_secret"])
        elif up.get("token"):
            auth = upstream_auth.BearerAuth(up["token"])
        return Uplink(self.store, up["url"], up.get("gateway_id", self.cfg.hall), self.cfg.hall,
                      profile=up.get("profile", "gbt39046"), auth=auth,
                      batch_size=up.get("batch_size", 500), cafile=up.get("cafile"),
                      sealer=self.sealer, division=up.get("division"), alarm=self.alarm)

    # --- events from the parts ----------------------------------------------------------
    def alarm(self, name, detail):
        with self._alarm_lock:   # paho's thread, the committer, the buses and the loop all alarm
            self.alarms[name] = self.alarms.get(name, 0) + 1
            self._alarm_at[name] = self.clock()
            self.alarm_details[name] = detail
        held = self._alarm_throttle.allow(name)
        if held is None:
            return
        if held:
            detail = "%s (+%d more in the last %d s)" % (detail, held, ALARM_REPEAT_S)
        log.error("ALARM %s: %s", name, detail, extra={"kind": "alarm", "alarm": name})
        try:
            self.bridge.event(name, detail)
        except Exception:   # no broker right now: the alarm is still counted and logged
            pass

    def alarms_active(self):
        """True while an alarm was raised in the last ALARM_ACTIVE_S or the outbox is past its
        alarm ratio (the alarm LED)."""
        now = self.clock()
        with self._alarm_lock:
            recent = [n for n, at in self._alarm_at.items() if now - at < ALARM_ACTIVE_S]
        return bool(recent) or self.store.backlog()["fill"] >= self.cfg.alarm_ratio

    def push(self, device, context):
        if context is not None and "tags_version" in context:   # the device's tag list (SPEC 3.6)
            context = dict(context, tags_version=self.live_config.version_for(device))
            if not context["tags_version"]:
                del context["tags_version"]
        if device.transport == "rs485":
            for bus in self.buses:
                if bus.index == device.bus:
                    bus.set_context(device.id, context)
        else:
            self.bridge.publish_context(device.id, context)

    def on_rating(self, rating, result, enrichment=None):
        """A rating was committed (any result); `enrichment` is its case's (gateway.cases.enrich:
        it may hold the sealed applicant, which goes nowhere from here)."""
        if result[0] == vocab.ACK_STORED:
            self.last_rating = self._rating_summary(rating)
            self.console.rating(self.last_rating)
            self.history.record(rating, enrichment)   # never the applicant (gateway.history)
            if self.panel is not None:
                self.panel.mark_dirty()
        self.alerts.on_rating(rating, result, enrichment)   # a stored bad rating: never the applicant
        self.cases.on_rating(rating, result)
        if self.uplink is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.uplink.notify)

    def _rating_summary(self, rating):
        """What /status and the screen show of the last stored rating: where, which level, when.
        Never who: a rating record holds no identity, and the case's applicant is not read here."""
        level = rating.get("overall") or rating.get("service") or rating.get("business") or 0
        if rating.get("source") == vocab.SRC_NOT_RATED:
            name = NOT_RATED_WORDS
        else:
            name = vocab.LEVEL_NAMES.get(level, "")
        window = rating.get("window")
        if not window:
            device = self.registry.get(rating.get("device"))
            window = device.window if device is not None else ""
        return {"window": window, "level": level, "level_name": name,
                "source": vocab.SOURCE_NAMES.get(rating.get("source"), ""),
                "time": rating.get("gateway_time"), "device": rating.get("device")}

    _loop = None
    _uplink_task = None

    def _registry_changed(self, device, what):
        if what in ("added", "updated", "removed") and self.broker_files is not None:
            self.broker_files.sync()       # its login and ACL before its config and context
        if what in ("added", "updated"):
            self._provision(device)
        elif what == "removed":
            self.custody.forget(device.id)         # a device added again later starts afresh
            if device.transport == "mqtt":
                self.bridge.forget_device(device.id)
        try:
            self.bridge.publish_devices()
        except Exception:
            pass

    def _provision(self, device):
        """Give a (new or moved) device its config and its window's open case."""
        self.live_config.provision(device)
        self.push(device, self.cases.current_context(device.window) if device.window else None)

    def _send_config(self, device, config):
        """A device's CONFIG: RS-485 at its next poll, MQTT published retained."""
        if device.transport == "rs485":
            for bus in self.buses:
                if bus.index == device.bus:
                    bus.set_config(device.id, config)
        else:
            self.bridge.publish_config(device.id, config)

    def _tags_changed(self):
        self.alerts.tags = self.live_config.tag_labels()

    def reload(self):
        """SIGHUP: re-read gateway.toml and apply what can change live (gateway.live_config)."""
        return self.live_config.reload()

    # --- status -------------------------------------------------------------------------
    def uplink_state(self):
        return self.uplink.status.state if self.uplink is not None else "idle"

    def display_snapshot(self):
        """The status screen's data (status_display.snapshot); any thread. Never the level."""
        counts = self.registry.counts()
        uplink = self.uplink.status.as_dict() if self.uplink is not None else None
        return status_display.snapshot(self.cfg.hall, counts["online"], counts["total"],
                                       backlog=self.store.backlog(), uplink=uplink,
                                       last_rating=redact(self.last_rating), now=self.clock())

    def status(self, operator=False):
        """/status. Only the operator's shows levels and staff names (redact): nobody else may
        watch how a window is rated (rules Art. 4)."""
        out = {"hall": self.cfg.hall, "uptime_s": int(self.clock() - self.started),
               "mqtt": {"connected": self.bridge.connected.is_set(), **self.bridge.stats,
                        "ingest": dict(self.bridge.ingest.stats)},
               "devices": self.registry.counts(), "device_list": self.registry.snapshot(),
               "outbox": self.store.backlog(), "store": dict(self.store.stats),
               "alarms": dict(self.alarms), "alarms_active": self.alarms_active(),
               "rejections": self.rejections.total(),
               "cases": self.cases.snapshot(), "last_rating": self.last_rating,
               "buses": [{"url": b.cfg.url, "rounds": b.rounds, "open": b.port is not None}
                         for b in self.buses],
               "callbacks": self.callbacks.status()}
        if self.uplink is not None:
            out["uplink"] = self.uplink.status.as_dict()
        for hook in self.status_hooks:
            out.update(hook())
        return out if operator else redact(out)

    def metrics_text(self):
        """/metrics (gateway.metrics: prometheus_client over this gateway's live state)."""
        return metrics_mod.exposition(self._metrics_registry)

    # --- running --------------------------------------------------------------------------
    async def start(self):
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.callbacks.bind(self._loop)
        if self.broker_files is not None:  # the registry may have changed while we were down
            self.broker_files.sync(force=True)
        for device in self.registry.all():
            self._provision(device)
        live_config.write_pid(self.cfg)     # `hall-gateway reload` signals this process
        self.bridge.start()
        for bus in self.buses:
            bus.start()
        self._runner = web.AppRunner(make_app(self), access_log=None)
        await self._runner.setup()
        await self._serve_http()
        self.http_port = self._runner.addresses[0][1] if self._runner.addresses else self.cfg.http.port
        self.uplink = self._make_uplink()
        self._bg = [asyncio.create_task(self.callbacks.run()), asyncio.create_task(self._housekeeping())]
        if self.uplink is not None:
            self._uplink_task = asyncio.create_task(self.uplink.run(self._stop))
            self._bg.append(self._uplink_task)
        if self.panel is not None:
            self._bg.append(asyncio.create_task(self.panel.run()))
        for factory in self.tasks:
            self._bg.append(asyncio.create_task(factory()))
        log.info("gateway for hall %s up: HTTP on %s:%s, %d device(s), %d bus(es)", self.cfg.hall,
                 self.cfg.http.host, self.http_port, len(self.registry.all()), len(self.buses))

    async def _serve_http(self):
        deadline, warned = time.monotonic() + BIND_RETRY_S, False
        while True:
            site = web.TCPSite(self._runner, self.cfg.http.host, self.cfg.http.port)
            try:
                await site.start()
                return
            except OSError as e:
                await site.stop()
                if e.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                    raise
                if not warned:
                    log.warning("HTTP port %s:%s in use; trying again for %.0f s",
                                self.cfg.http.host, self.cfg.http.port, BIND_RETRY_S)
                    warned = True
            await asyncio.sleep(0.2)

    async def _housekeeping(self):
        while True:
            await asyncio.sleep(EXPIRE_EVERY_S)
            self.cases.expire()

    def request_stop(self):
        if self._stop is not None:
            self._stop.set()

    async def stop(self):
        if self._stop is not None:
            self._stop.set()
        tasks = getattr(self, "_bg", [])
        if self._uplink_task is not None:   # let it finish the batch in flight
            await asyncio.wait([self._uplink_task], timeout=3)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.panel is not None:
            await self.panel.close()
        if self._runner is not None:
            await self._runner.cleanup()
        for bus in self.buses:
            bus.stop()
        self.bridge.stop()
        self.committer.close()
        self.alerts.close()       # after the intake's last rating (bridge, buses, committer)
        self.history.close()
        self.store.close()
        live_config.remove_pid(self.cfg)

    async def run_forever(self):
        await self.start()
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, self.request_stop), (signal.SIGINT, self.request_stop),
                             (signal.SIGHUP, self.reload)):
            try:
                loop.add_signal_handler(sig, handler)
            except (NotImplementedError, RuntimeError):
                pass
        await self._stop.wait()
        await self.stop()
