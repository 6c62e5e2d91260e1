"""The sim board's host-side I/O fakes, imported only when used (saves RAM on MicroPython)."""


class MemUart:
    """In-memory UART: the device writes into .tx; a test feeds bytes the device will read."""

    def __init__(self):
        self.tx = bytearray()
        self._rx = bytearray()

    def feed(self, data):
        self._rx += data

    def take_tx(self):
        out = bytes(self.tx)
        self.tx = bytearray()
        return out

    def write(self, data):
        self.tx += data
        return len(data)

    def any(self):
        return len(self._rx)

    def read(self, n=None):
        if not self._rx:
            return None
        if n is None or n >= len(self._rx):
            out = bytes(self._rx)
            self._rx = bytearray()
        else:
            out = bytes(self._rx[:n])
            self._rx = self._rx[n:]
        return out

    def flush(self):
        pass


class SimNet:
    """Wi-Fi on the host: real TCP sockets (CPython). drop() simulates losing the access point."""

    def __init__(self, timeout=5.0):
        self.timeout = timeout
        self.connected = False
        self.connects = 0
        self._socks = []

    def connect(self):
        self.connected = True
        self.connects += 1

    def isconnected(self):
        return self.connected

    def socket_factory(self, host, port):
        import socket
        if not self.connected:
            raise OSError("wifi down")
        # CPython only (net "tcp"); MicroPython's socket has no create_connection.
        s = socket.create_connection((host, port), self.timeout)  # pyright: ignore[reportAttributeAccessIssue]
        self._socks.append(s)
        return s

    def drop(self):
        self.connected = False
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        self._socks = []


def panel_board(cfg, width=480, height=320):
    """A touch sim board with a larger landscape panel (default 480x320; the 320x240 one is
    sim.make_board's "touch"): the same board with a bigger frame buffer, 76,800 bytes at 480x320."""
    from firmware.boards.sim import SimBoard, SimDisplay, framebuf
    board = SimBoard(dict(cfg, profile="touch"))
    board.display = SimDisplay(width, height, framebuf.GS4_HMSB)
    return board
