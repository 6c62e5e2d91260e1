"""The staged rollout as a state machine (gateway.rollout): canaries first, the rest after they
confirm; a canary failure pauses; pause/resume/cancel; a case open at the window holds the
switch; a restarted gateway resumes from rollout.json; an operator change is whole or not at all."""

import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway import ota, rollout
from tools.flashkit.bundle import Bundle

KEY = bytes(range(32))
DEVICES = ["ev-01", "ev-02", "ev-03", "ev-04"]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make_release(tmp, version="1.1.0", files=None):
    files = files or {"firmware/app.py": b"# app\n" * 300, "main.py": b"from firmware import main\n"}
    path = Bundle(version, files, ["five_button"]).save(os.path.join(str(tmp), "bundle-" + version))
    return path


def make(tmp, busy=None, clock=None):
    data = os.path.join(str(tmp), "data")
    os.makedirs(data, exist_ok=True)
    releases = ota.Releases(KEY, data)
    return rollout.Rollouts(data, releases, busy=busy or (lambda d: False),
                            firmware=lambda d: "1.0.0", clock=clock or Clock())


def transfer(ro, device, size=256):
    """Play a device that takes every chunk, then verifies: what the gateway sent, in order."""
    steps = []
    while True:
        step = ro.next_step(device, size)
        if step is None:
            return steps
        steps.append(step[0])
        rel = step[1]
        if step[0] == "offer":
            ro.report(device, "receiving", rel.id, 0, 0)
        elif step[0] == "chunk":
            f, off, data = step[2], step[3], step[4]
            end = off + len(data)
            if end >= len(rel.data[f]) and f + 1 == len(rel.data):
                ro.report(device, "verified", rel.id)
            elif end >= len(rel.data[f]):
                ro.report(device, "receiving", rel.id, f + 1, 0)
            else:
                ro.report(device, "receiving", rel.id, f, end)
        elif step[0] == "commit":
            ro.report(device, "switched", rel.id)
            return steps


def test_canary_first_then_the_rest(tmp_path):
    ro = make(tmp_path)
    rel = ro.releases.add(make_release(tmp_path))
    r = ro.start(rel.id, DEVICES, ["ev-02"])
    assert ro.next_step("ev-01", 256) is None            # not its phase yet
    assert transfer(ro, "ev-02")[-1] == "commit"
    assert ro.next_step("ev-01", 256) is None            # canary switched, not yet confirmed
    ro.report("ev-02", "confirmed", rel.id, version="1.1.0")
    assert r["phase"] == "rest"
    for d in ("ev-01", "ev-03", "ev-04"):
        assert transfer(ro, d)[-1] == "commit"
        ro.report(d, "confirmed", rel.id, version="1.1.0")
    assert r["status"] == "done"
    p = r["devices"]["ev-03"]
    assert (p["version_before"], p["version_after"], p["acked"]) == ("1.0.0", "1.1.0", rel.total)


def test_a_failed_canary_pauses_the_rollout(tmp_path):
    ro = make(tmp_path)
    rel = ro.releases.add(make_release(tmp_path))
    r = ro.start(rel.id, DEVICES, ["ev-01"])
    transfer(ro, "ev-01")
    ro.report("ev-01", "rolled_back", rel.id, reason="trial boot failed 3 times", version="1.0.0")
    assert r["status"] == "paused" and "ev-01" in r["paused_reason"]
    assert r["devices"]["ev-01"]["reason"] == "trial boot failed 3 times"
    assert all(ro.next_step(d, 256) is None for d in DEVICES)
    ro.resume(r["id"])                                   # the operator decides to go on
    assert ro.next_step("ev-02", 256)[0] == "offer"


def test_pause_resume_and_cancel_stop_chunks(tmp_path):
    ro = make(tmp_path)
    rel = ro.releases.add(make_release(tmp_path))
    r = ro.start(rel.id, DEVICES, ["ev-01"])
    assert ro.next_step("ev-01", 64)[0] == "offer"
    ro.report("ev-01", "receiving", rel.id, 0, 0)
    assert ro.next_step("ev-01", 64)[0] == "chunk"
    ro.pause(r["id"])
    assert ro.next_step("ev-01", 64) is None
    ro.resume(r["id"])
    step = ro.next_step("ev-01", 64)
    assert step[0] == "chunk" and (step[2], step[3]) == (0, 0)   # from what the device has
    ro.cancel(r["id"])
    assert ro.next_step("ev-01", 64) is None
    assert r["devices"]["ev-01"]["state"] == "cancelled"
    with pytest.raises(rollout.RolloutError):
        ro.resume(r["id"])


def test_no_switch_while_a_case_is_open(tmp_path):
    open_cases = {"ev-01"}
    ro = make(tmp_path, busy=lambda d: d in open_cases)
    rel = ro.releases.add(make_release(tmp_path))
    ro.start(rel.id, DEVICES, ["ev-01"])
    steps = transfer(ro, "ev-01")
    assert "commit" not in steps and steps[-1] == "chunk"   # verified, commit held
    open_cases.clear()
    assert ro.next_step("ev-01", 256)[0] == "commit"


def test_a_restart_resumes_from_rollout_json(tmp_path):
    clock = Clock()
    ro = make(tmp_path, clock=clock)
    rel = ro.releases.add(make_release(tmp_path))
    r = ro.start(rel.id, DEVICES, ["ev-01"])
    ro.next_step("ev-01", 100)
    ro.report("ev-01", "receiving", rel.id, 0, 0)
    ro.next_step("ev-01", 100)
    clock.now += rollout.SAVE_EVERY_S + 1
    ro.report("ev-01", "receiving", rel.id, 0, 100)
    ro.flush(force=False)                                 # the gateway's loop
    again = make(tmp_path, clock=clock)                   # a new gateway process: files only
    assert again.releases.get(rel.id) is not None
    step = again.next_step("ev-01", 100)
    assert step[0] == "chunk" and (step[2], step[3]) == (0, 100)
    assert again.get(r["id"])["devices"]["ev-01"]["acked"] == 100


def test_a_failed_save_changes_nothing(tmp_path, monkeypatch):
    ro = make(tmp_path)
    rel = ro.releases.add(make_release(tmp_path))
    r = ro.start(rel.id, DEVICES, ["ev-01"])

    def broken(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(rollout.atomic_file, "write", broken)
    with pytest.raises(OSError):
        ro.pause(r["id"])
    assert ro.get(r["id"])["status"] == "running"


def test_a_second_rollout_waits_for_the_first(tmp_path):
    ro = make(tmp_path)
    rel = ro.releases.add(make_release(tmp_path))
    ro.start(rel.id, DEVICES, ["ev-01"])
    with pytest.raises(rollout.RolloutError) as e:
        ro.start(rel.id, DEVICES, ["ev-01"])
    assert e.value.status == 409


OPS = st.lists(st.tuples(st.sampled_from(["step", "report", "pause", "resume", "cancel", "busy",
                                          "tick", "restart"]),
                         st.sampled_from(DEVICES),
                         st.sampled_from(["receiving", "verified", "switched", "confirmed",
                                          "rolled_back", "refused", "idle"]),
                         st.integers(0, 3000)), max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_rollout_invariants(tmp_path_factory, ops):
    """Whatever the devices report and the operator does: no step while paused or cancelled, no
    COMMIT to a device with an open case, no rest device served before every canary confirmed
    (unless the operator resumed past a failure), and a restart sees the same state."""
    tmp = tmp_path_factory.mktemp("ro")
    clock = Clock()
    busy = set()
    ro = make(tmp, busy=lambda d: d in busy, clock=clock)
    rel = ro.releases.add(make_release(tmp))
    rid = ro.start(rel.id, DEVICES, ["ev-01"])["id"]
    resumed_past_failure = False
    for op, device, state, n in ops:
        r = ro.get(rid)
        if op == "step":
            step = ro.next_step(device, 128)
            if step is not None:
                assert r["status"] == "running"
                assert not (step[0] == "commit" and device in busy)
                if device != "ev-01" and not resumed_past_failure:
                    assert r["devices"]["ev-01"]["state"] == "confirmed"
        elif op == "report":
            ro.report(device, state, rel.id, 0, n % len(rel.data[0]))
        elif op == "busy":
            busy.symmetric_difference_update({device})
        elif op == "tick":
            clock.now += n / 100.0
        elif op == "restart":
            ro.flush()
            snap = ro.snapshot()
            ro = make(tmp, busy=lambda d: d in busy, clock=clock)
            assert ro.snapshot() == snap
        else:
            try:
                getattr(ro, op)(rid)
            except rollout.RolloutError:
                continue
            if op == "resume" and r["devices"]["ev-01"]["state"] in rollout.FAILED:
                resumed_past_failure = True


def test_a_not_now_refusal_is_retried_and_a_real_one_fails(tmp_path):
    held = {"ev-01"}
    ro = make(tmp_path, busy=lambda d: d in held)
    rel = ro.releases.add(make_release(tmp_path))
    r = ro.start(rel.id, DEVICES, ["ev-01", "ev-02"])
    transfer(ro, "ev-01")                                          # stops at verified
    held.clear()
    assert ro.next_step("ev-01", 256)[0] == "commit"
    ro.report("ev-01", "refused", rel.id, reason="case_open")     # a case came up meanwhile
    assert r["devices"]["ev-01"]["state"] == "verified" and r["status"] == "running"
    assert ro.next_step("ev-01", 256)[0] == "commit"
    ro.report("ev-02", "refused", rel.id, reason="wrong_board")
    assert r["devices"]["ev-02"]["state"] == "refused" and r["status"] == "paused"


def test_a_device_busy_on_its_own_gets_no_chunks_until_it_asks(tmp_path):
    clock = Clock()
    ro = make(tmp_path, clock=clock)
    rel = ro.releases.add(make_release(tmp_path))
    r = ro.start(rel.id, DEVICES, ["ev-01"])
    ro.next_step("ev-01", 64)
    ro.report("ev-01", "receiving", rel.id, 1, 128)
    ro.report("ev-01", "receiving", rel.id, busy=True)        # copying a file it already has
    assert ro.next_step("ev-01", 64) is None
    assert r["devices"]["ev-01"]["acked"] == rel.position(1, 128)   # no step back in progress
    ro.report("ev-01", "receiving", rel.id, 2, 0)
    assert ro.next_step("ev-01", 64)[2:4] == (2, 0)


def test_a_lost_mqtt_chunk_restarts_the_window_once_not_once_per_chunk_behind_it(tmp_path):
    """Over MQTT a chunk lost on the way gets the device's same need back from every chunk behind
    it: the gateway sends from that need once; the other echoes send nothing (each resending
    the window made a storm that choked a Wi-Fi device); a resend lost too goes after STALL_S."""
    clock = Clock()
    ro = make(tmp_path, clock=clock)
    rel = ro.releases.add(make_release(tmp_path))
    ro.start(rel.id, DEVICES, ["ev-01"])
    assert ro.next_step("ev-01", 64, window=4)[0] == "offer"
    ro.report("ev-01", "receiving", rel.id, 1, 0)

    def window():
        out = []
        while True:
            step = ro.next_step("ev-01", 64, window=4)
            if step is None:
                return out
            out.append(step[2:4])

    assert window() == [(1, 0), (1, 64), (1, 128), (1, 192)]
    ro.report("ev-01", "receiving", rel.id, 1, 0)    # (1, 0) was lost: the answer to (1, 64)
    assert window() == [(1, 0), (1, 64), (1, 128), (1, 192)]
    ro.report("ev-01", "receiving", rel.id, 1, 0)    # the answers to (1, 128) and (1, 192)
    ro.report("ev-01", "receiving", rel.id, 1, 0)
    assert window() == []
    clock.now += rollout.STALL_S                     # the resend was lost as well
    assert window() == [(1, 0), (1, 64), (1, 128), (1, 192)]
    ro.report("ev-01", "receiving", rel.id, 1, 64)   # it arrived: progress, on from the window
    assert window() == [(1, 256)]
    ro.report("ev-01", "receiving", rel.id, 1, 64)   # a later loss is news again
    assert window()[0] == (1, 64)


def test_a_switched_device_whose_report_was_lost_is_asked_again(tmp_path):
    """A device tells once that its trial confirmed (or rolled back); an RS-485 reply can be lost:
    the gateway sends the COMMIT again every QUERY_EVERY_S, which the device answers with where
    it stands, and the rollout goes on."""
    clock = Clock()
    ro = make(tmp_path, clock=clock)
    rel = ro.releases.add(make_release(tmp_path))
    r = ro.start(rel.id, DEVICES, ["ev-01"])
    assert transfer(ro, "ev-01")[-1] == "commit"
    assert r["devices"]["ev-01"]["state"] == "switched"
    assert ro.next_step("ev-01", 256) is None                # the device's own report first
    clock.now += rollout.QUERY_EVERY_S                       # ... which was lost
    assert ro.next_step("ev-01", 256)[0] == "commit"
    assert ro.next_step("ev-01", 256) is None                # one question a period
    ro.report("ev-01", "confirmed", rel.id, version="1.1.0")
    assert r["devices"]["ev-01"]["state"] == "confirmed" and r["phase"] == "rest"


def test_a_silent_device_gives_its_place_up_and_is_offered_again_later(tmp_path):
    """Two places (PARALLEL): ev-02 and ev-03 switched off before the rollout never answer their
    offers; after SILENT_S they wait (no_answer) and ev-04 gets a place; ev-02, back on, is offered
    again after AGAIN_S and finishes; the rollout is done only when every device is."""
    clock = Clock()
    ro = make(tmp_path, clock=clock)
    rel = ro.releases.add(make_release(tmp_path))
    r = ro.start(rel.id, DEVICES, ["ev-01"])
    transfer(ro, "ev-01")
    ro.report("ev-01", "confirmed", rel.id, version="1.1.0")
    states = lambda: {d: p["state"] for d, p in ro.get(r["id"])["devices"].items()}  # noqa: E731
    assert states() == {"ev-01": "confirmed", "ev-02": "offering", "ev-03": "offering", "ev-04": "pending"}
    for d in ("ev-02", "ev-03"):
        assert ro.next_step(d, 256)[0] == "offer"           # nobody there to answer
    clock.now += rollout.SILENT_S - 1
    ro.flush()
    assert states()["ev-04"] == "pending"                   # not yet
    clock.now += 2
    ro.flush()
    got = states()
    assert got["ev-02"] == got["ev-03"] == "waiting" and got["ev-04"] == "offering", got
    assert ro.get(r["id"])["devices"]["ev-02"]["reason"].startswith("no_answer")
    assert ro.next_step("ev-02", 256) is None                # a waiting device gets nothing
    transfer(ro, "ev-04")
    ro.report("ev-04", "confirmed", rel.id, version="1.1.0")
    ro.flush()
    assert states()["ev-02"] == "waiting" and ro.get(r["id"])["status"] == "running"
    clock.now += rollout.AGAIN_S
    ro.flush()
    assert states()["ev-02"] == states()["ev-03"] == "offering"
    transfer(ro, "ev-02")                                   # ev-02 is back on
    ro.report("ev-02", "confirmed", rel.id, version="1.1.0")
    assert ro.get(r["id"])["status"] == "running"           # ev-03 is still off
    assert ro.cancel(r["id"])["devices"]["ev-03"]["state"] == "cancelled"
    saved = make(tmp_path, clock=clock).get(r["id"])
    assert saved["devices"]["ev-02"]["state"] == "confirmed" and saved["status"] == "cancelled"
