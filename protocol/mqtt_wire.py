"""MQTT 3.1.1 packets, sans-IO: build the few a client sends, split whole packets out of a byte
buffer, read a PUBLISH. Shared by the devices' client (firmware.mqtt_client, MicroPython) and the
gateway's ingest connection (gateway.mqtt_ingest, CPython); the I/O is theirs.

Every length is checked against the buffer before it is used: a broken or hostile packet raises
MqttError, never an IndexError, and never makes the caller buffer more than max_packet bytes.
"""

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82
SUBACK = 0x90
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


class MqttError(Exception):
    pass


def text(s):
    """A length-prefixed UTF-8 string."""
    b = s.encode() if isinstance(s, str) else bytes(s)
    if len(b) > 0xFFFF:
        raise MqttError("string of %d bytes" % len(b))
    return bytes((len(b) >> 8, len(b) & 0xFF)) + b


def remaining_length(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes((first,)) + remaining_length(len(body)) + bytes(body)


def connect_packet(client_id, keepalive_s, will=None, user=None, password=None, clean=True):
    """CONNECT. will = (topic, message, qos, retain). clean False keeps the session (and the QoS 1
    messages for it) in the broker while the client is away."""
    flags = 0x02 if clean else 0
    payload = text(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += text(topic) + text(message)
    if user is not None:
        flags |= 0x80
        payload += text(user)
        if password is not None:
            flags |= 0x40
            payload += text(password)
    head = text("MQTT") + bytes((4, flags, keepalive_s >> 8, keepalive_s & 0xFF))
    return packet(CONNECT, head + payload)


def publish_packet(topic, payload, qos=0, retain=False, pid=0, dup=False):
    first = PUBLISH | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    body = text(topic)
    if qos:
        body += bytes((pid >> 8, pid & 0xFF))
    if isinstance(payload, str):
        payload = payload.encode()
    return packet(first, body + payload)


def subscribe_packet(pid, subscriptions):
    """SUBSCRIBE [(topic filter, qos)]."""
    body = bytearray((pid >> 8, pid & 0xFF))
    for topic, qos in subscriptions:
        body.extend(text(topic))
        body.append(qos)
    return packet(SUBSCRIBE, body)


def puback_packet(pid):
    return bytes((PUBACK, 2, pid >> 8, pid & 0xFF))


def header(buf, pos=0):
    """(first byte, remaining length, body start) of the packet starting at buf[pos], or None while
    its fixed header is not all in yet."""
    end = len(buf)
    if pos >= end:
        return None
    n = 0
    shift = 0
    i = pos + 1
    while True:
        if i >= end:
            return None
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return buf[pos], n, i
        shift += 7
        if shift > 21:
            raise MqttError("bad remaining length")


def parse_packet(buf, pos=0, max_packet=8192):
    """(first byte, body start, body end) of the whole packet at buf[pos], or None if it is not all
    in yet; the next packet starts at body end. MqttError for a packet longer than max_packet."""
    got = header(buf, pos)
    if got is None:
        return None
    first, n, start = got
    if n > max_packet:
        raise MqttError("packet of %d bytes" % n)
    if len(buf) < start + n:
        return None
    return first, start, start + n


def publish_fields(first, buf, start, end):
    """(topic, packet id or 0, payload start) of the PUBLISH whose body is buf[start:end]."""
    qos = (first >> 1) & 3
    if qos == 3:
        raise MqttError("PUBLISH with QoS 3")
    if end - start < 2:
        raise MqttError("PUBLISH without a topic")
    pos = start + 2 + ((buf[start] << 8) | buf[start + 1])
    if pos > end or (qos and pos + 2 > end):
        raise MqttError("PUBLISH shorter than its topic")
    try:
        topic = bytes(buf[start + 2:pos]).decode()
    except UnicodeError:
        raise MqttError("PUBLISH topic is not UTF-8")
    pid = 0
    if qos:
        pid = (buf[pos] << 8) | buf[pos + 1]
        pos += 2
        if not pid:
            raise MqttError("PUBLISH with packet id 0")
    return topic, pid, pos


def packet_id(buf, start, end):
    """The packet id opening a body (PUBACK, SUBACK)."""
    if end - start < 2:
        raise MqttError("packet id missing")
    return (buf[start] << 8) | buf[start + 1]
