"""Safe mode after repeated failed boots, the wrap-safe uptime, the STATUS heartbeat, config."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fw_support import KEY_HEX, Rig  # noqa: E402

from protocol import codec, schema  # noqa: E402
from firmware import config  # noqa: E402
from firmware.flashfs import Fs  # noqa: E402
from firmware.health import SAFE_MODE_AFTER, STABLE_MS, Uptime  # noqa: E402


def test_safe_mode_after_repeated_failed_boots_and_back_after_a_stable_run(tmp_path):
    rig = Rig("five_button", base=str(tmp_path))
    for _ in range(SAFE_MODE_AFTER - 1):        # boots that crash before they are stable
        rig.reboot()
    assert not rig.dev.safe_mode
    rig.reboot()                                 # the 11th attempt in a row
    assert rig.dev.safe_mode and rig.state == "error"
    st = rig.dev.status()
    assert st["safe_mode"] == 1 and st["boots"] == SAFE_MODE_AFTER + 1
    rig.context(5)                               # the transport still works, the UI does not
    rig.wait(STABLE_MS)                          # a stable run resets the attempts
    rig.reboot()
    assert not rig.dev.safe_mode


def test_a_failing_flash_does_not_stop_the_device_from_booting_and_rating(tmp_path):
    """Boot counters are health data: a full or failing flash is counted, not raised, so the
    device keeps running and its outbox keeps draining instead of reboot-looping."""
    class FullFlash(Fs):
        full = False

        def write_atomic(self, path, data):
            if self.full and path.endswith("state.json"):
                raise OSError(28, "no space left on device")
            return Fs.write_atomic(self, path, data)

    fs = FullFlash()
    rig = Rig("five_button", base=str(tmp_path), fs=fs)
    fs.full = True
    rig.reboot()                                 # Health.boot() saves the counters: it fails
    assert rig.dev.health.errors.get("flash_error") == 1
    rig.wait(STABLE_MS)                          # check_stable() saves again: counted too
    assert rig.dev.health.errors.get("flash_error") == 2
    rig.context(6)
    rig.wait(1000)
    rig.press_level(2)                           # the outbox is a separate file: still works
    assert [r["case_id"] for r in rig.ratings] == [6]


def test_uptime_survives_the_ticks_wrap():
    t = [(1 << 30) - 500]
    up = Uptime(lambda: t[0])
    t[0] = 700                                   # wrapped
    assert up.now() == 1200
    t[0] = 2700
    assert up.now() == 3200


def test_status_is_a_valid_record_with_the_error_counters(tmp_path):
    rig = Rig("five_button", base=str(tmp_path))
    rig.dev.health.count("bad_request", 3)
    st = rig.dev.status()
    codec.encode(schema.STATUS, st)              # every field in range
    assert st["firmware"] and st["board"] == "five_button" and st["outbox_capacity"] == 10
    assert {"name": "bad_request", "count": 3} in st["errors"]
    assert st["heap_free"] > 0


def test_device_config_is_validated_and_saved_atomically(tmp_path):
    good = {"device": "win07", "key": KEY_HEX, "board": {"profile": "touch"}, "transport": "mqtt",
            "hall": "sz-futian", "mqtt": {"host": "10.0.0.2"}}
    fs = Fs()
    config.save_device(fs, str(tmp_path), good)
    loaded = config.load_device(fs, str(tmp_path))
    assert loaded["key_bytes"] == bytes.fromhex(KEY_HEX) and loaded["outbox_capacity"] == 500
    assert loaded["counter_floor"] == 0
    for bad, word in (({"key": "00"}, "key"), ({"device": "窗口"}, "device"),
                      ({"board": {"profile": "lcd"}}, "board"), ({"hall": ""}, "mqtt"),
                      ({"transport": "rs485", "address": 300}, "address"),
                      ({"counter_floor": -1}, "counter_floor"),
                      ({"counter_floor": config.COUNTER_FLOOR_MAX + 1}, "counter_floor"),
                      ({"counter_floor": "1795000000"}, "counter_floor")):
        cfg = dict(good)
        cfg.update(bad)
        with pytest.raises(config.ConfigError, match=word):
            config.validate(cfg)
    with pytest.raises(config.ConfigError):
        config.load_device(fs, str(tmp_path / "nowhere"))
    (tmp_path / "config.bin").write_bytes(b"\xff\xff")      # a damaged CONFIG: the defaults
    assert config.load_rating_config(fs, str(tmp_path))["rating_timeout_s"] == 60
