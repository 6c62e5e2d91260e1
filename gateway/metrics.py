"""/metrics: the gateway's Prometheus exposition, built by prometheus_client from the live state.

One custom collector per Gateway (its own CollectorRegistry, never the process-wide one: tests and
the simulator run several gateways in one process). collect() reads the parts as they are at the
scrape (registry, store backlog, rejections, buses, uplink, alerts), so nothing is counted twice
and nothing can drift from /status.

/metrics is open to anyone on the hall LAN (lobby screens, the city's Prometheus): it carries
counts and states only, never a level, tag, text, staff name, key or identity. Device, window, bus
and reason labels are ids and codes. The hall is not a label here: the scrape config sets it per
target (docs/prometheus/prometheus.yml).

Families (hall_gateway_* unless named; the first block and hall_uplink_* are the names older
dashboards use):
    outbox_items{kind} outbox_fill_ratio dead_letters store_events_total{result} devices
    devices_online rejections_total{where,reason} alarms_total{name} mqtt_connected
    mqtt_messages_total mqtt_ingest_events_total{event} cases_total{outcome} uptime_seconds,
    Gateway.metrics extensions (hall_gateway_<name>), hall_uplink_* (gateway.uplink.UplinkState);
    uplink_state{state} oldest_pending_age_seconds disk_free_bytes alert_queue_depth
    device_online / device_last_seen_timestamp_seconds / device_outbox {device,window,transport}
    bus_open{bus} bus_rounds_total{bus} bus_noise_bytes_total{bus} bus_errors_total{bus,kind}
    custody (SPEC 3.11): store_generation_info{generation} (16 hex digits), reoffered_total,
    device_custody / device_custody_oldest_age_seconds {device,window,transport}
"""

import logging
import shutil

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger("gateway.metrics")

UPLINK_STATES = ("idle", "up", "backoff", "down", "error", "off")   # off: no [uplink] configured
# Bus error kinds: the frame decoder's discards (SPEC 4.3), the link's bad/stale/foreign replies,
# the master's timeouts (per attempt) and exchanges given up, device refusals, replies behind noise.
DECODER_ERRORS = ("bad_header", "oversize", "bad_crc", "overflow", "dropped_partial")
CHANNEL_ERRORS = (("bad_replies", "bad_reply"), ("stale", "stale"), ("gave_up", "gave_up"))


def make_registry(gw):
    """A CollectorRegistry holding only this gateway's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(gw))
    return registry


def exposition(registry):
    """The text a scrape gets (prometheus_client's text format, UTF-8)."""
    return generate_latest(registry).decode("utf-8")


def _gauge(name, text, value=None, labels=()):
    if labels:
        return GaugeMetricFamily(name, text, labels=list(labels))
    return GaugeMetricFamily(name, text, value=float(value))


def _labelled(family, rows):
    """Add {labels tuple: value} rows (labels as strings) to a labelled family; returns it."""
    for labels, value in sorted(rows.items()):
        family.add_metric([str(x) for x in labels], float(value))
    return family


class GatewayCollector:
    """Reads a gateway.app.Gateway at each scrape (any thread: the HTTP handler runs it in the
    loop's executor, as it reads the store under its lock)."""

    def __init__(self, gw):
        self.gw = gw
        self._failed = set()     # optional parts whose reading failed: logged once each

    def collect(self):
        gw = self.gw
        backlog = gw.store.backlog()
        yield from self._gateway(gw, backlog)
        yield from self._extensions(gw)
        if gw.uplink is not None:
            yield from gw.uplink.status.families()
        yield from self._health(gw, backlog)
        yield from self._devices(gw)
        yield from self._custody(gw)
        yield from self._buses(gw)

    # --- the families older dashboards read -------------------------------------------------
    @staticmethod
    def _gateway(gw, backlog):
        counts = gw.registry.counts()
        ingest = dict(gw.bridge.ingest.stats)     # copies: other threads add keys meanwhile
        yield _labelled(_gauge("hall_gateway_outbox_items", "Items waiting for the uplink",
                               labels=("kind",)),
                        {("rating",): backlog["ratings"], ("case",): backlog["cases"]})
        yield _gauge("hall_gateway_outbox_fill_ratio", "Outbox fill (0..1)", backlog["fill"])
        yield _gauge("hall_gateway_dead_letters", "Dead letters kept for review",
                     backlog["dead_letters"])
        yield _labelled(CounterMetricFamily("hall_gateway_store_events", "Store results by kind",
                                            labels=["result"]),
                        dict(((k,), v) for k, v in dict(gw.store.stats).items()))
        yield _gauge("hall_gateway_devices", "Registered devices", counts["total"])
        yield _gauge("hall_gateway_devices_online", "Devices online", counts["online"])
        yield _labelled(CounterMetricFamily("hall_gateway_rejections",
                                            "Rejected inputs by origin and reason",
                                            labels=["where", "reason"]),
                        gw.rejections.snapshot())
        yield _labelled(CounterMetricFamily("hall_gateway_alarms", "Alarms raised by name",
                                            labels=["name"]),
                        dict(((k,), v) for k, v in dict(gw.alarms).items()))
        yield _gauge("hall_gateway_mqtt_connected", "1 when connected to the hall broker",
                     gw.bridge.connected.is_set())
        yield CounterMetricFamily("hall_gateway_mqtt_messages", "MQTT messages received",
                                  value=gw.bridge.stats["messages"] + ingest.get("publishes", 0))
        yield _labelled(CounterMetricFamily(
            "hall_gateway_mqtt_ingest_events",
            "Rating intake connection: connects, drops, publishes, groups, refusals, broken packets",
            labels=["event"]), dict(((k,), v) for k, v in ingest.items()))
        yield _labelled(CounterMetricFamily("hall_gateway_cases", "Case events by outcome",
                                            labels=["outcome"]),
                        dict(((k,), v) for k, v in dict(gw.cases.stats).items()))
        yield _gauge("hall_gateway_uptime_seconds", "Seconds since start", gw.clock() - gw.started)

    @staticmethod
    def _extensions(gw):
        """Gateway.metrics: name -> number, or a callable returning a number or a
        {((label, value), ...): number} dict (label names from the first key)."""
        for name, value in sorted(dict(gw.metrics).items()):
            value = value() if callable(value) else value
            full = "hall_gateway_" + name
            if isinstance(value, dict):
                if not value:
                    continue
                names = [k for k, _ in next(iter(value), ())]
                yield _labelled(_gauge(full, name.replace("_", " "), labels=names),
                                dict((tuple(v for _, v in key), n) for key, n in value.items()))
            else:
                yield _gauge(full, name.replace("_", " "), value)

    # --- what a city's data office watches across halls --------------------------------------
    def _health(self, gw, backlog):
        state = gw.uplink.status.state if gw.uplink is not None else "off"
        family = _gauge("hall_gateway_uplink_state", "1 for the uplink's current state "
                        "(off: no uplink configured)", labels=("state",))
        for name in UPLINK_STATES + (() if state in UPLINK_STATES else (state,)):
            family.add_metric([name], 1.0 if name == state else 0.0)
        yield family
        oldest = backlog.get("oldest_at")
        age = max(0.0, gw.clock() - oldest) if oldest is not None else 0.0
        yield _gauge("hall_gateway_oldest_pending_age_seconds",
                     "Age of the oldest item not yet at the central API (0: none pending)", age)
        free = self._optional("disk", lambda: shutil.disk_usage(gw.cfg.data_dir).free)
        if free is not None:
            yield _gauge("hall_gateway_disk_free_bytes", "Free space where the store lives", free)
        alerts = getattr(gw, "alerts", None)
        depth = self._optional("alerts", alerts.depth) if alerts is not None else 0
        if depth is not None:
            yield _gauge("hall_gateway_alert_queue_depth",
                         "Alerts queued for their channels, not yet delivered", depth)

    def _optional(self, what, read):
        """read(), or None (logged once) when that part cannot answer: a scrape never fails."""
        try:
            value = read()
        except Exception as e:
            if what not in self._failed:
                self._failed.add(what)
                log.warning("metrics: %s unavailable (%s)", what, type(e).__name__)
            return None
        self._failed.discard(what)
        return value

    @staticmethod
    def _devices(gw):
        labels = ("device", "window", "transport")
        online = _gauge("hall_gateway_device_online", "1 while the device answers", labels=labels)
        seen = _gauge("hall_gateway_device_last_seen_timestamp_seconds",
                      "Unix time the device was last heard from (absent: never)", labels=labels)
        outbox = _gauge("hall_gateway_device_outbox",
                        "Ratings in the device's own outbox, as it last reported", labels=labels)
        for device in sorted(gw.registry.all(), key=lambda d: d.id):
            key = [device.id, device.window, device.transport]
            online.add_metric(key, 1.0 if device.online else 0.0)
            outbox.add_metric(key, float(device.outbox))
            if device.last_seen:
                seen.add_metric(key, float(device.last_seen))
        return online, seen, outbox

    @staticmethod
    def _custody(gw):
        """What devices keep until the central API holds it, and the store they last settled with."""
        info = _gauge("hall_gateway_store_generation_info",
                      "The store's generation (custody: a new one makes devices re-offer)",
                      labels=("generation",))
        info.add_metric(["%016x" % gw.store.generation], 1.0)
        yield info
        yield CounterMetricFamily("hall_gateway_reoffered", "Ratings committed from copies that "
                                  "devices offered again", value=gw.store.stats.get("reoffered", 0))
        labels = ("device", "window", "transport")
        held = _gauge("hall_gateway_device_custody", "Acknowledged ratings the device keeps until "
                      "the central API holds them, as it last reported", labels=labels)
        age = _gauge("hall_gateway_device_custody_oldest_age_seconds",
                     "Age of the oldest of them (absent: none or unknown)", labels=labels)
        now = gw.clock()
        for device in sorted(gw.registry.all(), key=lambda d: d.id):
            key = [device.id, device.window, device.transport]
            held.add_metric(key, float(device.custody))
            if device.custody and device.custody_oldest:
                age.add_metric(key, max(0.0, now - device.custody_oldest))
        yield held
        yield age

    @staticmethod
    def _buses(gw):
        is_open = _gauge("hall_gateway_bus_open", "1 while the RS-485 port is open", labels=("bus",))
        rounds = CounterMetricFamily("hall_gateway_bus_rounds", "Polling rounds", labels=["bus"])
        noise = CounterMetricFamily("hall_gateway_bus_noise_bytes",
                                    "Bytes on the line that were no frame", labels=["bus"])
        errs = CounterMetricFamily("hall_gateway_bus_errors", "RS-485 errors by kind",
                                   labels=["bus", "kind"])
        for bus in gw.buses:
            name = bus.cfg.url
            link = bus.bus
            is_open.add_metric([name], 1.0 if bus.port is not None else 0.0)
            rounds.add_metric([name], float(bus.rounds))
            decoder = dict(link.decoder.stats)
            noise.add_metric([name], float(decoder.get("noise_bytes", 0)))
            kinds = dict((k, decoder.get(k, 0)) for k in DECODER_ERRORS)
            channels = list(link.channels.values())
            for stat, kind in CHANNEL_ERRORS:
                kinds[kind] = sum(ch.stats.get(stat, 0) for ch in channels)
            kinds["foreign"] = link.stats.get("foreign", 0)
            peers = list(bus.peers.values())
            kinds["timeout"] = sum(p.stats["timeouts"] for p in peers)
            kinds["refused"] = sum(p.stats["refused"] for p in peers)
            kinds["noisy_reply"] = bus.line.get("noisy_replies", 0)
            for kind, n in sorted(kinds.items()):
                errs.add_metric([name, kind], float(n))
        return is_open, rounds, noise, errs
