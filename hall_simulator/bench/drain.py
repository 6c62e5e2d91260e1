"""Drain benchmark: buffered ratings from the gateway's outbox to a local reference central API.

    python -m hall_simulator.bench.drain --json [--ratings 1000000] [--batch 1000] [--concurrency 2]

1. The central API runs as its own process (as it would on another machine), fresh SQLite file
   (WAL, synchronous=FULL, one transaction per batch).
2. The outbox (gateway.store.Store, synchronous=FULL) is filled through its ingest API
   (commit_ratings in groups) with N ratings, as after a long central outage; RSS is sampled as the
   backlog grows.
3. The exact request bodies the uplink will send (same batches, same order, same profile mapping,
   same batch ids) are written to a scratch file, outside any timing.
4. The real Uplink (HMAC, gbt39046 profile, `concurrency` batches in flight) drains the outbox;
   ratings/s from the first POST to an empty outbox, RSS sampled as the backlog shrinks. Every
   rating must arrive exactly once.
5. Baseline in the same run: those bodies, read back from the file, POSTed with raw aiohttp (HMAC
   signed, the same number in flight) to a second fresh central API: no store, no mapping, no
   settling -- what the transport and the central side allow. ratio = drain / baseline, so
   1 - ratio is the share of the time the gateway's own work costs.
RSS is this (gateway) process's resident set (VmRSS; peak = VmHWM after the fill, i.e. of the drain).
"""

import argparse
import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

import aiohttp

from gateway import upstream_auth
from gateway.backoff import Backoff
from gateway.store import Store
from gateway.uplink import Uplink, upload_cursor
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

    def cpu_s(self):
        """CPU seconds the central process has used (user + system)."""
        with open("/proc/%d/stat" % self.proc.pid) as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))

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


def make_uplink(store, url, batch, concurrency):
    return Uplink(store, url, GATEWAY, HALL, profile="gbt39046", batch_size=batch,
                  auth=upstream_auth.HmacAuth(GATEWAY, SECRET), backoff=Backoff(base=0.1, cap=1),
                  timeout_s=120, concurrency=concurrency)


def write_bodies(store, batch, path):
    """The request bodies the uplink will send, in its order, length-prefixed into `path`."""
    shaper = make_uplink(store, "http://127.0.0.1:9", batch, 1)
    cursor = None
    count = 0
    with open(path, "wb") as out:
        while True:
            items = store.upload_batch(batch, cursor)
            if not items:
                return count
            cursor = upload_cursor(items, cursor)
            verdicts, wire = shaper._map(items)
            if verdicts:
                raise RuntimeError("bench records must all map: %s" % (verdicts[:1],))
            body = shaper._body(wire)
            out.write(struct.pack(">I", len(body)))
            out.write(body)
            count += len(items)


def read_bodies(path):
    with open(path, "rb") as source:
        while True:
            head = source.read(4)
            if not head:
                return
            yield source.read(struct.unpack(">I", head)[0])


async def drain(store, central, batch, concurrency, total, samples):
    checkpoints = sorted({int(total * f) for f in (0.75, 0.5, 0.25)}, reverse=True)
    uplink = make_uplink(store, central.url, batch, concurrency)

    async def sample():
        # Progress from the uplink's own counters: store.backlog() would wait for the store lock
        # while a settle commits, stalling the loop the drain runs on.
        while checkpoints:
            left = total - uplink.status.sent["accepted"]
            while checkpoints and left <= checkpoints[0]:
                samples["drain_left_%d" % checkpoints.pop(0)] = rss_mb()
            await asyncio.sleep(0.02)

    sampler = asyncio.ensure_future(sample())
    cpu = (time.process_time(), central.cpu_s())
    started = time.perf_counter()
    try:
        await uplink.drain()
    finally:
        sampler.cancel()
        await uplink.close()
    elapsed = time.perf_counter() - started
    cpu = (time.process_time() - cpu[0], central.cpu_s() - cpu[1])
    samples["drain_left_0"] = rss_mb()
    return elapsed, cpu, uplink.status.as_dict()


async def baseline(central, bodies_path, concurrency):
    """The same bodies, raw aiohttp, `concurrency` POSTs in flight; no store. (seconds, accepted)"""
    auth = upstream_auth.HmacAuth(GATEWAY, SECRET)
    url = central.url + "/v1/batches"
    bodies = read_bodies(bodies_path)
    accepted = [0]
    connector = aiohttp.TCPConnector(limit=max(2, concurrency))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120),
                                     connector=connector) as session:
        async def sender():
            for body in bodies:       # one generator shared by the senders: each body once
                headers = {"Content-Type": "application/json"}
                headers.update(auth.headers("POST", "/v1/batches", body))
                async with session.post(url, data=body, headers=headers) as response:
                    answer = json.loads(await response.read())
                accepted[0] += sum(1 for r in answer["results"] if r["status"] == "accepted")

        cpu = (time.process_time(), central.cpu_s())
        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        return elapsed, (time.process_time() - cpu[0], central.cpu_s() - cpu[1]), accepted[0]


def run(count, batch, group, workdir, concurrency=2):
    samples = {}
    store = Store(os.path.join(workdir, "outbox.db"), capacity=2 * count)
    samples["start"] = rss_mb()
    t = time.perf_counter()
    fill(store, count, group, samples)
    fill_s = time.perf_counter() - t
    bodies_path = os.path.join(workdir, "bodies.bin")
    if write_bodies(store, batch, bodies_path) != count:
        raise RuntimeError("the outbox does not hold %d ratings" % count)
    central = Central(workdir, "central.db")
    try:
        reset_peak()
        elapsed, cpu, status = asyncio.run(drain(store, central, batch, concurrency, count,
                                                 samples))
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
        base_s, base_cpu, base_ok = asyncio.run(baseline(base_central, bodies_path, concurrency))
        base_rows, _ = base_central.received()
    finally:
        base_central.stop()
        os.remove(bodies_path)
    if base_ok != count or base_rows != count:
        raise RuntimeError("baseline accepted %d of %d" % (base_ok, count))
    rate = count / elapsed
    base_rate = count / base_s
    return {
        "name": "drain",
        "figures": {
            "ratings": count, "batch": batch, "concurrency": concurrency,
            "drain_s": round(elapsed, 2), "ratings_per_s": round(rate),
            "baseline_s": round(base_s, 2), "baseline_ratings_per_s": round(base_rate),
            "fill_s": round(fill_s, 2), "fill_ratings_per_s": round(count / fill_s),
            "peak_rss_mb": peak, "rss_mb_at": samples,
            # CPU per rating of each side (robust to other load on the machine; the wall-clock
            # rate is bounded by the slower side, or by their sum when both share one core):
            "cpu_us_per_rating": {"gateway": round(cpu[0] / count * 1e6, 1),
                                  "central": round(cpu[1] / count * 1e6, 1),
                                  "baseline_client": round(base_cpu[0] / count * 1e6, 1),
                                  "baseline_central": round(base_cpu[1] / count * 1e6, 1)},
            "requests": status["requests"], "goal_ratings_per_s": 20000, "goal_peak_rss_mb": 100,
        },
        "ratio": round(rate / base_rate, 3),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="hall-sim bench drain", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--ratings", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="items per POST")
    parser.add_argument("--concurrency", type=int, default=2, help="POSTs in flight (both runs)")
    parser.add_argument("--fill-group", type=int, default=5000, help="ratings per fill commit")
    parser.add_argument("--workdir", help="keep the databases here (default: a temporary folder)")
    options = parser.parse_args(argv)
    if options.workdir:
        os.makedirs(options.workdir, exist_ok=True)
        result = run(options.ratings, options.batch, options.fill_group, options.workdir,
                     options.concurrency)
    else:
        with tempfile.TemporaryDirectory(prefix="drain-") as workdir:
            result = run(options.ratings, options.batch, options.fill_group, workdir,
                         options.concurrency)
    emit(result, options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
