"""The uplink under a misbehaving central API and a full disk, in real time on loopback: a bad
Retry-After or a 200 that settles nothing never makes it spin, and a settle failing on a full disk
is alarmed and retried until the disk has room again, with no restart (the task never ends)."""

import asyncio
import email.utils
import logging
import time

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from gateway import config as config_mod
from gateway import upstream_auth
from gateway.app import Gateway
from gateway.backoff import Backoff, parse_retry_after
from gateway.uplink import Uplink
from protocol import vocab
from tests.gw_support import HALL, device_key
from tests.test_gw_uplink import make_uplink, uplink_samples
from tests.uplink_support import SECRET, FakeClock, Sleeps, T0, central, fill, outbox

WINDOW_S = 3.0
MAX_REQUESTS = 5      # in WINDOW_S: a 1 s floor allows 4; a spinning uplink makes thousands
PAST_DATE = "Wed, 21 Oct 2015 07:28:10 GMT"
BAD_RETRY_AFTER = ["0", "-5", "nan", "inf", PAST_DATE, "soon", ""]


def live_uplink(store, server):
    """Real clock, real sleep, real jitter: what a gateway runs."""
    return Uplink(store, server.url, "gw-futian", "futian-1",
                  auth=upstream_auth.HmacAuth("gw-futian", SECRET),
                  backoff=Backoff(base=1, cap=60), timeout_s=2)


async def run_for(uplink, seconds):
    """Run the uplink's own loop for `seconds`; returns whether the task was still alive."""
    stop = asyncio.Event()
    task = asyncio.ensure_future(uplink.run(stop))
    await asyncio.sleep(seconds)
    alive = not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)
    return alive


def test_bad_retry_after_values_never_make_the_uplink_spin(tmp_path):
    async def one(value, index):
        store = outbox(tmp_path, "outbox-%d.db" % index)
        fill(store, "win-r%d" % index, range(1, 4))
        async with central(tmp_path / str(index)) as server:
            server.faults.set(throttle_next=10 ** 6, retry_after=value)
            uplink = live_uplink(store, server)
            alive = await run_for(uplink, WINDOW_S)
            return server.requests["batches"], uplink.status, alive

    async def main():
        for index in range(len(BAD_RETRY_AFTER)):
            (tmp_path / str(index)).mkdir()
        return await asyncio.gather(*[one(v, i) for i, v in enumerate(BAD_RETRY_AFTER)])

    outcomes = dict(zip(BAD_RETRY_AFTER, asyncio.run(main())))
    counts = {value: n for value, (n, _, _) in outcomes.items()}
    assert all(2 <= n <= MAX_REQUESTS for n in counts.values()), counts
    for value, (n, status, alive) in outcomes.items():
        assert alive and status.throttled == n and status.state in ("backoff", "down"), value
        assert status.sent["accepted"] == 0


@pytest.mark.parametrize("header, expected", [
    ("2", 2.0), ("300", 300.0), ("86400", 600.0),          # obeyed, at most 10 minutes
    ("0", 1.0), ("-5", 1.0), ("nan", 1.0), ("soon", 1.0),  # the floor (the backoff drew 0.5)
    (PAST_DATE, 1.0),
    (email.utils.formatdate(T0 + 30, usegmt=True), 30.0),  # a date 30 s ahead
])
def test_retry_after_is_obeyed_within_the_clamp(tmp_path, header, expected):
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-c", [1, 2])
        async with central(tmp_path) as server:
            server.faults.set(throttle_next=1, retry_after=header)
            clock = FakeClock()
            async with make_uplink(store, server, clock=clock) as uplink:
                wait = await uplink.step()
                assert uplink.status.next_try_at == clock.now + wait
                return wait
    assert asyncio.run(main()) == expected


def test_a_long_run_of_throttles_backs_off_beyond_a_short_retry_after(tmp_path):
    """Retry-After is the least wait: repeated 429s still grow the normal backoff."""
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-t", [1])
        async with central(tmp_path) as server:
            server.faults.set(throttle_next=8, retry_after="1")
            async with make_uplink(store, server) as uplink:
                waits = [await uplink.step() for _ in range(8)]
        return waits
    assert asyncio.run(main()) == [1, 1, 2, 4, 8, 16, 30, 30]   # max(1, 0.5 x ceiling); cap 60


HEADERS = st.one_of(
    st.text(max_size=40),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10 ** 15, max_value=10 ** 15).map(str),
    st.integers(min_value=0, max_value=2 ** 32).map(
        lambda t: email.utils.formatdate(t, usegmt=True)))


@settings(max_examples=300, deadline=None)
@given(HEADERS)
def test_any_retry_after_header_waits_between_the_floor_and_the_ceiling(header):
    asked = parse_retry_after(header, T0)
    assert asked is None or (asked >= 0 and asked == asked and asked != float("inf"))
    uplink = Uplink(None, "http://127.0.0.1:9", "gw", HALL, clock=FakeClock(),
                    backoff=Backoff(base=1, cap=60))
    wait = asyncio.run(uplink._answer(429, {"Retry-After": header}, b"", [], [], []))
    assert 1.0 <= wait <= 600.0
    if asked is not None:
        assert wait >= min(asked, 600.0)


def forgetful_center(server, mode):
    """The central API answering 200 whose results settle none (or only some) of the items."""
    original = server.store.receive_batch

    def answer(envelope, digest=None):
        reply = original(envelope, digest)
        results = reply["results"]
        if mode == "empty":
            results = []
        elif mode == "other_ids":
            results = [dict(r, id="x-" + r["id"]) for r in results]
        elif mode == "half":
            results = results[:len(results) // 2]
        return dict(reply, results=results)
    server.store.receive_batch = answer


@pytest.mark.parametrize("mode", ["empty", "other_ids", "half"])
def test_a_200_that_settles_nothing_is_a_failure_not_a_tight_loop(tmp_path, mode):
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-u", range(1, 7))
        async with central(tmp_path) as server:
            forgetful_center(server, mode)
            uplink = live_uplink(store, server)
            alive = await run_for(uplink, WINDOW_S)
            return server.requests["batches"], uplink, store.backlog(), alive

    requests, uplink, backlog, alive = asyncio.run(main())
    assert alive and 1 <= requests <= MAX_REQUESTS, requests
    st = uplink.status
    assert st.state in ("backoff", "down") and st.state != "up"
    assert "without a verdict" in st.last_error
    metrics = uplink_samples(st)
    assert metrics["hall_uplink_up"] == 0
    assert metrics["hall_uplink_unsettled_total"] == st.unsettled
    if mode == "half":      # each answer settles half of what is left: progress, with waits
        settled = st.sent["accepted"] + st.sent["duplicate"]   # a later trip: "duplicate"
        assert st.sent["accepted"] == 3 and settled >= 4 and settled + backlog["ratings"] == 6
        assert st.unsettled == st.sent["retry"] > 0
    else:
        assert backlog["ratings"] == 6 and st.sent["accepted"] == 0
        assert st.unsettled == 6 * requests


def test_unsettled_items_are_retried_with_the_backoff_then_settle(tmp_path):
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-v", range(1, 5))
        async with central(tmp_path) as server:
            original = server.store.receive_batch
            calls = []

            def twice_empty(envelope, digest=None):
                calls.append(1)
                reply = original(envelope, digest)
                return dict(reply, results=[]) if len(calls) <= 2 else reply
            server.store.receive_batch = twice_empty
            clock = FakeClock()
            sleeps = Sleeps(clock)
            async with make_uplink(store, server, clock=clock, sleeps=sleeps) as uplink:
                await uplink.drain()
            assert sleeps.calls == [1, 1]       # max(floor 1 s, 0.5 and 1 drawn)
            assert uplink.status.state == "up" and uplink.status.unsettled == 8
            assert uplink.status.sent["accepted"] == 4 and store.backlog()["ratings"] == 0
            assert server.store.report()["replayed_batches"] == 2   # same items, same batch id
    asyncio.run(main())


def test_any_exception_is_alarmed_without_its_message_and_the_loop_lives_on(tmp_path, caplog):
    """A bug's message may quote a record (an applicant): only its type and place are told."""
    secret = "朱镕 44030119851231002X"

    async def main():
        store = outbox(tmp_path)
        fill(store, "win-e", range(1, 4))
        original = store.upload_batch
        broken = [True]

        def upload_batch(limit, after=None):
            if broken[0]:
                raise ValueError("cannot read %s" % secret)
            return original(limit, after)
        store.upload_batch = upload_batch
        alarms = []
        async with central(tmp_path) as server:
            uplink = live_uplink(store, server)
            uplink.alarm = lambda name, detail: alarms.append((name, detail))
            stop = asyncio.Event()
            task = asyncio.ensure_future(uplink.run(stop))
            await asyncio.sleep(1.5)
            assert not task.done()
            st = uplink.status
            assert st.state == "error" and st.next_try_at > time.time()
            assert st.last_error.startswith("ValueError at test_gw_uplink_faults.py:")
            assert 1 <= len(alarms) <= 2 and alarms[0] == ("uplink_error", st.last_error)
            broken[0] = False
            deadline = time.monotonic() + 10
            while (store.backlog()["ratings"] or st.state != "up") and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert store.backlog()["ratings"] == 0 and st.state == "up" and not task.done()
            stop.set()
            await asyncio.wait_for(task, 5)
            return alarms

    with caplog.at_level(logging.DEBUG):
        alarms = asyncio.run(main())
    assert secret not in caplog.text and secret not in str(alarms)
    assert "44030119851231002X" not in caplog.text
    assert len([r for r in caplog.records if "ValueError" in r.getMessage()]) == 1


# --- a full disk, the whole gateway ------------------------------------------------------

BAD_CASES = 24     # the central API rejects them: their dead letters need new database pages


def bad_case(n):
    """A finished case whose key does not match its serial: the central API rejects it."""
    return {"case_key": "SNX%03d#3" % n, "serials": ["SNY%03d" % n], "node": 3,
            "deadline": T0 + 600000, "completed_at": T0, "matter_code": "440300-007",
            "matter_name": "不动产登记（转移登记）", "staff_id": "1", "staff_name": "李堃",
            "window": "A01", "hall": HALL, "items": []}


def gateway_config(broker, tmp_path, server):
    return config_mod.from_dict({
        "gateway": {"hall": HALL, "data_dir": str(tmp_path / "gw")},
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "gw-uplink-faults"},
        "http": {"host": "127.0.0.1", "port": 0},
        "devices": [{"id": "dev-a", "window": "A01", "key": device_key("dev-a").hex()}],
        "uplink": {"url": server.url, "gateway_id": "gw-futian", "hmac_secret": SECRET},
    })


async def until(predicate, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        await asyncio.sleep(0.01)


async def get(gw, path):
    async with aiohttp.ClientSession() as http:
        async with http.get("http://127.0.0.1:%d%s" % (gw.http_port, path)) as response:
            assert response.status == 200
            return await (response.json() if path == "/status" else response.text())


def test_full_disk_is_alarmed_and_the_backlog_drains_once_freed_without_restart(
        mosquitto_broker, tmp_path, caplog):
    async def main():
        async with central(tmp_path) as server:
            gw = Gateway(gateway_config(mosquitto_broker, tmp_path, server))
            fill(gw.store, "win-d", range(1, 31))
            for n in range(BAD_CASES):
                assert gw.store.commit_case(bad_case(n))[0] == vocab.ACK_STORED
            db = gw.store._db
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            assert db.execute("PRAGMA max_page_count=%d" % pages).fetchone()[0] == pages
            await gw.start()
            gw.uplink.backoff = Backoff(base=0.25, cap=1.0)   # errors wait the 1 s floor
            try:
                st = gw.uplink.status
                task = gw._uplink_task

                def failed_twice():
                    if task.done():
                        raise AssertionError("the uplink task ended: %r" % (task.exception(),))
                    return (gw.alarms.get("uplink_error", 0) >= 2 and st.next_try_at is not None
                            and st.next_try_at > time.time())
                await until(failed_twice, "two failed settles and a next try ahead")
                status = (await get(gw, "/status"))["uplink"]
                assert status["state"] == "error"
                assert "database or disk is full" in status["last_error"]
                assert status["next_try_at"] > status["last_attempt_at"]
                assert gw.alarms["uplink_error"] >= 2
                assert gw.store.backlog()["ratings"] == 30
                assert not task.done()
                with gw.store._lock:    # the operator frees space
                    db.execute("PRAGMA max_page_count=1073741823")
                await until(lambda: gw.store.backlog()["ratings"] + gw.store.backlog()["cases"]
                            == 0, "the backlog to drain")
                await until(lambda: st.state == "up", "the uplink up again")
                assert not task.done()
                assert gw.store.backlog()["dead_letters"] == BAD_CASES
                assert server.store.report()["received"] == 30
                status = (await get(gw, "/status"))["uplink"]
                assert status["state"] == "up" and status["next_try_at"] is None
                return st.errors
            finally:
                await gw.stop()

    with caplog.at_level(logging.DEBUG, logger="gateway.uplink"):
        errors = asyncio.run(main())
    logged = [r for r in caplog.records
              if r.name == "gateway.uplink" and "disk is full" in r.getMessage()]
    assert errors >= 2 and len(logged) == 1     # once per kind, not once per attempt


def test_metrics_include_the_uplink_families(mosquitto_broker, tmp_path):
    async def main():
        async with central(tmp_path) as server:
            gw = Gateway(gateway_config(mosquitto_broker, tmp_path, server))
            fill(gw.store, "win-m", range(1, 4))
            await gw.start()
            try:
                await until(lambda: gw.store.backlog()["ratings"] == 0, "the upload")
                return await get(gw, "/metrics")
            finally:
                await gw.stop()

    text = asyncio.run(main())
    families = dict((f.name, f) for f in text_string_to_metric_families(text))
    samples = dict(((s.name, tuple(s.labels.items())), s.value)
                   for f in families.values() for s in f.samples)
    for name, labels, value in (("hall_uplink_up", (), 1), ("hall_uplink_requests_total", (), 1),
                                ("hall_uplink_items_total", (("outcome", "accepted"),), 3),
                                ("hall_uplink_unsettled_total", (), 0),
                                ("hall_uplink_errors_total", (), 0)):
        assert samples[name, labels] == value, name
    assert families["hall_uplink_throttled"].type == "counter"
    assert "hall_gateway_outbox_items" in families      # the gateway's own families stay
