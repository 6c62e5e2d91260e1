"""Ingest benchmark: ratings/s from MQTT QoS 1 into the gateway's committed outbox, against raw
paho -> Mosquitto QoS 1 (a plain subscriber counting messages) measured in the same run.

    python -m hall_simulator.bench.ingest --json [--count 5000] [--devices 20] [--rounds 5] [--stages]
                                                 [--history]

Both runs use the same broker, the same payloads (signed RATING JSON) and the same publisher: a
separate process that prepares everything, then publishes as fast as paho QoS 1 allows. CPU time of the
receiving process (all threads) per message is reported for both. The clock
runs from "go" to the moment the last message is received (baseline) or committed (gateway:
store commit with synchronous=FULL, seen through the bridge's after-commit hook).
Rounds are pairs run back to back (raw then gateway, then the other way round, alternating), so
a busy neighbour on this shared machine hurts both sides of a pair alike; ratio = the median of
the pairs' ratios (the spread is in the figures).
--history: the gateway's on_rating also records each stored rating in the console's rating
history (gateway.history), as Gateway.on_rating does: run with and without it for its cost.
--stages adds one more gateway run, apart from the pairs (its timers cost CPU of their own), that
splits the gateway's CPU per rating by stage (thread CPU time around each): decode, check, the
rest of handling a message, commit, ACK (signing and framing), the rest of a group's
callbacks, and what is left: the ingest connection reading and splitting packets and writing
ACKs and PUBACKs, outside our callbacks (and paho's idle control connection).
"""

import argparse
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

from hall_simulator.bench import quiet_gateway
from protocol import auth, codec, schema, topics, vocab

HALL = "bench-hall"


def device_key(device):
    return hashlib.sha256(("bench-key/" + device).encode()).digest()


def payloads(count, devices):
    """(topic, JSON) of `count` signed ratings spread over `devices` devices, counters rising."""
    out = []
    for i in range(count):
        device = "ev-%03d" % (i % devices)
        rating = {"device": device, "counter": i // devices + 1, "case_id": 1000 + i,
                  "serials": ["SZ%010d" % i], "node": vocab.NODE_COMPLETION,
                  "source": vocab.SRC_PRESS, "overall": vocab.LEVELS[i % 5],
                  "window": "W%02d" % (i % devices), "staff_id": "10%02d" % (i % devices),
                  "device_time": 1700000000 + i, "uptime_ms": 5000 + i}
        if vocab.is_bad(rating["overall"]):
            rating["tags"] = [501]
        rating = auth.sign(device_key(device), rating)
        out.append((topics.device_topic(HALL, device, "rating"), codec.to_json(schema.RATING, rating)))
    return out


def publisher(host, port, count, devices):
    """Child process: prepare, say ready, wait for go, publish everything at QoS 1, exit."""
    work = payloads(count, devices)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub-%d" % os.getpid())
    c.max_inflight_messages_set(100)
    c.connect(host, port)
    c.loop_start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    infos = [c.publish(topic, payload, qos=1) for topic, payload in work]
    for info in infos:
        info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def _start_publisher(broker, count, devices):
    proc = subprocess.Popen([sys.executable, "-m", "hall_simulator.bench.ingest", "--publisher",
                             str(broker.port), "--count", str(count), "--devices", str(devices)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    if proc.stdout.readline() != b"ready\n":
        raise RuntimeError("publisher did not start")
    return proc


def _go(proc):
    start = time.perf_counter()
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    return start


def _wait(done, proc, timeout):
    if not done.wait(timeout):
        proc.kill()
        raise RuntimeError("timed out")
    end = time.perf_counter()
    proc.wait(60)
    return end


def run_baseline(broker, count, devices):
    got = [0]
    done = threading.Event()
    connected = threading.Event()

    def on_message(client, userdata, message):
        got[0] += 1
        if got[0] >= count:
            done.set()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw-sub")
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: connected.set()
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    sub.subscribe([(t, 1) for t in topics.gateway_subscriptions(HALL)])
    connected.wait(10)
    proc = _start_publisher(broker, count, devices)
    cpu = time.process_time()
    start = _go(proc)
    end = _wait(done, proc, 300)
    cpu = time.process_time() - cpu
    sub.disconnect()
    sub.loop_stop()
    return count / (end - start), cpu / count * 1e6


def _timed(fn, totals, name):
    def timed(*args, **kwargs):
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] += time.thread_time() - start
    return timed


def _add_stage_timers(bridge, registry, store, totals):
    """Thread-CPU timers around the stages of one gateway (instance attributes: nothing global)."""
    import gateway.intake as intake_module
    intake_module.rating_from_json = _timed(intake_module.rating_from_json, totals, "decode")
    intake_module.ack_mac = _timed(intake_module.ack_mac, totals, "ack")   # the intake signs
    registry.check_rating = _timed(registry.check_rating, totals, "check")
    bridge._handle = _timed(bridge._handle, totals, "handle")
    bridge._flush = _timed(bridge._flush, totals, "flush")
    store.commit_ratings = _timed(store.commit_ratings, totals, "commit")
    bridge._ack = _timed(bridge._ack, totals, "ack")


def _stage_figures(totals, cpu_s, count):
    import gateway.fastcodec as fastcodec
    import gateway.intake as intake_module
    intake_module.rating_from_json = fastcodec.rating_from_json
    intake_module.ack_mac = fastcodec.ack_mac
    us = dict((name, totals[name] / count * 1e6) for name in totals)
    ours = us["handle"] + us["flush"]
    stages = {"decode": us["decode"], "check": us["check"],
              "handle_rest": us["handle"] - us["decode"] - us["check"],
              "commit": us["commit"], "ack_sign_and_publish": us["ack"],
              "group_callbacks_rest": us["flush"] - us["commit"] - us["ack"],
              "mqtt_outside_callbacks": cpu_s / count * 1e6 - ours}
    return dict((name, round(value, 1)) for name, value in stages.items())


@quiet_gateway(logging.ERROR)
def run_gateway(broker, count, devices, workdir, stages=False, history=False):
    from gateway.config import MqttConfig
    from gateway.mqtt_bridge import MqttBridge
    from gateway.registry import Registry
    from gateway.rejects import Rejections
    from gateway.committer import GroupCommitter
    from gateway.store import Store

    registry = Registry([{"id": "ev-%03d" % i, "window": "W%02d" % i,
                          "key": device_key("ev-%03d" % i).hex()} for i in range(devices)])
    store = Store(os.path.join(workdir, "outbox.db"), capacity=max(200_000, 2 * count))
    committer = GroupCommitter(store)
    done = threading.Event()
    seen = [0]
    record = None
    if history:      # the console's rating history, fed as Gateway.on_rating feeds it
        from gateway.history import History
        history = History(os.path.join(workdir, "history.sqlite"))
        record = history.record

    def on_rating(rating, result, enrichment):
        if record is not None and result[0] == vocab.ACK_STORED:
            record(rating, enrichment)
        seen[0] += 1
        if seen[0] >= count:
            done.set()
    bridge = MqttBridge(MqttConfig(host=broker.host, port=broker.port, client_id="bench-gw"), HALL,
                        registry, committer, Rejections(), store=store, on_rating=on_rating)
    totals = None
    if stages:
        import collections
        totals = collections.Counter()
        _add_stage_timers(bridge, registry, store, totals)
    bridge.start()
    if not bridge.connected.wait(10):
        raise RuntimeError("gateway did not connect")
    time.sleep(0.2)  # let the subscription settle
    proc = _start_publisher(broker, count, devices)
    cpu = time.process_time()
    start = _go(proc)
    end = _wait(done, proc, 300)
    cpu = time.process_time() - cpu
    stored = store.backlog()["ratings"]
    figures = {"gateway_cpu_us": cpu / count * 1e6, "gateway_batches": committer.batches,
               "gateway_mean_batch": round(committer.items / max(1, committer.batches), 1),
               "gateway_stored": stored}
    if stages:
        figures = {"gateway_stage_cpu_us_per_rating": _stage_figures(totals, cpu, count),
                   "gateway_staged_cpu_us": round(cpu / count * 1e6, 1)}
    bridge.stop()
    committer.close()
    duplicates = store.stats["duplicates"]
    store.close()
    if record is not None:
        history.close()
        if history.stats["written"] != count:    # a bench of a history that wrote nothing is void
            raise RuntimeError("the history wrote %d of %d" % (history.stats["written"], count))
    for client_id in ("bench-gw", "bench-gw-ingest"):
        _forget_session(broker, client_id)
    if stored != count or duplicates:
        raise RuntimeError("stored %d of %d, %d duplicates" % (stored, count, duplicates))
    return count / (end - start), figures


def _forget_session(broker, client_id):
    """Drop the gateway's persistent session (clean_session False): left in the broker it would
    queue the next baseline run's messages and hand them to the next gateway run before "go"."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.disconnect()
    c.loop_stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="pairs of runs (median ratio)")
    parser.add_argument("--stages", action="store_true",
                        help="one more gateway run with CPU timers per stage (reported apart)")
    parser.add_argument("--history", action="store_true",
                        help="the gateway also records each rating in the console's history")
    parser.add_argument("--publisher", type=int, help=argparse.SUPPRESS)  # broker port (child)
    args = parser.parse_args(argv)
    if args.publisher:
        publisher("127.0.0.1", args.publisher, args.count, args.devices)
        return 0
    from hall_simulator.broker import Broker

    raws, gws, ratios, raw_cpu, gw_cpu = [], [], [], [], []
    figures = {}
    with Broker(extra_config="max_queued_messages 0\nmax_inflight_messages 100") as broker:
        def gateway_run():
            with tempfile.TemporaryDirectory(prefix="bench-ingest-") as workdir:
                rate, more = run_gateway(broker, args.count, args.devices, workdir,
                                         history=args.history)
            gw_cpu.append(more.pop("gateway_cpu_us"))
            figures.update(more)
            return rate
        for i in range(args.rounds):
            if i % 2 == 0:
                raw, cpu = run_baseline(broker, args.count, args.devices)
                gw = gateway_run()
            else:
                gw = gateway_run()
                raw, cpu = run_baseline(broker, args.count, args.devices)
            raw_cpu.append(cpu)
            raws.append(raw)
            gws.append(gw)
            ratios.append(gw / raw)
        if args.stages:
            with tempfile.TemporaryDirectory(prefix="bench-ingest-") as workdir:
                figures.update(run_gateway(broker, args.count, args.devices, workdir, stages=True)[1])
    result = {"name": "ingest",
              "figures": dict({"count": args.count, "devices": args.devices, "rounds": args.rounds,
                               "history": args.history,
                               "raw_paho_qos1_per_s": round(statistics.median(raws), 1),
                               "gateway_committed_per_s": round(statistics.median(gws), 1),
                               "pair_ratios": [round(r, 3) for r in ratios],
                               # CPU of the receiving process per message (all its threads): what
                               # the gateway adds, and the least load-dependent figure here.
                               "raw_cpu_us_per_msg": round(statistics.median(raw_cpu), 1),
                               "gateway_cpu_us_per_rating": round(statistics.median(gw_cpu), 1)},
                              **figures),
              "ratio": round(statistics.median(ratios), 3)}
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in result["figures"].items():
            print("%-28s %s" % (name, value))
        print("%-28s %s (goal >= 0.8)" % ("ratio", result["ratio"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
