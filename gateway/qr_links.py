"""Rate-later QR codes (rules Art. 14): a signed, expiring link that identifies one case.

Token: <case key, URL-safe base64>.<deadline, unix s>.<signature>
Link:  <base url>?t=<token>
The signature is HMAC-SHA256 (first 12 bytes, URL-safe base64) over "case_key|deadline" with the
hall's link secret, so a printed receipt cannot be edited into another case or a later deadline.
The central rating app verifies it with the same secret; `verify` here is that check.

The CONTEXT field `qr` is a protocol token (200 characters of [A-Za-z0-9._-]): a URL does not fit,
so devices receive the token and the link prefix comes from their CONFIG texts (key "qr_base").
"""

import base64
import hashlib
import hmac
import io
from urllib.parse import parse_qs, urlencode, urlsplit

import qrcode
from qrcode.constants import ERROR_CORRECT_M

_SIG_BYTES = 12


class LinkError(ValueError):
    """The link is forged, damaged or expired; `reason` is "malformed", "bad_signature" or "expired"."""

    def __init__(self, reason, detail=""):
        super().__init__("%s %s" % (reason, detail))
        self.reason = reason


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text):
    if not text:
        raise ValueError("empty")
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


class LinkSigner:
    def __init__(self, secret, base_url):
        self._secret = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(self._secret) < 16:
            raise ValueError("link secret must be at least 16 bytes")
        self.base_url = base_url

    def __repr__(self):
        return "<LinkSigner %s>" % self.base_url

    def _signature(self, case_key, deadline):
        message = ("%s|%d" % (case_key, deadline)).encode("utf-8")
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest()[:_SIG_BYTES])

    def token(self, case_key, deadline):
        """The signed token (protocol token alphabet) for a case open until `deadline`."""
        deadline = int(deadline)
        return "%s.%d.%s" % (_b64(case_key.encode("utf-8")), deadline,
                             self._signature(case_key, deadline))

    def link(self, case_key, deadline):
        """The rate-later URL printed on the receipt."""
        return "%s?%s" % (self.base_url, urlencode({"t": self.token(case_key, deadline)}))

    def verify(self, link_or_token, now):
        """(case_key, deadline) of a genuine link or token still open at `now`; else LinkError."""
        token = link_or_token
        if not isinstance(token, str):
            raise LinkError("malformed")
        try:
            if "?" in link_or_token:
                token = parse_qs(urlsplit(link_or_token).query, strict_parsing=True)["t"][0]
            key_part, deadline_part, signature = token.split(".")
            case_key = _unb64(key_part).decode("utf-8")
            deadline = int(deadline_part)
        except (KeyError, ValueError, IndexError, UnicodeDecodeError, AttributeError):
            raise LinkError("malformed") from None
        if not hmac.compare_digest(signature, self._signature(case_key, deadline)):
            raise LinkError("bad_signature")
        if now > deadline:
            raise LinkError("expired", "closed at %d" % deadline)
        return case_key, deadline


def _code(text, border, box_size=1):
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=border, box_size=box_size)
    code.add_data(text)
    code.make(fit=True)
    return code


def matrix(text, border=0):
    """Module matrix: a list of rows, each a list of 0/1 (1 = dark), for a device to draw."""
    return [[1 if cell else 0 for cell in row] for row in _code(text, border).get_matrix()]


def png(text, box_size=4, border=4):
    """PNG bytes of the QR code, sized for a 58 mm receipt printer by default."""
    image = _code(text, border, box_size).make_image()
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
