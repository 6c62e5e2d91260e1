"""Request authentication for the upstream rating API (docs/upstream-api.yaml, "security").

HMAC scheme: headers
  X-Hall-Gateway:   gateway id
  X-Hall-Timestamp: unix seconds when the request was signed
  X-Hall-Signature: hex HMAC-SHA256(secret, METHOD "\n" PATH "\n" TIMESTAMP "\n" BODY)
The server accepts a timestamp within +-300 s of its own clock (wall time, never a simulated one).
Bearer scheme: "Authorization: Bearer <token>". Both only ever over verified TLS in production.
"""

import hashlib
import hmac
import time

H_GATEWAY = "X-Hall-Gateway"
H_TIMESTAMP = "X-Hall-Timestamp"
H_SIGNATURE = "X-Hall-Signature"
WINDOW_S = 300


def signature(secret, method, path, timestamp, body):
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    message = b"%s\n%s\n%d\n" % (method.upper().encode("ascii"), path.encode("utf-8"), timestamp)
    return hmac.new(key, message + body, hashlib.sha256).hexdigest()


class HmacAuth:
    def __init__(self, gateway_id, secret, clock=time.time):
        self.gateway_id = gateway_id
        self._secret = secret
        self._clock = clock

    def __repr__(self):
        return "<HmacAuth %s>" % self.gateway_id

    def headers(self, method, path, body):
        ts = int(self._clock())
        return {H_GATEWAY: self.gateway_id, H_TIMESTAMP: str(ts),
                H_SIGNATURE: signature(self._secret, method, path, ts, body)}


class BearerAuth:
    def __init__(self, token):
        self._token = token

    def __repr__(self):
        return "<BearerAuth>"

    def headers(self, method, path, body):
        return {"Authorization": "Bearer %s" % self._token}


class NoAuth:
    def headers(self, method, path, body):
        return {}


def verify(headers, method, path, body, secrets, tokens=(), now=None, window=WINDOW_S):
    """Server side: None if the request is authentic, else a short reason.

    `secrets` maps gateway id -> HMAC secret; `tokens` is a collection of accepted bearer tokens."""
    auth = headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        given = auth[7:].strip()
        for token in tokens:
            if hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
                return None
        return "bad bearer token"
    gateway = headers.get(H_GATEWAY)
    if gateway is None or H_SIGNATURE not in headers:
        return "no credentials"
    secret = secrets.get(gateway, secrets.get("*"))
    if secret is None:
        return "unknown gateway"
    try:
        ts = int(headers.get(H_TIMESTAMP, ""))
    except ValueError:
        return "bad timestamp"
    now = time.time() if now is None else now
    if abs(now - ts) > window:
        return "timestamp outside the %d s window" % window
    expected = signature(secret, method, path, ts, body)
    if not hmac.compare_digest(expected, headers[H_SIGNATURE]):
        return "bad signature"
    return None
