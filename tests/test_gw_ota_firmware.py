"""The gateway's rollout (gateway.ota, gateway.rollout) against the real device side
(firmware/ota.py, firmware/boot_select.py on the sim board with a fake flash: tests/fw_ota_support),
record by record through the same adapters the bus and the bridge use (gateway.ota.request and
.report): a bundle made by the build tool's Bundle, canary first, the font copied on the device
instead of sent, the switch, the confirmation, and a trial that fails rolling back by itself."""

import os

from firmware.boards.sim import Reboot
from fw_ota_support import NEW, RELEASE_KEY, Unit, factory_flash, outbox_bytes
from gateway import ota, rollout
from protocol import ota as proto
from tools.flashkit.bundle import Bundle


def unit_at(path, extra=None):
    root = str(path)
    os.makedirs(root, exist_ok=True)
    return Unit(root, factory_flash(root), RELEASE_KEY, extra)


def pump(ro, unit, device_id, until, rounds=4000):
    """The gateway's free slots for one device: what the rollout has, else the device's news (a
    POLL's answer) after its own work."""
    for _ in range(rounds):
        if until():
            return
        step = ro.next_step(device_id, 200)
        if step is not None:
            msg_type, record = ota.request(step)
            state = unit.dev.on_update(msg_type, record)
            ota.report(ro, device_id, state)
            if step[0] == "commit" and state.get("state") == proto.ST_SWITCHED:
                try:
                    unit.dev.step()
                except Reboot:
                    unit.reboot()
            continue
        try:
            unit.dev.step()
        except Reboot:
            unit.reboot()
        if unit.dev.ota is not None:
            ota.report(ro, device_id, unit.dev.update_state())
    raise AssertionError("not done: %s" % ro.snapshot())


def test_a_rollout_to_the_real_device_side(tmp_path):
    bundle = Bundle("1.1.0", NEW, ["five_button"]).save(str(tmp_path / "bundle"))
    releases = ota.Releases(RELEASE_KEY, str(tmp_path / "gw"))
    os.makedirs(str(tmp_path / "gw"), exist_ok=True)
    rel = releases.add(bundle)
    ro = rollout.Rollouts(str(tmp_path / "gw"), releases, firmware=lambda d: "1.0.0")
    canary = unit_at(tmp_path / "a")
    rest = unit_at(tmp_path / "b", extra={"trial_boots": 1})
    r = ro.start(rel.id, ["ev-a", "ev-b"], ["ev-a"])
    a, b = r["devices"]["ev-a"], r["devices"]["ev-b"]

    pump(ro, canary, "ev-a", lambda: a["state"] == "switched")
    assert b["state"] == "pending"
    assert canary.base == "rel/a" and canary.boots_whole_release()
    canary.dev.on_online()                          # back online: the trial release confirms
    ota.report(ro, "ev-a", canary.dev.update_state())
    assert a["state"] == "confirmed" and a["version_after"] == "1.1.0" and r["phase"] == "rest"

    before = outbox_bytes(rest)
    pump(ro, rest, "ev-b", lambda: b["state"] == "switched")
    for _ in range(3):                              # the trial never comes online: boots fail
        rest.reboot()
    ota.report(ro, "ev-b", rest.dev.update_state())
    assert b["state"] == "rolled_back" and "boot_failed" in b["reason"] and b["version_after"] == "1.0.0"
    assert rest.base == "" and outbox_bytes(rest) == before
    assert r["status"] == "done"
