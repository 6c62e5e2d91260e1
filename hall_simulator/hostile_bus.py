"""The hostile campaign's rogue node on the RS-485 bus (hall_simulator.hostile: bus_rogue)."""

import socket
import time

from hall_simulator.hostile_targets import counters, junk_rating, loopback
from protocol import codec, schema
from protocol.frame import FrameDecoder, encode_frame

ROGUE_ANSWERS = 4          # junk RATINGs the bus node sends per campaign at most


def attack_bus(ledger, hall, targets, rng, deadline):
    """A node on the bus that answers requests to the victim's address at once, before the real
    device (which waits the guard time), with a junk RATING under the request's seq."""
    victim = targets.bus_victim
    if victim is None or hall.bus is None:
        return
    host, port = hall.bus.url.split("//", 1)[1].rsplit(":", 1)
    address = targets.address[victim]
    decoder = FrameDecoder()
    answered = 0
    end = deadline          # no polls while the gateway is away: listen until the campaign ends
    with socket.create_connection((loopback(host), int(port)), timeout=2.0) as sock:
        sock.settimeout(0.05)
        while answered < ROGUE_ANSWERS and time.monotonic() < end:
            try:
                data = sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                break
            decoder.receive_data(data)
            while True:
                frame = decoder.next_frame()
                if frame is None:
                    break
                if frame.addr != address or schema.from_device(frame.type) or frame.type != schema.POLL:
                    continue
                head, high = counters(hall, victim)
                junk = junk_rating(rng, victim, rng.choice((head, high + 1)), targets.windows[victim])
                sock.sendall(encode_frame(address, schema.RATING, frame.seq,
                                          codec.encode(schema.RATING, junk)))
                answered += 1
    ledger.hit("bus_rogue", answered)

