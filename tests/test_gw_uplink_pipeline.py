"""The uplink's fast path: the store cursor that pipelined batches follow, set-based settling,
the compact JSON the batch id is a digest of, and a pipelined drain that never re-sends an item
that is still in flight."""

import asyncio
import json

import pytest

from gateway import uplink as uplink_module
from gateway.uplink import upload_cursor
from protocol import vocab
from tests.test_gw_uplink import make_uplink
from tests.uplink_support import central, fill, outbox


def ids(items):
    return [item["item_id"] for item in items]


def test_cursor_never_hands_out_an_item_twice_and_late_bad_ratings_still_go_first(tmp_path):
    store = outbox(tmp_path)
    fill(store, "win-01", range(1, 8))
    fill(store, "win-02", [1, 2], level=vocab.VERY_DISSATISFIED)
    first = store.upload_batch(3)
    assert ids(first) == ["win-02:1", "win-02:2", "win-01:1"]
    cursor = upload_cursor(first)
    second = store.upload_batch(3, cursor)
    assert ids(second) == ["win-01:2", "win-01:3", "win-01:4"]
    cursor = upload_cursor(second, cursor)
    # While those are in flight, a bad rating and a good one are committed: the bad one goes
    # ahead of the good ones not yet handed out; the good one queues at the end.
    fill(store, "win-03", [1], level=vocab.DISSATISFIED)
    fill(store, "win-04", [1])
    third = store.upload_batch(3, cursor)
    assert ids(third) == ["win-03:1", "win-01:5", "win-01:6"]
    cursor = upload_cursor(third, cursor)
    rest = store.upload_batch(10, cursor)
    assert ids(rest) == ["win-01:7", "win-04:1"]
    assert store.upload_batch(10, upload_cursor(rest, cursor)) == []
    handed = ids(first + second + third + rest)
    assert len(handed) == len(set(handed)) == 11
    # Nothing was settled: without a cursor the store starts from the front again.
    assert ids(store.upload_batch(2)) == ["win-02:1", "win-02:2"]


def test_settle_applies_a_mixed_batch_set_by_set(tmp_path):
    store = outbox(tmp_path)
    fill(store, "d", range(1, 8))
    store.commit_case({"case_key": "SN9#3", "serials": ["SN9"], "node": 3, "staff_name": "朱镕"})
    store.settle([("d:1", "accepted", None), ("d:2", "duplicate", None),
                  ("d:3", "rejected", "unknown matter code"), ("d:4", "retry", "busy"),
                  ("d:5", "retry", "busy"), ("SN9#3", "accepted", None),
                  ("d:6", "rejected", None), ("d:6", "accepted", None),   # first verdict counts
                  ("gone:1", "accepted", None)])                          # settled long ago
    left = {item["item_id"]: item["attempts"] for item in store.upload_batch(10)}
    assert left == {"d:4": 1, "d:5": 1, "d:7": 0}
    dead = {d["key"]: d for d in store.dead_letters()}
    assert set(dead) == {"d:3", "d:6"}
    assert "unknown matter code" in dead["d:3"]["reason"]
    assert "no reason given" in dead["d:6"]["reason"]
    assert json.loads(dead["d:3"]["payload"])["staff_name"] == "王喆"
    assert store.backlog()["ratings"] == 3 and store.backlog()["cases"] == 0
    assert store.backlog()["dead_letters"] == 2
    # A repeated answer changes nothing; an unknown outcome is refused before anything changes.
    store.settle([("d:1", "accepted", None), ("d:3", "rejected", "again")])
    assert store.backlog()["dead_letters"] == 2 and store.backlog()["ratings"] == 3
    with pytest.raises(Exception):
        store.settle([("d:7", "accepted", None), ("d:4", "maybe", None)])
    assert "d:7" in ids(store.upload_batch(10))


def test_settle_of_many_ids_crosses_the_statement_chunks(tmp_path):
    store = outbox(tmp_path)
    fill(store, "big", range(1, 1203))
    items = store.upload_batch(2000)
    store.settle([(item["item_id"], "accepted", None) for item in items[:1201]])
    assert ids(store.upload_batch(10)) == ["big:1202"]
    assert store.backlog()["ratings"] == 1


@pytest.mark.parametrize("text", ["王喆 李堃 朱镕 𠀋", "tab\tnew\nline\x01\x1f \"q\" \\ /",
                                  "\u2028\u2029 é 😀"])
def test_compact_json_is_the_same_bytes_as_the_stdlib(text):
    obj = [{"kind": "rating", "id": "a:1", "data": {"staffName": text, "n": 2 ** 63 - 1,
                                                     "caseNos": ["SN1", text], "t": None}}]
    expected = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert uplink_module._dumps(obj) == expected
    assert uplink_module._loads(expected) == obj


def test_pipelined_drain_never_resends_an_item_in_flight(tmp_path):
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-21", range(1, 151))
        fill(store, "win-22", range(1, 11), level=vocab.VERY_DISSATISFIED)
        handed = []
        original = store.upload_batch

        def recording(limit, after=None):
            items = original(limit, after)
            handed.extend(ids(items))
            return items
        store.upload_batch = recording
        async with central(tmp_path) as server:
            server.faults.set(delay_s=0.02)      # answers slow enough that batches overlap
            async with make_uplink(store, server, batch_size=16, concurrency=4) as uplink:
                await uplink.drain()
            assert len(handed) == len(set(handed)) == 160
            assert handed[:10] == ["win-22:%d" % n for n in range(1, 11)]
            report = server.store.report()
            assert report["received"] == 160 and report["retransmissions"] == 0
            assert report["batches"] == 10 and uplink.status.requests == 10
            assert store.backlog()["ratings"] == 0
    asyncio.run(main())


def test_a_retry_verdict_is_sent_again_by_the_next_round(tmp_path):
    """An item the API gave no verdict for is behind the cursor: the next round starts from the
    front and sends it again; nothing else is sent twice."""
    async def main():
        store = outbox(tmp_path)
        fill(store, "win-31", range(1, 21))
        async with central(tmp_path) as server:
            original = server.store.receive_batch

            def forgetful(envelope, digest=None):
                answer = original(envelope, digest)
                if not forgetful.done:
                    forgetful.done = True
                    answer = dict(answer, results=[r for r in answer["results"]
                                                   if r["id"] != "win-31:3"])
                return answer
            forgetful.done = False
            server.store.receive_batch = forgetful
            async with make_uplink(store, server, batch_size=5, concurrency=2) as uplink:
                rounds = await uplink.drain()
                assert uplink.status.sent["retry"] == 1 and uplink.status.sent["accepted"] == 19
                assert uplink.status.sent["duplicate"] == 1    # its second trip: already held
            assert rounds == 3        # all 20, then win-31:3 again, then empty
            assert server.store.report()["received"] == 20
            assert store.backlog()["ratings"] == 0
    asyncio.run(main())

