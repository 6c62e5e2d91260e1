"""Bus timing derived from the baud rate (SPEC.md section 5). Pure arithmetic, in microseconds.

8N1: one byte costs 10 bit times. The turnaround guard follows Modbus RTU's t3.5 (3.5 characters,
1,750 us floor above 19,200 baud): after the last byte of a frame the sender releases the line and
the other side waits this long before driving it, so the transceivers never fight.
"""

from protocol.frame import HEADER_LEN, OVERHEAD

BITS_PER_BYTE = 10
GUARD_FLOOR_US = 1750
DEVICE_REPLY_START_MAX_US = 10000  # a device must start its reply within 10 ms after the guard
MASTER_MARGIN_US = 20000           # the master's extra patience: OS scheduling and USB adapters
                                   # (an FTDI chip holds short reads for its 16 ms latency timer)


def byte_us(baud):
    """One character on the wire, rounded up."""
    return (BITS_PER_BYTE * 1000000 + baud - 1) // baud


def guard_us(baud):
    """Quiet time between the end of one frame and the start of the next (t3.5, rounded up)."""
    return max(GUARD_FLOOR_US, (35 * BITS_PER_BYTE * 1000000 + 10 * baud - 1) // (10 * baud))


def frame_us(payload_len, baud):
    """A whole frame sent back to back, rounded up to the microsecond."""
    return ((OVERHEAD + payload_len) * BITS_PER_BYTE * 1000000 + baud - 1) // baud


def reply_timeout_us(baud, reply_payload_max):
    """How long the master waits, from the end of its request, for the whole reply."""
    return (guard_us(baud) + DEVICE_REPLY_START_MAX_US + MASTER_MARGIN_US
            + frame_us(reply_payload_max, baud))


def reply_start_timeout_us(baud):
    """How long the master waits, from the end of its request, for a reply's 8 header bytes.

    Once a header with a good CRC-8 has arrived the master knows the frame length and waits
    frame_us(len) more; so a silent device costs this much, not the time of a largest reply."""
    return (guard_us(baud) + DEVICE_REPLY_START_MAX_US + MASTER_MARGIN_US
            + (HEADER_LEN * BITS_PER_BYTE * 1000000 + baud - 1) // baud)


def silence_reset_us(baud):
    """Inter-byte silence after which a receiver drops a partial frame (a frame is sent back to back)."""
    return max(guard_us(baud), 20 * byte_us(baud))


def exchange_us(request_payload, reply_payload, baud, device_turnaround_us):
    """One request and its reply, with both guards and the device's reaction time."""
    g = guard_us(baud)
    return (frame_us(request_payload, baud) + g + device_turnaround_us
            + frame_us(reply_payload, baud) + g)


def poll_cycle_us(devices, baud, device_turnaround_us=2000, poll_payload=0, reply_payload=0):
    """Time to poll every device once when all are idle."""
    return devices * exchange_us(poll_payload, reply_payload, baud, device_turnaround_us)


def poll_cycle_worst_us(devices, baud, poll_payload=0, reply_payload=0):
    """The same cycle when every device takes its full reply-start allowance."""
    return devices * exchange_us(poll_payload, reply_payload, baud, DEVICE_REPLY_START_MAX_US)
