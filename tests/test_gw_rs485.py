"""RS-485 master against fake devices (protocol.link.SlaveLink) behind a loopback socket, opened by
the master through serial_for_url("socket://..."). Schedules are judged by counting polls."""

import socket
import threading
import time

import pytest

from gateway.config import BusConfig
from gateway.registry import Registry
from gateway.rejects import Rejections
from gateway.rs485_master import Rs485Master
from gateway.committer import GroupCommitter
from gateway.store import Store
from gw_support import HALL, device_key, make_rating
from protocol import auth, codec, errors, schema, timing, vocab
from protocol.link import SlaveLink


class FakeDevices:
    """One TCP endpoint answering for several addresses, as devices on one wire would."""

    def __init__(self, addresses, on_ack=None, bus_url=None):
        self.server = None
        if bus_url is None:          # stand alone: the master connects to us
            self.server = socket.socket()
            self.server.bind(("127.0.0.1", 0))
            self.server.listen(1)
            self.port = self.server.getsockname()[1]
        else:                        # a node on the simulated bus, like the master
            host, port = bus_url.split("//", 1)[1].rsplit(":", 1)
            self.conn = socket.create_connection((host, int(port)))
        self.links = dict((a, SlaveLink(a)) for a in addresses)
        self.alive = dict((a, True) for a in addresses)
        self.outbox = dict((a, []) for a in addresses)
        self.context = dict((a, None) for a in addresses)
        self.heard = dict((a, []) for a in addresses)
        self.cut_short = dict((a, 0) for a in addresses)   # replies to cut mid-frame (unplugged)
        self.forged = dict((a, 0) for a in addresses)      # ACKs whose MAC did not verify (ignored)
        self.before = dict((a, []) for a in addresses)     # bytes put on the line before a reply
        self.on_ack = on_ack
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self):
        return "socket://127.0.0.1:%d" % self.port

    def _serve(self):
        conn = self.server.accept()[0] if self.server is not None else self.conn
        with conn:
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                for address, link in self.links.items():
                    link.receive_data(data)
                    while True:
                        req = link.next_request()
                        if req is None:
                            break
                        if not self.alive[address] or req.broadcast:
                            continue
                        reply = self._answer(address, link, req)
                        if self.cut_short[address]:
                            self.cut_short[address] -= 1
                            reply = reply[:12]      # a good header, then silence
                        if self.before[address]:
                            reply = self.before[address].pop(0) + reply
                        conn.sendall(reply)

    def _answer(self, address, link, req):
        self.heard[address].append(req.type)
        if req.error is not None:
            return link.refuse(req, req.error.reason)
        rec = req.record
        if req.type == schema.ACK:
            if self.on_ack:
                self.on_ack(address, rec)
            name = "dev-%d" % address
            head = self.outbox[address][0] if self.outbox[address] else None
            if head is None or head["counter"] != rec["counter"]:
                pass                                  # settled already: nothing to release
            elif not auth.verify_ack(device_key(name), name, rec, head["mac"]):   # as the firmware: SPEC 7.5
                self.forged[address] += 1
            elif vocab.device_releases(rec.get("result", 0)):
                self.outbox[address] = self.outbox[address][1:]
        elif req.type == schema.CONTEXT:
            self.context[address] = rec
        elif req.type == schema.CLEAR:
            self.context[address] = None
        elif req.type == schema.POLL and rec.get("want_status"):
            return link.reply(req, schema.STATUS, {"device": "dev-%d" % address, "firmware": "0.9",
                                                   "outbox": len(self.outbox[address])})
        if self.outbox[address] and req.type in (schema.POLL, schema.ACK):
            return link.reply(req, schema.RATING, self.outbox[address][0])
        case = (self.context[address] or {}).get("case_id", 0)
        return link.reply(req, schema.IDLE, {"outbox": len(self.outbox[address]), "case_id": case})

    def close(self):
        (self.server or self.conn).close()


@pytest.fixture
def rig(tmp_path):
    made = {}

    def make(addresses, slow_after=3, slow_interval_s=3600.0, on_ack=None):
        fake = FakeDevices(addresses, on_ack=on_ack)
        registry = Registry([{"id": "dev-%d" % a, "window": "W%d" % a, "transport": "rs485",
                              "address": a, "key": device_key("dev-%d" % a).hex()} for a in addresses])
        store = Store(str(tmp_path / "outbox.db"))
        committer = GroupCommitter(store)
        rejections = Rejections()
        rated = []
        master = Rs485Master(BusConfig(url=fake.url, baud=115200, retries=1, slow_after=slow_after,
                                       slow_interval_s=slow_interval_s),
                             0, HALL, registry, committer, rejections,
                             on_rating=lambda r, res, enrichment: rated.append((r["counter"], res)))
        import serial
        master.port = serial.serial_for_url(fake.url, baudrate=115200, timeout=0.005)
        made.update(fake=fake, registry=registry, store=store, committer=committer, master=master,
                    rejections=rejections, rated=rated)
        return made
    yield make
    if made:
        made["master"].port.close()
        made["committer"].close()
        made["store"].close()
        made["fake"].close()


def test_dead_device_does_not_slow_the_live_one(rig):
    r = rig([1, 2])
    r["fake"].alive[2] = False
    master = r["master"]
    for _ in range(60):
        master.round()
    live, dead = master.stats("dev-1"), master.stats("dev-2")
    assert live["polls"] == 60 and live["timeouts"] == 0
    # Three failed exchanges (each with one resend) moved it to the slow lane; then it waits.
    assert dead["lane"] == "slow" and dead["exchanges"] == 3 and dead["timeouts"] == 6
    assert not r["registry"].get("dev-2").online and r["registry"].get("dev-1").online
    # It comes back: the slow lane polls it when due, one attempt, and it returns to the fast lane.
    r["fake"].alive[2] = True
    master.peer("dev-2").next_slow = 0
    for _ in range(5):
        master.round()
    assert master.stats("dev-2")["lane"] == "fast" and r["registry"].get("dev-2").online
    assert master.stats("dev-2")["polls"] >= 5


def test_slow_lane_device_is_polled_rarely(rig):
    r = rig([1, 2], slow_after=2)
    r["fake"].alive[2] = False
    master = r["master"]
    for n in range(40):
        if n in (10, 20, 30):
            master.peer("dev-2").next_slow = 0    # falls due (instead of waiting slow_interval_s)
        master.round()
    dead = master.stats("dev-2")
    # 2 fast-lane failures, then exactly one single-attempt try each time it fell due (3 times).
    assert dead["exchanges"] == 2 + 3 and dead["timeouts"] == 2 * 2 + 3
    assert master.stats("dev-1")["polls"] == 40


def test_ratings_are_committed_before_the_ack_and_contexts_pushed(rig):
    seen_at_ack = []
    made = {}

    def on_ack(address, ack):
        seen_at_ack.append((ack["counter"], ack.get("result", 0),
                            "dev-1:%d" % ack["counter"] in made["r"]["store"].stored_ids()))
        # Signed under dev-1's key and no other, bound to the head rating (SPEC 7.5), rejects included.
        if not made["r"]["fake"].outbox[1]:
            return                                   # the quiet part of the test
        head = made["r"]["fake"].outbox[1][0]["mac"]
        mac_ok.append(auth.verify_ack(device_key("dev-1"), "dev-1", ack, head)
                      and not auth.verify_ack(device_key("dev-2"), "dev-1", ack, head))
    mac_ok = []
    r = made["r"] = rig([1], on_ack=on_ack)
    fake, master = r["fake"], r["master"]
    forged = make_rating("dev-1", 3)
    forged["mac"] = bytes(16)
    fake.outbox[1] = [make_rating("dev-1", 1), make_rating("dev-1", 2, level=vocab.DISSATISFIED),
                      make_rating("dev-1", 4, source=vocab.SRC_NOT_RATED), forged]
    for _ in range(6):
        master.round()
    # The bad-MAC rating is never released (ACK_REJECTED): it stays at the head, sent again.
    assert fake.outbox[1] == [forged] and fake.forged[1] == 0   # every ACK signed under dev-1's key
    assert set(mac_ok) == {True}
    assert seen_at_ack[:4] == [(1, vocab.ACK_STORED, True), (2, vocab.ACK_STORED, True),
                               (4, vocab.ACK_STORED, True), (3, vocab.ACK_REJECTED, False)]
    assert set(seen_at_ack[4:]) == {(3, vocab.ACK_REJECTED, False)}
    assert [i["item_id"] for i in r["store"].upload_batch(10)] == ["dev-1:2", "dev-1:1", "dev-1:4"]
    assert r["rejections"].count("rs485", errors.R_BAD_MAC) >= len(seen_at_ack) - 3   # each copy
    assert [c for c, _ in r["rated"]] == [1, 2, 4]
    fake.outbox[1] = []                              # the rest of the test on a quiet device
    master.peer("dev-1").ack = None                  # (and no REJECTED still owed to it)
    ctx = {"case_id": 77, "window": "W1", "staff_id": "1001", "staff_name": "朱镕",
           "matter_name": "社保卡补办", "serials": ["SN77"], "node": vocab.NODE_RECEIPT,
           "indicators": vocab.IND_SERVICE}
    master.set_context("dev-1", ctx)
    master.round()
    assert fake.context[1]["staff_name"] == "朱镕" and fake.context[1]["case_id"] == 77
    master.round()
    assert fake.heard[1][-1] == schema.POLL        # sent once, not on every turn
    master.set_context("dev-1", None)
    master.round()
    assert fake.heard[1][-1] == schema.CLEAR and fake.context[1] is None


class _WatchedPort:
    """The real port, counting every assignment of .timeout (each one reconfigures a real UART)."""

    def __init__(self, port):
        object.__setattr__(self, "_port", port)
        object.__setattr__(self, "timeout_sets", 0)

    def __getattr__(self, name):
        return getattr(self._port, name)

    def __setattr__(self, name, value):
        if name == "timeout":
            object.__setattr__(self, "timeout_sets", self.timeout_sets + 1)
        setattr(self._port, name, value)


def test_the_port_is_not_reconfigured_per_read(rig):
    r = rig([1, 2])
    r["fake"].alive[2] = False
    r["fake"].outbox[1] = [make_rating("dev-1", 1)]
    real = r["master"].port
    watched = r["master"].port = _WatchedPort(real)
    try:
        for _ in range(5):
            r["master"].round()
    finally:
        r["master"].port = real
    assert r["store"].stored_ids() == ["dev-1:1"]      # replies were read, timeouts ran out
    assert r["master"].stats("dev-2")["timeouts"] > 0 and watched.timeout_sets == 0


def test_status_reports_reach_the_registry(rig):
    r = rig([1])
    r["master"].round()   # the first poll of a device asks for its status
    dev = r["registry"].get("dev-1")
    assert dev.firmware == "0.9" and dev.online


def test_on_the_simulated_bus_at_line_speed(tmp_path):
    """The same schedule over hall_simulator's paced RS-485 bus (socket://), 19,200 baud."""
    import random
    import serial
    from hall_simulator.bus_runners import BusThread

    with BusThread(baud=19200, rng=random.Random(5)) as bus_thread:
        url = bus_thread.bus.url
        fake = FakeDevices([1, 2], bus_url=url)
        fake.alive[2] = False
        fake.outbox[1] = [make_rating("dev-1", n) for n in (1, 2, 3)]
        registry = Registry([{"id": "dev-%d" % a, "window": "W%d" % a, "transport": "rs485",
                              "address": a, "key": device_key("dev-%d" % a).hex()} for a in (1, 2)])
        store = Store(str(tmp_path / "outbox.db"))
        committer = GroupCommitter(store)
        master = Rs485Master(BusConfig(url=url, baud=19200, retries=1), 0, HALL, registry, committer,
                             Rejections())
        master.port = serial.serial_for_url(url, baudrate=19200, timeout=0.005)
        try:
            for _ in range(30):
                master.round()
        finally:
            master.port.close()
            committer.close()
            fake.close()
        live, dead = master.stats("dev-1"), master.stats("dev-2")
        # Counted, not timed: the live device had a turn in (nearly) every round, the dead one
        # cost three exchanges and then waited in the slow lane.
        assert live["lane"] == "fast" and live["exchanges"] >= 30 and live["ratings"] == 3
        assert dead["lane"] == "slow" and dead["exchanges"] == 3
        assert sorted(store.stored_ids()) == ["dev-1:1", "dev-1:2", "dev-1:3"] and fake.outbox[1] == []
        assert bus_thread.bus.counters["collisions"] == 0    # the master never talked over a reply
        store.close()


class _TimedPort:
    """The real port, noting when each read returned bytes and when each write started."""

    def __init__(self, port):
        self._port = port
        self.events = []

    def __getattr__(self, name):
        return getattr(self._port, name)

    def read(self, n=1):
        data = self._port.read(n)
        if data:
            self.events.append(("read", time.monotonic()))
        return data

    def write(self, data):
        self.events.append(("write", time.monotonic()))
        return self._port.write(data)


def test_the_master_keeps_the_guard_time_after_a_reply(rig):
    r = rig([1, 2])
    r["fake"].outbox[1] = [make_rating("dev-1", n) for n in (1, 2)]
    real = r["master"].port
    timed = r["master"].port = _TimedPort(real)
    try:
        for _ in range(4):
            r["master"].round()
    finally:
        r["master"].port = real
    assert sorted(r["store"].stored_ids()) == ["dev-1:1", "dev-1:2"]
    guard = timing.guard_us(115200) / 1e6
    gaps = [b[1] - a[1] for a, b in zip(timed.events, timed.events[1:])
            if a[0] == "read" and b[0] == "write"]
    assert len(gaps) >= 8 and min(gaps) >= guard       # SPEC 5.1: quiet for t3.5 after each reply


def test_a_reply_cut_short_does_not_swallow_the_next_one(rig):
    """A device unplugged mid-reply leaves a partial frame whose header claims more bytes; the
    receiver is reset before the resend (SPEC 4.3), so the resent request's reply is read."""
    r = rig([1])
    r["master"].round()                                # the first poll: a whole STATUS reply
    r["fake"].outbox[1] = [make_rating("dev-1", 1)]
    r["fake"].cut_short[1] = 1
    r["master"].round()
    stats = r["master"].stats("dev-1")
    assert stats["timeouts"] == 1 and stats["lane"] == "fast"
    assert r["store"].stored_ids() == ["dev-1:1"] and r["fake"].outbox[1] == []
    assert r["master"].bus.decoder.stats["dropped_partial"] >= 1


def _kernel_master(tmp_path, url, alarms, open_serial=None):
    registry = Registry([{"id": "dev-1", "window": "W1", "transport": "rs485", "address": 1,
                          "key": device_key("dev-1").hex()}])
    store = Store(str(tmp_path / "outbox.db"))
    committer = GroupCommitter(store)
    kw = {"open_serial": open_serial} if open_serial else {}
    master = Rs485Master(BusConfig(url=url, baud=9600, kernel_rs485=True, rts_high_for_tx=False),
                         0, HALL, registry, committer, Rejections(),
                         alarm=lambda name, detail: alarms.append((name, detail)), **kw)
    return master, committer, store


def test_kernel_rs485_mode_is_asked_of_the_driver_with_the_configured_polarity(tmp_path):
    import serial
    opened = []

    def open_loop(url, **kw):   # pyserial's loop:// keeps the settings; a UART would get TIOCSRS485
        opened.append(serial.serial_for_url("loop://", **kw))
        return opened[-1]
    alarms = []
    master, committer, store = _kernel_master(tmp_path, "/dev/ttyAMA0", alarms, open_loop)
    try:
        port = master._open()
        assert port is opened[0] and alarms == []
        assert port.rs485_mode.rts_level_for_tx is False and port.rs485_mode.rts_level_for_rx is True
        port.close()
    finally:
        committer.close()
        store.close()


def test_kernel_rs485_mode_on_a_driver_without_it_raises_an_alarm_and_keeps_trying(tmp_path):
    """A pty has no RS-485 support (like a USB adapter that switches DE itself): the bus is not
    used half-configured; the alarm names the port and the refusal, and the master retries."""
    import os
    import pty
    controller, worker = pty.openpty()
    alarms = []
    master, committer, store = _kernel_master(tmp_path, os.ttyname(worker), alarms)
    try:
        master.start()
        deadline = time.monotonic() + 10
        while len(alarms) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(alarms) >= 2 and master.port is None          # retried, still refused
        name, detail = alarms[0]
        assert name == "bus_unavailable" and os.ttyname(worker) in detail and "RS485" in detail
    finally:
        master.stop()
        committer.close()
        store.close()
        os.close(controller)
        os.close(worker)


def test_kernel_rs485_mode_needs_a_device_path():
    from gateway import config
    with pytest.raises(config.ConfigError, match="kernel_rs485 needs a serial device path"):
        config.from_dict({"gateway": {"hall": "h"},
                          "rs485": [{"url": "socket://127.0.0.1:5000", "kernel_rs485": True}]})
    ok = config.from_dict({"gateway": {"hall": "h"}, "rs485": [{"url": "/dev/ttyAMA0", "kernel_rs485": True}]})
    assert ok.buses[0].kernel_rs485 and ok.buses[0].rts_high_for_tx


def _false_header(claimed):
    """Noise that passes the header CRC-8 and claims `claimed` payload bytes it never sends: the
    head of a reply cut by a collision, or plain bad luck (1 in 256 for a random sync)."""
    from protocol.frame import encode_frame
    return encode_frame(1, schema.IDLE, 99, bytes(claimed))[:8] + bytes(range(1, 11))


def _bad_crc_frame():
    from protocol.frame import encode_frame
    frame = bytearray(encode_frame(1, schema.RATING, 99, bytes(range(60))))
    frame[-1] ^= 0x55
    return bytes(frame)


@pytest.mark.parametrize("noise", ["noise", "bad_crc", "false_header"])
def test_a_reply_behind_noise_is_taken_on_the_same_attempt(tmp_path, noise):
    """SPEC 4.3: frames are found in any byte stream. Noise, a bad-CRC frame or a false header
    before the reply in one answer window (the paced bus at 9,600 baud, the production serial
    path through socket://) cost no resend: the reply behind them is accepted on the first try."""
    import random
    import serial
    from hall_simulator.bus_runners import BusThread

    before = {"noise": bytes(range(1, 61)), "bad_crc": _bad_crc_frame(),
              "false_header": _false_header(400)}[noise]
    with BusThread(baud=9600, rng=random.Random(5)) as bus_thread:
        url = bus_thread.bus.url
        fake = FakeDevices([1], bus_url=url)
        fake.outbox[1] = [make_rating("dev-1", 1)]
        fake.before[1] = [before, before]          # the STATUS reply and the RATING reply
        registry = Registry([{"id": "dev-1", "window": "W1", "transport": "rs485", "address": 1,
                              "key": device_key("dev-1").hex()}])
        store = Store(str(tmp_path / "outbox.db"))
        committer = GroupCommitter(store)
        master = Rs485Master(BusConfig(url=url, baud=9600, retries=1), 0, HALL, registry, committer,
                             Rejections())
        master.port = serial.serial_for_url(url, baudrate=9600, timeout=0.005)
        try:
            master.round()                          # POLL -> STATUS (behind noise)
            master.round()                          # POLL -> RATING (behind noise), ACK -> IDLE
        finally:
            master.port.close()
            committer.close()
            fake.close()
        assert fake.before[1] == []
        stats = master.stats("dev-1")
        assert stats["timeouts"] == 0 and master.bus.channels[1].stats["resends"] == 0
        assert store.stored_ids() == ["dev-1:1"] and fake.outbox[1] == []
        assert registry.get("dev-1").firmware == "0.9"
        assert master.line["noisy_replies"] == 2
        dec = master.bus.decoder.stats
        assert dec["noise_bytes"] + dec["bad_crc"] + dec["dropped_partial"] > 0   # counted
        assert bus_thread.bus.counters["collisions"] == 0
        store.close()
