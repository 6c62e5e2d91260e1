"""Central uplink: drains the durable outbox to the upstream rating API (docs/upstream-api.yaml).

Loop: store.upload_batch(n) (bad ratings first: they open work orders) -> map each item through the
configured code profile -> one POST /v1/batches -> settle every item with the API's verdict:
  accepted / duplicate  -> done (the store deletes it; its id stays known for dedupe)
  rejected              -> the store's dead letters, with the API's reason (never silently)
  no verdict, 5xx, timeout, connection error -> retry later with capped exponential backoff
  429                   -> wait what Retry-After says, clamped to [max(1 s, the backoff), 10 min];
                           an unusable value (negative, NaN, a past date) -> the backoff
  2xx settling not all   -> the items without a verdict wait for the backoff (never a tight loop)
  413                   -> halve the batch and go again
An item the profile cannot express (or whose sealed identity will not open) is rejected here with
the reason, so one bad record never blocks the queue.
Up to `concurrency` batches are in flight: a store cursor (upload_cursor) keeps an item in flight
from being read again, and settles run on the uplink's store thread so their fsync does not stall
the loop that maps and sends the next batch.

The batch id is a digest of the gateway id and the exact body, so re-sending the same items after a
lost answer reuses it and the API answers from its batch log; any new composition gets a new id and
the API's permanent dedupe by rating id answers "duplicate" for what it already holds.
Anything else going wrong in the loop (a full disk failing the settle, any store error, a bug) is
logged once per kind, alarmed (`uplink_error`), shown as state "error" and retried with the backoff:
run() ends only when told to stop.
Time, sleeping and randomness are injected (tests never wait).
"""

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import sqlite3
import ssl as ssl_module
import time
import traceback

import aiohttp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

try:  # orjson writes the same bytes as json.dumps(ensure_ascii=False, compact) in a tenth the time
    import orjson as _orjson
except ImportError:  # pragma: no cover - stdlib fallback
    _orjson = None

from gateway import profiles as profile_tables
from gateway.backoff import Backoff, parse_retry_after
from gateway.privacy import SealError, masked_applicant
from gateway.store_file import StoreError
from gateway.upstream_auth import NoAuth

log = logging.getLogger("gateway.uplink")

BATCH_PATH = "/v1/batches"
OUTCOMES = ("accepted", "duplicate", "rejected")
DOWN_AFTER = 3    # consecutive failures before the uplink is shown as down
RETRY_FLOOR_S = 1.0          # least wait after a 429, a reply settling nothing, or an internal error
RETRY_AFTER_MAX_S = 600.0    # most a Retry-After may hold the outbox back


class UplinkState:
    """What the status display, LEDs and metrics read. Plain attributes, cheap to copy."""

    def __init__(self, clock=time.time):
        self._clock = clock
        self.since = None              # when `state` last changed (the console shows it)
        self.state = "idle"            # idle | up | backoff | down | error (our side failed)
        self.last_error = None
        self.last_ok_at = None
        self.last_attempt_at = None
        self.next_try_at = None
        self.consecutive_failures = 0
        self.requests = 0
        self.batches_ok = 0
        self.throttled = 0
        self.unsettled = 0             # items a 2xx reply gave no verdict for
        self.errors = 0                # rounds ended by an error on our side (store, bug)
        self.sent = {"accepted": 0, "duplicate": 0, "rejected": 0, "retry": 0}

    @property
    def state(self):
        return self._state

    @state.setter
    def state(self, value):
        if value != getattr(self, "_state", None):
            self._state = value
            self.since = self._clock()

    def families(self, prefix="hall_uplink"):
        """Prometheus metric families of the uplink (gateway.metrics yields them at each scrape)."""
        out = [GaugeMetricFamily(prefix + "_up", "1 when the last batch went through",
                                 value=1.0 if self.state == "up" else 0.0),
               GaugeMetricFamily(prefix + "_consecutive_failures", "Failed rounds in a row",
                                 value=self.consecutive_failures)]
        for name, text, value in (
                ("requests", "Batches posted", self.requests),
                ("throttled", "Answers 429", self.throttled),
                ("unsettled", "Items a 2xx answer gave no verdict for", self.unsettled),
                ("errors", "Rounds ended by an error on the gateway's side", self.errors)):
            out.append(CounterMetricFamily("%s_%s" % (prefix, name), text, value=value))
        items = CounterMetricFamily(prefix + "_items", "Item verdicts by outcome", labels=["outcome"])
        for outcome in sorted(self.sent):
            items.add_metric([outcome], self.sent[outcome])
        out.append(items)
        if self.last_ok_at is not None:
            out.append(GaugeMetricFamily(prefix + "_last_ok_timestamp_seconds",
                                         "Unix time of the last batch that went through",
                                         value=self.last_ok_at))
        return out

    def as_dict(self):
        return {"state": self.state, "since": self.since, "last_error": self.last_error,
                "last_ok_at": self.last_ok_at, "last_attempt_at": self.last_attempt_at,
                "next_try_at": self.next_try_at, "consecutive_failures": self.consecutive_failures,
                "requests": self.requests, "batches_ok": self.batches_ok, "throttled": self.throttled,
                "unsettled": self.unsettled, "errors": self.errors, "sent": dict(self.sent)}


def default_ssl_context(cafile=None):
    """Verified TLS (hostname and chain); `cafile` adds a private CA (a province's own PKI)."""
    context = ssl_module.create_default_context(cafile=cafile)
    context.check_hostname = True
    context.verify_mode = ssl_module.CERT_REQUIRED
    return context


class Uplink:
    def __init__(self, store, url, gateway_id, hall, profile="gbt39046", auth=None, batch_size=500,
                 ssl=None, cafile=None, timeout_s=15.0, backoff=None, sleep=asyncio.sleep,
                 clock=time.time, sealer=None, division=None, idle_s=1.0, concurrency=2,
                 alarm=None):
        self.store = store
        self.url = url.rstrip("/") + BATCH_PATH
        self.gateway_id = gateway_id
        self.hall = hall
        self.profile = profile_tables.get(profile)
        self.auth = auth or NoAuth()
        self.batch_size = batch_size
        self.max_batch = batch_size
        if ssl is None and self.url.startswith("https:"):
            ssl = default_ssl_context(cafile)
        self.ssl = ssl
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.clock = clock
        self.sealer = sealer
        self.division = division
        self.idle_s = idle_s
        self.concurrency = max(1, concurrency)
        self.alarm = alarm             # alarm(name, detail): the gateway's Gateway.alarm
        self.status = UplinkState(clock)
        self._errors_logged = set()    # kinds of error logged since the last good batch
        self._session = None
        self._store_thread = None
        self._wake = asyncio.Event()
        if self.profile.applicant != "omit" and sealer is None:
            raise ValueError("profile %s sends the applicant: the uplink needs the Sealer"
                             % self.profile.name)

    # --- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self):
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._store_thread is not None:
            self._store_thread.shutdown(wait=True)   # a settle under way finishes first
            self._store_thread = None

    async def _in_store(self, method, *args):
        """Run a store call on the uplink's own thread: a settle's commit waits for the disk
        (fsync) without stalling the event loop, which maps and sends the next batch meanwhile.
        (Reads stay on the loop: decoding on the thread would fight the loop for the GIL.)"""
        if self._store_thread is None:
            self._store_thread = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="uplink-store")
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, method, *args)

    def _client(self):
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(ssl=self.ssl, limit=max(2, self.concurrency)),
                json_serialize=json.dumps)
        return self._session

    def notify(self):
        """New data was committed: end an idle wait early (never a backoff)."""
        self._wake.set()

    async def run(self, stop=None):
        """Drain until `stop` (an asyncio.Event) is set."""
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                try:
                    wait = await self.pump()
                except Exception as exc:   # never end the task: the outbox would stop draining
                    wait = self._error(exc)
                if wait is None:        # nothing to send: idle until notified
                    self._wake.clear()
                    await _first_of(self._wake.wait(), stop.wait(), timeout=self.idle_s)
                elif wait > 0:
                    await _first_of(self.sleep(wait), stop.wait())
        finally:
            await self.close()

    async def drain(self, max_rounds=10 ** 9):
        """Send until the outbox is empty (tests, benchmarks); returns the number of rounds."""
        rounds = 0
        while rounds < max_rounds:
            wait = await self.pump()
            rounds += 1
            if wait is None:
                return rounds
            if wait > 0:
                await self.sleep(wait)
        return rounds

    # --- batches -------------------------------------------------------------------------
    async def step(self):
        """Send one batch. Returns None when the outbox is empty, else seconds to wait first."""
        items = self.store.upload_batch(self.batch_size)
        if not items:
            self._idle()
            return None
        return await self._send(items)

    async def pump(self):
        """Keep up to `concurrency` batches in flight (the gateway maps and settles one while the
        API stores another) until the outbox is empty (None) or a batch failed (seconds to wait).

        A cursor past the items handed out keeps the store from reading an item in flight again;
        an item left for a retry is picked up by the next pump, which starts from the front."""
        inflight = set()
        cursor = None
        failed_wait = None
        error = None          # the first exception: raised once nothing is in flight any more
        sent_any = False
        while True:
            while failed_wait is None and error is None and len(inflight) < self.concurrency:
                try:
                    items = self.store.upload_batch(self.batch_size, cursor)
                except Exception as exc:
                    error = exc
                    break
                if not items:
                    break
                cursor = upload_cursor(items, cursor)
                sent_any = True
                inflight.add(asyncio.ensure_future(self._send(items)))
            if not inflight:
                if error is not None:
                    raise error
                if failed_wait is None and not sent_any:
                    self._idle()
                return failed_wait if failed_wait is not None else (0 if sent_any else None)
            done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                try:
                    wait = task.result()
                except Exception as exc:
                    error = error or exc
                    continue
                if wait:
                    failed_wait = max(failed_wait or 0, wait)

    def _idle(self):
        st = self.status
        if st.state == "error":     # the store answers again and holds nothing to send
            self.backoff.success()
            st.consecutive_failures = 0
            st.next_try_at = None
            self._errors_logged.clear()
        if st.state != "backoff" and st.consecutive_failures == 0:
            st.state = "idle" if st.last_ok_at is None else "up"

    def _error(self, exc):
        """A round ended by an exception (store error, full disk, bug): log it once per kind
        until a batch goes through again, alarm every time (Gateway.alarm counts and rate-limits),
        show state "error" and wait for the backoff. Returns the wait."""
        reason = error_reason(exc)
        if reason not in self._errors_logged:
            self._errors_logged.add(reason)
            log.error("uplink: %s; retrying with backoff", reason)
        wait = max(RETRY_FLOOR_S, self.backoff.failure())
        st = self.status
        st.errors += 1
        st.consecutive_failures += 1
        st.last_error = reason
        st.next_try_at = self.clock() + wait
        st.state = "error"
        if self.alarm is not None:
            try:
                self.alarm("uplink_error", reason)
            except Exception:
                log.exception("uplink: alarm callback failed")
        return wait

    async def _send(self, items):
        verdicts, wire_items = self._map(items)
        if not wire_items:
            await self._settle(verdicts)
            return 0
        body = self._body(wire_items)
        self.status.requests += 1
        self.status.last_attempt_at = self.clock()
        try:
            headers = {"Content-Type": "application/json"}
            headers.update(self.auth.headers("POST", BATCH_PATH, body))
            async with self._client().post(self.url, data=body, headers=headers) as response:
                text = await response.read()
                status, answer_headers = response.status, response.headers
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return await self._failed(items, verdicts, "%s: %s" % (type(exc).__name__, exc))
        return await self._answer(status, answer_headers, text, items, wire_items, verdicts)

    def _map(self, items):
        verdicts = []        # local verdicts (profile failures) to settle
        wire_items = []
        for item in items:
            try:
                data = self.profile.map_record(item["kind"], self._canonical(item))
            except (profile_tables.ProfileError, SealError) as exc:
                reason = "profile %s: %s" % (self.profile.name, exc)
                log.error("item %s cannot be sent: %s", item["item_id"], reason)
                verdicts.append((item["item_id"], "rejected", reason))
                continue
            wire_items.append({"kind": item["kind"], "id": item["item_id"], "data": data})
        return verdicts, wire_items

    def _canonical(self, item):
        record = item["record"]
        if item["kind"] == "rating":
            canon = profile_tables.canonical_rating(record)
        else:
            canon = dict(record)
        if self.division and "division" not in canon:
            canon["division"] = self.division
        sealed = record.get("applicant")
        if sealed and self.profile.applicant != "omit" and item["kind"] == "rating":
            applicant = self.sealer.open(sealed)
            canon["applicant"] = applicant if self.profile.applicant == "clear" \
                else masked_applicant(applicant)
        return canon

    def _body(self, wire_items):
        items_text = _dumps(wire_items)
        batch_id = hashlib.sha256(b"%s\n%s" % (self.gateway_id.encode("utf-8"), items_text)) \
            .hexdigest()[:32]
        head = _dumps({"batch_id": batch_id, "gateway_id": self.gateway_id, "hall": self.hall,
                       "profile": self.profile.name})
        return b'%s,"items":%s}' % (head[:-1], items_text)

    # --- verdicts ------------------------------------------------------------------------
    async def _answer(self, status, headers, text, items, wire_items, verdicts):
        if 200 <= status < 300:
            try:
                results = _loads(text)["results"]
                by_id = {r["id"]: r for r in results if isinstance(r, dict) and "id" in r}
            except (ValueError, KeyError, TypeError):
                return await self._failed(items, verdicts, "unreadable answer")
            for wire in wire_items:
                result = by_id.get(wire["id"])
                outcome = result.get("status") if result else None
                if outcome in OUTCOMES:
                    reason = result.get("reason") if outcome == "rejected" else None
                    if outcome == "rejected":
                        log.warning("item %s rejected upstream: %s", wire["id"], reason)
                    verdicts.append((wire["id"], outcome, reason))
                else:
                    verdicts.append((wire["id"], "retry", "no verdict"))
            await self._settle(verdicts)
            unsettled = sum(1 for v in verdicts if v[1] == "retry")
            if unsettled:    # an answer that settles nothing must not be sent again at once
                self.status.unsettled += unsettled
                wait = max(RETRY_FLOOR_S, self.backoff.failure())
                self._down("HTTP %d without a verdict for %d of %d items"
                           % (status, unsettled, len(wire_items)), wait)
                return wait
            self._ok()
            if self.batch_size < self.max_batch:
                self.batch_size = min(self.max_batch, self.batch_size * 2)
            return 0
        if status == 429:
            await self._settle(verdicts)   # local rejections stand; nothing was tried upstream
            self.status.throttled += 1
            asked = parse_retry_after(headers.get("Retry-After"), self.clock())
            wait = max(RETRY_FLOOR_S, self.backoff.failure(), asked or 0.0)
            wait = min(wait, RETRY_AFTER_MAX_S)
            self._down("throttled (429), retry after %.1f s" % wait, wait, count=False)
            return wait
        if status == 413 and self.batch_size > 1:
            await self._settle(verdicts)
            self.batch_size = max(1, self.batch_size // 2)
            return 0
        detail = _error_text(text)
        return await self._failed(items, verdicts, "HTTP %d %s" % (status, detail),
                                  tried=status >= 500)

    async def _failed(self, items, verdicts, error, tried=True):
        """5xx, timeout, connection error, unreadable answer: all items stay for a retry."""
        rejected = {v[0] for v in verdicts}
        if tried:
            verdicts = verdicts + [(item["item_id"], "retry", error) for item in items
                                   if item["item_id"] not in rejected]
        await self._settle(verdicts)
        wait = self.backoff.failure()
        self._down(error, wait)
        return wait

    def _down(self, error, wait, count=True):
        st = self.status
        if count:
            st.consecutive_failures += 1
        st.last_error = error
        st.next_try_at = self.clock() + wait
        st.state = "down" if st.consecutive_failures >= DOWN_AFTER else "backoff"
        log.warning("uplink: %s; next try in %.1f s", error, wait)

    def _ok(self):
        st = self.status
        self.backoff.success()
        st.consecutive_failures = 0
        st.state = "up"
        st.last_ok_at = self.clock()
        st.next_try_at = None
        st.batches_ok += 1
        self._errors_logged.clear()

    async def _settle(self, verdicts):
        if not verdicts:
            return
        await self._in_store(self.store.settle, verdicts)
        for _, outcome, _ in verdicts:
            self.status.sent[outcome] += 1


def error_reason(exc):
    """What is logged and alarmed of an error in the loop: a store or disk error's own words; of
    anything else only its type and where it was raised (its message might quote a record, and so
    a rater's identity)."""
    if isinstance(exc, (sqlite3.Error, OSError, StoreError)):
        return ("%s: %s" % (type(exc).__name__, exc))[:200]
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    return "%s at %s:%d" % (type(exc).__name__, os.path.basename(frames[-1].filename),
                            frames[-1].lineno)


def upload_cursor(items, after=None):
    """The store cursor (last bad seq, last other seq) once `items` are handed out."""
    bad_after, other_after = after or (0, 0)
    for item in items:
        if item["bad"]:
            bad_after = max(bad_after, item["seq"])
        else:
            other_after = max(other_after, item["seq"])
    return bad_after, other_after


def _dumps(obj):
    """Compact UTF-8 JSON bytes (the batch id is a digest of them)."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _loads(data):
    return _orjson.loads(data) if _orjson is not None else json.loads(data)


def _error_text(text):
    try:
        return str(json.loads(text).get("error", ""))[:200]
    except (ValueError, AttributeError):
        return text[:200].decode("utf-8", "replace") if isinstance(text, bytes) else ""


async def _first_of(*awaitables, timeout=None):
    """Wait until the first of several awaitables finishes (or `timeout`), cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
