"""firmware.mqtt_client against a scripted broker: a fake socket whose every byte is checked.
Runs unchanged on CPython and MicroPython (tests/test_fw_mqtt_fake.py runs it on both).

The expected packets are written out here byte by byte from the MQTT 3.1.1 spec (sections 3.1
CONNECT ... 3.13 PINGRESP), not built with the client's own packet functions."""

from firmware.mqtt_client import MqttClient

EAGAIN = 11


class FakeSocket:
    """Non-blocking socket double: recv() hands out what the broker script fed, else EAGAIN;
    send() takes bytes while `room` lasts (a TCP send buffer), then raises EAGAIN; all recorded."""

    def __init__(self, room=1 << 16):
        self.inbox = bytearray()
        self.sent = bytearray()
        self.room = room
        self.closed = False
        self.eof = False
        self.blocking = None

    def setblocking(self, flag):
        self.blocking = flag

    def send(self, data):
        if self.closed:
            raise OSError(9)
        if self.room <= 0:
            raise OSError(EAGAIN)
        n = min(len(data), self.room)
        self.room -= n
        self.sent.extend(bytes(data[:n]))
        return n

    def recv(self, n):
        if self.closed:
            raise OSError(9)
        if not self.inbox:
            if self.eof:
                return b""
            raise OSError(EAGAIN)
        out = bytes(self.inbox[:n])
        self.inbox = self.inbox[n:]
        return out

    def close(self):
        self.closed = True

    def take(self):
        out = bytes(self.sent)
        self.sent = bytearray()
        return out


def s16(text):
    b = text.encode() if isinstance(text, str) else text
    return bytes((len(b) >> 8, len(b) & 0xFF)) + b


def packet(first, body):
    assert len(body) < 128          # one-byte remaining length is all these tests need
    return bytes((first, len(body))) + body


class Clock:
    def __init__(self):
        self.ms = 1000

    def __call__(self):
        return self.ms


def scenario():
    """The whole conversation; raises AssertionError at the first wrong byte. Returns the checks
    passed (so the caller can tell the scenario ran to the end)."""
    clock = Clock()
    socks = []
    opened = []
    got = []
    ups = []

    def factory(host, port):
        opened.append((host, port))
        s = FakeSocket(room=7 if len(socks) == 0 else 1 << 16)   # first: a congested link
        socks.append(s)
        return s

    will_topic = "hall/h1/dev/win07/availability"
    ack_topic = "hall/h1/dev/win07/ack"
    rating_topic = "hall/h1/dev/win07/rating"
    c = MqttClient(factory, "10.0.0.2", 1883, "hall-win07", clock, 30,
                   will=(will_topic, "offline", 1, True), user="win07", password="密码pw",
                   on_message=lambda t, p, r: got.append((t, bytes(p), r)),
                   on_connect=lambda: ups.append(clock.ms))
    c.subscribe(ack_topic, 1)
    checks = 0

    # CONNECT: protocol name, level 4, flags (user, password, will retain, will QoS 1, will, clean
    # session = 0xEE), keepalive 30 s; payload client id, will topic, will message, user, password.
    c.step()
    assert opened == [("10.0.0.2", 1883)] and socks[0].blocking is False
    body = (s16("MQTT") + bytes((4, 0xEE, 0, 30)) + s16("hall-win07") + s16(will_topic)
            + s16("offline") + s16("win07") + s16("密码pw"))
    connect = packet(0x10, body)
    sock = socks[0]
    assert sock.take() == connect[:7] and c.state == "connecting"   # 7 bytes fit the buffer
    c.step()
    assert sock.take() == b""                                     # still full: nothing lost
    sock.room = 1 << 16                                           # the buffer drains
    c.step()
    assert sock.take() == connect[7:]
    checks += 1

    # CONNACK in two pieces: nothing happens on the first byte
    sock.inbox.extend(b"\x20")
    c.step()
    assert c.state == "connecting" and not ups
    sock.inbox.extend(b"\x02\x00\x00")
    c.step()
    assert c.state == "up" and ups == [1000]
    # SUBSCRIBE (fixed header 0x82), packet id 1, the topic, requested QoS 1
    assert sock.take() == packet(0x82, b"\x00\x01" + s16(ack_topic) + b"\x01")
    checks += 1
    sock.inbox.extend(b"\x90\x03\x00\x01\x01")                   # SUBACK granted QoS 1
    c.step()
    assert sock.take() == b"" and c.state == "up"
    checks += 1

    # QoS 1 PUBLISH: 0x32, topic, packet id 2, payload
    payload = '{"device":"win07","counter":7,"staff_name":"王喆"}'.encode()
    pid = c.publish(rating_topic, payload, 1)
    assert pid == 2 and not c.is_acked(pid)
    c.step()
    first = packet(0x32, s16(rating_topic) + b"\x00\x02" + payload)
    assert sock.take() == first
    checks += 1

    # the PUBACK is lost: after RETRY_MS the same packet again, DUP set (0x3A)
    clock.ms += 4999
    c.step()
    assert sock.take() == b""
    clock.ms += 1
    c.step()
    assert sock.take() == bytes((0x3A,)) + first[1:]
    assert c.stats["resent"] == 1
    checks += 1

    # PUBACK for it: settled, never sent again
    sock.inbox.extend(b"\x40\x02\x00\x02")
    c.step()
    assert c.is_acked(pid) and c.stats["acked"] == 1
    clock.ms += 5000
    c.step()
    assert sock.take() == b""
    checks += 1

    # an incoming QoS 1 PUBLISH is answered with its PUBACK; a retained QoS 0 one with nothing
    ack = b'{"counter":7}'
    sock.inbox.extend(packet(0x32, s16(ack_topic) + b"\x12\x34" + ack))
    sock.inbox.extend(packet(0x31, s16("hall/h1/dev/win07/config") + b"{}"))
    c.step()
    assert sock.take() == b"\x40\x02\x12\x34"
    assert got == [(ack_topic, ack, False), ("hall/h1/dev/win07/config", b"{}", True)]
    checks += 1

    # keepalive: PINGREQ once half the keepalive has passed without sending; PINGRESP clears it
    clock.ms += 15000
    c.step()
    assert sock.take() == b"\xc0\x00"
    sock.inbox.extend(b"\xd0\x00")
    c.step()
    assert not c.ping_out
    checks += 1

    # the connection drops with a publish in flight: backoff, reconnect, subscribe again, and the
    # publish resent with DUP under its packet id
    pid = c.publish(rating_topic, b"r8", 1)
    c.step()
    assert sock.take() == packet(0x32, s16(rating_topic) + bytes((0, pid)) + b"r8")
    sock.eof = True
    c.step()
    assert c.state == "down" and sock.closed and c.stats["drops"] == 1
    clock.ms += 499
    c.step()
    assert len(socks) == 1                                        # backoff: 500 ms
    clock.ms += 1
    c.step()
    sock = socks[1]
    assert sock.take() == connect
    sock.inbox.extend(b"\x20\x02\x00\x00")
    c.step()
    assert sock.take() == (packet(0x82, bytes((0, pid + 1)) + s16(ack_topic) + b"\x01")
                           + packet(0x3A, s16(rating_topic) + bytes((0, pid)) + b"r8"))
    assert ups == [1000, clock.ms] and c.stats["connects"] == 2
    checks += 1

    # a refused CONNACK (return code 5, not authorised) drops the connection
    sock.eof = True
    c.step()
    clock.ms += 1000
    c.step()
    sock = socks[2]
    sock.take()
    sock.inbox.extend(b"\x20\x02\x00\x05")
    c.step()
    assert c.state == "down" and sock.closed
    checks += 1
    return checks


CHECKS = 10
