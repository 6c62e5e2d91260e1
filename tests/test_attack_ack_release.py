"""Attacks on the release of a rating (issue "Secure by default", item 2): whoever can publish on a
device's rating topic (a broker without an ACL) or answer in its RS-485 slot must not get the
gateway to sign an ACK that makes the device forget a rating the citizen was told was recorded.

Real parts: Mosquitto (no ACL: only the protocol protects), the gateway's MqttBridge / Rs485Master
with a real store, the real firmware Device and transports, hall_simulator's paced RS-485 bus, and
real MicroPython for the device's side of the rule."""

import json
import random
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import serial
from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from fw_flash_support import payload_for  # noqa: E402
from fw_polling import now_ms, run_until  # noqa: E402
from fw_support import KEY_HEX, Rig  # noqa: E402
from protocol_strategies import message  # noqa: E402

from firmware.flashfs import Fs  # noqa: E402
from firmware.main import attach_transport  # noqa: E402
from firmware.outbox import Outbox  # noqa: E402
from gateway.config import BusConfig, MqttConfig  # noqa: E402
from gateway.mqtt_bridge import MqttBridge  # noqa: E402
from gateway.registry import Registry  # noqa: E402
from gateway.rejects import Rejections  # noqa: E402
from gateway.rs485_master import Rs485Master  # noqa: E402
from gateway.committer import GroupCommitter  # noqa: E402
from gateway.store import Store  # noqa: E402
from protocol import auth, codec, errors, schema, topics, vocab  # noqa: E402
from protocol.slave import SlaveLink  # noqa: E402

HALL = "sz-futian"
VICTIM, OTHER = "win07", "win08"
KEY = bytes.fromhex(KEY_HEX)
OTHER_KEY = bytes(range(32))
CTX = {"case_id": 41, "node": 3, "serials": ["SZ2024-0041"], "staff_name": "朱镕",
       "matter_name": "居住证签注"}


def _registry(**victim):
    return Registry([dict({"id": VICTIM, "window": "07", "key": KEY_HEX}, **victim),
                     {"id": OTHER, "window": "08", "key": OTHER_KEY.hex()}])


def _rate(rig, step):
    """One citizen's press through the real flow: rating 1 lands in the outbox."""
    rig.dev.on_context(dict(CTX))
    step()
    time.sleep(0.6)                            # past the misuse guard (500 ms in the rig)
    rig.press_level(vocab.VERY_SATISFIED)
    assert rig.dev.outbox.counters == [1]
    return codec.decode(schema.RATING, rig.dev.outbox.get(1))


# --- MQTT: a rogue client on the victim's rating topic ---------------------------------------------
def _junk_without_mac(head):
    return json.dumps({"device": VICTIM, "counter": head["counter"], "junk": "x" * 40})


def _junk_with_mac(head):
    return json.dumps({"device": VICTIM, "counter": head["counter"], "overall": 9, "mac": "5a" * 16})


def _wrong_mac(head):
    return codec.to_json(schema.RATING, dict(head, mac=bytes(16)))


def _another_devices_genuine_rating(head):
    other = dict(head, device=OTHER)
    other.pop("mac")
    return codec.to_json(schema.RATING, auth.sign(OTHER_KEY, other))


def _victims_mac_on_altered_content(head):
    """The MAC read off the air (no ACL: anyone may subscribe) on content the citizen never chose."""
    return codec.to_json(schema.RATING, dict(head, overall=vocab.SATISFIED))


ATTACKS = {  # name: (payload maker, what the device counts on the gateway's answer, or None)
    "junk_without_mac": (_junk_without_mac, None),               # nothing to bind: unanswered
    "junk_with_mac": (_junk_with_mac, "ack_forged"),
    "wrong_mac": (_wrong_mac, "ack_forged"),
    "another_devices_genuine_rating": (_another_devices_genuine_rating, "ack_forged"),
    "victims_mac_on_altered_content": (_victims_mac_on_altered_content, "ack_rejected"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_rogue_mqtt_client_cannot_release_the_victims_rating(mosquitto_broker, tmp_path, attack):
    make_payload, counted = ATTACKS[attack]
    store = Store(str(tmp_path / "outbox.db"))
    committer = GroupCommitter(store)
    rejections = Rejections()
    bridge = MqttBridge(MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port,
                                   client_id="gw-attack"), HALL, _registry(), committer, rejections,
                        store=store)
    rig = Rig("five_button", base=str(tmp_path), clock=now_ms, net="tcp",
              extra={"transport": "mqtt", "hall": HALL,
                     "mqtt": {"host": mosquitto_broker.host, "port": mosquitto_broker.port,
                              "keepalive": 5}})
    rogue = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="rogue")
    bridge.start()
    try:
        assert bridge.connected.wait(10)
        tr = attach_transport(rig.dev, rig.board, rig.cfg)
        step = rig.dev.step
        assert run_until(lambda: tr.client.connected, [step])
        run_until(lambda: False, [step], timeout=0.3)              # its SUBSCRIBEs answered
        tr.sent_counter, tr.sent_at = 1, tr.clock()                # hold its own first publish
        head = _rate(rig, step)
        acks = bridge.stats["acks"]

        rogue.connect(mosquitto_broker.host, mosquitto_broker.port)
        rogue.loop_start()
        rogue.publish(topics.device_topic(HALL, VICTIM, "rating"), make_payload(head), 1).wait_for_publish(5)
        # The gateway kept it as evidence and counted it; whatever it answered has reached the
        # device (its counter moved, or it let the rating go) or, for no answer, had time to.
        assert run_until(lambda: len(store.dead_letters()) == 1, [step])
        errs = rig.dev.health.errors
        run_until(lambda: (counted and errs.get(counted)) or rig.dev.outbox.depth == 0, [step],
                  timeout=8.0 if counted else 0.5)
        # The victim still holds its rating ...
        assert rig.dev.outbox.counters == [1] and rig.dev.next_rating()["mac"] == head["mac"]
        assert rejections.total() == 1
        if counted:                              # ... having checked the answer and refused it
            assert errs.get(counted) == 1 and bridge.stats["acks"] == acks + 1
        else:                                    # ... and there was nothing to bind an answer to
            assert bridge.stats["acks"] == acks
        assert rig.dev.outbox.stats["not_head"] == 0
        # ... and, sent now, it reaches the store exactly once and only then is released.
        tr.sent_counter = 0
        assert run_until(lambda: rig.dev.outbox.depth == 0, [step])
        assert store.stored_ids() == ["%s:1" % VICTIM]
        (item,) = store.upload_batch(10)
        assert item["record"]["rating_id"] == "%s:1" % VICTIM
        (dead,) = store.dead_letters()
        assert dead["device"] == VICTIM
    finally:
        rogue.loop_stop()
        rogue.disconnect()
        bridge.stop()
        committer.close()
        store.close()


# --- RS-485: a rogue node answers in the victim's slot ---------------------------------------------
class RogueNode(threading.Thread):
    """A node on the bus that answers the next request to `address` once with a junk RATING."""

    def __init__(self, url, address, rating):
        super().__init__(daemon=True)
        import socket
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.settimeout(0.05)
        self.link = SlaveLink(address)
        self.rating = rating
        self.sent = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                data = self.sock.recv(4096)
            except OSError:
                continue
            if not data:
                return
            self.link.receive_data(data)
            while True:
                req = self.link.next_request()
                if req is None:
                    break
                if not self.sent and not req.broadcast and req.error is None:
                    self.sock.sendall(self.link.reply(req, schema.RATING, self.rating))
                    self.sent += 1

    def close(self):
        self.stop.set()
        self.join(2)
        self.sock.close()


def test_a_rogue_rs485_node_answering_in_the_victims_slot_cannot_release_its_rating(tmp_path):
    from hall_simulator.bus_runners import BusThread
    from hall_simulator.bus_uart import BusUart

    baud = 19200
    with BusThread(baud=baud, rng=random.Random(7)) as bus_thread:
        url = bus_thread.bus.url
        rig = Rig("five_button", base=str(tmp_path),
                  extra={"transport": "rs485", "address": 1, "baud": baud})
        rig.context(41)
        rig.wait(1000)
        rig.press_level(1)
        (head,) = rig.ratings
        rig.board.uart = uart = BusUart(url, baud=baud)
        attach_transport(rig.dev, rig.board, rig.cfg)
        lock, running = threading.Lock(), threading.Event()
        running.set()

        def loop():
            while running.is_set():
                with lock:
                    rig.dev.step()
                time.sleep(0.001)
        victim = threading.Thread(target=loop, daemon=True)
        victim.start()
        junk = {"device": VICTIM, "counter": head["counter"], "source": vocab.SRC_PRESS,
                "overall": vocab.VERY_DISSATISFIED, "mac": b"\x5a" * 16}
        rogue = RogueNode(url, 1, junk)
        rogue.start()
        store = Store(str(tmp_path / "outbox.db"))
        committer = GroupCommitter(store)
        rejections = Rejections()
        master = Rs485Master(BusConfig(url=url, baud=baud, retries=1), 0, HALL,
                             _registry(transport="rs485", address=1), committer, rejections)
        master.port = serial.serial_for_url(url, baudrate=baud, timeout=0.005)
        try:
            time.sleep(0.2)                              # both nodes on the line
            # The victim is out of earshot for this turn (a loose wire, a slow answer): only the
            # rogue answers its poll, with a junk RATING under the victim's id and counter.
            bus_thread.cut(1.0, uart.local_port)
            t0 = time.monotonic()
            master.round()
            assert rogue.sent == 1 and rejections.total() == 1
            assert len(store.dead_letters()) == 1 and store.stored_ids() == []
            time.sleep(max(0.0, 1.1 - (time.monotonic() - t0)))
            # Back on the line: the gateway's answer to the junk reaches the victim first, then
            # the victim's own rating goes through.
            for _ in range(10):
                master.round()
                with lock:
                    if rig.dev.outbox.depth == 0:
                        break
            with lock:
                lost = rig.dev.outbox.depth == 0 and not store.stored_ids()
                assert not lost, "the victim let its rating go on the answer to the junk"
                assert rig.dev.health.errors.get("ack_forged", 0) >= 1   # that answer: refused
                assert rig.dev.outbox.depth == 0
        finally:
            running.clear()
            victim.join(2)
            rogue.close()
            master.port.close()
            committer.close()
            uart.close()
        assert store.stored_ids() == ["%s:1" % VICTIM]                # committed exactly once
        (dead,) = store.dead_letters()
        assert (dead["device"], dead["reason"]) == (VICTIM, "bad_mac")
        store.close()


# --- the device's side of the rule ---------------------------------------------------------------
def test_outbox_releases_only_its_head(tmp_path):
    ob = Outbox(Fs(), str(tmp_path), capacity=5).open()
    for c in (1, 2, 3):
        ob.append(c, payload_for(c))
    assert not ob.release(2) and not ob.release(3) and not ob.release(9)
    assert ob.counters == [1, 2, 3] and ob.stats["not_head"] == 3
    assert Outbox(Fs(), str(tmp_path)).open().counters == [1, 2, 3]   # nothing written either
    assert ob.release(1) and ob.counters == [2, 3]
    assert Outbox(Fs(), str(tmp_path)).open().counters == [2, 3]


MP_SCRIPT = """
import sys
sys.path.insert(0, "/repo/tests")
from fw_support import Rig
from protocol import auth, codec, schema, vocab
rig = Rig("five_button", base="/tmp")
key = rig.cfg["key_bytes"]
for case_id in (41, 42):
    rig.context(case_id)
    rig.wait(1000)
    rig.press_level(2)
    rig.wait(5000)
c1, c2 = rig.dev.outbox.counters
mac1, mac2 = [codec.decode(schema.RATING, rig.dev.outbox.get(c))["mac"] for c in (c1, c2)]

def ack(counter, result, rating_mac):
    return auth.sign_ack(key, "win07", {"device": "win07", "counter": counter, "result": result},
                         rating_mac)

# what the gateway signs for junk, a forged or another device's rating under our counter
for rating_mac in (bytes(16), b"\\x5a" * 16, mac2):
    assert not rig.dev.on_ack(ack(c1, vocab.ACK_DEAD_LETTER, rating_mac))
assert not rig.dev.on_ack(ack(c1, vocab.ACK_REJECTED, mac1))        # our own, not authenticated
assert not rig.dev.on_ack(ack(c2, vocab.ACK_STORED, mac2))          # genuine, but not the head
assert not rig.dev.outbox.release(c2)
assert rig.dev.outbox.counters == [c1, c2]
e = rig.dev.health.errors
assert (e.get("ack_forged"), e.get("ack_rejected"), e.get("ack_unknown")) == (3, 1, 1), e
assert rig.dev.on_ack(ack(c1, vocab.ACK_STORED, mac1)) and rig.dev.outbox.counters == [c2]
assert rig.dev.on_ack(ack(c2, vocab.ACK_DUPLICATE, mac2)) and rig.dev.outbox.counters == []
print("OK")
"""


def test_the_device_releases_only_its_head_on_an_ack_bound_to_it_under_micropython(micropython):
    r = micropython(MP_SCRIPT, trees=("protocol", "firmware", "tests"), timeout=120).check()
    assert r.stdout.strip().endswith("OK"), r.stdout


@settings(max_examples=300, deadline=None)
@given(a=message(schema.ACK), x=st.binary(min_size=16, max_size=16), y=st.binary(min_size=16, max_size=16))
def test_an_ack_signed_for_rating_mac_x_never_verifies_for_another(a, x, y):
    a = dict(a)
    a.pop("mac", None)
    dev = a.get("device") or VICTIM
    signed = auth.sign_ack(KEY, dev, a, x)
    assert auth.verify_ack(KEY, dev, signed, x)
    assert auth.verify_ack(KEY, dev, signed, y) == (x == y)
    flipped = bytes([x[0] ^ 1]) + x[1:]                  # the nearest other MAC, always tried
    assert not auth.verify_ack(KEY, dev, signed, flipped)


def test_the_gateway_side_fast_ack_mac_is_protocols():
    from gateway.fastcodec import ack_mac
    rmac = bytes(range(16))
    for result in sorted(vocab.ACK_NAMES):
        record = {"device": VICTIM, "counter": 7, "result": result, "reason": errors.R_BAD_MAC}
        assert ack_mac(KEY, VICTIM, record, rmac) == auth.ack_mac(KEY, VICTIM, record, rmac)
