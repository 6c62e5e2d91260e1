"""Runs a small whole hall (real broker, bus, gateway process, central API, firmware evaluators)
for the whole-hall tests, and reads what the central API kept."""

import argparse
import asyncio
import io
import sqlite3

from hall_simulator import citizens, hall_run


def run_hall(tmp_path, rs485=1, mqtt=1, duration=80.0, speed=20.0, seed=7, chaos="none",
             mix=None, case_weights=None, completed_ago_s=0, rating_timeout_s=20, screenshots=None,
             touch=0):
    options = argparse.Namespace(rs485=rs485, mqtt=mqtt, duration=duration, speed=speed, seed=seed,
                                 chaos=chaos, report=str(tmp_path / "report.json"),
                                 screenshots=screenshots, touch=touch)
    out = io.StringIO()
    kwargs = {"workdir": str(tmp_path / "hall"), "mix": mix or citizens.Mix(think_s=(1.0, 3.0)),
              "case_weights": case_weights, "completed_ago_s": completed_ago_s,
              "rating_timeout_s": rating_timeout_s}
    status, result = asyncio.run(hall_run.run_async(options, out=out, hall_kwargs=kwargs))
    return status, result, out.getvalue()


def central(tmp_path, sql, *args):
    db = sqlite3.connect(str(tmp_path / "hall" / "central.db"))
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()
