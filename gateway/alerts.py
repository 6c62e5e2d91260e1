"""Alerts for the duty manager: what raises them, what they say, and the tasks that send them.

Rules ([alerts] in gateway.toml, parsed here; see docs/gateway.example.toml):
    bad_rating = true          a stored rating of 不满意 / 非常不满意 (any indicator or theme item);
                               never a duplicate or a rating that was not stored
    device_offline_min = 10    a registered device offline this long: one alert per episode
    uplink_down_min = 30       the uplink not ok (backoff, down, error) this long
    outbox_threshold = 0.5     the outbox past this fill ratio (< 1) or item count (>= 1)
    recovered = true           a note when a device, the uplink or the outbox is back to normal
    check_interval_s = 5, max_pending = 10000, max_age_h = 24 (then a failed alert is given up),
    keep_days = 30 (sent rows kept for dedupe), retry_base_s = 2, retry_cap_s = 600 (backoff)
    [[alerts.channels]]        gateway.alert_channels
A rule set to 0 (or bad_rating = false) is off. Without channels nothing is raised or stored.

An alert says, in Chinese: what happened, hall, window, device, local time (ISO 8601 with the
[console] timezone's offset, Asia/Shanghai by default) and, for a bad rating, the levels, the tag
labels, the matter, the case serials and the staff member (name and number): what the duty
manager needs to follow up (rules Art. 21). Never who rated: the case enrichment's `applicant` is
never read here, nor is the rater's free text sent (it may name them: the console shows it).
"""

import asyncio
import datetime
import logging
import os
import time

import aiohttp

from gateway import alert_channels, history
from gateway.alert_queue import AlertQueue
from gateway.config import ConfigError
from protocol import vocab
from protocol.rating import rating_id

log = logging.getLogger("gateway.alerts")

QUEUE_FILE = "alerts.sqlite"
UPLINK_BAD = ("backoff", "down", "error")
OUTBOX_CLEAR = 0.9           # an outbox alert's episode ends below 90 % of the threshold
PRUNE_EVERY_S = 3600.0
IDLE_S = 1.0                 # a channel's sender looks again at least this often
INDICATORS = (("overall", "总体评价"), ("business", "业务评价"), ("service", "服务评价"))
KIND_NAMES = {"bad_rating": "差评提醒", "device_offline": "评价器离线", "device_recovered": "评价器恢复",
              "uplink_down": "上报中断", "uplink_recovered": "上报恢复", "outbox_full": "待上报积压",
              "outbox_recovered": "积压解除", "test": "测试消息"}
_DEFAULTS = {"bad_rating": True, "device_offline_min": 10, "uplink_down_min": 30,
             "outbox_threshold": 0.5, "recovered": True, "check_interval_s": 5.0,
             "max_pending": 10_000, "max_age_h": 24.0, "keep_days": 30.0, "retry_base_s": 2.0,
             "retry_cap_s": 600.0, "channels": []}


class AlertConfigError(ConfigError):
    pass


def settings(raw):
    """[alerts] with defaults, checked (AlertConfigError)."""
    raw = dict(raw or {})
    unknown = sorted(k for k in raw if k not in _DEFAULTS)
    if unknown:
        raise AlertConfigError("[alerts]: unknown keys %s" % ", ".join(unknown))
    out = dict(_DEFAULTS, **raw)
    if not isinstance(out["channels"], list):
        raise AlertConfigError("[alerts] channels: use [[alerts.channels]] tables")
    for name in ("bad_rating", "recovered"):
        if not isinstance(out[name], bool):
            raise AlertConfigError("[alerts] %s must be true or false" % name)
    for name in ("device_offline_min", "uplink_down_min", "outbox_threshold", "check_interval_s",
                 "max_pending", "max_age_h", "keep_days", "retry_base_s", "retry_cap_s"):
        value = out[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise AlertConfigError("[alerts] %s must be a number >= 0" % name)
    if (out["check_interval_s"] <= 0 or out["max_pending"] < 1 or out["max_age_h"] <= 0
            or out["retry_base_s"] <= 0 or out["retry_cap_s"] < out["retry_base_s"]):
        raise AlertConfigError("[alerts] check_interval_s, max_pending, max_age_h and retry_base_s"
                               " must be positive, retry_cap_s at least retry_base_s")
    return out


def check_config(raw):
    """[alerts] and its channels as the gateway would take them (AlertConfigError, a ConfigError)."""
    try:
        alert_channels.from_config(settings(raw)["channels"])
    except alert_channels.ChannelConfigError as e:
        raise AlertConfigError(str(e)) from None


class Alerts:
    def __init__(self, raw, hall, data_dir, registry=None, store=None, uplink=lambda: None,
                 tags=None, tz=None, clock=time.time, alarm=None, rng=None, channel_clock=time.time):
        self.cfg = settings(raw)
        self.hall = hall
        self.registry = registry
        self.store = store
        self.uplink = uplink          # () -> the gateway's Uplink or None (made in Gateway.start)
        self.tags = dict((t.get("code"), t.get("label", "")) for t in tags or [] if isinstance(t, dict))
        self.tz = tz or history.timezone(history.DEFAULT_TIMEZONE)
        self.clock = clock
        self.alarm = alarm or (lambda name, detail: None)
        try:
            self.channels = alert_channels.from_config(self.cfg["channels"], clock=channel_clock)
        except alert_channels.ChannelConfigError as e:
            raise AlertConfigError(str(e)) from None
        self.started = clock()
        self.queue = None
        self._loop = None
        self._wake = {}
        self._episodes = {}
        self._uplink_bad_since = None
        if self.channels:
            self.queue = AlertQueue(os.path.join(data_dir, QUEUE_FILE), max_pending=int(self.cfg["max_pending"]),
                                    max_age_s=self.cfg["max_age_h"] * 3600.0,
                                    keep_s=self.cfg["keep_days"] * 86400.0,
                                    backoff_base_s=self.cfg["retry_base_s"],
                                    backoff_cap_s=self.cfg["retry_cap_s"], clock=clock, rng=rng,
                                    alarm=self.alarm)
            self._episodes = self.queue.call(self.queue.episodes)

    # --- raising ----------------------------------------------------------------------------
    def on_rating(self, rating, result, enrichment=None):
        """A rating was committed (any thread): a bad one that was stored now raises an alert."""
        if (self.queue is None or not self.cfg["bad_rating"] or result[0] != vocab.ACK_STORED
                or rating.get("source") != vocab.SRC_PRESS):
            return
        alert = self.bad_rating_alert(rating, enrichment)
        if alert is None:
            return
        try:
            self.queue.submit(self._raise, alert)
        except RuntimeError:      # closed: the gateway is stopping; never raised into the intake
            self.alarm("alert_store", "alert %s not queued: the gateway is stopping" % alert["key"])

    def bad_rating_alert(self, rating, enrichment=None):
        """The alert for a bad rating, or None if no level in it is bad."""
        bad = [(label, rating[name]) for name, label in INDICATORS if vocab.is_bad(rating.get(name))]
        bad += [("事项 " + str(item.get("code", "")), item.get("level"))
                for item in rating.get("items") or () if vocab.is_bad(item.get("level"))]
        if not bad:
            return None
        case = enrichment or {}     # only the fields named below: never `applicant`
        worst = max(level for _, level in bad)
        window = rating.get("window") or case.get("window") or ""
        rid = rating_id(rating)
        tags = [self.tags.get(code) or str(code) for code in rating.get("tags") or ()]
        serials = list(rating.get("serials") or ())
        at = rating.get("gateway_time") or self.clock()
        data = {"level": worst, "level_name": vocab.LEVEL_NAMES[worst],
                "levels": [{"indicator": label, "level": level, "level_name": vocab.LEVEL_NAMES[level]}
                           for label, level in bad],
                "tags": tags, "has_text": bool(rating.get("text")), "rating_id": rid,
                "case_id": rating.get("case_id"), "serials": serials,
                "matter_code": case.get("matter_code") or "", "matter_name": case.get("matter_name") or "",
                "staff_id": rating.get("staff_id") or "", "staff_name": case.get("staff_name") or ""}
        matter = data["matter_name"] + ("（%s）" % data["matter_code"] if data["matter_code"] else "")
        staff = data["staff_name"] + ("（工号 %s）" % data["staff_id"] if data["staff_id"] else "")
        lines = [("评价", "；".join("%s %s" % (label, vocab.LEVEL_NAMES[level]) for label, level in bad)),
                 ("标签", "、".join(tags) or "无"),
                 ("事项", matter or "未知"), ("办件流水号", "、".join(serials) or "未知"),
                 ("工作人员", staff or "未知"), ("评价编号", rid)]
        if data["has_text"]:
            lines.append(("文字评价", "有（请在控制台查看）"))
        lines.append(("处理", "请按差评处理规定及时回访、核实、整改"))
        title = "差评提醒：%s窗口 %s" % (window or "未知", vocab.LEVEL_NAMES[worst])
        return self._alert("bad:" + rid, "bad_rating", title, window, rating.get("device") or "", at,
                           lines, data, bad=True)

    def _alert(self, key, kind, title, window, device, at, lines, data=None, bad=False):
        when = self.local_time(at)
        head = [("类型", KIND_NAMES.get(kind, kind)), ("大厅", self.hall)]
        if window:
            head.append(("窗口", window))
        if device:
            head.append(("评价器", device))
        head.append(("时间", when))
        base = {"id": key, "kind": kind, "hall": self.hall, "window": window, "device": device,
                "time": when}
        return {"key": key, "kind": kind, "bad": bad, "title": title,
                "lines": [list(line) for line in head + lines], "data": dict(base, **(data or {}))}

    def local_time(self, at):
        return datetime.datetime.fromtimestamp(at, self.tz).isoformat(timespec="seconds")

    def _raise(self, alert):
        """On the queue's thread: store the alert for every channel that wants it, wake them."""
        names = [c.name for c in self.channels if c.wants(alert["kind"])]
        try:
            added = self.queue.add(alert, names) if names else 0
        except Exception as e:    # the disk: alarmed, never raised into the intake
            self.alarm("alert_store", "alert %s not queued (%s)" % (alert["kind"], type(e).__name__))
            return 0
        if added and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_all)
        return added

    def _wake_all(self):
        for event in self._wake.values():
            event.set()

    # --- conditions that last -------------------------------------------------------------
    def check(self):
        """Every rule that watches a state (on the queue's thread)."""
        now = self.clock()
        if self.cfg["device_offline_min"] and self.registry is not None:
            self._check_devices(now)
        if self.cfg["uplink_down_min"]:
            self._check_uplink(now)
        if self.cfg["outbox_threshold"] and self.store is not None:
            self._check_outbox(now)

    def _check_devices(self, now):
        limit = self.cfg["device_offline_min"] * 60.0
        devices = dict((d.id, d) for d in self.registry.all())
        for subject in [s for s in self._episodes if s.startswith("offline:")]:
            if subject[len("offline:"):] not in devices:      # removed: its episode ends quietly
                self._end(subject, None)
        for device in devices.values():
            subject = "offline:" + device.id
            if not device.window and subject not in self._episodes:
                continue            # at no window: a spare on the shelf, nobody waits for it
            if device.online:
                if subject in self._episodes:
                    self._end(subject, self._alert(
                        self._episodes[subject][0] + ":recovered", "device_recovered",
                        "评价器恢复在线：%s窗口 %s" % (device.window or "未分配", device.id),
                        device.window, device.id, now, [("离线时长", _minutes(now - self._episodes[subject][1]))]))
                continue
            since = device.last_seen if device.last_seen > 0 else self.started
            if now - since >= limit and subject not in self._episodes:
                last = self.local_time(device.last_seen) if device.last_seen > 0 else "本次启动以来未上线"
                self._begin(subject, since, self._alert(
                    "offline:%s:%d" % (device.id, since), "device_offline",
                    "评价器离线：%s窗口 %s" % (device.window or "未分配", device.id), device.window,
                    device.id, now, [("名称", device.name or device.id), ("离线时长", _minutes(now - since)),
                                     ("最后在线", last), ("处理", "请检查评价器电源、网络或总线接线")]))

    def _check_uplink(self, now):
        uplink = self.uplink()
        state = uplink.status.state if uplink is not None else None
        if state not in UPLINK_BAD:
            self._uplink_bad_since = None
            if state is not None and "uplink" in self._episodes:
                since = self._episodes["uplink"][1]
                self._end("uplink", self._alert(self._episodes["uplink"][0] + ":recovered",
                                                "uplink_recovered", "上报恢复：已重新连接省级平台", "",
                                                "", now, [("中断时长", _minutes(now - since))]))
            return
        if self._uplink_bad_since is None:
            self._uplink_bad_since = now
        since = self._uplink_bad_since
        if now - since >= self.cfg["uplink_down_min"] * 60.0 and "uplink" not in self._episodes:
            backlog = self.store.backlog() if self.store is not None else {}
            self._begin("uplink", since, self._alert(
                "uplink:%d" % since, "uplink_down", "上报中断：评价数据未能上报省级平台", "", "", now,
                [("中断时长", _minutes(now - since)), ("状态", state),
                 ("待上报", "%d 条评价、%d 个办件" % (backlog.get("ratings", 0), backlog.get("cases", 0))),
                 ("处理", "数据已安全保存在网关，恢复后自动补传；请检查网络")]))

    def _check_outbox(self, now):
        backlog = self.store.backlog()
        threshold = self.cfg["outbox_threshold"]
        items = backlog.get("ratings", 0) + backlog.get("cases", 0)
        value = backlog.get("fill", 0.0) if threshold < 1 else items
        if "outbox" in self._episodes:
            if value < threshold * OUTBOX_CLEAR:
                self._end("outbox", self._alert(self._episodes["outbox"][0] + ":recovered",
                                                "outbox_recovered", "积压解除：待上报数据已回落", "", "",
                                                now, [("待上报", "%d 条" % items)]))
        elif value >= threshold:
            self._begin("outbox", now, self._alert(
                "outbox:%d" % now, "outbox_full", "待上报积压：%d 条待上报" % items, "", "", now,
                [("待上报", "%d 条评价、%d 个办件" % (backlog.get("ratings", 0), backlog.get("cases", 0))),
                 ("占用", "%.0f%%" % (100 * backlog.get("fill", 0.0))),
                 ("处理", "请检查上报链路；积满后评价器将暂存评价")]))

    def _begin(self, subject, since, alert):
        self.queue.open_episode(subject, alert["key"], since)
        self._episodes[subject] = (alert["key"], since)
        self._raise(alert)

    def _end(self, subject, note):
        self.queue.close_episode(subject)
        self._episodes.pop(subject, None)
        if note is not None and self.cfg["recovered"]:
            self._raise(note)

    # --- running ----------------------------------------------------------------------------
    async def run(self):
        """The checker and one sender per channel, until cancelled (Gateway.stop)."""
        if self.queue is None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = dict((c.name, asyncio.Event()) for c in self.channels)
        async with aiohttp.ClientSession() as session:
            tasks = [asyncio.create_task(self._sender(c, session)) for c in self.channels]
            tasks.append(asyncio.create_task(self._checker()))
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _checker(self):
        pruned = 0.0
        while True:
            try:
                await self.queue.run(self.check)
                if self.clock() - pruned >= PRUNE_EVERY_S:
                    await self.queue.run(self.queue.prune)
                    pruned = self.clock()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.error("alert check failed (%s)", type(e).__name__)
                self.alarm("alert_check", "alert check failed (%s)" % type(e).__name__)
            await asyncio.sleep(self.cfg["check_interval_s"])

    async def _sender(self, channel, session):
        wake = self._wake[channel.name]
        while True:
            wait = IDLE_S
            try:
                rows = await self.queue.run(self.queue.due, channel.name)
                if rows:
                    results = []
                    for key, attempts, created, alert in rows:
                        ok, detail = await channel.send(session, alert)
                        if not ok:
                            log.warning("alert %s to %s not delivered: %s", alert["kind"], channel.name, detail)
                        results.append((key, attempts, created, ok, detail))
                    await self.queue.run(self.queue.settle, results)
                    continue
                due = await self.queue.run(self.queue.next_due, channel.name)
                if due is not None:
                    wait = min(IDLE_S, max(0.0, due - self.clock()))
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.error("alert sender %s failed (%s)", channel.name, type(e).__name__)
                self.alarm("alert_store", "alert sender %s failed (%s)" % (channel.name, type(e).__name__))
            try:
                await asyncio.wait_for(wake.wait(), wait)
            except asyncio.TimeoutError:
                pass
            wake.clear()

    async def send_test(self, name):
        """Send a test alert to channel `name` now, outside the queue: (ok, detail); KeyError if
        there is no such channel."""
        channel = next((c for c in self.channels if c.name == name), None)
        if channel is None:
            raise KeyError(name)
        alert = self._alert("test:%d" % self.clock(), "test", "测试消息：%s 告警通道" % self.hall, "", "",
                            self.clock(), [("通道", channel.name), ("说明", "收到本消息即表示通道配置正确")])
        async with aiohttp.ClientSession() as session:
            return await channel.send(session, alert)

    # --- reading ----------------------------------------------------------------------------
    def depth(self):
        """Alerts waiting for a channel (/metrics)."""
        return self.queue.depth() if self.queue is not None else 0

    async def status(self, recent=50):
        if self.queue is None:
            return {"counts": {}, "counters": {}, "recent": []}
        return await self.queue.run(self.queue.status, recent)

    def close(self):
        if self.queue is not None:
            self.queue.close()


def _minutes(seconds):
    minutes = int(seconds // 60)
    return "%d 分钟" % minutes if minutes < 120 else "%d 小时 %d 分钟" % divmod(minutes, 60)


def from_gateway(gw):
    """The gateway's alerts from its config: [alerts], [console] timezone (read as gateway.history
    reads it), [device_config] tags."""
    cfg = gw.cfg
    return Alerts(cfg.raw.get("alerts"), cfg.hall, cfg.data_dir, registry=gw.registry, store=gw.store,
                  uplink=lambda: gw.uplink, tags=(cfg.device_config or {}).get("tags"),
                  tz=history.settings(cfg.raw.get("console"))[0], clock=gw.clock, alarm=gw.alarm)
