"""The rater's identity (rules Art. 16): sealed at rest, masked on screen and in logs.

- Sealer: AES-256-GCM with a key from the gateway config. A sealed value is a short text
  "v1.<nonce>.<ciphertext+tag>" (URL-safe base64) so it fits in a JSON column; the hall id is bound
  as associated data, so a sealed record copied to another hall does not open there.
- mask_id(): "440301199001011234" -> "440301********1234".
- IdentityLogFilter: a logging.Filter that masks anything shaped like a resident ID number (or a
  mobile number) in a log record's message and arguments before any handler sees it.
"""

import base64
import json
import logging
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = "v1"
_NONCE_BYTES = 12

# 18-digit resident ID (last may be X), 15-digit legacy ID, 11-digit mainland mobile number.
# Lookarounds keep longer digit runs (serials, timestamps in ms) out of it.
_ID18 = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_ID15 = re.compile(r"(?<![0-9A-Za-z])\d{15}(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<![0-9A-Za-z])1[3-9]\d{9}(?![0-9A-Za-z])")


class SealError(ValueError):
    """A sealed value that does not open: wrong key, other hall, or tampered."""


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_key(text):
    """A 32-byte key from config text: 64 hex digits or URL-safe base64."""
    text = text.strip()
    try:
        key = bytes.fromhex(text) if len(text) == 64 else _unb64(text)
    except ValueError:
        raise ValueError("privacy key is neither hex nor base64") from None
    if len(key) != 32:
        raise ValueError("privacy key must be 32 bytes (AES-256)")
    return key


def new_key():
    return os.urandom(32).hex()


class Sealer:
    """Seals and opens applicant identities. `random` makes nonces (injectable for tests)."""

    def __init__(self, key, context="", random=os.urandom):
        if isinstance(key, str):
            key = load_key(key)
        if len(key) != 32:
            raise ValueError("privacy key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)
        self._aad = context.encode("utf-8")
        self._random = random

    def __repr__(self):  # never show the key, even in a traceback
        return "<Sealer>"

    def seal(self, value):
        """Sealed text of a JSON-able value (usually the applicant dict)."""
        plain = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        nonce = self._random(_NONCE_BYTES)
        return "%s.%s.%s" % (_PREFIX, _b64(nonce), _b64(self._aead.encrypt(nonce, plain, self._aad)))

    def open(self, sealed):
        """The value back. Raises SealError if it was not sealed by this key for this hall."""
        try:
            prefix, nonce, body = sealed.split(".")
            if prefix != _PREFIX:
                raise ValueError(prefix)
            plain = self._aead.decrypt(_unb64(nonce), _unb64(body), self._aad)
        except (ValueError, InvalidTag, AttributeError):
            raise SealError("sealed identity does not open") from None
        return json.loads(plain.decode("utf-8"))


def is_sealed(value):
    return isinstance(value, str) and value.startswith(_PREFIX + ".") and value.count(".") == 2


def mask_id(number):
    """Show the region (6) and the last 4 characters only: "440301********1234"."""
    number = str(number)
    if len(number) <= 10:
        return "*" * max(len(number) - 2, 0) + number[-2:] if len(number) > 2 else "*" * len(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


def mask_name(name):
    """"王喆" -> "王*", "欧阳娜娜" -> "欧***": the family character only."""
    name = str(name)
    return name[:1] + "*" * (len(name) - 1) if name else ""


def mask_phone(number):
    number = str(number)
    return number[:3] + "****" + number[-4:] if len(number) == 11 else mask_id(number)


def mask_text(text):
    """Mask every ID-number-like or mobile-number-like run in free text."""
    text = _ID18.sub(lambda m: mask_id(m.group(0)), text)
    text = _ID15.sub(lambda m: mask_id(m.group(0)), text)
    return _MOBILE.sub(lambda m: mask_phone(m.group(0)), text)


_APPLICANT_MASKS = {"id_number": mask_id, "name": mask_name, "phone": mask_phone}


def masked_applicant(applicant):
    """A copy fit for screens, logs and profiles that want the masked form."""
    out = {}
    for key, value in applicant.items():
        mask = _APPLICANT_MASKS.get(key)
        out[key] = mask(value) if mask and value else value
    return out


class IdentityLogFilter(logging.Filter):
    """Masks identity numbers in every record that passes; never drops a record.

    Install on handlers (handler.addFilter) so records from every logger are covered, or use
    install() for the root logger's handlers.
    """

    def filter(self, record):
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        if isinstance(record.msg, str):
            record.msg = mask_text(record.msg)
        elif record.msg is not None:
            record.msg = mask_text(str(record.msg))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        return True


def install(logger=None):
    """Add the filter to every handler of `logger` (root by default); returns the filter."""
    logger = logger or logging.getLogger()
    flt = IdentityLogFilter()
    for handler in logger.handlers:
        handler.addFilter(flt)
    logger.addFilter(flt)
    return flt
