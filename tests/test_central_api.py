"""The reference central API over HTTP: auth, envelope errors, endpoints, fault injection, CLI."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import aiohttp

from gateway import upstream_auth
from tests.test_central_rules import case, envelope, rating
from tests.uplink_support import SECRET, T0, central

DAY = 86400


async def post(session, server, env, secret=SECRET, ts=None, gateway="gw", raw=None):
    body = raw if raw is not None else json.dumps(env, ensure_ascii=False).encode("utf-8")
    auth = upstream_auth.HmacAuth(gateway, secret, clock=(lambda: ts) if ts else time.time)
    async with session.post(server.url + "/v1/batches", data=body,
                            headers=auth.headers("POST", "/v1/batches", body)) as response:
        return response.status, await response.json(), response.headers


def test_auth_and_envelope_errors(tmp_path):
    async def main():
        async with central(tmp_path) as server, aiohttp.ClientSession() as s:
            env = envelope([rating("d", 1)], batch_id="b1")
            assert (await post(s, server, env, secret="nope"))[:2] == (401, {"error": "bad signature"})
            status, body, _ = await post(s, server, env, ts=time.time() - 301)
            assert status == 401 and "window" in body["error"]
            async with s.post(server.url + "/v1/batches", data=b"{}") as r:
                assert r.status == 401
            assert (await post(s, server, None, raw=b"not json"))[0] == 400
            assert (await post(s, server, dict(env, profile="mars")))[0] == 400
            assert (await post(s, server, dict(env, items=[])))[0] == 400
            many = dict(env, items=[env["items"][0]] * 5001)
            assert (await post(s, server, many))[0] == 413
            assert (await post(s, server, env))[0] == 200
            status, body, _ = await post(s, server, dict(env, gateway_id="gw2"))
            assert status == 409 and "b1" in body["error"]
            assert server.requests["auth_failures"] == 3
            assert server.store.report()["received"] == 1
    asyncio.run(main())


def test_bearer_token(tmp_path):
    async def main():
        async with central(tmp_path) as server, aiohttp.ClientSession() as s:
            server.tokens = ("t0ken",)
            body = json.dumps(envelope([rating("d", 1)])).encode()
            for token, expected in (("t0ken", 200), ("other", 401)):
                async with s.post(server.url + "/v1/batches", data=body,
                                  headers={"Authorization": "Bearer " + token}) as r:
                    assert r.status == expected
    asyncio.run(main())


def test_read_endpoints_and_close_expired(tmp_path):
    async def main():
        async with central(tmp_path) as server, aiohttp.ClientSession() as s:
            env = envelope([case("SN1"), case("SN2"), rating("d", 1, serial="SN1"),
                            rating("d", 2, level=5, serial="SN3")])
            status, answer, _ = await post(s, server, env)
            assert status == 200 and [r["status"] for r in answer["results"]] == ["accepted"] * 4
            async with s.post(server.url + "/v1/admin/close-expired", json={"now": T0 + 7 * DAY}) as r:
                assert (await r.json()) == {"closed": 1}
            async with s.get(server.url + "/v1/report") as r:
                report = await r.json()
            assert report["received"] == 2 and report["system_defaults"] == 1
            assert report["work_orders"] == 1 and report["cases"] == 2
            async with s.get(server.url + "/v1/statistics/staff") as r:
                groups = (await r.json())["groups"]
            assert {g["name"] for g in groups} == {"王喆", "李堃"}
            async with s.get(server.url + "/v1/statistics/planet") as r:
                assert r.status == 404
            async with s.get(server.url + "/v1/work-orders") as r:
                assert (await r.json())["work_orders"][0]["rating_id"] == "d:2"
            async with s.get(server.url + "/v1/ratings/default:SN2%233") as r:
                assert (await r.json())["source"] == 3
            async with s.get(server.url + "/v1/ratings?after=0&limit=2") as r:
                assert len((await r.json())["ratings"]) == 2
    asyncio.run(main())


def test_fault_injection_endpoints(tmp_path):
    async def main():
        async with central(tmp_path) as server, aiohttp.ClientSession() as s:
            async with s.post(server.url + "/v1/admin/faults",
                              json={"fail_next": 1, "status": 502, "throttle_next": 1,
                                    "retry_after": 3}) as r:
                assert (await r.json())["fail_next"] == 1
            env = envelope([rating("d", 1)])
            assert (await post(s, server, env))[0] == 502
            status, _, headers = await post(s, server, env)
            assert status == 429 and headers["Retry-After"] == "3"
            assert (await post(s, server, env))[0] == 200
            async with s.post(server.url + "/v1/admin/faults", json={"outage_s": 0.4}) as r:
                assert r.status == 200
            await asyncio.sleep(0.2)
            try:
                await post(s, server, env)
                refused = False
            except aiohttp.ClientConnectorError:
                refused = True
            assert refused
            await asyncio.sleep(0.5)
            assert (await post(s, server, env))[0] == 200
            assert server.faults.injected == {"5xx": 1, "429": 1, "slow": 0, "outage": 1}
            async with s.post(server.url + "/v1/admin/faults", json={"bogus": 1}) as r:
                assert r.status == 400
    asyncio.run(main())


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_runs_as_a_module(tmp_path):
    port = _free_port()
    db = tmp_path / "cli.db"
    proc = subprocess.Popen([sys.executable, "-m", "hall_simulator.central_api", "--port", str(port),
                             "--db", str(db), "--hmac-secret", "gw=" + SECRET,
                             "--close-interval", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        line = json.loads(proc.stdout.readline())
        assert line["listening"] == "http://127.0.0.1:%d" % port

        async def main():
            class S:
                url = line["listening"]
            async with aiohttp.ClientSession() as s:
                status, answer, _ = await post(s, S, envelope([rating("d", 1)]))
                assert status == 200 and answer["results"][0]["status"] == "accepted"
                status, _, _ = await post(s, S, envelope([rating("d", 2)]), gateway="gw-other")
                assert status == 401
        asyncio.run(main())
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0
    import sqlite3
    assert sqlite3.connect(db).execute("SELECT rating_id FROM ratings").fetchall() == [("d:1",)]


def test_store_thread_serves_concurrent_batches_and_reads(tmp_path):
    """With the store on its own thread (the standalone process), batches posted at the same
    time each commit whole, dedupe holds across them, and reads see committed data only."""
    async def main():
        async with central(tmp_path, store_thread=True) as server, aiohttp.ClientSession() as s:
            assert server._store_thread is not None
            server.store.receive_batch(envelope([case("SN500")]))     # before any request
            batches = [envelope([rating("t%d" % k, n, serial="SN%d-%d" % (k, n))
                                 for n in range(1, 41)], batch_id="bt-%d" % k) for k in range(6)]
            batches.append(envelope([rating("t0", n, serial="SN0-%d" % n) for n in range(1, 5)],
                                    batch_id="bt-again"))
            answers = await asyncio.gather(*(post(s, server, env) for env in batches))
            assert all(status == 200 for status, _, _ in answers)
            counted = {}
            for _, answer, _ in answers:
                for r in answer["results"]:
                    counted[r["status"]] = counted.get(r["status"], 0) + 1
            assert counted == {"accepted": 240, "duplicate": 4}
            async with s.get(server.url + "/v1/report") as response:
                report = await response.json()
            assert report["received"] == 240 and report["retransmissions"] == 4
            assert report["batches"] == 8 and report["cases"] == 1      # 7 posted, 1 direct
            async with s.get(server.url + "/v1/ratings/t3:40") as response:
                assert (await response.json())["staff_name"] == "王喆"
    asyncio.run(main())
