"""Ctrl-C at the terminal (SIGINT to the whole foreground process group) closes the hall early:
the summary and the report still come, and neither Mosquitto nor the gateway outlives hall-sim.
SIGKILL of hall-sim takes its children with it too (setpriv --pdeathsig)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start(tmp_path, *extra):
    """hall-sim in its own process group, as a shell runs a foreground job (SIGINT default)."""
    out = open(tmp_path / "out.txt", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hall_simulator.cli", "--windows", "2", "--duration", "3000",
         "--speed", "10", "--seed", "4"] + list(extra), cwd=ROOT, stdout=out,
        stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return proc, tmp_path / "out.txt"


def wait_for(path, pattern, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = re.search(pattern, path.read_text(encoding="utf-8"))
        if m:
            return m
        time.sleep(0.2)
    raise AssertionError("no %r in:\n%s" % (pattern, path.read_text(encoding="utf-8")))


def processes_using(workdir):
    """Processes whose command line names the run's directory (its broker and gateway)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path("/proc/%s/cmdline" % pid).read_bytes().replace(b"\0", b" ").decode()
            state = Path("/proc/%s/stat" % pid).read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if workdir in cmd and state != "Z":
            found.append((int(pid), cmd))
    return found


def test_ctrl_c_closes_the_hall_with_a_summary_and_no_orphans(tmp_path):
    proc, out = start(tmp_path, "--report", str(tmp_path / "r.json"))
    workdir = wait_for(out, r"files: (\S+)").group(1)
    wait_for(out, r"\[ *\d+\.\ds/300s\] confirmed [1-9]")      # ratings are flowing
    assert len(processes_using(workdir)) == 2                    # mosquitto and the gateway
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(60) == 0
    text = out.read_text(encoding="utf-8")
    assert "closing the hall early" in text and "verdict: OK (the hall was closed early)" in text
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["interrupted"] and report["drained"] and report["lost"] == 0
    assert report["confirmed"] > 0
    assert processes_using(workdir) == []


def test_sigkill_of_hall_sim_takes_its_children_along(tmp_path):
    proc, out = start(tmp_path)
    workdir = wait_for(out, r"files: (\S+)").group(1)
    wait_for(out, r"Ctrl-C closes the hall early")
    assert len(processes_using(workdir)) == 2
    proc.kill()
    proc.wait(10)
    end = time.monotonic() + 10
    while processes_using(workdir) and time.monotonic() < end:
        time.sleep(0.1)
    assert processes_using(workdir) == []
