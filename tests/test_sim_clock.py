import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hall_simulator.clock import SimClock


def test_real_speed_follows_the_wall():
    c = SimClock()
    t0, w0 = c.time(), time.time()
    assert abs(t0 - w0) < 0.05
    time.sleep(0.05)
    assert 0.04 < c.monotonic() < 1.0
    assert c.ticks_ms() >= 40


def test_accelerated_clock_runs_speed_times_faster():
    c = SimClock(speed=20, start_unix=1_700_000_000)
    r0, s0 = time.monotonic(), c.time()
    time.sleep(0.1)
    real = time.monotonic() - r0
    sim = c.time() - s0
    assert sim == pytest.approx(real * 20, rel=0.05)
    assert c.time() >= 1_700_000_000


def test_async_sleep_is_scaled():
    c = SimClock(speed=50)

    async def run():
        t0 = time.monotonic()
        s0 = c.monotonic()
        await c.sleep(5)          # 0.1 s of real time
        return time.monotonic() - t0, c.monotonic() - s0

    real, sim = asyncio.run(run())
    assert 0.09 < real < 1.0
    assert sim >= 5 * 0.98


def test_advance_jumps_both_clocks_and_never_back():
    c = SimClock(speed=1, start_unix=1_000)
    t, m = c.time(), c.ticks_ms()
    c.advance(7 * 86400)
    assert c.time() - t >= 7 * 86400
    assert c.ticks_ms() - m >= 7 * 86400 * 1000
    with pytest.raises(ValueError):
        c.advance(-1)

    async def wait():
        c2 = SimClock(speed=1)
        task = asyncio.ensure_future(c2.sleep_until(c2.time() + 3600))
        await asyncio.sleep(0.01)
        c2.advance(3600)
        await asyncio.wait_for(task, 2)
    asyncio.run(wait())


def test_bad_speed_is_refused():
    with pytest.raises(ValueError):
        SimClock(speed=0)


def test_another_process_sees_the_same_time():
    c = SimClock(speed=100, start_unix=1_800_000_000)
    code = ("import sys; from hall_simulator.clock import SimClock; "
            "print(SimClock.from_spec(sys.argv[1]).time())")
    out = subprocess.run([sys.executable, "-c", code, c.spec()], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent).stdout
    after = c.time()
    child = float(out)
    assert 1_800_000_000 < child <= after
    assert after - child < 100 * 2.0     # within 2 real seconds of process start-up
