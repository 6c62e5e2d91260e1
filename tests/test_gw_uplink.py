"""The uplink against the real reference central API on loopback, with G1's real outbox."""

import asyncio

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway import builtin_profiles, upstream_auth
from gateway.backoff import Backoff, parse_retry_after
from gateway.uplink import Uplink
from protocol import vocab
from tests.uplink_support import (SECRET, FakeClock, FixedRng, Sleeps, central, enrichment, fill,
                                  outbox, rating)


def uplink_samples(status):
    """{'name{label="value"}': value} of UplinkState.families(), through prometheus_client's
    exposition and parser (what a scrape sees)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(type("Uplink", (), {"collect": lambda self: status.families()})())
    text = generate_latest(registry).decode()
    return dict((s.name + ("{%s}" % ",".join('%s="%s"' % kv for kv in s.labels.items())
                           if s.labels else ""), s.value)
                for f in text_string_to_metric_families(text) for s in f.samples)


def make_uplink(store, server, clock=None, sleeps=None, **options):
    clock = clock or FakeClock()
    options.setdefault("auth", upstream_auth.HmacAuth("gw-futian", SECRET))
    return Uplink(store, server.url, "gw-futian", "futian-1", clock=clock,
                  sleep=sleeps or Sleeps(clock), backoff=Backoff(base=1, cap=60, rng=FixedRng()),
                  **options)


def test_drains_in_batches_and_bad_ratings_go_first(tmp_path):
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-01", range(1, 26))
        fill(store, "win-02", [1, 2], level=vocab.VERY_DISSATISFIED)
        async with central(tmp_path) as server:
            async with make_uplink(store, server, batch_size=10, concurrency=1) as uplink:
                first = store.upload_batch(2)
                assert [i["item_id"] for i in first] == ["win-02:1", "win-02:2"]
                steps = await uplink.drain()
                assert uplink.status.requests == 3      # 27 items in batches of 10
            report = server.store.report()
            assert steps == 2                       # one round drains it, the next finds it empty
            assert report["received"] == 27 and report["batches"] == 3
            assert report["work_orders"] == 2 and report["retransmissions"] == 0
            assert store.backlog()["ratings"] == 0
            assert uplink.status.sent["accepted"] == 27 and uplink.status.state == "up"
            metrics = uplink_samples(uplink.status)
            assert metrics["hall_uplink_up"] == 1
            assert metrics['hall_uplink_items_total{outcome="accepted"}'] == 27
            assert metrics["hall_uplink_requests_total"] == 3
            first_two = server.store.ratings(limit=2)
            assert {r["rating_id"] for r in first_two} == {"win-02:1", "win-02:2"}
            assert first_two[0]["staff_name"] == "王喆"
    asyncio.run(main())


def test_resending_counts_once(tmp_path):
    """A lost answer: the same batch again is answered from the batch log; a new batch holding
    the same ratings gets "duplicate" per item. Either way nothing is counted twice."""
    async def main():
        sender = outbox(tmp_path, "a.db")
        fill(sender, "win-03", range(1, 6))
        async with central(tmp_path) as server:
            async with make_uplink(sender, server) as uplink:
                items = sender.upload_batch(10)
                await uplink.step()
                # Same items again, as after a timeout whose answer was lost:
                verdicts, wire = uplink._map(items)
                body = uplink._body(wire)
                async with uplink._client().post(
                        uplink.url, data=body, headers=uplink.auth.headers("POST", "/v1/batches", body)
                        ) as response:
                    answer = await response.json()
                    assert response.headers.get("Idempotent-Replayed") == "true"
                assert answer["replayed"] is True
                assert {r["status"] for r in answer["results"]} == {"accepted"}
                # A second gateway store holding the same ratings (e.g. restored) resends them in
                # another composition: a new batch id, each rating a duplicate.
                other = outbox(tmp_path, "b.db")
                fill(other, "win-03", range(1, 7))
                async with make_uplink(other, server) as again:
                    await again.drain()
                    assert again.status.sent == {"accepted": 1, "duplicate": 5, "rejected": 0,
                                                 "retry": 0}
            report = server.store.report()
            assert report["received"] == 6
            assert report["retransmissions"] == 10 and report["replayed_batches"] == 1
            assert report["duplicates"] == 0        # a retransmission is not a duplicate rating
    asyncio.run(main())


def test_429_retry_after_is_honoured(tmp_path):
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-04", range(1, 4))
        async with central(tmp_path) as server:
            server.faults.set(throttle_next=2, retry_after=7)
            clock = FakeClock()
            sleeps = Sleeps(clock)
            async with make_uplink(store, server, clock=clock, sleeps=sleeps) as uplink:
                assert await uplink.step() == 7
                assert uplink.status.state == "backoff" and "429" in uplink.status.last_error
                await uplink.drain()
            assert sleeps.calls == [7]              # the second 429 in drain(), then success
            assert uplink.status.throttled == 2
            assert server.faults.injected["429"] == 2
            assert server.store.report()["received"] == 3
            assert [i["attempts"] for i in store.upload_batch(5)] == []
    asyncio.run(main())


def test_5xx_backs_off_exponentially_then_delivers(tmp_path):
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-05", range(1, 3))
        async with central(tmp_path) as server:
            server.faults.set(fail_next=5, status=503)
            clock = FakeClock()
            sleeps = Sleeps(clock)
            async with make_uplink(store, server, clock=clock, sleeps=sleeps) as uplink:
                waits = [await uplink.step() for _ in range(5)]
                assert waits == [0.5, 1, 2, 4, 8]     # full jitter drawn at 0.5 of 1, 2, 4, 8, 16
                assert uplink.status.state == "down"
                assert uplink.status.consecutive_failures == 5
                assert {i["attempts"] for i in store.upload_batch(5)} == {5}
                await uplink.drain()
            assert server.requests["batches"] == 6
            assert uplink.status.state == "up" and uplink.status.consecutive_failures == 0
            assert server.store.report()["received"] == 2
            assert uplink.status.sent["retry"] == 10     # 2 items x 5 failed tries
    asyncio.run(main())


def test_5xx_waits_are_capped_full_jitter(tmp_path):
    draws = []

    class Rng:
        def uniform(self, a, b):
            draws.append((a, b))
            return b

    backoff = Backoff(base=2, cap=30, rng=Rng())
    waits = [backoff.failure() for _ in range(6)]
    assert waits == [2, 4, 8, 16, 30, 30]
    assert all(a == 0 for a, _ in draws)
    backoff.success()
    assert backoff.failure() == 2
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480) == 10.0
    assert parse_retry_after("soon") is None


def test_outage_is_retried_and_nothing_lost(tmp_path):
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-06", range(1, 4))
        async with central(tmp_path) as server:
            clock = FakeClock()
            async with make_uplink(store, server, clock=clock, timeout_s=2) as uplink:
                await server.stop_listening()
                wait = await uplink.step()
                assert wait == 0.5
                assert "Connect" in uplink.status.last_error or "refused" in uplink.status.last_error
                await server.listen()
                await uplink.drain()
            assert server.store.report()["received"] == 3
            assert server.faults.injected["outage"] == 1
    asyncio.run(main())


def test_slow_answer_times_out_then_dedupes(tmp_path):
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-07", range(1, 3))
        async with central(tmp_path) as server:
            server.faults.set(delay_s=0.6, delay_next=1)
            async with make_uplink(store, server, timeout_s=0.3) as uplink:
                assert await uplink.step() == 0.5          # timed out: retry
                assert "Timeout" in uplink.status.last_error
                await asyncio.sleep(0.5)                  # the server finishes the slow batch
                await uplink.drain()
            report = server.store.report()
            assert report["received"] == 2                 # counted once
            assert report["replayed_batches"] == 1         # same items, same batch id
    asyncio.run(main())


def test_rejected_items_become_dead_letters_with_the_reason(tmp_path):
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-08", [1, 2])
        # A case whose key does not match its serial: the API rejects it, the rest goes through.
        bad_case = {"case_key": "SNX#3", "serials": ["SNY"], "node": 3, "deadline": 1718600000,
                    "completed_at": 1718000000, "matter_code": "m", "matter_name": "不动产登记",
                    "staff_id": "1", "staff_name": "李堃", "window": "A01", "hall": "futian-1",
                    "items": []}
        assert store.commit_case(bad_case)[0] == vocab.ACK_STORED
        async with central(tmp_path) as server:
            async with make_uplink(store, server) as uplink:
                await uplink.drain()
            dead = store.dead_letters()
            assert len(dead) == 1 and dead[0]["key"] == "SNX#3"
            assert "case key" in dead[0]["reason"]
            assert store.backlog()["dead_letters"] == 1 and store.backlog()["cases"] == 0
            assert server.store.report()["rejected"] == 1
            assert server.store.report()["received"] == 2
    asyncio.run(main())


def test_unmappable_item_is_rejected_locally(tmp_path):
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-09", [1])
        async with central(tmp_path) as server:
            spec = dict(builtin_profiles.GBT39046)
            spec["levels"] = {1: 1, 2: 2, 3: 3, 4: 4}         # a table without a code for level 5
            store.commit_ratings([(rating("win-09", 2, vocab.VERY_DISSATISFIED), enrichment())])
            async with make_uplink(store, server, profile=spec) as uplink:
                await uplink.drain()
            assert [d["key"] for d in store.dead_letters()] == ["win-09:2"]
            assert "profile gbt39046: overall" in store.dead_letters()[0]["reason"]
            assert server.store.report()["received"] == 1      # the other one went through
    asyncio.run(main())


def test_bad_credentials_keep_everything(tmp_path):
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-10", [1, 2])
        async with central(tmp_path) as server:
            auth = upstream_auth.HmacAuth("gw-futian", "wrong-secret")
            async with make_uplink(store, server, auth=auth) as uplink:
                assert await uplink.step() == 0.5
            assert "401" in uplink.status.last_error
            assert server.requests["auth_failures"] == 1
            assert store.backlog()["ratings"] == 2 and store.backlog()["dead_letters"] == 0
    asyncio.run(main())


def test_pipelined_batches_deliver_everything_once(tmp_path):
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-11", range(1, 101))
        fill(store, "win-12", range(1, 6), level=vocab.DISSATISFIED)
        async with central(tmp_path) as server:
            server.faults.set(fail_next=1, status=500)
            async with make_uplink(store, server, batch_size=7, concurrency=3) as uplink:
                await uplink.drain()
            rows = server.store.ratings(limit=1000)
            assert len(rows) == 105 == len({r["rating_id"] for r in rows})
            assert server.store.report()["work_orders"] == 5
            assert uplink.status.sent["accepted"] == 105 and store.backlog()["ratings"] == 0
    asyncio.run(main())
