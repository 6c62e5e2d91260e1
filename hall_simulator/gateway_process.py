"""The real gateway as a child process of the simulated hall: its gateway.toml written from plain
dicts, and `GatewayProcess` to start it, wait until it listens, SIGKILL it (chaos) and start it
again, its output kept in a log file."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

from hall_simulator.broker import child_popen_args

GATEWAY_START_S = 20.0


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join("%s = %s" % (k, _toml(v)) for k, v in value.items()) + "}"
    raise TypeError(value)


def gateway_toml(sections):
    """TOML text from {"table": {...}, "[[array]]": [{...}, ...]} (only what gateway.toml needs)."""
    out = []
    for name, body in sections.items():
        if isinstance(body, list):
            for entry in body:
                out.append("[[%s]]" % name)
                out.extend("%s = %s" % (k, _toml(v)) for k, v in entry.items() if v is not None)
                out.append("")
        else:
            out.append("[%s]" % name)
            out.extend("%s = %s" % (k, _toml(v)) for k, v in body.items() if v is not None)
            out.append("")
    return "\n".join(out)


_LAUNCH = ("import asyncio, logging, sys; from gateway import app, config; "
           "logging.basicConfig(level=logging.INFO); "
           "asyncio.run(app.Gateway(config.load(sys.argv[1])).run_forever())")


def gateway_command(config_path):
    """`hall-gateway run --config PATH`, by module (the same code the console script runs)."""
    import importlib.util
    if importlib.util.find_spec("gateway.cli") is not None:
        return [sys.executable, "-m", "gateway.cli", "run", "--config", config_path]
    return [sys.executable, "-c", _LAUNCH, config_path]


class GatewayProcess:
    """The real gateway in a child process: start, SIGKILL, start again; output to a log file."""

    def __init__(self, config_path, http_url, workdir, env=None):
        self.config_path = config_path
        self.http_url = http_url
        self.log_path = os.path.join(workdir, "gateway.log")
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.starts = 0
        self.kills = 0

    def start(self):
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(**child_popen_args(gateway_command(self.config_path)),
            stdout=logf, stderr=subprocess.STDOUT, env=self.env,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        logf.close()
        self.starts += 1

    async def wait_ready(self, timeout=GATEWAY_START_S):
        host, port = self.http_url.split("//")[1].split(":")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("the gateway exited (%s); see %s:\n%s" % (
                    self.proc.returncode, self.log_path, self.tail()))
            try:
                _, writer = await asyncio.open_connection(host, int(port.rstrip("/")))
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError("the gateway did not listen within %.0f s; see %s" % (timeout, self.log_path))

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n=30):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""
