"""Who may call the gateway's HTTP API: one bearer credential per role.

    queue       the queueing system (排队叫号): sign-in/out, case events, GET a case
    operator    everything: devices (keys go in, never out), dead letters, levels in /status
    technician  what a viewer reads, plus adding, changing and removing devices and acknowledging
                alarms; never a level, tags, text or staff name (redacted as for a viewer)
    viewer      /status, /metrics and the GET lists, without keys, levels or staff names
Without a credential only /healthz, /status and /metrics answer, redacted as for a viewer: nobody
but the operator may watch how a window is rated (rules Art. 4), and no write is ever open.

[http] queue_token, operator_token, technician_token, viewer_token set them; the older [http] token
is read as the queue token. A role left empty gets a generated secret (secrets module) kept in
<data_dir>/http-credentials.toml, mode 0600: written on the first start, read on later ones. The
log names the file, never a secret. People at the console log in with a name and password instead
(gateway.console_users, gateway.console_sessions); gateway.http_guard accepts either.
"""

import hmac
import logging
import os
import secrets
import tomllib

from gateway import atomic_file

log = logging.getLogger("gateway.http")

ROLES = ("queue", "operator", "technician", "viewer")
CREDENTIALS_FILE = "http-credentials.toml"


class CredentialsError(ValueError):
    pass


def configured(http):
    """{role: token} set in the [http] config (an object with the *_token attributes)."""
    out = {}
    for role in ROLES:
        token = getattr(http, role + "_token", "") or ""
        if role == "queue" and not token:
            token = getattr(http, "token", "") or ""
        if token:
            out[role] = token
    return out


def check_token(token, where):
    """A bearer token must fit in a header: 8..256 visible ASCII characters."""
    if (not isinstance(token, str) or not 8 <= len(token) <= 256
            or any(not 0x21 <= ord(c) <= 0x7E for c in token)):
        raise CredentialsError("%s must be 8..256 visible ASCII characters" % where)
    return token


def _read(path):
    with open(path, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise CredentialsError("%s: %s" % (path, e)) from None
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        os.chmod(path, 0o600)
        log.warning("%s was readable by others (mode %o); now 0600", path, mode)
    out = {}
    for role in ROLES:
        token = data.get(role + "_token")
        if token is not None:
            out[role] = check_token(token, "%s %s_token" % (path, role))
    return out


def _write(path, tokens):
    """Atomically, created 0600 from the start (the secrets are never in a wider file)."""
    lines = ["# The hall gateway's HTTP API credentials (generated; docs/queue-api.yaml).",
             "# Keep this file private (mode 0600). Give each role's token to its users only.",
             "# A role set in the config's [http] section is not kept here."]
    lines += ['%s_token = "%s"' % (role, tokens[role]) for role in ROLES if role in tokens]
    atomic_file.write(path, ("\n".join(lines) + "\n").encode("ascii"), prefix=".http-credentials-",
                      sync_dir=True)


def load_or_create(http, data_dir):
    """Every role's token: from the config, else from the credentials file, else generated into it."""
    tokens = dict((role, check_token(t, "[http] %s token" % role)) for role, t in configured(http).items())
    path = os.path.join(data_dir, CREDENTIALS_FILE)
    kept = _read(path) if os.path.exists(path) else {}
    overridden = [role for role in kept if role in tokens]   # the file's would mislead its reader
    for role in overridden:
        del kept[role]
    for role, token in kept.items():
        tokens[role] = token
    missing = [role for role in ROLES if role not in tokens]
    for role in missing:
        kept[role] = tokens[role] = secrets.token_urlsafe(32)
    if missing or overridden:
        _write(path, kept)
        log.warning("HTTP API: credentials file %s (0600): %s", path, "; ".join(
            (["generated %s" % ", ".join(missing)] if missing else [])
            + (["dropped %s (set in the config)" % ", ".join(overridden)] if overridden else [])))
    elif kept:
        log.info("HTTP API: credentials from the config and %s", path)
    if len(set(tokens.values())) != len(tokens):
        raise CredentialsError("[http]: each role needs its own token (%s)" % ", ".join(ROLES))
    return tokens


def role_of(header, tokens):
    """(role or None, presented): the role whose token the Authorization header carries. Every
    role's token is compared in constant time, so timing tells nothing about which came close."""
    if not header:
        return None, False
    given = header[7:] if header[:7].lower() == "bearer " else ""
    given = given.strip().encode("utf-8", "replace")
    found = None
    for role, token in tokens.items():
        if hmac.compare_digest(given, token.encode("utf-8")) and given:
            found = role
    return found, True
