"""Over-the-air update on the device (firmware/ota.py, firmware/boot_select.py, SPEC.md 3.10): a
release is taken in chunks beside the running one, checked, switched to, confirmed once the
device is back online, rolled back by itself when it fails; what it refuses, and why."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fw_ota_support as S  # noqa: E402
from fw_ota_support import NEW, Unit, commit, factory_flash, outbox_bytes, release, serve  # noqa: E402

from firmware import boot_select  # noqa: E402
from firmware.boards.sim import Reboot  # noqa: E402
from firmware.boards.sim_io import MemUart  # noqa: E402
from firmware.transport_rs485 import Rs485Transport  # noqa: E402
from protocol import codec, ota, schema  # noqa: E402
from protocol.link import MasterBus  # noqa: E402


def unit_at(tmp_path, key=S.RELEASE_KEY, extra=None):
    root = str(tmp_path)
    return Unit(root, factory_flash(root), key, extra)


def rate_one(unit, case_id=41):
    unit.rig.context(case_id)
    unit.rig.wait(1000)
    unit.rig.press_level(2)
    unit.dev.on_clear({"case_id": case_id})
    unit.rig.wait(unit.dev.app.cfg["thanks_s"] * 1000 + 100)     # the thank-you is over
    assert outbox_bytes(unit) and unit.dev.app.state not in ("thanks", "not_rated")
    return outbox_bytes(unit)


def test_the_numbers_boot_select_keeps_are_protocol_otas():
    assert (boot_select.ST_SWITCHED, boot_select.ST_CONFIRMED, boot_select.ST_ROLLED_BACK) == (
        ota.ST_SWITCHED, ota.ST_CONFIRMED, ota.ST_ROLLED_BACK)
    assert (boot_select.WHY_BOOT_FAILED, boot_select.WHY_NO_CONFIRM) == (ota.WHY_BOOT_FAILED,
                                                                       ota.WHY_NO_CONFIRM)


def test_update_switch_confirm_and_the_font_is_copied_not_sent(tmp_path):
    unit = unit_at(tmp_path)
    before = rate_one(unit)
    manifest, contents = release(NEW, "1.1.0")
    sent = []
    state = serve(unit, manifest, contents, spoil=lambda f, off, d: sent.append((f, off, len(d))) or d)
    assert state["state"] == ota.ST_VERIFIED and state["received"] == state["total"] == sum(map(len, contents))
    names = [p for p, _, _ in ota.parse_manifest(manifest)["files"]]
    sent_files = sorted(set(names[f - 1] for f, _, _ in sent if f))
    assert sent_files == ["firmware/app.mpy", "firmware/extra.mpy"]     # font, main.py: copied
    assert sum(n for f, _, n in sent if f == 0) == len(manifest)
    assert unit.base == ""
    state = commit(unit, manifest)
    assert state["state"] == ota.ST_SWITCHED
    assert unit.base == "rel/a" and unit.boots_whole_release()
    ptr = boot_select.read(unit.flash, unit.root + "/data")
    assert ptr["trial"] == 1 and ptr["boots"] == 1 and ptr["prev"]["base"] == ""
    assert unit.dev.update_news() and unit.dev.update_state()["state"] == ota.ST_SWITCHED
    unit.dev.on_online()
    state = unit.dev.update_state()
    assert state["state"] == ota.ST_CONFIRMED and state["running"] == "1.1.0"
    assert state["release_id"] == ota.release_id(manifest)
    assert outbox_bytes(unit) == before                  # the ratings are untouched
    unit.reboot()
    assert unit.base == "rel/a" and unit.dev.ota is None   # an ordinary boot loads no update code
    # the same offer again is answered "running it"
    assert unit.dev.on_update(schema.UPDATE_OFFER, ota.offer(S.RELEASE_KEY, manifest))["state"] == \
        ota.ST_CONFIRMED


def test_failed_trial_boots_roll_back_by_themselves_and_say_why(tmp_path):
    unit = unit_at(tmp_path, extra={"trial_boots": 2})
    before = rate_one(unit)
    manifest, contents = release(NEW, "1.1.0")
    assert serve(unit, manifest, contents)["state"] == ota.ST_VERIFIED
    commit(unit, manifest)
    assert unit.base == "rel/a"
    unit.reboot()                      # the new release crashed before coming online: boot 2
    assert unit.base == "rel/a"
    unit.reboot()                      # boot 3 > 2 trial boots: back to the old one
    assert unit.base == "" and unit.boots_whole_release()
    state = unit.dev.update_state()
    assert (state["state"], state["reason"], state["boots"]) == (ota.ST_ROLLED_BACK, ota.WHY_BOOT_FAILED, 2)
    assert state["release_id"] == ota.release_id(manifest) and state["running"] == "1.0.0"
    assert outbox_bytes(unit) == before
    # the gateway that missed the news asks with the COMMIT again: the answer is the rollback
    again = unit.dev.on_update(schema.UPDATE_COMMIT, {"release_id": ota.release_id(manifest)})
    assert (again["state"], again["reason"]) == (ota.ST_ROLLED_BACK, ota.WHY_BOOT_FAILED)
    assert unit.base == ""
    # once told, an ordinary boot again
    unit.reboot()
    assert unit.dev.ota is None and unit.base == ""


def test_no_confirmation_within_the_deadline_rolls_back(tmp_path):
    unit = unit_at(tmp_path, extra={"trial_s": 60})
    manifest, contents = release(NEW, "1.1.0")
    serve(unit, manifest, contents)
    commit(unit, manifest)
    unit.rig.wait(30000)
    with pytest.raises(Reboot):
        unit.rig.wait(31000)
    unit.reboot()
    assert unit.base == ""
    state = unit.dev.update_state()
    assert (state["state"], state["reason"]) == (ota.ST_ROLLED_BACK, ota.WHY_NO_CONFIRM)


def test_a_release_under_another_key_is_refused_and_nothing_switches(tmp_path):
    unit = unit_at(tmp_path)
    manifest, contents = release(NEW, "6.6.6")
    state = serve(unit, manifest, contents, key=S.OTHER_KEY)
    assert (state["state"], state["reason"]) == (ota.ST_REFUSED, ota.WHY_BAD_MAC)
    state = unit.dev.on_update(schema.UPDATE_COMMIT, {"release_id": ota.release_id(manifest)})
    assert state["state"] == ota.ST_REFUSED
    assert boot_select.read(unit.flash, unit.root + "/data") == {}
    assert not any(p.startswith(unit.top + "/rel/") for p in unit.flash.files)


def test_a_device_without_a_release_key_installs_nothing(tmp_path):
    unit = unit_at(tmp_path, key=None)
    manifest, _ = release(NEW, "1.1.0")
    state = unit.dev.on_update(schema.UPDATE_OFFER, ota.offer(S.RELEASE_KEY, manifest))
    assert (state["state"], state["reason"]) == (ota.ST_REFUSED, ota.WHY_NO_KEY)


def test_a_release_for_another_board_is_refused(tmp_path):
    unit = unit_at(tmp_path)
    manifest, contents = release(NEW, "1.1.0", boards=("touch",))
    state = serve(unit, manifest, contents)
    assert (state["state"], state["reason"]) == (ota.ST_REFUSED, ota.WHY_WRONG_BOARD)


def test_a_spoiled_chunk_is_caught_by_the_files_sha256_and_fetched_again(tmp_path):
    unit = unit_at(tmp_path)
    manifest, contents = release(NEW, "1.1.0")
    spoiled = []

    def spoil(f, off, data):
        if f == 2 and off == 0 and not spoiled:
            spoiled.append(1)
            return b"X" + data[1:]
        return data
    state = serve(unit, manifest, contents, spoil=spoil)
    assert spoiled and state["state"] == ota.ST_VERIFIED
    commit(unit, manifest)
    assert unit.boots_whole_release() and unit.base == "rel/a"


def test_no_switch_while_a_case_is_on_screen(tmp_path):
    unit = unit_at(tmp_path)
    manifest, contents = release(NEW, "1.1.0")
    serve(unit, manifest, contents)
    unit.rig.context(77)
    state = unit.dev.on_update(schema.UPDATE_COMMIT, {"release_id": ota.release_id(manifest)})
    assert (state["state"], state["reason"]) == (ota.ST_REFUSED, ota.WHY_CASE_OPEN)
    assert boot_select.read(unit.flash, unit.root + "/data") == {}
    unit.dev.on_clear({"case_id": 77})
    assert commit(unit, manifest)["state"] == ota.ST_SWITCHED


def test_no_switch_under_the_thank_you_of_a_citizen_who_has_just_rated(tmp_path):
    """The COMMIT can come the moment the case closes: the reboot would cut the thank-you off
    and hold the rating just made until the device is back. Not now (case_open, asked again)."""
    unit = unit_at(tmp_path)
    manifest, contents = release(NEW, "1.1.0")
    serve(unit, manifest, contents)
    unit.rig.context(78)
    unit.rig.wait(1000)
    unit.rig.press_level(2)
    assert unit.dev.app.state == "thanks" and not unit.dev.app.case_id()
    state = unit.dev.on_update(schema.UPDATE_COMMIT, {"release_id": ota.release_id(manifest)})
    assert (state["state"], state["reason"]) == (ota.ST_REFUSED, ota.WHY_CASE_OPEN)
    assert boot_select.read(unit.flash, unit.root + "/data") == {}
    unit.rig.wait(unit.dev.app.cfg["thanks_s"] * 1000 + 100)
    assert commit(unit, manifest)["state"] == ota.ST_SWITCHED


def test_commit_before_verified_and_offers_during_a_trial_are_refused(tmp_path):
    unit = unit_at(tmp_path)
    manifest, contents = release(NEW, "1.1.0")
    unit.dev.on_update(schema.UPDATE_OFFER, ota.offer(S.RELEASE_KEY, manifest))
    state = unit.dev.on_update(schema.UPDATE_COMMIT, {"release_id": ota.release_id(manifest)})
    assert (state["state"], state["reason"]) == (ota.ST_REFUSED, ota.WHY_NOT_READY)
    serve(unit, manifest, contents)
    commit(unit, manifest)
    other, _ = release(dict(NEW, **{"main.py": b"# 1.2\n"}), "1.2.0")
    state = unit.dev.on_update(schema.UPDATE_OFFER, ota.offer(S.RELEASE_KEY, other))
    assert (state["state"], state["reason"]) == (ota.ST_REFUSED, ota.WHY_BUSY)


def test_chunks_for_the_wrong_place_are_ignored_and_cancel_drops_the_release(tmp_path):
    unit = unit_at(tmp_path)
    manifest, _ = release(NEW, "1.1.0")
    rid = ota.release_id(manifest)
    unit.dev.on_update(schema.UPDATE_OFFER, ota.offer(S.RELEASE_KEY, manifest))
    state = unit.dev.on_update(schema.UPDATE_CHUNK, {"release_id": rid, "file": 0, "offset": 50,
                                                     "data": manifest[50:100]})
    assert (state["file"], state.get("offset", 0)) == (0, 0)
    state = unit.dev.on_update(schema.UPDATE_CHUNK, {"release_id": bytes(32), "data": b"x"})
    assert (state["state"], state["reason"]) == (ota.ST_REFUSED, ota.WHY_UNKNOWN)
    state = unit.dev.on_update(schema.UPDATE_CANCEL, {"release_id": rid})
    assert state.get("state", 0) == ota.ST_IDLE


def test_a_second_update_goes_into_the_other_directory_and_can_roll_back_to_the_first(tmp_path):
    unit = unit_at(tmp_path, extra={"trial_boots": 1})
    manifest, contents = release(NEW, "1.1.0")
    serve(unit, manifest, contents)
    commit(unit, manifest)
    unit.dev.on_online()
    second = dict(NEW, **{"firmware/app.mpy": b"M\x06second" * 40})
    m2, c2 = release(second, "1.2.0")
    sent = []
    assert serve(unit, m2, c2, spoil=lambda f, off, d: sent.append(f) or d)["state"] == ota.ST_VERIFIED
    assert set(sent) == {0, 1}         # only the manifest and the changed file travel
    commit(unit, m2)
    assert unit.base == "rel/b"
    unit.reboot()                      # 2 boots > 1: back to rel/a, the first update
    assert unit.base == "rel/a" and unit.boots_whole_release()
    assert unit.dev.update_state()["running"] == "1.1.0"


# --- RS-485: ratings first, then the update ------------------------------------------------------
def test_rs485_polls_get_the_rating_first_then_the_update_state(tmp_path):
    unit = unit_at(tmp_path)
    manifest, _ = release(NEW, "1.1.0")
    uart = MemUart()
    dev = unit.dev
    dev.transport = Rs485Transport(dev, uart, 5, 115200, lambda on: None, lambda: 0, lambda us: None)
    bus = MasterBus()
    ch = bus.channel(5)

    def ask(msg_type, record):
        uart.feed(ch.request(msg_type, record))
        dev.step()
        bus.receive_data(uart.take_tx())
        return bus.next_reply()[1]
    assert ask(schema.POLL, {}).type == schema.STATUS       # the first poll: the heartbeat
    reply = ask(schema.UPDATE_OFFER, ota.offer(S.RELEASE_KEY, manifest))
    assert reply.type == schema.UPDATE_STATE and reply.record["state"] == ota.ST_RECEIVING
    rate_one(unit)
    reply = ask(schema.POLL, {})
    assert reply.type == schema.RATING                      # ratings first
    dev.ota.news = True                                     # e.g. after a reboot mid-transfer
    assert ask(schema.POLL, {}).type == schema.RATING       # still: the rating waits
    counter = reply.record["counter"]
    reply = ask(schema.ACK, unit.rig.signed_ack(counter))
    assert reply.type == schema.UPDATE_STATE and reply.record["state"] == ota.ST_RECEIVING
    assert "file" not in reply.record and "offset" not in reply.record and not reply.record.get("busy")
    assert ask(schema.POLL, {}).type == schema.IDLE         # told once: IDLE again
    reply = ask(schema.UPDATE_CHUNK, {"release_id": ota.release_id(manifest), "data": manifest[:200]})
    assert reply.type == schema.UPDATE_STATE and reply.record["offset"] == 200
    assert codec.decode(schema.UPDATE_STATE, codec.encode(schema.UPDATE_STATE, reply.record))


def test_rs485_a_poll_confirms_the_trial_release(tmp_path):
    unit = unit_at(tmp_path)
    manifest, contents = release(NEW, "1.1.0")
    serve(unit, manifest, contents)
    commit(unit, manifest)
    uart = MemUart()
    dev = unit.dev
    dev.transport = Rs485Transport(dev, uart, 5, 115200, lambda on: None, lambda: 0, lambda us: None)
    bus = MasterBus()
    replies = []
    for _ in range(2):
        uart.feed(bus.channel(5).request(schema.POLL, {}))
        dev.step()
        bus.receive_data(uart.take_tx())
        replies.append(bus.next_reply()[1])
        assert boot_select.read(unit.flash, unit.root + "/data")["trial"] == 0
    assert replies[0].type == schema.STATUS
    assert replies[1].type == schema.UPDATE_STATE and replies[1].record["state"] == ota.ST_CONFIRMED


# --- the boot: the top release's main.run hands over to the release the pointer names -----------
BOOT = """
import sys
sys.path.insert(0, %r)
from firmware import main
main.run(root=%r, top=%r)
"""


def test_boot_hands_over_to_the_pointed_release_and_a_broken_one_rolls_back(tmp_path):
    import json
    import subprocess
    top = tmp_path / "top"
    data = top / "data"
    data.mkdir(parents=True)
    rel = top / "rel" / "a"
    for pkg in ("firmware", "protocol"):
        (rel / pkg).mkdir(parents=True)
        (rel / pkg / "__init__.py").write_text("")
    (rel / "firmware" / "main.py").write_text(
        "def run(root, font, base, top):\n    import firmware\n"
        "    print('RUNNING', firmware.__file__, base)\n")
    (data / "boot.json").write_text(json.dumps({"base": "rel/a", "release": "ab" * 32, "version": "9.0",
                                                "trial": 1, "boots": 0, "limit": 2,
                                                "prev": {"base": "", "release": "", "version": ""}}))
    repo = str(Path(__file__).resolve().parent.parent)
    script = BOOT % (repo, str(data), str(top))

    def boot():
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    out = boot()
    assert "RUNNING %s rel/a" % (rel / "firmware" / "__init__.py") in out.stdout, out.stderr
    assert json.loads((data / "boot.json").read_text())["boots"] == 1
    (rel / "firmware" / "main.py").write_text("raise ImportError('a broken release')\n")
    out = boot()
    assert out.returncode != 0 and "rel/a failed to start" in out.stdout
    out = boot()                      # 3 boots > limit 2: the top release runs again
    assert "provisioning needed" in out.stdout and "RUNNING" not in out.stdout, out.stderr
    ptr = json.loads((data / "boot.json").read_text())
    assert (ptr["base"], ptr["state"], ptr["why"]) == ("", ota.ST_ROLLED_BACK, ota.WHY_BOOT_FAILED)


# --- MQTT: the update topic in, update_state out, against a real Mosquitto ------------------------
def test_mqtt_update_topic_in_order_and_the_state_out(mosquitto_broker, tmp_path):
    import json
    import time
    import paho.mqtt.client as paho
    from fw_polling import now_ms, run_until
    from firmware.main import attach_transport
    from protocol import topics
    hall = "sz-futian"
    root = str(tmp_path)
    unit = Unit(root, factory_flash(root), extra={
        "transport": "mqtt", "hall": hall,
        "mqtt": {"host": mosquitto_broker.host, "port": mosquitto_broker.port, "keepalive": 5}},
        clock=now_ms, net="tcp")
    dev = unit.dev
    attach_transport(dev, unit.rig.board, unit.rig.cfg)
    states = []
    gw = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="gw-ota-test")
    gw.on_message = lambda c, u, m: states.append(json.loads(m.payload))
    gw.connect(mosquitto_broker.host, mosquitto_broker.port)
    gw.subscribe(topics.device_topic(hall, "win07", "update_state"), 1)
    gw.loop_start()
    assert run_until(lambda: dev.transport.client.connected, [dev.step])
    time.sleep(0.2)
    manifest, _ = release(NEW, "1.1.0")
    rid = ota.release_id(manifest)
    topic = topics.device_topic(hall, "win07", "update")
    # the offer and the manifest's chunks back to back: one topic keeps them in order
    gw.publish(topic, ota.update_json(schema.UPDATE_OFFER, ota.offer(S.RELEASE_KEY, manifest)), 1)
    for off in range(0, len(manifest), 100):
        gw.publish(topic, ota.update_json(schema.UPDATE_CHUNK, {"release_id": rid, "offset": off,
                                                                "data": manifest[off:off + 100]}), 1)
    assert run_until(lambda: any(s.get("file", 0) > 0 or s.get("busy") for s in states), [dev.step],
                     timeout=10), states
    assert states[0]["state"] == ota.ST_RECEIVING and states[0]["release_id"] == rid.hex()
    # every chunk taken, in order: the need moved chunk by chunk to the file after the manifest
    # (one state in flight at a time: the answers to chunks that came meanwhile are folded into
    # the latest)
    offsets = [s.get("offset", 0) for s in states if s.get("file", 0) == 0 and not s.get("busy")]
    assert offsets == sorted(set(offsets)) and set(offsets) <= set(range(0, len(manifest), 100))
    gw.loop_stop()
    gw.disconnect()


def test_a_full_flash_is_answered_no_space_and_the_device_keeps_rating(tmp_path):
    unit = unit_at(tmp_path)
    manifest, contents = release(NEW, "1.1.0")
    unit.dev.on_update(schema.UPDATE_OFFER, ota.offer(S.RELEASE_KEY, manifest))
    real = unit.flash.open

    def full(path, mode):
        if "a" in mode:
            raise OSError(28)
        return real(path, mode)
    unit.flash.open = full
    state = unit.dev.on_update(schema.UPDATE_CHUNK, {"release_id": ota.release_id(manifest),
                                                     "data": manifest[:100]})
    assert (state["state"], state["reason"]) == (ota.ST_REFUSED, ota.WHY_NO_SPACE)
    assert unit.dev.health.errors["ota_error"] == 1
    unit.flash.open = real
    rate_one(unit, 51)                 # the device still takes ratings
    assert serve(unit, manifest, contents)["state"] == ota.ST_VERIFIED   # and the update resumes


def test_full_image_update_is_detected_only_with_ota_0_and_ota_1(tmp_path, monkeypatch):
    import types
    from firmware import ota as fw_ota

    class Partition:
        TYPE_APP = 0
        labels = ("factory",)

        @classmethod
        def find(cls, kind, label=None):
            return [label] if label in cls.labels else []
    monkeypatch.setitem(sys.modules, "esp32", types.SimpleNamespace(Partition=Partition))
    assert fw_ota.image_capable() == 0
    unit = unit_at(tmp_path)
    manifest, _ = release(NEW, "1.1.0")
    state = unit.dev.on_update(schema.UPDATE_OFFER, ota.offer(S.RELEASE_KEY, manifest))
    assert state["image"] == 0 and state["detail"] == "application bundle; no ota_0/ota_1"
    Partition.labels = ("ota_0", "ota_1")
    assert fw_ota.image_capable() == 1
    state = unit.dev.update_state()
    assert state["image"] == 1 and state["detail"] == "application bundle"


def test_the_broker_acl_lets_a_device_read_only_its_own_update_topic():
    from gateway import mosquitto_acl

    class Dev:
        def __init__(self, dev_id):
            self.id, self.transport, self.key = dev_id, "mqtt", bytes(32)

    class Registry:
        def all(self):
            return [Dev("win07"), Dev("win08")]
    acl = mosquitto_acl.acl_file("sz", Registry(), "gateway").split("\n\n")
    mine = [block for block in acl if block.startswith("user win07")][0].splitlines()
    assert "topic read hall/sz/dev/win07/update" in mine
    assert "topic write hall/sz/dev/win07/update_state" in mine
    assert not [line for line in mine if "win08" in line or line.endswith("/#")]


def test_code_of_the_top_release_in_a_romfs_partition_is_copied_from_there(tmp_path, monkeypatch):
    from firmware import ota as fw_ota
    root = str(tmp_path)
    flash = factory_flash(root)
    rom = root + "/rom"
    flash.files[rom + "/firmware/app.mpy"] = flash.files.pop(root + "/app/firmware/app.mpy")
    monkeypatch.setattr(fw_ota, "ROMFS", rom)
    unit = Unit(root, flash)
    same = dict(NEW, **{"firmware/app.mpy": S.OLD["firmware/app.mpy"]})
    manifest, contents = release(same, "1.1.1")
    sent = []
    assert serve(unit, manifest, contents, spoil=lambda f, off, d: sent.append(f) or d)["state"] == \
        ota.ST_VERIFIED
    names = [p for p, _, _ in ota.parse_manifest(manifest)["files"]]
    assert sorted(set(names[f - 1] for f in sent if f)) == ["firmware/extra.mpy"]


def test_a_bad_pointer_or_trial_setting_still_boots_a_release(tmp_path):
    root = str(tmp_path)
    flash = factory_flash(root)
    for junk in (b"{not json", b"[1, 2]", b'{"base": 5, "trial": 1, "boots": "x", "limit": null}'):
        flash.files[root + "/data/boot.json"] = bytearray(junk)
        assert boot_select.boot(flash, root + "/data") == ""
    unit = Unit(root, flash, extra={"trial_boots": "three", "trial_s": -1})
    assert unit.dev._updater().limit == 3 and unit.dev.ota.trial_ms == 600000


def test_a_pointer_at_a_directory_that_is_gone_boots_the_top(tmp_path):
    import json
    from firmware import main
    data = tmp_path / "data"
    data.mkdir()
    (data / "boot.json").write_text(json.dumps({"base": "rel/b", "release": "cd" * 32}))
    assert main.select(str(data), str(tmp_path)) == ""
    (tmp_path / "rel" / "b").mkdir(parents=True)
    assert main.select(str(data), str(tmp_path)) == "rel/b"


def test_rs485_a_broadcast_chunk_is_taken_by_the_device_that_needs_it_and_not_answered(tmp_path):
    from protocol import frame
    unit = unit_at(tmp_path)
    manifest, _ = release(NEW, "1.1.0")
    uart = MemUart()
    dev = unit.dev
    dev.transport = Rs485Transport(dev, uart, 5, 115200, lambda on: None, lambda: 0, lambda us: None)
    dev.on_update(schema.UPDATE_OFFER, ota.offer(S.RELEASE_KEY, manifest))
    rid = ota.release_id(manifest)
    for off in (100, 0, 0):          # not needed yet: ignored; needed: taken; again: ignored
        chunk = {"release_id": rid, "offset": off, "data": manifest[off:off + 100]}
        uart.feed(frame.encode_frame(frame.BROADCAST, schema.UPDATE_CHUNK, 9, codec.encode(schema.UPDATE_CHUNK, chunk)))
        dev.step()
        assert uart.take_tx() == b""
    assert dev.update_news()           # the next poll without a rating waiting says where it is
    assert dev.update_state()["offset"] == 100
