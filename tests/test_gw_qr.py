"""Rate-later QR links: signed, expiring, fit the protocol's token field, drawable."""

import io

import pytest
from PIL import Image

from gateway import qr_links
from gateway.qr_links import LinkError, LinkSigner
from protocol import codec, schema

SECRET = "hall-link-secret-0123456789"
DEADLINE = 1718604800


def signer():
    return LinkSigner(SECRET, "https://rate.example.gov.cn/r")


def test_link_verifies_until_the_deadline():
    link = signer().link("SZ2024060001#3", DEADLINE)
    assert link.startswith("https://rate.example.gov.cn/r?t=")
    assert signer().verify(link, now=DEADLINE - 1) == ("SZ2024060001#3", DEADLINE)
    assert signer().verify(link, now=DEADLINE) == ("SZ2024060001#3", DEADLINE)
    with pytest.raises(LinkError) as info:
        signer().verify(link, now=DEADLINE + 1)
    assert info.value.reason == "expired"


def test_forgeries_are_refused():
    token = signer().token("SZ2024060001#3", DEADLINE)
    key, deadline, sig = token.split(".")
    later = "%s.%d.%s" % (key, DEADLINE + 86400, sig)
    other = signer().token("SZ2024060002#3", DEADLINE).split(".")[0] + ".%d.%s" % (DEADLINE, sig)
    for forged in (later, other):
        with pytest.raises(LinkError) as info:
            signer().verify(forged, now=DEADLINE - 10)
        assert info.value.reason == "bad_signature"
    with pytest.raises(LinkError) as info:
        LinkSigner("another-secret-0123456789", "x").verify(token, now=0)
    assert info.value.reason == "bad_signature"
    for junk in ("", "a.b", "https://x/r?t=", "!!.1.2", None):
        with pytest.raises(LinkError) as info:
            signer().verify(junk, now=0)
        assert info.value.reason == "malformed"


def test_token_fits_the_context_qr_field():
    token = signer().token("SZ2024060001-长#4", DEADLINE)
    record = {"case_id": 1, "node": 4, "qr": token}
    assert codec.decode(schema.CONTEXT, codec.encode(schema.CONTEXT, record))["qr"] == token


def test_matrix_and_png():
    link = signer().link("SZ2024060001#3", DEADLINE)
    rows = qr_links.matrix(link)
    assert len(rows) == len(rows[0]) and len(rows) >= 21 and (len(rows) - 17) % 4 == 0
    assert {cell for row in rows for cell in row} == {0, 1}
    assert rows[0][:7] == [1] * 7                     # finder pattern in the corner
    image = Image.open(io.BytesIO(qr_links.png(link)))
    assert image.format == "PNG"
    assert image.size[0] == (len(rows) + 8) * 4       # 4 px modules, 4-module quiet zone
    assert image.convert("L").getextrema() == (0, 255)
