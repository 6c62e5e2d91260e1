"""A private Mosquitto for the simulator and the benchmarks: free port, generated config.

    with Broker(users={"gw": "secret"}, acl=ACL_TEXT) as broker:
        client.connect(broker.host, broker.port)
        broker.restart()     # chaos: same port, same config
        broker.kill()        # SIGKILL; start() brings it back

    Broker(password_file=p, acl_file=a)   # files someone else keeps (the gateway: hall-sim)
    broker.reload()                       # SIGHUP: Mosquitto re-reads both files

Without users or password_file the broker is anonymous (the test fixtures); with them, anonymous
clients are refused and the broker takes each client's user name as its client id
(use_username_as_clientid, as docs/mosquitto/hall-gateway.conf): a device presenting another's
client id, or the gateway's, cannot disconnect it. Mosquitto writes its pid to broker.pid_file, so another process of the same
user (the gateway: [mqtt] broker_pid_file) can SIGHUP it after rewriting the files.
Persistence is always off: what survives a broker restart is the clients' business, which is what
the simulator wants to prove. Passwords are hashed here ($7$: PBKDF2-SHA512, Mosquitto 2's own
format), so mosquitto_passwd is not needed and no clear password is written to disk.
"""

import base64
import getpass
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
PBKDF2_ITERATIONS = 101   # Mosquitto 2's default for $7$
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class BrokerError(RuntimeError):
    pass


def find_mosquitto():
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    raise BrokerError("mosquitto not found: run scripts/setup (installs the mosquitto package)")


def child_popen_args(argv):
    """Popen arguments for a child of the simulator (broker, gateway): in its own session, so a
    Ctrl-C at the terminal reaches the simulator alone (which then stops its children in order),
    and run under `setpriv --pdeathsig TERM` when present (util-linux), so the child ends with the
    simulator even when that is SIGKILLed."""
    setpriv = shutil.which("setpriv")
    if setpriv:
        argv = [setpriv, "--pdeathsig", "TERM", "--"] + list(argv)
    return {"args": list(argv), "start_new_session": True}


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def password_line(user, password, salt=None):
    """One line of a Mosquitto 2 password file."""
    if ":" in user:
        raise ValueError("a user name cannot contain ':'")
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, PBKDF2_ITERATIONS, 64)
    return "%s:$7$%d$%s$%s" % (user, PBKDF2_ITERATIONS, base64.b64encode(salt).decode(),
                                base64.b64encode(digest).decode())


class Broker:
    def __init__(self, workdir=None, port=None, host="127.0.0.1", users=None, acl=None,
                 allow_anonymous=None, extra_config="", binary=None, password_file=None,
                 acl_file=None):
        self.host = host
        self.port = port or free_port(host)
        self._own_dir = workdir is None
        self.workdir = tempfile.mkdtemp(prefix="hall-mosquitto-") if workdir is None else str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.users = dict(users or {})
        self.acl = acl
        if (users and password_file) or (acl is not None and acl_file):
            raise ValueError("users/acl are written here, password_file/acl_file kept: not both")
        self.password_file = password_file
        self.acl_file = acl_file
        secured = bool(self.users or password_file)
        self.allow_anonymous = (not secured) if allow_anonymous is None else allow_anonymous
        self.username_as_clientid = secured
        self.extra_config = extra_config
        self.binary = binary or find_mosquitto()
        self.config_path = os.path.join(self.workdir, "mosquitto.conf")
        self.log_path = os.path.join(self.workdir, "mosquitto.log")
        self.pid_file = os.path.join(self.workdir, "mosquitto.pid")
        self.starts = 0
        self._proc = None

    @property
    def url(self):
        return "mqtt://%s:%d" % (self.host, self.port)

    @property
    def running(self):
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self):
        return self._proc.pid if self._proc is not None else None

    def config_text(self):
        lines = [
            "listener %d %s" % (self.port, self.host),
            "allow_anonymous %s" % ("true" if self.allow_anonymous else "false"),
            "use_username_as_clientid %s" % ("true" if self.username_as_clientid else "false"),
            "persistence false",
            "pid_file %s" % self.pid_file,
            "log_dest file %s" % self.log_path,
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
        ]
        if self.users:
            path = os.path.join(self.workdir, "passwords")
            with open(path, "w", encoding="utf-8") as f:
                for user, password in self.users.items():
                    f.write(password_line(user, password) + "\n")
            os.chmod(path, 0o600)
            lines.append("password_file %s" % path)
        elif self.password_file:
            lines.append("password_file %s" % self.password_file)
        if self.acl is not None:
            path = os.path.join(self.workdir, "acl")
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.acl.strip() + "\n")
            lines.append("acl_file %s" % path)
        elif self.acl_file:
            lines.append("acl_file %s" % self.acl_file)
        if os.geteuid() == 0:
            # as root, mosquitto would switch to user "mosquitto", who cannot read our files
            lines.append("user %s" % getpass.getuser())
        return "\n".join(lines) + "\n" + self.extra_config.strip() + "\n"

    def start(self, timeout=START_TIMEOUT_S):
        if self.running:
            raise BrokerError("broker already running")
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(self.config_text())
        self._proc = subprocess.Popen(**child_popen_args([self.binary, "-c", self.config_path]),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode("utf-8", "replace")
                self._proc = None
                raise BrokerError("mosquitto exited at start:\n%s\n%s" % (err, self.log_text()))
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise BrokerError("mosquitto did not listen on port %d within %.0f s" % (self.port, timeout))

    def reload(self):
        """SIGHUP: Mosquitto re-reads its password and ACL files and drops clients whose login
        is gone."""
        if not self.running:
            raise BrokerError("broker not running")
        self._proc.send_signal(signal.SIGHUP)

    def stop(self):
        """Graceful stop (SIGTERM)."""
        self._end(signal.SIGTERM)

    def kill(self):
        """Crash (SIGKILL)."""
        self._end(signal.SIGKILL)

    def _end(self, sig):
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stderr.close()

    def restart(self, down_s=0.0):
        """Stop, stay down for down_s seconds, start again on the same port with the same config."""
        self.stop()
        if down_s > 0:
            time.sleep(down_s)
        return self.start()

    def log_text(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def close(self):
        """Stop and remove the generated directory (when we made it)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc):
        self.close()
