"""Console benchmark: how fast the gateway answers what each console page asks for, with a big
hall's week of ratings in its history, and how much memory it holds meanwhile.

    python -m hall_simulator.bench.console --json [--windows 64] [--per-day 120] [--days 7]
                                                  [--requests 20]

1. A real gateway (gateway.app.Gateway, fresh data directory, its real aiohttp server on
   loopback; no broker: its MQTT link keeps retrying, which costs nothing here) with `windows`
   evaluators, one per window.
2. Its rating history is filled through History.record (the on_rating path) with
   windows x per-day x days ratings over the last `days` days of the hall's clock (08:30-17:30),
   ~8 % bad (with tags and text), ~4 % not rated, real staff and matter names (王䶮明 among them).
3. Each route a page needs is requested `requests` times over one keep-alive connection with the
   operator's token: median and p95 in ms. Baseline in the same run: /healthz (no data), so
   ratio = slowest route's median / healthz median.
4. A page's time is the sum of its routes' medians (fetched one after another, the worst case);
   goal: every page under 300 ms, the gateway's RSS (VmRSS of this process, which is the gateway
   plus a small HTTP client) under 100 MB. /api/v1/hall is timed when the gateway has it.
"""

import argparse
import asyncio
import datetime
import http.client
import logging
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time

from hall_simulator.bench import emit, percentile, quiet_gateway
from hall_simulator.bench.drain import rss_mb
from protocol import vocab

HALL = "bench-hall"
GOAL_MS = 300.0
GOAL_RSS_MB = 100.0
STAFF = ("王䶮明", "李丽", "张伟", "陈静", "刘洋", "杨帆", "赵敏", "黄磊", "周婷", "吴昊", "徐娟",
         "孙浩", "马琳", "朱军", "胡蓉", "郭涛", "何欣", "高翔", "林芳", "罗鹏", "𠈌丽")
MATTERS = (("440300-0001", "企业开办"), ("440300-0002", "个体工商户登记"),
           ("440300-0003", "居民身份证换领"), ("440300-0004", "社会保险参保登记"),
           ("440300-0005", "住房公积金提取"), ("440300-0006", "不动产登记"),
           ("440300-0007", "出入境证件办理"), ("440300-0008", "食品经营许可"))
GOOD = (1,) * 55 + (2,) * 25 + (3,) * 8      # of 100 presses with 8 bad and 4 not rated


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_gateway(workdir, windows):
    from gateway import config as config_mod
    from gateway.app import Gateway
    cfg = config_mod.from_dict({
        "gateway": {"hall": HALL, "data_dir": workdir},
        "mqtt": {"host": "127.0.0.1", "port": _free_port(), "client_id": "bench-console"},
        "http": {"host": "127.0.0.1", "port": 0},
        "devices": [{"id": "ev-%02d" % (i + 1), "window": "W%02d" % (i + 1),
                     "key": os.urandom(32).hex()} for i in range(windows)]})
    return Gateway(cfg)


def fill(history, windows, per_day, days, seed=7):
    """Record windows x per_day x days ratings over the last `days` local days; ratings/s."""
    rng = random.Random(seed)
    today = datetime.date.fromisoformat(history.today())
    counters = {}
    start = time.perf_counter()
    n = 0
    for back in range(days - 1, -1, -1):
        midnight = datetime.datetime.combine(today - datetime.timedelta(days=back),
                                             datetime.time(0), history.tz).timestamp()
        for w in range(windows):
            device, window = "ev-%02d" % (w + 1), "W%02d" % (w + 1)
            staff = STAFF[w % len(STAFF)]
            for k in range(per_day):
                counters[device] = counter = counters.get(device, 0) + 1
                code, matter = MATTERS[rng.randrange(len(MATTERS))]
                rating = {"device": device, "counter": counter, "case_id": counter,
                          "serials": ["SZ%s%06d" % (window, counter)], "node": vocab.NODE_COMPLETION,
                          "window": window, "staff_id": "1%03d" % w, "hall": HALL,
                          "gateway_time": int(midnight + 8.5 * 3600 + k * 9 * 3600 // per_day)}
                roll = rng.randrange(100)
                if roll < 4:
                    rating["source"] = vocab.SRC_NOT_RATED
                else:
                    rating["source"] = vocab.SRC_PRESS
                    rating["overall"] = 4 + rng.randrange(2) if roll >= 92 else GOOD[roll - 4]
                    if roll >= 92:
                        rating["tags"] = [501]
                        rating["text"] = "等待时间太长，窗口人员不在"
                history.record(rating, {"staff_name": staff, "matter_code": code,
                                        "matter_name": matter, "window": window})
                n += 1
                if n % 5000 == 0:
                    history.flush(60)
    history.flush(120)
    return n, round(n / (time.perf_counter() - start), 1)


def time_route(port, path, token, requests):
    """Milliseconds of `requests` GETs of `path` over one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": "Bearer " + token}
    out = []
    try:
        for _ in range(requests):
            start = time.perf_counter()
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            out.append((time.perf_counter() - start) * 1000.0)
            if resp.status != 200:
                raise RuntimeError("%s answered %d: %s" % (path, resp.status, body[:200]))
    finally:
        conn.close()
    return out


@quiet_gateway(logging.CRITICAL)
def run(windows, per_day, days, requests, workdir):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    gw = make_gateway(workdir, windows)
    call = lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result(120)   # noqa: E731
    call(gw.start())
    try:
        count, fill_rate = fill(gw.history, windows, per_day, days)
        today = gw.history.today()
        week_from = (datetime.date.fromisoformat(today) - datetime.timedelta(days=days - 1)).isoformat()
        routed = {r.resource.canonical for r in gw._runner.app.router.routes() if r.resource}
        week = "from=%s&to=%s" % (week_from, today)
        routes = {"healthz": "/healthz", "status": "/status", "metrics": "/metrics",
                  "summary_window_today": "/api/v1/ratings/summary?by=window",
                  "summary_hour_today": "/api/v1/ratings/summary?by=hour",
                  "summary_staff_today": "/api/v1/ratings/summary?by=staff",
                  "bad_today": "/api/v1/ratings/bad",
                  "summary_window_week": "/api/v1/ratings/summary?by=window&" + week,
                  "summary_day_week": "/api/v1/ratings/summary?by=day&" + week,
                  "summary_staff_week": "/api/v1/ratings/summary?by=staff&" + week,
                  "summary_matter_week": "/api/v1/ratings/summary?by=matter&" + week,
                  "bad_week": "/api/v1/ratings/bad?" + week}
        if "/api/v1/hall" in routed:
            routes["hall"] = "/api/v1/hall"
        token = gw.credentials["operator"]
        timings = dict((name, time_route(gw.http_port, path, token, requests))
                       for name, path in routes.items())
        rss, peak = rss_mb(), rss_mb("VmHWM")
    finally:
        call(gw.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    med = dict((name, round(statistics.median(ms), 2)) for name, ms in timings.items())
    p95 = dict((name, round(percentile(ms, 95), 2)) for name, ms in timings.items())
    pages = {"hall": [n for n in ("hall", "status") if n in med],
             "ratings_today": ["summary_window_today", "summary_hour_today",
                               "summary_staff_today", "bad_today"],
             "ratings_week": ["summary_window_week", "summary_day_week", "summary_staff_week",
                              "summary_matter_week", "bad_week"],
             "metrics": ["metrics"]}
    page_ms = dict((page, round(sum(med[n] for n in names), 2)) for page, names in pages.items())
    slowest = max((n for n in med if n != "healthz"), key=lambda n: med[n])
    baseline = max(med["healthz"], 0.001)
    return {"name": "console",
            "figures": {"windows": windows, "ratings": count, "days": days, "requests": requests,
                        "history_fill_per_s": fill_rate, "median_ms": med, "p95_ms": p95,
                        "ratio_to_healthz": dict((n, round(v / baseline, 2)) for n, v in med.items()),
                        "page_ms": page_ms, "pages": pages, "slowest_route": slowest,
                        "rss_mb": rss, "peak_rss_mb": peak, "hall_view_timed": "hall" in med,
                        "goal_page_ms": GOAL_MS, "goal_rss_mb": GOAL_RSS_MB,
                        "goal_met": max(page_ms.values()) < GOAL_MS and rss < GOAL_RSS_MB},
            "ratio": round(med[slowest] / baseline, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="hall-sim bench console", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--per-day", type=int, default=120, help="ratings per window and day")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20, help="requests per route")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-console-") as workdir:
        result = run(options.windows, options.per_day, options.days, options.requests, workdir)
    emit(result, options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
