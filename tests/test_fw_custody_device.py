"""Custody (SPEC 3.11) on the whole device, over RS-485 frames and MQTT JSON, under CPython and
real MicroPython 1.29 (the flows are in tests/fw_custody_device.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fw_custody_device  # noqa: E402
from fw_custody_device import GEN1, Bus, ack, rate, settle  # noqa: E402
from fw_support import Rig  # noqa: E402

from protocol import schema  # noqa: E402


@pytest.mark.parametrize("name", fw_custody_device.CUSTODY_FLOWS)
def test_custody_flow(name, tmp_path):
    fw_custody_device.run_custody_flow(name, base=str(tmp_path))


def test_a_settle_is_answered_exactly_as_a_poll(tmp_path):
    """The SETTLE's reply is what a POLL would get: STATUS when due, else the head or IDLE."""
    rig = Rig("five_button", base=str(tmp_path))
    bus = Bus(rig)
    t, rec, _ = bus.ask(schema.SETTLE, settle(rig, GEN1, 1))
    assert t == schema.STATUS and "custody" not in rec and "custody_oldest" not in rec   # 0: left out
    rate(rig, 81)
    t, rec, _ = bus.ask(schema.SETTLE, settle(rig, GEN1, 2))
    assert t == schema.RATING and rec["counter"] == 1 and "reoffer" not in rec
    t, rec, _ = bus.ask(schema.ACK, ack(rig, 1))
    assert t == schema.IDLE and rec == {"custody": 1, "generation": GEN1}


def test_a_config_without_custody_is_on_and_false_turns_it_off(tmp_path):
    from firmware.config import ConfigError, validate
    base = {"device": "win07", "key": "5c" * 32}
    assert validate(dict(base))["custody"] is True
    assert validate(dict(base, custody=False))["custody"] is False
    with pytest.raises(ConfigError):
        validate(dict(base, custody="yes"))


MP_SCRIPT = """
import sys
sys.path.insert(0, "/repo/tests")
import fw_custody_device
for name in fw_custody_device.CUSTODY_FLOWS:
    try:
        fw_custody_device.run_custody_flow(name)
        print("PASS", name)
    except Exception as e:
        sys.print_exception(e)
        print("FAIL", name, repr(e))
"""


def test_custody_flows_under_micropython(micropython):
    r = micropython(MP_SCRIPT, trees=("protocol", "firmware", "tests"), timeout=300).check()
    assert "FAIL" not in r.stdout, r.stdout
    assert r.stdout.count("PASS") == len(fw_custody_device.CUSTODY_FLOWS), r.stdout
