"""Where a virtual RS-485 bus (hall_simulator.bus.Bus) runs for synchronous code: `BusThread` on
its own event loop in a daemon thread, `BusProcess` in a child process (no GIL shared with device
threads). Both offer the same methods; `main` is `python -m hall_simulator.bus`.
"""

import asyncio
import random
import threading

from hall_simulator.bus import Bus


def _command(bus, name, args):
    """Run one control command on the bus, inside its event loop."""
    if name == "node_count":
        return len(bus.nodes)
    if name == "now":                   # the bus loop's clock (line time base)
        return asyncio.get_running_loop().time()
    return getattr(bus, name)(*args)


class _Controls:
    """The bus's controls, for a runner whose `_call(name, *args)` reaches the bus."""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def cut(self, seconds, node=None):
        self._call("cut", seconds, node)

    def set_noise(self, ber=None, drop_rate=None):
        self._call("set_noise", ber, drop_rate)

    def stats(self):
        return self._call("stats")

    def node_stats(self):
        return self._call("node_stats")

    def node_count(self):
        return self._call("node_count")

    def now(self):
        return self._call("now")


class BusThread(_Controls):
    """A Bus on its own event loop in a daemon thread, for synchronous callers (tests, benches).

        with BusThread(baud=9600, rng=random.Random(7)) as bus:
            ser = serial.serial_for_url(bus.url, timeout=1)
    """

    def __init__(self, **options):
        self.bus = Bus(**options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rs485-bus", daemon=True)

    def start(self):
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.bus.start(), self._loop).result(10)
        return self

    def stop(self):
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.bus.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def url(self):
        return self.bus.url

    @property
    def port(self):
        return self.bus.port

    def call(self, fn, *args, **kwargs):
        """Run fn(*args) on the bus's loop and return its result (thread-safe)."""
        async def run():
            return fn(*args, **kwargs)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def _call(self, name, *args):
        return self.call(_command, self.bus, name, args)


def _serve_in_child(conn, options):
    """Child process body of BusProcess: a Bus, driven by commands arriving on `conn`."""
    async def main():
        bus = Bus(**options)
        await bus.start()
        conn.send(("ready", bus.port))
        done = asyncio.get_running_loop().create_future()

        def on_command():
            try:
                name, args = conn.recv()
            except EOFError:            # the parent went away
                name, args = "stop", ()
            if name == "stop":
                if not done.done():
                    done.set_result(None)
                return
            try:
                conn.send(("ok", _command(bus, name, args)))
            except Exception as e:      # report to the caller, keep the bus up
                conn.send(("error", "%s: %s" % (type(e).__name__, e)))

        asyncio.get_running_loop().add_reader(conn.fileno(), on_command)
        await done
        await bus.stop()
        conn.send(("stopped", bus.stats()))

    asyncio.run(main())


class BusProcess(_Controls):
    """The same bus in a child process (its own interpreter, so no GIL shared with the devices'
    threads): same methods as BusThread. Started with 'spawn', safe from a threaded parent."""

    def __init__(self, **options):
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_in_child, args=(child, options), name="rs485-bus",
                                 daemon=True)
        self._lock = threading.Lock()
        self.host = options.get("host", "127.0.0.1")
        self.port = None
        self.final_stats = None

    def start(self):
        self._proc.start()
        if not self._conn.poll(30):
            self._proc.kill()
            raise RuntimeError("bus process did not start")
        kind, self.port = self._conn.recv()
        return self

    def stop(self):
        if self._proc.is_alive():
            with self._lock:
                self._conn.send(("stop", ()))
                if self._conn.poll(10):
                    self.final_stats = self._conn.recv()[1]
            self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()

    @property
    def url(self):
        return "socket://%s:%d" % (self.host, self.port)

    def _call(self, name, *args):
        with self._lock:
            self._conn.send((name, args))
            if not self._conn.poll(10):
                raise RuntimeError("bus process not answering")
            kind, result = self._conn.recv()
        if kind == "error":
            raise RuntimeError(result)
        return result


def main(argv=None):
    """`python -m hall_simulator.bus --baud 9600 --port 4850`: a bus for manual runs (Ctrl-C ends it
    and prints the counters as JSON)."""
    import argparse
    import json
    p = argparse.ArgumentParser(prog="python -m hall_simulator.bus", description=main.__doc__)
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ber", type=float, default=0.0, help="bit error rate")
    p.add_argument("--drop-rate", type=float, default=0.0, help="share of bytes lost")
    p.add_argument("--cuts-per-minute", type=float, default=0.0)
    o = p.parse_args(argv)
    bus = BusThread(baud=o.baud, port=o.port, rng=random.Random(o.seed), ber=o.ber,
                    drop_rate=o.drop_rate, cuts_per_minute=o.cuts_per_minute).start()
    print("RS-485 bus at %d baud: %s" % (o.baud, bus.url), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        print(json.dumps(bus.stats(), sort_keys=True), flush=True)
        bus.stop()
    return 0
