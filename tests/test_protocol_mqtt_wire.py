"""protocol.mqtt_wire: the MQTT 3.1.1 packets shared by the devices' client and the gateway's ingest
connection. Round trips and cuts are property tests; known bytes come from the MQTT 3.1.1 text
(sections 2.2.3 and 3.1); broken input raises MqttError only, on CPython and on MicroPython."""

import pytest
from hypothesis import given, settings, strategies as st

from protocol import mqtt_wire as wire
from protocol.mqtt_wire import MqttError

topics_ = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                  min_size=1, max_size=40)


@pytest.mark.parametrize("n, encoded", [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"),
                                        (16383, b"\xff\x7f"), (16384, b"\x80\x80\x01"),
                                        (2097151, b"\xff\xff\x7f"), (2097152, b"\x80\x80\x80\x01"),
                                        (268435455, b"\xff\xff\xff\x7f")])
def test_remaining_length_is_the_standards_table(n, encoded):
    assert wire.remaining_length(n) == encoded
    assert wire.header(b"\x30" + encoded, 0) == (0x30, n, 1 + len(encoded))


def test_connect_bytes_for_a_persistent_session_with_a_login():
    got = wire.connect_packet("gw-ingest", 30, user="gw", password="pw", clean=False)
    body = b"\x00\x04MQTT\x04\xc0\x00\x1e" + b"\x00\x09gw-ingest" + b"\x00\x02gw" + b"\x00\x02pw"
    assert got == b"\x10" + bytes((len(body),)) + body
    clean = wire.connect_packet("d", 60, will=("t", "offline", 1, True))
    assert clean[9] == 0x02 | 0x04 | 0x08 | 0x20      # clean, will, will QoS 1, will retain


def test_small_packets_are_the_standards_bytes():
    assert wire.puback_packet(0x1234) == b"\x40\x02\x12\x34"
    assert wire.subscribe_packet(1, [("a/+", 1)]) == b"\x82\x08\x00\x01\x00\x03a/+\x01"
    assert wire.publish_packet("a", b"x", qos=1, retain=True, pid=5, dup=True) == b"\x3b\x06\x00\x01a\x00\x05x"
    assert wire.PINGREQ_PACKET == b"\xc0\x00" and wire.DISCONNECT_PACKET == b"\xe0\x00"


@settings(max_examples=300, deadline=None)
@given(topic=topics_, payload=st.binary(max_size=3000), qos=st.sampled_from([0, 1]),
       retain=st.booleans(), dup=st.booleans(), pid=st.integers(1, 0xFFFF),
       junk=st.binary(max_size=8))
def test_publish_round_trip(topic, payload, qos, retain, dup, pid, junk):
    packet = wire.publish_packet(topic, payload, qos, retain, pid, dup)
    buf = bytearray(junk + packet + b"\xc0")         # a packet after it does not disturb it
    first, start, end = wire.parse_packet(buf, len(junk), max_packet=4096)
    assert end == len(junk) + len(packet)
    assert first & 1 == retain and bool(first & 8) == dup
    got_topic, got_pid, at = wire.publish_fields(first, buf, start, end)
    assert (got_topic, got_pid, bytes(buf[at:end])) == (topic, pid if qos else 0, payload)


@settings(max_examples=200, deadline=None)
@given(payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=6), data=st.data())
def test_a_stream_cut_anywhere_gives_back_the_same_packets(payloads, data):
    stream = b"".join(wire.publish_packet("hall/h/dev/d/rating", p, 1, pid=i + 1)
                      for i, p in enumerate(payloads))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    buf, got, last = bytearray(), [], 0
    for cut in cuts + [len(stream)]:
        buf += stream[last:cut]
        last = cut
        while True:
            packet = wire.parse_packet(buf, 0, max_packet=1024)
            if packet is None:
                break
            first, start, end = packet
            got.append(bytes(buf[wire.publish_fields(first, buf, start, end)[2]:end]))
            del buf[:end]
    assert got == payloads and buf == bytearray()


@settings(max_examples=500, deadline=None)
@given(first=st.integers(0, 255), body=st.binary(max_size=40))
def test_broken_bytes_raise_mqtt_error_only(first, body):
    buf = bytearray((first,)) + body
    try:
        got = wire.parse_packet(buf, 0, max_packet=16)
        if got is not None and got[0] & 0xF0 == wire.PUBLISH:
            wire.publish_fields(got[0], buf, got[1], got[2])
    except MqttError:
        pass


def test_named_breakages():
    with pytest.raises(MqttError, match="remaining length"):
        wire.header(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(MqttError, match="packet of"):
        wire.parse_packet(b"\x30\x80\x01" + b"x" * 128, 0, max_packet=127)
    assert wire.parse_packet(b"\x30\x05abc", 0) is None                # not all in yet
    for first, body, why in ((0x32, b"\x00", "without a topic"),
                             (0x30, b"\x00\x09ab", "shorter than its topic"),
                             (0x32, b"\x00\x01a\x00", "shorter than its topic"),   # half a packet id
                             (0x32, b"\x00\x01a\x00\x00", "id 0"),
                             (0x30, b"\x00\x02\xff\xfe", "not UTF-8")):
        with pytest.raises(MqttError, match=why):
            wire.publish_fields(first, body, 0, len(body))
    with pytest.raises(MqttError, match="QoS 3"):
        wire.publish_fields(0x36, b"\x00\x01a\x00\x01", 0, 5)


MP_SCRIPT = """
from protocol import mqtt_wire as wire
p = wire.publish_packet("hall/h/dev/d/rating", "满意 𠀀".encode(), 1, pid=7)
buf = bytearray(p)
first, start, end = wire.parse_packet(buf, 0, 1024)
topic, pid, at = wire.publish_fields(first, buf, start, end)
print("OK", topic, pid, bytes(buf[at:end]).decode())
for bad in (b"\\x32\\x01\\x00", b"\\x32\\x03\\x00\\x09a", b"\\x30\\xff\\xff\\xff\\xff\\x01"):
    try:
        got = wire.parse_packet(bad, 0, 1024)
        if got:
            wire.publish_fields(got[0], bad, got[1], got[2])
        print("NO ERROR", bad)
    except wire.MqttError as e:
        print("MqttError", e)
"""


def test_the_same_module_on_micropython(micropython):
    out = micropython(MP_SCRIPT, trees=("protocol",)).check().stdout
    assert "OK hall/h/dev/d/rating 7 满意 𠀀" in out, out
    assert out.count("MqttError") == 3 and "NO ERROR" not in out, out
