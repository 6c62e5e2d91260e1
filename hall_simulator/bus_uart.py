"""The device side of the virtual RS-485 bus: a UART for the sim board, over TCP (CPython).

    uart = BusUart(bus.url, baud=9600)
    board = make_board({"uart": uart, ...})

Interface the firmware sees (as on a machine.UART plus a driver-enable pin):
  write(bytes) -> n     bytes go onto the bus only while the driver is enabled (set_de(True)),
                        as with a real transceiver; with DE low they are lost and counted
  read(n=None)          bytes received so far (at most n), or None; never blocks
  any() -> n            bytes waiting
  set_de(bool)          driver enable
  flush()               wait until the written bytes have crossed the line (baud estimate)
  fileno()              the socket, for select() over many UARTs in one thread
If the bus goes away, calls stay harmless (read None, write counted as lost) and the UART
reconnects on a later call, like a transceiver whose cable was plugged back in.
"""

import select
import socket
import time

BITS_PER_BYTE = 10
RECONNECT_S = 0.5


def parse_url(url):
    """(host, port) from "socket://host:port" or "host:port"."""
    if url.startswith("socket://"):
        url = url[len("socket://"):]
    host, _, port = url.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("bus url %r: expected socket://host:port" % url)
    return host, int(port)


class BusUart:
    def __init__(self, url, baud=9600, require_de=True, connect_timeout=5.0):
        self.host, self.port = parse_url(url)
        self.baud = baud
        self.byte_s = BITS_PER_BYTE / baud
        self.require_de = require_de
        self.connect_timeout = connect_timeout
        self.de = False
        self.local_port = 0
        self._rx = bytearray()
        self._sock = None
        self._next_try = 0.0
        self._tx_end = 0.0
        self.stats = {"tx": 0, "rx": 0, "tx_without_de": 0, "de_released_early": 0,
                      "lost_offline": 0, "connects": 0}
        self._connect(raise_errors=True)

    # --- connection ------------------------------------------------------------------------------
    def _connect(self, raise_errors=False):
        try:
            sock = socket.create_connection((self.host, self.port), self.connect_timeout)
        except OSError:
            self._next_try = time.monotonic() + RECONNECT_S
            if raise_errors:
                raise
            return False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._sock = sock
        self.local_port = sock.getsockname()[1]
        self.stats["connects"] += 1
        return True

    def _alive(self):
        if self._sock is None and time.monotonic() >= self._next_try:
            self._connect()
        return self._sock is not None

    def _drop(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._next_try = time.monotonic() + RECONNECT_S

    def fileno(self):
        """The socket's descriptor (for select / loop.add_reader), -1 while disconnected."""
        return self._sock.fileno() if self._sock is not None else -1

    def close(self):
        self._drop()
        self._next_try = float("inf")

    def _pull(self):
        """Move whatever the bus has sent into the receive buffer, without waiting."""
        if not self._alive():
            return
        while True:
            try:
                data = self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop()
                return
            if not data:
                self._drop()
                return
            self._rx += data
            self.stats["rx"] += len(data)

    # --- UART interface --------------------------------------------------------------------------
    def write(self, data):
        n = len(data)
        if self.require_de and not self.de:
            self.stats["tx_without_de"] += n
            return n
        if not self._alive():
            self.stats["lost_offline"] += n
            return n
        try:
            self._send(bytes(data))
        except OSError:
            self._drop()
            self.stats["lost_offline"] += n
            return n
        now = time.monotonic()
        self._tx_end = max(now, self._tx_end) + n * self.byte_s
        self.stats["tx"] += n
        return n

    def _send(self, data):
        view = memoryview(data)
        deadline = time.monotonic() + self.connect_timeout
        while view:
            try:
                sent = self._sock.send(view)
            except (BlockingIOError, InterruptedError):
                if time.monotonic() > deadline:
                    raise OSError("bus not accepting bytes")
                select.select([], [self._sock], [], 0.05)
                continue
            view = view[sent:]

    def any(self):
        self._pull()
        return len(self._rx)

    def read(self, n=None):
        self._pull()
        if not self._rx:
            return None
        if n is None or n >= len(self._rx):
            out = bytes(self._rx)
            self._rx = bytearray()
        else:
            out = bytes(self._rx[:n])
            del self._rx[:n]
        return out

    def set_de(self, on):
        on = bool(on)
        if self.de and not on and time.monotonic() < self._tx_end:
            self.stats["de_released_early"] += 1
        self.de = on

    def tx_done(self):
        return time.monotonic() >= self._tx_end

    def flush(self):
        wait = self._tx_end - time.monotonic()
        if wait > 0:
            time.sleep(wait)
