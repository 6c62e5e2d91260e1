"""RS-485 framing: any split gives the same frames, noise never yields a bad frame, memory stays bounded."""

import hashlib

import pytest
from hypothesis import given, settings, strategies as st

from protocol import crc, frame
from protocol.errors import LocalProtocolError

FRAMES = [
    frame.encode_frame(5, 0x01, 1, b""),
    frame.encode_frame(5, 0x81, 1, b"\x08\x02"),
    frame.encode_frame(247, 0x82, 200, "王喆 李堃 朱镕 𠀋".encode() * 3),
    frame.encode_frame(0, 0x05, 255, bytes(range(256)) * 2),
    frame.encode_frame(9, 0x03, 7, b"\xa5\x5a" * 20),   # sync bytes inside the payload
]
STREAM = b"".join(FRAMES)


def _decode_all(chunks, decoder=None):
    d = decoder or frame.FrameDecoder()
    got = []
    for c in chunks:
        d.receive_data(c)
        while True:
            f = d.next_frame()
            if f is None:
                break
            got.append(frame.encode_frame(f.addr, f.type, f.seq, f.payload))
    return got, d


def test_crc_check_values():
    assert crc.crc16(b"123456789") == 0x4B37   # CRC-16/MODBUS
    assert crc.crc8(b"123456789") == 0xF4      # CRC-8/SMBUS


def test_layout_of_an_empty_poll():
    f = frame.encode_frame(5, 0x01, 1, b"")
    assert len(f) == frame.OVERHEAD == 10
    assert f[:7] == bytes([0xA5, 0x5A, 5, 1, 1, 0, 0])
    assert f[7] == crc.crc8(f[2:7])
    assert f[8] | f[9] << 8 == crc.crc16(f[2:8])


def test_every_split_point_gives_the_same_frames():
    whole, _ = _decode_all([STREAM])
    assert whole == FRAMES
    for i in range(len(STREAM) + 1):
        got, d = _decode_all([STREAM[:i], STREAM[i:]])
        assert got == FRAMES, i
        assert d.stats["frames"] == len(FRAMES) and d.buffered() == 0


def test_byte_by_byte_gives_the_same_frames():
    got, d = _decode_all([STREAM[i:i + 1] for i in range(len(STREAM))])
    assert got == FRAMES
    assert d.stats == dict(frame.FrameDecoder().stats, frames=len(FRAMES))


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_random_splits_give_the_same_frames(cuts):
    cuts = sorted(cuts)
    chunks = [STREAM[a:b] for a, b in zip([0] + cuts, cuts + [len(STREAM)])]
    assert _decode_all(chunks)[0] == FRAMES


@settings(max_examples=300, deadline=None)
@given(noise=st.lists(st.binary(max_size=60), min_size=len(FRAMES) + 1, max_size=len(FRAMES) + 1))
def test_resync_after_garbage_between_frames(noise):
    # Garbage may itself contain a valid-looking frame start; every real frame is still found,
    # in order, because a broken frame is abandoned one byte at a time.
    stream = b"".join(n + f for n, f in zip(noise, FRAMES + [b""]))
    got, d = _decode_all([stream])
    it = iter(got)
    assert all(any(g == f for g in it) for f in FRAMES)
    assert d.buffered() < frame.MAX_FRAME


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000))
def test_garbage_never_raises_and_never_yields_a_bad_frame(data):
    d = frame.FrameDecoder()
    d.receive_data(data)
    while True:
        f = d.next_frame()
        if f is None:
            break
        raw = frame.encode_frame(f.addr, f.type, f.seq, f.payload)
        assert raw in data   # only byte-exact, CRC-valid frames that were really in the stream


@settings(max_examples=300, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(0, len(STREAM) - 1), st.integers(0, 7)), min_size=1, max_size=6))
def test_bit_flips_never_yield_a_frame_that_was_not_sent(flips):
    bad = bytearray(STREAM)
    for pos, bit in flips:
        bad[pos] ^= 1 << bit
    got, d = _decode_all([bytes(bad)])
    for g in got:
        assert g in FRAMES   # a corrupted frame is dropped (CRC), never delivered altered
    for f in FRAMES:         # frames untouched by any flip all arrive
        start = STREAM.index(f)
        if not any(start <= p < start + len(f) for p, _ in flips):
            assert f in got


def _noise(n):
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"noise %d" % i).digest()
        i += 1
    return bytes(out)


def test_buffer_stays_bounded_under_megabytes_of_noise():
    d = frame.FrameDecoder()
    noise = _noise(2 * 1024 * 1024)
    # Worst cases too: endless false syncs and valid headers that claim a full payload.
    hdr = bytearray(b"\xa5\x5a\x01\x02\x03\x00\x04\x00")
    hdr[7] = crc.crc8(hdr[2:7])
    hostile = (b"\xa5\x5a" * 3000) + bytes(hdr) * 2000 + b"\xa5" * 5000
    worst = 0
    for i in range(0, len(noise), 4096):
        d.receive_data(noise[i:i + 4096] + hostile[(i // 4096) % 7 * 100:][:300])
        worst = max(worst, d.buffered())
    d.receive_data(hostile)
    worst = max(worst, d.buffered())
    assert worst < frame.MAX_FRAME           # the stated bound: less than one largest frame
    assert d.stats["frames"] == 0
    d.receive_data(FRAMES[1])                # and it still hears the next real frame...
    while d.buffered() and d.next_frame() is None:
        d.receive_data(b"\x00" * 64)         # ...once the claimed length has passed (or reset)
    d.reset()
    d.receive_data(FRAMES[1])
    assert frame.encode_frame(*_fields(d.next_frame())) == FRAMES[1]


def _fields(f):
    return f.addr, f.type, f.seq, f.payload


def test_one_huge_chunk_is_parsed_in_bounded_steps():
    d = frame.FrameDecoder()
    d.receive_data(_noise(100000) + FRAMES[2] + _noise(5000))
    assert frame.encode_frame(*_fields(d.next_frame())) == FRAMES[2]
    assert d.buffered() < frame.MAX_FRAME


def test_counters_name_each_kind_of_reject():
    poll = FRAMES[0]
    d = frame.FrameDecoder()
    d.receive_data(b"xyz" + poll)
    assert d.stats["noise_bytes"] == 3 and d.stats["frames"] == 1
    broken = bytearray(FRAMES[1])
    broken[-1] ^= 0xFF
    d.receive_data(bytes(broken))
    assert d.stats["bad_crc"] == 1
    hdr = bytearray(poll)
    hdr[7] ^= 1
    d.receive_data(bytes(hdr))
    assert d.stats["bad_header"] == 1
    big = bytearray(b"\xa5\x5a\x01\x02\x03\x01\x04\x00")   # claims 1025 bytes
    big[7] = crc.crc8(big[2:7])
    d.receive_data(bytes(big))
    assert d.stats["oversize"] == 1
    d.receive_data(FRAMES[2][:20])                         # truncated by a silent line
    d.reset()
    assert d.stats["dropped_partial"] == 1 and d.buffered() == 0
    d.receive_data(poll)
    assert d.stats["frames"] == 2


def test_full_queue_counts_an_overflow():
    d = frame.FrameDecoder(max_pending=2)
    d.receive_data(FRAMES[0] * 3)
    assert d.stats["overflow"] == 1
    assert d.next_frame() and d.next_frame() and d.next_frame() is None


def test_expected_total_reports_the_frame_in_flight():
    d = frame.FrameDecoder()
    d.receive_data(FRAMES[2][:7])
    assert d.expected_total() == 0
    d.receive_data(FRAMES[2][7:9])
    assert d.expected_total() == len(FRAMES[2])


@pytest.mark.parametrize("args", [(248, 1, 0, b""), (-1, 1, 0, b""), (1, 256, 0, b""), (1, 1, 256, b""),
                                  (1, 1, 0, bytes(frame.MAX_PAYLOAD + 1))])
def test_encode_frame_rejects_what_the_bus_cannot_carry(args):
    with pytest.raises(LocalProtocolError):
        frame.encode_frame(*args)


def test_reset_still_finds_a_frame_buffered_behind_a_false_header():
    # Noise that happens to form a valid header (claiming 300 bytes) holds the decoder in step 4;
    # the real frame behind it must not be thrown away with it when the line goes silent.
    false_hdr = bytearray(b"\xa5\x5a\x05\x01\x00\x2c\x01\x00")
    false_hdr[7] = crc.crc8(false_hdr[2:7])
    d = frame.FrameDecoder()
    d.receive_data(bytes(false_hdr) + FRAMES[1] + b"\xa5")
    assert d.next_frame() is None
    d.reset()
    assert frame.encode_frame(*_fields(d.next_frame())) == FRAMES[1]
    assert d.buffered() == 0 and d.stats["dropped_partial"] == 1
