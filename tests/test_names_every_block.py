"""Every character of a name is shown right on both boards (issue 14): names drawn from every CJK
block go through the real gateway (the case event opens a case, gateway.cases builds the CONTEXT
with the glyph supplement of gateway.glyphs and the QR matrix), the protocol codec, both transports
(the RS-485 master's frames; the gateway's MQTT bridge through a real Mosquitto) and reach the
five-button and the touch board under real MicroPython, whose screens record where every glyph
came from: the font file, the supplement, or the placeholder."""

import json
import threading

import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings, strategies as st

from gateway import glyphs as glyphs_mod
from gateway.cases import Cases
from gateway.committer import GroupCommitter
from gateway.config import MqttConfig
from gateway.mqtt_bridge import MqttBridge
from gateway.qr_links import LinkSigner
from gateway.registry import Registry
from gateway.rejects import Rejections
from gateway.store import Store
from protocol import codec, schema, supplement, topics
from protocol.link import MasterBus

HALL = "sz-futian-01"
KEY = "5c" * 32
# One character of each CJK block (BMP, planes 2 and 3), as named in the issue.
BLOCKS = {"URO": 0x9FA5, "A": 0x4DAE, "B": 0x2020C, "C": 0x2A700, "D": 0x2B740, "E": 0x2B820,
          "F": 0x2CEB0, "G": 0x30000, "H": 0x31350, "I": 0x2EBF0, "compat": 0xF900}
NOWHERE = 0x3FFFD        # unassigned in plane 3: no font has it

BOARD_SCRIPT = r'''
import json
from firmware.boards.sim import make_board
from firmware.config import validate
from firmware.device import Device
from firmware.transport_rs485 import Rs485Transport
from firmware.transport_mqtt import MqttTransport

with open("/names/job.json") as f:
    job = json.load(f)


class NoNet:
    """Wi-Fi that never comes up: the payloads are handed to the transport's message handler."""
    socket_factory = None

    def isconnected(self):
        return False

    def connect(self):
        raise OSError(113)


def recorder(font, seen):
    real = font.glyph

    def glyph(cp):
        before = font.placeholders
        g = real(cp)
        if font.placeholders != before:
            seen[cp] = "placeholder"
        elif font._find(cp) is not None:
            seen[cp] = "font"
        else:
            seen[cp] = "supplement:" + bytes(g[1]).hex()
        return g
    font.glyph = glyph


out = []
n = 0
for profile in ("five_button", "touch"):
    for transport in ("rs485", "mqtt"):
        n += 1
        board = make_board({"profile": profile, "fs_root": "/tmp/dev%d" % n})
        cfg = validate({"device": "win07", "key": job["key"], "window": "07", "outbox_capacity": 10,
                        "board": {"profile": profile}})
        dev = Device(board, cfg, font_path="/repo/firmware/fonts/unifont16.bin")
        dev.step()
        if transport == "rs485":
            tr = Rs485Transport(dev, board.uart, 5, 9600, lambda on: None, lambda: 0, lambda us: None)
        else:
            tr = MqttTransport(dev, NoNet(), job["hall"], {"host": "gw"}, board.ticks_ms)
        dev.transport = tr
        seen = {}
        recorder(dev.ui.font, seen)
        for i, case in enumerate(job["cases"]):
            seen.clear()
            if transport == "rs485":
                board.uart.feed(bytes.fromhex(case["frame"]))
            else:
                tr._message(case["topic"], case["payload"].encode(), True)
            dev.step()                     # the CONTEXT is taken (RS-485: in this step's transport turn)
            dev.step()                     # and drawn
            if transport == "rs485":
                board.uart.take_tx()
            out.append({"profile": profile, "transport": transport, "case": i,
                        "state": dev.app.state, "case_id": dev.app.case_id(),
                        "seen": [[cp, how] for cp, how in seen.items()]})
print("RESULT " + json.dumps(out))
'''


class DeviceSide:
    """The device's end of MQTT: a client subscribed to its context topic, keeping the payloads."""

    def __init__(self, broker, topic):
        self.payloads = []
        self.got = threading.Condition()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="hall-win07")
        self.c.on_message = self._msg
        self.subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(topic, 1)
        self.c.loop_start()
        assert self.subscribed.wait(10)

    def _msg(self, client, userdata, m):
        with self.got:
            self.payloads.append(m.payload)
            self.got.notify_all()

    def wait(self, n, timeout=10):
        with self.got:
            return self.got.wait_for(lambda: len(self.payloads) >= n, timeout)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture(scope="module")
def supplement_of_the_hall():
    alarms = []
    sup = glyphs_mod.from_config({}, alarm=lambda name, detail: alarms.append((name, detail)))
    assert sup is not None, "the device font file is missing"
    return sup, alarms


def covered_blocks(sup):
    return dict((name, cp) for name, cp in BLOCKS.items() if sup.chain.glyph(cp) is not None)


def test_the_font_chain_covers_extensions_a_and_b_at_least(supplement_of_the_hall):
    sup, _ = supplement_of_the_hall
    covered = covered_blocks(sup)
    print(json.dumps({"chain": sup.chain.paths, "covered": sorted(covered),
                      "not_covered": sorted(set(BLOCKS) - set(covered))}))
    assert {"A", "B", "URO", "compat"} <= set(covered)
    assert sup.chain.glyph(NOWHERE) is None
    for name, cp in covered.items():       # the device font lacks every one: all come as supplement
        assert not sup.coverage.has(cp), name


def open_cases(tmp_path, sup, names):
    """The gateway's case flow: sign in, one case event per name; returns the pushed CONTEXTs."""
    pushed = []
    store = Store(str(tmp_path / "outbox.db"))
    registry = Registry([{"id": "win07", "window": "07", "key": KEY, "board": "button5"}])
    signer = LinkSigner("s" * 32, "https://pj.example.gov.cn/r")
    cases = Cases(HALL, store, registry, lambda device, ctx: pushed.append(ctx), rating_days=7,
                  qr_token=signer.token, qr_link=signer.link, glyphs=sup, clock=lambda: 1767225600)
    cases.sign_in("07", {"staff_id": "综窗-07", "staff_name": "王喆"})
    for i, name in enumerate(names):
        status, _ = cases.event({"window": "07", "node": "completion", "serials": ["粤B-%04d" % i],
                                 "matter_name": "居民身份证换领", "staff_name": name})
        assert status == 201
    store.close()
    return pushed


def test_names_from_every_block_reach_both_boards_over_both_transports(
        supplement_of_the_hall, mosquitto_broker, micropython, tmp_path):
    sup, alarms = supplement_of_the_hall
    covered = list(covered_blocks(sup).values())
    # Names of three characters (they fit the OLED line), two rare ones each; the last holds a
    # character no font has.
    names = ["王" + "".join(chr(cp) for cp in covered[i:i + 2]) for i in range(0, len(covered), 2)]
    names.append("王" + chr(NOWHERE) + "明")
    del alarms[:]
    contexts = open_cases(tmp_path, sup, names)
    assert len(contexts) == len(names)
    assert [a for a in alarms if a[0] == "glyph_missing"] == [
        ("glyph_missing", "U+3FFFD: no font of the chain has it; the evaluator shows a placeholder")]
    for ctx in contexts:                   # built by the gateway: supplement and QR matrix in it
        assert supplement.qr_size(ctx["qr_modules"]) >= 21
        assert len(codec.encode(schema.CONTEXT, ctx)) <= schema.MAX_RECORD_BYTES

    # MQTT: the gateway's bridge publishes each CONTEXT, the device's subscription receives it
    topic = topics.device_topic(HALL, "win07", "context")
    store = Store(str(tmp_path / "bridge.db"))
    committer = GroupCommitter(store)
    registry = Registry([{"id": "win07", "window": "07", "key": KEY, "board": "button5"}])
    bridge = MqttBridge(MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port,
                                   client_id="gw-names"), HALL, registry, committer, Rejections(),
                        store=store)
    bridge.start()
    device = DeviceSide(mosquitto_broker, topic)
    try:
        assert bridge.connected.wait(10)
        for i, ctx in enumerate(contexts):
            bridge.publish_context("win07", ctx)
            assert device.wait(i + 1), "the broker did not deliver context %d" % i
        payloads = list(device.payloads)
    finally:
        device.close()
        bridge.stop()
        committer.close()
        store.close()
    # RS-485: the master's request frames for the same CONTEXTs
    channel = MasterBus().channel(5)
    job = {"key": KEY, "hall": HALL, "cases": []}
    for ctx, payload in zip(contexts, payloads):
        frame_bytes = channel.request(schema.CONTEXT, ctx)
        channel.give_up()
        job["cases"].append({"frame": frame_bytes.hex(), "topic": topic, "payload": payload.decode()})

    result = micropython(BOARD_SCRIPT, trees=("protocol", "firmware"), timeout=240,
                         files={"/names/job.json": json.dumps(job, ensure_ascii=False)}).check()
    runs = json.loads([ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")][0][7:])
    assert len(runs) == 2 * 2 * len(names)
    sent = {}
    for ctx in contexts:
        for g in ctx.get("glyphs", ()):
            sent[g["cp"]] = g["bits"].hex()
    for run in runs:
        ctx = contexts[run["case"]]
        where = "%s/%s/%s" % (run["profile"], run["transport"], ctx["staff_name"])
        assert run["state"] == "case" and run["case_id"] == ctx["case_id"], where
        seen = dict((cp, how) for cp, how in run["seen"])
        for ch in ctx["staff_name"]:
            cp = ord(ch)
            assert cp in seen, "%s: U+%04X was not drawn" % (where, cp)
            if cp == NOWHERE:
                continue
            if sup.coverage.has(cp):
                assert seen[cp] == "font", where
            else:                          # drawn from exactly the bitmap the gateway rendered
                assert seen[cp] == "supplement:" + sent[cp], "%s: U+%04X" % (where, cp)
        placeholders = sorted(cp for cp, how in seen.items() if how == "placeholder")
        if chr(NOWHERE) in ctx["staff_name"]:
            assert placeholders == [NOWHERE], where
        else:
            assert placeholders == [], where


# --- the glyph record and QR matrix codecs, by property -----------------------------------------
_WIDTHS = st.sampled_from([8, 16])
_CPS = st.integers(0x20, 0x10FFFF).filter(lambda cp: not (0x7F <= cp <= 0x9F or 0xD800 <= cp <= 0xDFFF))
_GLYPH = _WIDTHS.flatmap(lambda w: st.fixed_dictionaries(
    {"cp": _CPS, "width": st.just(w), "bits": st.binary(min_size=2 * w, max_size=2 * w)}))


@settings(max_examples=150, deadline=None)
@given(glyphs=st.lists(_GLYPH, max_size=schema.MAX_GLYPHS, unique_by=lambda g: g["cp"]))
def test_glyph_records_round_trip_in_both_forms_and_into_the_device_cache(glyphs):
    from firmware.glyphs import Glyphs
    ctx = {"case_id": 1, "node": 3, "glyphs": glyphs}
    want = ctx if glyphs else {"case_id": 1, "node": 3}     # an empty list is not written
    raw = codec.encode_fields(schema.CONTEXT_FIELDS, ctx)
    assert codec.decode_fields(schema.CONTEXT_FIELDS, raw) == want
    assert codec.from_json(schema.CONTEXT, codec.to_json(schema.CONTEXT, ctx)) == want
    cache = Glyphs(size=schema.MAX_GLYPHS)
    assert cache.add_all(glyphs) == len(glyphs) and all(supplement.glyph_ok(g) for g in glyphs)
    for g in glyphs:
        assert cache.get(g["cp"]) == (g["width"], g["bits"])


@settings(max_examples=150, deadline=None)
@given(cp=st.integers(0, 0x10FFFF), width=st.integers(0, 16), bits=st.binary(max_size=32))
def test_a_malformed_glyph_is_refused_and_counted_never_kept(cp, width, bits):
    from firmware.glyphs import Glyphs
    g = {"cp": cp, "width": width, "bits": bits}
    good = width in (8, 16) and len(bits) == 2 * width and cp >= 0x20 \
        and not 0x7F <= cp <= 0x9F and not 0xD800 <= cp <= 0xDFFF
    cache = Glyphs()
    assert cache.add(g) is good and supplement.glyph_ok(g) is good
    assert (cache.get(cp) is not None) is good and cache.rejected == (0 if good else 1)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 9).flatmap(lambda v: st.lists(
    st.lists(st.integers(0, 1), min_size=21 + 4 * v, max_size=21 + 4 * v),
    min_size=21 + 4 * v, max_size=21 + 4 * v)))
def test_qr_modules_pack_and_read_back(rows):
    data = supplement.qr_pack(rows)
    n = supplement.qr_size(data)
    assert n == len(rows) and len(data) <= schema.QR_MODULES_BYTES
    assert [[int(supplement.qr_dark(data, n, x, y)) for x in range(n)] for y in range(n)] == rows
    assert supplement.qr_size(data[:-1]) == 0 and supplement.qr_size(bytes([n + 1]) + data[1:]) == 0
