"""The hall console's users: <data_dir>/console-users.toml, mode 0600, managed with
`hall-gateway user add|passwd|remove|list` (gateway.cli).

Each user has a name, a role (operator, technician or viewer: gateway.http_auth) and a password
hash: hashlib.scrypt (n=2**14, r=8, p=1, 32 bytes; 16 MiB and ~50 ms a try, so a stolen file is
slow to guess), its parameters and 16-byte salt stored with it so they can be raised later
without breaking older hashes. Checks compare in constant time, and a name that does not exist
still costs one scrypt, so neither the answer's time nor its text tells which names exist.

The first start without the file creates one operator, `admin`, with a random password written
to <data_dir>/console-initial-password (0600); the log names that file, never the password. It is
removed once admin's password is changed (or admin removed).

The running gateway reads the file again when it changes on disk (a `user` command), so a removed
user or a changed password ends that user's sessions at their next request (Users.stamp). A file
that cannot be read any more lets nobody in until it is fixed.
"""

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import tomllib

from gateway import atomic_file, http_auth
from gateway.text_rules import is_text

log = logging.getLogger("gateway.console")

USERS_FILE = "console-users.toml"
INITIAL_PASSWORD_FILE = "console-initial-password"
ROLES = ("operator", "technician", "viewer")     # the console's; the queue role has no login
N, R, P, DKLEN, SALT_BYTES = 2 ** 14, 8, 1, 32, 16
LIMITS = {"n": 2 ** 20, "r": 32, "p": 16}
MAXMEM = 65 * 1024 * 1024     # scrypt's memory, 128*r*(n+p+2) bytes: a file asking more is refused
NAME_MAX, PASSWORD_MIN, PASSWORD_MAX = 64, 8, 1024


class UsersError(http_auth.CredentialsError):
    """A broken users file, or a user command that cannot be done (the text says why)."""


def check_name(name):
    if not is_text(name, NAME_MAX, allow_empty=False) or name != name.strip():
        raise UsersError("a user name is 1..%d characters, no control characters, no spaces at"
                         " either end" % NAME_MAX)
    return name


def check_password(password):
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise UsersError("a password is %d..%d characters" % (PASSWORD_MIN, PASSWORD_MAX))
    return password


def _derive(password, rec):
    secret = password.encode("utf-8", "surrogatepass") if isinstance(password, str) else b""
    return hashlib.scrypt(secret, salt=bytes.fromhex(rec["salt"]), n=rec["n"], r=rec["r"],
                          p=rec["p"], dklen=DKLEN, maxmem=MAXMEM)


def hash_password(password, n=N, r=R, p=P):
    """{"kdf", "n", "r", "p", "salt", "hash"} of a new password (a fresh salt)."""
    rec = {"kdf": "scrypt", "n": n, "r": r, "p": p, "salt": secrets.token_bytes(SALT_BYTES).hex()}
    rec["hash"] = _derive(check_password(password), rec).hex()
    return rec


def dumps(users):
    """The file's text for {name: {"role", "kdf", "n", "r", "p", "salt", "hash"}}."""
    lines = ["# The hall console's users (hall-gateway user add|passwd|remove|list).",
             "# Keep this file private (mode 0600). Passwords are scrypt hashes, never kept as typed."]
    for name in sorted(users):
        u = users[name]
        # a checked name has no control character, so JSON's string is a TOML basic string
        lines += ["", "[[user]]", "name = %s" % json.dumps(name, ensure_ascii=False),
                  'role = "%s"' % u["role"], 'kdf = "%s"' % u["kdf"],
                  "n = %d" % u["n"], "r = %d" % u["r"], "p = %d" % u["p"],
                  'salt = "%s"' % u["salt"], 'hash = "%s"' % u["hash"]]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _hex(value, size):
    return isinstance(value, str) and len(value) == 2 * size and all(c in "0123456789abcdef" for c in value)


def loads(data, where="users file"):
    """{name: record} from the file's bytes; UsersError naming the first problem."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UsersError("%s: %s" % (where, e)) from None
    users = {}
    for i, u in enumerate(doc.get("user", [])):
        if not isinstance(u, dict):
            raise UsersError("%s: user %d is not a table" % (where, i + 1))
        try:
            name = check_name(u.get("name"))
        except UsersError as e:
            raise UsersError("%s: user %d: %s" % (where, i + 1, e)) from None
        ints = all(isinstance(u.get(k), int) and not isinstance(u.get(k), bool) and 1 <= u[k] <= top
                   for k, top in LIMITS.items())
        if (u.get("role") not in ROLES or u.get("kdf") != "scrypt" or not ints or u["n"] < 2
                or u["n"] & (u["n"] - 1) or 128 * u["r"] * (u["n"] + u["p"] + 2) > MAXMEM
                or not _hex(u.get("salt"), SALT_BYTES)
                or not _hex(u.get("hash"), DKLEN) or name in users):
            raise UsersError("%s: user %s: needs a role (%s), kdf scrypt with n (a power of 2), r, p"
                             " within bounds, a 16-byte hex salt and a 32-byte hex hash, once"
                             % (where, json.dumps(name, ensure_ascii=False), ", ".join(ROLES)))
        users[name] = dict((k, u[k]) for k in ("role", "kdf", "n", "r", "p", "salt", "hash"))
    return users


def _gateway_owns(path):
    """Run as root (`sudo hall-gateway user ...`), a new file is handed to the owner of the data
    directory, the gateway's own user: a root-owned 0600 file would lock the gateway out."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    st = os.stat(os.path.dirname(os.path.abspath(path)))
    return lambda fd: os.fchown(fd, st.st_uid, st.st_gid)


class Users:
    """The users file, read again whenever it changed. Thread-safe: verify() runs in an executor."""

    def __init__(self, data_dir):
        self.path = os.path.join(data_dir, USERS_FILE)
        self.initial_path = os.path.join(data_dir, INITIAL_PASSWORD_FILE)
        self._lock = threading.Lock()
        self._users = {}
        self._seen = None
        # an unknown name is checked against this: same cost, never a match
        self._nobody = {"kdf": "scrypt", "n": N, "r": R, "p": P, "salt": secrets.token_bytes(SALT_BYTES).hex(),
                        "hash": secrets.token_bytes(DKLEN).hex()}

    @classmethod
    def open(cls, data_dir):
        """The users of `data_dir`: read (UsersError if the file is broken), or created on the
        first start with an operator `admin` and its random password in console-initial-password."""
        users = cls(data_dir)
        if os.path.exists(users.path):
            users._load(strict=True)
        else:
            users._create_admin()
        return users

    def _create_admin(self):
        password = secrets.token_urlsafe(12)
        atomic_file.write(self.initial_path, (password + "\n").encode("ascii"),
                          prefix=".console-initial-password-", prepare=_gateway_owns(self.initial_path))
        with self._lock:
            self._users = {"admin": dict(hash_password(password), role="operator")}
            self._save()
        log.warning("console: created the user admin (operator); its password is in %s (0600): "
                    "log in, then change it with `hall-gateway user passwd admin`", self.initial_path)

    def _stat(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self, strict=False):
        """Read the file if it changed since the last read (under self._lock, or at start)."""
        seen = self._stat()
        if seen == self._seen and not strict:
            return
        self._seen = seen
        try:
            if seen is None:
                raise UsersError("%s is gone" % self.path)
            with open(self.path, "rb") as f:
                self._users = loads(f.read(), self.path)
            mode = os.stat(self.path).st_mode & 0o777
            if mode & 0o077:
                os.chmod(self.path, 0o600)
                log.warning("%s was readable by others (mode %o); now 0600", self.path, mode)
        except (OSError, UsersError) as e:
            if strict:
                raise UsersError(str(e)) from None
            self._users = {}     # fail closed: nobody logs in on a file we cannot read
            log.error("console: nobody can log in until the users file is fixed: %s", e)

    def _save(self):
        atomic_file.write(self.path, dumps(self._users), prefix=".console-users-", sync_dir=True,
                          prepare=_gateway_owns(self.path))
        self._seen = self._stat()

    # --- questions ------------------------------------------------------------------------
    def verify(self, name, password):
        """The user's role when `password` is theirs, else None. One scrypt, whoever asks."""
        with self._lock:
            self._load()
            rec = self._users.get(name) if isinstance(name, str) else None
        target = rec if rec is not None and isinstance(password, str) and len(password) <= PASSWORD_MAX \
            else self._nobody
        same = hmac.compare_digest(_derive(password if target is rec else "", target),
                                   bytes.fromhex(target["hash"]))
        return rec["role"] if same and target is rec else None

    def stamp(self, name):
        """What a session checks its user against: changes when the password does; None once
        the user is removed. Cheap (a stat of the file)."""
        with self._lock:
            self._load()
            rec = self._users.get(name)
            return (rec["role"], rec["salt"]) if rec is not None else None

    def list(self):
        """[(name, role)], sorted by name."""
        with self._lock:
            self._load()
            return sorted((name, u["role"]) for name, u in self._users.items())

    # --- changes (the CLI's) ---------------------------------------------------------------
    def add(self, name, role, password):
        check_name(name)
        if role not in ROLES:
            raise UsersError("a role is one of %s" % ", ".join(ROLES))
        rec = dict(hash_password(password), role=role)
        with self._lock:
            self._load(strict=True)
            if name in self._users:
                raise UsersError("the user %s exists already" % name)
            self._users[name] = rec
            self._save()

    def passwd(self, name, password):
        rec = hash_password(password)
        with self._lock:
            self._load(strict=True)
            if name not in self._users:
                raise UsersError("no user %s" % name)
            self._users[name] = dict(rec, role=self._users[name]["role"])
            self._save()
        if name == "admin":
            self._forget_initial_password()

    def remove(self, name):
        with self._lock:
            self._load(strict=True)
            if name not in self._users:
                raise UsersError("no user %s" % name)
            others = [n for n, u in self._users.items() if u["role"] == "operator" and n != name]
            if self._users[name]["role"] == "operator" and not others:
                raise UsersError("%s is the last operator: add another operator first" % name)
            del self._users[name]
            self._save()
        if name == "admin":
            self._forget_initial_password()

    def _forget_initial_password(self):
        try:
            os.unlink(self.initial_path)
        except FileNotFoundError:
            pass
