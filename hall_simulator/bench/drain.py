"""Drain benchmark: buffered ratings from the gateway's outbox to a local reference central API.

    python -m hall_simulator.bench.drain --json [--ratings 1000000] [--batch 1000]

1. The central API runs as its own process (as it would on another machine), fresh SQLite file.
2. The outbox (gateway.store.Store, synchronous=FULL) is filled through its ingest API
   (commit_ratings in groups) with N ratings, as after a long central outage; RSS is sampled as the
   backlog grows.
3. The real Uplink (HMAC, gbt39046 profile) drains it; ratings/s from the first POST to an empty
   outbox, RSS sampled as the backlog shrinks. Every rating must arrive exactly once.
4. Baseline in the same run: the same batches (same records, same profile mapping, same HMAC) POSTed
   with raw aiohttp to a second fresh central API, without the store. ratio = drain / baseline.
RSS is this (gateway) process's resident set (VmRSS; peak = VmHWM after the fill, i.e. of the drain).
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp

from gateway import profiles, upstream_auth
from gateway.backoff import Backoff
from gateway.store import Store
from gateway.uplink import Uplink
from hall_simulator.bench import emit
from protocol import vocab

SECRET = "bench-drain-secret"
GATEWAY = "gw-bench"
HALL = "bench-hall"
T0 = 1718000000
DEVICES = 32
LEVELS = (1, 1, 2, 1, 2, 3, 1, 2, 4, 1)        # mostly good, some bad (work orders)


def rss_mb(field="VmRSS"):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024.0, 1)
    return None


def reset_peak():
    """Reset VmHWM (Linux >= 4.0) so the peak measures the drain, not the set-up."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def make_rating(i):
    device = "ev-%03d" % (i % DEVICES)
    counter = i // DEVICES + 1
    level = LEVELS[i % len(LEVELS)]
    rating = {"device": device, "counter": counter, "case_id": 1 + i % 100000,
              "serials": ["SZ%010d" % i], "node": vocab.NODE_COMPLETION, "source": vocab.SRC_PRESS,
              "overall": level, "window": "W%02d" % (i % DEVICES), "staff_id": "10%02d" % (i % DEVICES),
              "device_time": T0 + i, "uptime_ms": 5000 + i, "mac": i.to_bytes(16, "big"),
              "gateway_time": T0 + i, "hall": HALL}
    if vocab.is_bad(level):
        rating["tags"] = [501]
    return rating


ENRICH = [{"matter_code": "440300-%03d" % k, "matter_name": "居住证签注", "staff_name": "王喆",
           "staff_id": "10%02d" % k} for k in range(DEVICES)]


def fill(store, count, group, samples):
    step = max(count // 4, 1)
    for start in range(0, count, group):
        items = [(make_rating(i), ENRICH[i % DEVICES]) for i in range(start, min(count, start + group))]
        results = store.commit_ratings(items)
        if any(r[0] != vocab.ACK_STORED for r in results):
            raise RuntimeError("fill refused: %s" % (results[:3],))
        done = start + len(items)
        if done % step < group or done == count:
            samples["fill_%d" % done] = rss_mb()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Central:
    """The reference central API in a child process."""

    def __init__(self, workdir, name):
        self.port = free_port()
        self.db = os.path.join(workdir, name)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hall_simulator.central_api", "--port", str(self.port), "--db",
             self.db, "--hmac-secret", SECRET, "--close-interval", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("central API did not start")
        self.url = json.loads(line)["listening"]

    def received(self):
        import sqlite3
        db = sqlite3.connect(self.db)
        try:
            return db.execute("SELECT COUNT(*), COUNT(DISTINCT rating_id) FROM ratings").fetchone()
        finally:
            db.close()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


async def drain(store, central, batch, total, samples):
    checkpoints = sorted({int(total * f) for f in (0.75, 0.5, 0.25)}, reverse=True)
    uplink = Uplink(store, central.url, GATEWAY, HALL, profile="gbt39046", batch_size=batch,
                    auth=upstream_auth.HmacAuth(GATEWAY, SECRET), backoff=Backoff(base=0.1, cap=1),
                    timeout_s=120, concurrency=2)

    async def sample():
        while checkpoints:
            left = store.backlog()["ratings"]
            while checkpoints and left <= checkpoints[0]:
                samples["drain_left_%d" % checkpoints.pop(0)] = rss_mb()
            await asyncio.sleep(0.02)

    sampler = asyncio.ensure_future(sample())
    started = time.perf_counter()
    try:
        await uplink.drain()
    finally:
        sampler.cancel()
        await uplink.close()
    elapsed = time.perf_counter() - started
    samples["drain_left_0"] = rss_mb()
    return elapsed, uplink.status.as_dict()


async def baseline(central, count, batch):
    """Same records, same mapping and signing, raw aiohttp POSTs; no store."""
    profile = profiles.get("gbt39046")
    auth = upstream_auth.HmacAuth(GATEWAY, SECRET)
    url = central.url + "/v1/batches"
    started = time.perf_counter()
    accepted = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        for start in range(0, count, batch):
            items = []
            for i in range(start, min(count, start + batch)):
                rating = make_rating(i)
                record = {k: v for k, v in rating.items() if k != "mac"}
                record["mac"] = rating["mac"].hex()
                record.update(ENRICH[i % DEVICES])
                record["rating_id"] = "%s:%d" % (rating["device"], rating["counter"])
                items.append({"kind": "rating", "id": record["rating_id"],
                              "data": profile.map_record("rating", profiles.canonical_rating(record))})
            body = json.dumps({"batch_id": "base-%d" % start, "gateway_id": GATEWAY, "hall": HALL,
                               "profile": profile.name, "items": items},
                              ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers = {"Content-Type": "application/json"}
            headers.update(auth.headers("POST", "/v1/batches", body))
            async with session.post(url, data=body, headers=headers) as response:
                answer = await response.json()
                accepted += sum(1 for r in answer["results"] if r["status"] == "accepted")
    return time.perf_counter() - started, accepted


def run(count, batch, group, workdir):
    samples = {}
    store = Store(os.path.join(workdir, "outbox.db"), capacity=2 * count)
    samples["start"] = rss_mb()
    t = time.perf_counter()
    fill(store, count, group, samples)
    fill_s = time.perf_counter() - t
    central = Central(workdir, "central.db")
    try:
        reset_peak()
        elapsed, status = asyncio.run(drain(store, central, batch, count, samples))
        peak = rss_mb("VmHWM")
        rows, distinct = central.received()
    finally:
        central.stop()
    store.close()
    if rows != count or distinct != count or status["sent"]["accepted"] != count:
        raise RuntimeError("drain lost or doubled ratings: %d rows, %d distinct of %d"
                           % (rows, distinct, count))
    base_central = Central(workdir, "baseline.db")
    try:
        base_s, base_ok = asyncio.run(baseline(base_central, count, batch))
    finally:
        base_central.stop()
    if base_ok != count:
        raise RuntimeError("baseline accepted %d of %d" % (base_ok, count))
    rate = count / elapsed
    base_rate = count / base_s
    return {
        "name": "drain",
        "figures": {
            "ratings": count, "batch": batch, "drain_s": round(elapsed, 2),
            "ratings_per_s": round(rate), "baseline_ratings_per_s": round(base_rate),
            "fill_s": round(fill_s, 2), "fill_ratings_per_s": round(count / fill_s),
            "peak_rss_mb": peak, "rss_mb_at": samples,
            "requests": status["requests"], "goal_ratings_per_s": 20000, "goal_peak_rss_mb": 100,
        },
        "ratio": round(rate / base_rate, 3),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="hall-sim bench drain", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--ratings", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="items per POST")
    parser.add_argument("--fill-group", type=int, default=5000, help="ratings per fill commit")
    parser.add_argument("--workdir", help="keep the databases here (default: a temporary folder)")
    options = parser.parse_args(argv)
    if options.workdir:
        os.makedirs(options.workdir, exist_ok=True)
        result = run(options.ratings, options.batch, options.fill_group, options.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="drain-") as workdir:
            result = run(options.ratings, options.batch, options.fill_group, workdir)
    emit(result, options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
