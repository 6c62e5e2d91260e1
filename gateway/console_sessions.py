"""The hall console's login sessions, in memory (a restart logs everyone out).

A session is a random token (the `hall_session` cookie; only its SHA-256 is kept) and a random
csrf token the page sends back with every change (gateway.http_guard). It ends after
`session_idle_s` without a request (30 min), `session_max_s` after the login whatever happens
(12 h), at logout, and when its user is removed or their password changed (console_users stamp).
At most CAPACITY sessions live; a new one pushes out the longest unused.

Logins are rate-limited: after FAIL_LIMIT failures within FAIL_WINDOW_S from one client address,
or for one user name, further attempts are refused (429, Retry-After) without checking the
password, and the alarm console_login_flood is raised once per episode. The failure tables are
bounded too. Password checks (scrypt: 16 MiB, ~50 ms) run one at a time in the loop's executor, with
at most VERIFY_QUEUE waiting; more are refused as busy.

[console] session_idle_s, session_max_s, secure_cookies (true behind HTTPS: the cookie gets Secure).
"""

import asyncio
import hashlib
import math
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from gateway import http_auth

IDLE_S, MAX_S = 1800.0, 43200.0
CAPACITY = 1000
FAIL_LIMIT, FAIL_WINDOW_S = 5, 60.0
FAIL_KEYS = 4096            # per table (addresses, names): the oldest entry goes first
VERIFY_QUEUE = 8


class SettingsError(http_auth.CredentialsError):
    pass


class LoginRefused(Exception):
    """Too many failures (or too many logins waiting): try again after `retry_after` seconds."""

    def __init__(self, retry_after, detail):
        super().__init__(detail)
        self.retry_after, self.detail = retry_after, detail


def settings(section):
    """{"idle_s", "max_s", "secure_cookies"} from the [console] table (a dict or None)."""
    section = section or {}
    out = {"idle_s": section.get("session_idle_s", IDLE_S), "max_s": section.get("session_max_s", MAX_S),
           "secure_cookies": section.get("secure_cookies", False)}
    for key in ("idle_s", "max_s"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 366 * 86400:
            raise SettingsError("[console] session_%s must be a number of seconds, above 0" % key)
        out[key] = float(v)
    if not isinstance(out["secure_cookies"], bool):
        raise SettingsError("[console] secure_cookies must be true or false")
    return out


def _key(token):
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass
class Session:
    key: bytes          # SHA-256 of the cookie's token
    csrf: str
    user: str
    role: str
    stamp: object       # the user's console_users stamp at login
    created: float
    last_used: float


class Sessions:
    def __init__(self, users, idle_s=IDLE_S, max_s=MAX_S, secure_cookies=False, capacity=CAPACITY,
                 alarm=None, clock=time.monotonic):
        self.users = users
        self.idle_s, self.max_s, self.secure_cookies = idle_s, max_s, secure_cookies
        self.capacity = capacity
        self.alarm = alarm
        self.clock = clock
        self._live = OrderedDict()           # key -> Session, least recently used first
        self._fails = {"address": OrderedDict(), "name": OrderedDict()}   # key -> deque of times
        self._verifying = asyncio.Lock()
        self._waiting = 0
        self.stats = {"logins": 0, "failures": 0, "refused": 0, "expired": 0, "evicted": 0}

    @classmethod
    def from_config(cls, cfg, users, alarm=None):
        return cls(users, alarm=alarm, **settings(cfg.raw.get("console")))

    def __len__(self):
        return len(self._live)

    # --- sessions -----------------------------------------------------------------------
    def create(self, user, role):
        """(token for the cookie, Session)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(_key(token), secrets.token_urlsafe(32), user, role, self.users.stamp(user),
                          now, now)
        while len(self._live) >= self.capacity:
            self._live.popitem(last=False)
            self.stats["evicted"] += 1
        self._live[session.key] = session
        return token, session

    def get(self, token):
        """The live session of a cookie's token (its use noted), else None."""
        now = self.clock()
        self._expire(now)
        session = self._live.get(_key(token))
        if session is None:
            return None
        if now - session.created >= self.max_s or self.users.stamp(session.user) != session.stamp:
            self.end(session)
            return None
        session.last_used = now
        self._live.move_to_end(session.key)
        return session

    def valid(self, session):
        """True while `session` lives, without noting a use: for a long response (the event
        stream) to check now and then, closing when its session ended."""
        now = self.clock()
        return (self._live.get(session.key) is session and now - session.last_used < self.idle_s
                and now - session.created < self.max_s
                and self.users.stamp(session.user) == session.stamp)

    def end(self, session):
        self._live.pop(session.key, None)

    def end_user(self, name):
        for key in [k for k, s in self._live.items() if s.user == name]:
            del self._live[key]

    def _expire(self, now):
        while self._live:
            session = next(iter(self._live.values()))
            if now - session.last_used < self.idle_s:
                break
            self._live.popitem(last=False)
            self.stats["expired"] += 1

    # --- logins ---------------------------------------------------------------------------
    async def login(self, address, name, password):
        """(token, Session) for a right password, None for a wrong one; LoginRefused when rate
        limited or too many logins are waiting."""
        self._check(address, name)
        if self._waiting >= VERIFY_QUEUE:
            self.stats["refused"] += 1
            raise LoginRefused(1, "too many logins at once; try again")
        self._waiting += 1
        try:
            async with self._verifying:       # one scrypt at a time (memory, the loop's threads)
                self._check(address, name)    # failures of the logins that went first count
                role = await asyncio.get_running_loop().run_in_executor(
                    None, self.users.verify, name, password)
        finally:
            self._waiting -= 1
        if role is None:
            self._failed(address, name)
            return None
        for table, key in (("address", address), ("name", name)):
            self._fails[table].pop(key, None)
        self.stats["logins"] += 1
        return self.create(name, role)

    def _recent(self, table, key, now):
        times = self._fails[table].get(key)
        while times and now - times[0] >= FAIL_WINDOW_S:
            times.popleft()
        return times or ()

    def _check(self, address, name):
        now = self.clock()
        wait = 0.0
        for table, key in (("address", address), ("name", name)):
            times = self._recent(table, key, now)
            if len(times) >= FAIL_LIMIT:
                wait = max(wait, times[-FAIL_LIMIT] + FAIL_WINDOW_S - now)
        if wait > 0:
            self.stats["refused"] += 1
            raise LoginRefused(max(1, math.ceil(wait)), "too many failed logins; try again later")

    def _failed(self, address, name):
        now = self.clock()
        self.stats["failures"] += 1
        flooded = []
        for table, key, what in (("address", address, "from %s" % address),
                                 ("name", name, "for one user name")):
            fails = self._fails[table]
            times = fails.get(key)
            if times is None:
                while len(fails) >= FAIL_KEYS:
                    fails.popitem(last=False)
                times = fails[key] = deque(maxlen=FAIL_LIMIT)
            fails.move_to_end(key)
            times.append(now)
            if len(self._recent(table, key, now)) == FAIL_LIMIT:
                flooded.append(what)
        if flooded and self.alarm is not None:
            # the name typed is not logged: it may be a password typed in the wrong field
            self.alarm("console_login_flood", "%d failed console logins in %d s %s"
                       % (FAIL_LIMIT, FAIL_WINDOW_S, " and ".join(flooded)))
