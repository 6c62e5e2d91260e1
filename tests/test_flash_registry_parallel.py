"""A box of boards provisioned at once registers into one gateway registry file: every board's
registration (the same call `flash.py provision` makes from its worker threads) must land, with
its own key, however the threads interleave. Before registry writes were serialised, parallel
registrations lost each other's devices (each read the file, added its own, wrote it back) or
failed renaming a temporary file another registration had already renamed."""

import concurrent.futures
import json
import threading

from tools.flashkit import registration

BOARDS = 6
ROUNDS = 30


def _spec(round_no, i):
    return {"id": "ev-r%02d-%02d" % (round_no, i), "window": str(i + 1), "board": "five_button",
            "transport": "rs485", "address": i + 1, "key": "%02x" % (i + 1) * 32, "firmware": "test-1"}


def test_parallel_registrations_into_one_file_all_land(tmp_path):
    failures = []
    for round_no in range(ROUNDS):
        path = str(tmp_path / ("registry-%02d.json" % round_no))
        start = threading.Barrier(BOARDS)

        def job(i):
            start.wait()
            return registration.register(path, _spec(round_no, i))

        with concurrent.futures.ThreadPoolExecutor(max_workers=BOARDS) as pool:
            futures = [pool.submit(job, i) for i in range(BOARDS)]
            for f in futures:
                try:
                    assert f.result() == "added"
                except Exception as exc:  # collected, so one failed round shows every cause
                    failures.append("round %d: %s" % (round_no, exc))
        with open(path, encoding="utf-8") as f:
            devices = dict((d["id"], d) for d in json.load(f)["devices"])
        want = dict((s["id"], s["key"]) for s in (_spec(round_no, i) for i in range(BOARDS)))
        if dict((k, d["key"]) for k, d in devices.items()) != want:
            failures.append("round %d: registry holds %s" % (round_no, sorted(devices)))
    assert not failures, "\n".join(failures[:10])
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.tmp.*"))
