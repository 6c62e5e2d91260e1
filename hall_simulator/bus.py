"""A virtual RS-485 bus: a TCP server on loopback where every connection is a node on one wire pair.

The gateway opens it with pyserial (`serial.serial_for_url(bus.url)`), devices through
`hall_simulator.bus_uart.BusUart`. What a node writes reaches every OTHER node (no echo), paced by
the baud rate: each byte occupies 10 bit times of line time, and a node's bytes queue behind its own
earlier bytes, so no TCP chunking can push more than the wire allows.

Line model (all times are the event loop's monotonic seconds):
- A node's byte starts at max(arrival, end of that node's previous byte) and is delivered when it
  has fully crossed the line (its end time), in batches of `batch_s` of line time (4 ms, like a
  UART FIFO threshold); the last byte of a write is always delivered at its own end time.
- Half-duplex: every byte whose line time overlaps another node's transmission is garbled for all
  receivers (both talkers' bytes). `collisions` counts overlapping pairs of transmissions,
  `collided_bytes` the bytes garbled.
- Noise on delivered bytes: `ber` flips random bits (bit error rate over the 8 data bits),
  `drop_rate` loses whole bytes. Positions come from the seeded random.Random passed in.
- Cuts: `cut(seconds, node)` isolates one node (nothing it sends reaches the line, nothing reaches
  it) or, without a node, the whole bus. `cuts_per_minute` injects random cuts by itself.
  A cut never closes TCP: like a broken cable, the ports stay open and just go silent.

`Bus` runs inside an asyncio loop; hall_simulator.bus_runners runs one in a background thread
(`BusThread`) or a child process (`BusProcess`) for synchronous code.
"""

import asyncio
import math
import random
import socket

BITS_PER_BYTE = 10
HISTORY_S = 5.0   # how long finished transmissions are kept for overlap checks

COUNTER_NAMES = (
    "bytes_written",    # bytes nodes wrote to the bus
    "bytes_on_line",    # of those, bytes that went onto the line (not lost to a cut)
    "bytes_delivered",  # bytes handed to receivers (one per receiver)
    "line_time_s",      # line time occupied: bytes_on_line x byte time
    "collisions",       # pairs of overlapping transmissions
    "collided_bytes",   # bytes garbled by an overlap
    "bit_flips",        # bits flipped by noise
    "dropped_bytes",    # bytes lost to noise
    "cuts",             # cuts started (node or bus)
    "cut_bytes",        # bytes lost to a cut (sent by a cut node, or missed by a cut receiver)
    "connections",      # nodes that ever connected
)


class _Transmission:
    """One node's contiguous run of bytes on the line: [start, end)."""
    __slots__ = ("id", "start", "end", "hit")

    def __init__(self, tid, start, end):
        self.id = tid
        self.start = start
        self.end = end
        self.hit = set()   # ids of transmissions it collided with


class Node:
    """One connection. `id` counts from 1 in connection order; `port` is the client's local port."""

    def __init__(self, bus, nid, transport):
        self.bus = bus
        self.id = nid
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.port = peer[1] if peer else 0
        self.open = True
        self.cut_until = 0.0
        self.tx_cursor = 0.0        # line time when this node's queued bytes end
        self.queue = []             # [start, bytearray] chunks not yet delivered
        self.txs = []               # recent _Transmission records
        self.timer = None
        self.stats = {"tx": 0, "rx": 0, "first_tx_start": None, "last_tx_end": None}

    def describe(self):
        d = dict(self.stats)
        d.update(id=self.id, port=self.port, open=self.open)
        return d


class _Protocol(asyncio.Protocol):
    def __init__(self, bus):
        self.bus = bus
        self.node = None

    def connection_made(self, transport):
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.node = self.bus._join(transport)

    def data_received(self, data):
        self.bus._written(self.node, data)

    def connection_lost(self, exc):
        self.bus._leave(self.node)


def _geometric(rng, p):
    """Trials before the next success, success probability p (inf when p is 0)."""
    if p <= 0:
        return math.inf
    if p >= 1:
        return 0
    return int(math.log(1.0 - rng.random()) / math.log(1.0 - p))


class Bus:
    def __init__(self, baud=9600, rng=None, ber=0.0, drop_rate=0.0, host="127.0.0.1", port=0,
                 batch_s=0.004, cuts_per_minute=0.0, cut_seconds=(0.5, 3.0), bus_cut_share=0.25):
        if baud <= 0:
            raise ValueError("baud must be positive")
        self.baud = baud
        self.byte_s = BITS_PER_BYTE / baud
        self.rng = rng if rng is not None else random.Random(0)
        self.host = host
        self.port = port
        self.batch_s = batch_s
        self.cuts_per_minute = cuts_per_minute
        self.cut_seconds = cut_seconds
        self.bus_cut_share = bus_cut_share
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)
        self.counters["line_time_s"] = 0.0
        self.nodes = []             # open nodes, connection order
        self._gone = []             # closed nodes whose last bytes may still overlap someone's
        self._all = {}              # id -> Node, including closed ones (for stats)
        self._next_id = 1
        self._next_tx = 1
        self.bus_cut_until = 0.0
        self._server = None
        self._loop = None
        self._cut_task = None
        self.ber = 0.0
        self.drop_rate = 0.0
        self.set_noise(ber, drop_rate)

    # --- control ---------------------------------------------------------------------------------
    @property
    def url(self):
        return "socket://%s:%d" % (self.host, self.port)

    async def start(self):
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(lambda: _Protocol(self), self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.cuts_per_minute > 0:
            self._cut_task = asyncio.ensure_future(self._random_cuts())
        return self.port

    async def stop(self):
        if self._cut_task is not None:
            self._cut_task.cancel()
            self._cut_task = None
        if self._server is not None:
            self._server.close()
            for node in list(self.nodes):
                node.transport.close()
            await self._server.wait_closed()
            self._server = None

    def set_noise(self, ber=None, drop_rate=None):
        """Change the noise at run time (chaos), resampling where the next error falls."""
        if ber is not None:
            if not 0 <= ber <= 1:
                raise ValueError("ber must be within 0..1")
            self.ber = ber
            self._bits_to_flip = _geometric(self.rng, ber)
        if drop_rate is not None:
            if not 0 <= drop_rate <= 1:
                raise ValueError("drop_rate must be within 0..1")
            self.drop_rate = drop_rate
            self._bytes_to_drop = _geometric(self.rng, drop_rate)

    def cut(self, seconds, node=None):
        """Silence one node (a Node, its id, or its client port) or, with node=None, the whole bus."""
        until = self._loop.time() + seconds
        if node is None:
            self.bus_cut_until = max(self.bus_cut_until, until)
        else:
            target = self.find(node)
            if target is None:
                raise KeyError("no node %r on the bus" % (node,))
            target.cut_until = max(target.cut_until, until)
        self.counters["cuts"] += 1

    def find(self, node):
        """The Node for a Node, an id, or a client's local port (BusUart.local_port)."""
        if isinstance(node, Node):
            return node
        for n in self._all.values():
            if n.id == node and n.open:
                return n
        for n in self._all.values():
            if n.port == node and n.open:
                return n
        return None

    def stats(self):
        out = dict(self.counters)
        out["nodes"] = len(self.nodes)
        return out

    def node_stats(self):
        return [n.describe() for n in self._all.values()]

    def line_busy_until(self):
        """Line time when every queued byte will have crossed the line."""
        return max([n.tx_cursor for n in self._all.values()] or [0.0])

    # --- node events -----------------------------------------------------------------------------
    def _join(self, transport):
        node = Node(self, self._next_id, transport)
        self._next_id += 1
        self.nodes.append(node)
        self._all[node.id] = node
        self.counters["connections"] += 1
        return node

    def _leave(self, node):
        node.open = False
        if node in self.nodes:
            self.nodes.remove(node)
            if node.txs:
                self._gone.append(node)

    def _talkers(self, now):
        """Nodes whose recent transmissions can still overlap a new or delivered byte."""
        if self._gone:
            self._gone = [n for n in self._gone if n.txs and n.txs[-1].end > now - HISTORY_S]
        return self.nodes + self._gone if self._gone else self.nodes

    def _is_cut(self, node, now):
        return now < self.bus_cut_until or now < node.cut_until

    def _written(self, node, data):
        now = self._loop.time()
        n = len(data)
        c = self.counters
        c["bytes_written"] += n
        node.stats["tx"] += n
        if self._is_cut(node, now):
            c["cut_bytes"] += n
            return
        start = max(now, node.tx_cursor)
        end = start + n * self.byte_s
        node.tx_cursor = end
        c["bytes_on_line"] += n
        c["line_time_s"] += n * self.byte_s
        if node.stats["first_tx_start"] is None:
            node.stats["first_tx_start"] = start
        node.stats["last_tx_end"] = end
        self._record(node, start, end, now)
        if node.queue and abs(node.queue[-1][0] + len(node.queue[-1][1]) * self.byte_s - start) < 1e-9:
            node.queue[-1][1].extend(data)
        else:
            node.queue.append([start, bytearray(data)])
        if node.timer is None:
            self._arm(node)

    def _record(self, node, start, end, now):
        """Extend or open the node's transmission and count new overlaps with other nodes."""
        txs = node.txs
        tol = self.byte_s * 1e-3
        if txs and abs(txs[-1].end - start) < tol:
            tx = txs[-1]
            tx.end = end
        else:
            tx = _Transmission(self._next_tx, start, end)
            self._next_tx += 1
            txs.append(tx)
        while txs and txs[0].end < now - HISTORY_S:
            txs.pop(0)
        for other in self._talkers(now):
            if other is node:
                continue
            for o in reversed(other.txs):          # newest first: stop at the first one before us
                if o.end <= start + tol:
                    break
                if o.start < end - tol and o.id not in tx.hit:
                    tx.hit.add(o.id)
                    o.hit.add(tx.id)
                    self.counters["collisions"] += 1

    # --- delivery --------------------------------------------------------------------------------
    def _arm(self, node):
        start, data = node.queue[0]
        per_batch = max(1, int(self.batch_s / self.byte_s))
        due = start + min(len(data), per_batch) * self.byte_s
        node.timer = self._loop.call_at(due, self._pump, node)

    def _pump(self, node):
        node.timer = None
        now = self._loop.time()
        bs = self.byte_s
        while node.queue:
            start, data = node.queue[0]
            done = min(len(data), int((now - start) / bs + 1e-6))
            if done <= 0:
                break
            chunk = bytearray(data[:done])
            if done == len(data):
                node.queue.pop(0)
            else:
                node.queue[0] = [start + done * bs, data[done:]]
            self._deliver(node, start, chunk, now)
        if node.queue:
            self._arm(node)

    def _deliver(self, sender, start, chunk, now):
        c = self.counters
        bs = self.byte_s
        tol = bs * 1e-3
        k = len(chunk)
        end = start + k * bs
        garbled = set()
        for other in self._talkers(now):
            if other is sender:
                continue
            for o in reversed(other.txs):
                if o.end <= start + tol:
                    break
                if o.start < end - tol:
                    lo = max(0, int(math.floor((o.start + tol - start) / bs)))
                    hi = min(k, int(math.ceil((o.end - tol - start) / bs)))
                    garbled.update(range(lo, hi))
        for i in garbled:
            chunk[i] ^= self.rng.randrange(1, 256)
        c["collided_bytes"] += len(garbled)
        bits = 8 * k
        while self._bits_to_flip < bits:
            pos = int(self._bits_to_flip)
            chunk[pos // 8] ^= 1 << (pos % 8)
            c["bit_flips"] += 1
            self._bits_to_flip += 1 + _geometric(self.rng, self.ber)
        self._bits_to_flip -= bits
        if self._bytes_to_drop < k:
            keep = bytearray()
            for i in range(k):
                if self._bytes_to_drop == 0:
                    c["dropped_bytes"] += 1
                    self._bytes_to_drop = _geometric(self.rng, self.drop_rate)
                else:
                    self._bytes_to_drop -= 1
                    keep.append(chunk[i])
            chunk = keep
        else:
            self._bytes_to_drop -= k
        if not chunk:
            return
        payload = bytes(chunk)
        for node in self.nodes:
            if node is sender:
                continue
            if self._is_cut(node, now):
                c["cut_bytes"] += len(payload)
                continue
            node.transport.write(payload)
            node.stats["rx"] += len(payload)
            c["bytes_delivered"] += len(payload)

    # --- chaos -----------------------------------------------------------------------------------
    async def _random_cuts(self):
        rate = self.cuts_per_minute / 60.0
        while True:
            await asyncio.sleep(self.rng.expovariate(rate))
            seconds = self.rng.uniform(*self.cut_seconds)
            if not self.nodes or self.rng.random() < self.bus_cut_share:
                self.cut(seconds)
            else:
                self.cut(seconds, self.rng.choice(self.nodes))


if __name__ == "__main__":   # `python -m hall_simulator.bus`: the command line is with the runners
    from hall_simulator.bus_runners import main
    raise SystemExit(main())
