"""The rate-later QR code of a case for the queueing system's receipt printer (rules Art. 14),
registered through Gateway.http_routes behind the API's one guard:

    GET /api/v1/cases/{case_id}/qr               queue, operator   {"case_id", "url", "expires"}
    GET /api/v1/cases/{case_id}/qr?format=png    the QR code as PNG (box= pixels a module, 1..20,
                                                 default 4: 58 mm printers at 203 dpi)
    GET /api/v1/cases/{case_id}/qr?format=svg    the QR code as SVG (1 mm a module, scalable)

The link is the one the case's evaluator shows (gateway.qr_links: signed, expiring at the case's
deadline, the end of its 7-day rating window); `expires` is that deadline in unix seconds. The
code has a 4-module quiet zone and error correction M, as the device's matrix. 404 when the
gateway has no [qr] secret or the case is unknown (or already expired and dropped); 409 when the
case was already rated (a second rating would be refused anyway). The answer names no applicant.
"""

import io

import qrcode
from aiohttp import web
from qrcode.constants import ERROR_CORRECT_M
from qrcode.image.svg import SvgPathImage

from gateway.cases import CaseError
from gateway.qr_links import png
from protocol import errors

PATH = "/api/v1/cases/{case_id}/qr"
ROLES = ("queue", "operator")
BORDER = 4          # modules of quiet zone around the code (ISO/IEC 18004)


def svg(text):
    """SVG bytes of the QR code: one path of 1 mm modules, BORDER modules of quiet zone."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=BORDER, image_factory=SvgPathImage)
    code.add_data(text)
    code.make(fit=True)
    buf = io.BytesIO()
    code.make_image().save(buf)
    return buf.getvalue()


def _box(request):
    text = request.query.get("box", "4")
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 20):
        raise CaseError(errors.R_OUT_OF_RANGE, "box must be a whole number from 1 to 20 (pixels a module)")
    return int(text)


def add_routes(app, gw, allow):
    signer = getattr(gw, "qr_signer", None)   # the hall's gateway.qr_links.LinkSigner, None without a [qr] secret

    async def case_qr(request):
        if signer is None:
            raise web.HTTPNotFound(reason="no QR links: the gateway has no [qr] secret")
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "png", "svg"):
            raise CaseError(errors.R_OUT_OF_RANGE, "format must be json, png or svg")
        box = _box(request)
        text = request.match_info["case_id"]
        case = None
        if text.isascii() and text.isdigit() and len(text) <= 19:
            case = gw.cases.cases.get(int(text))
        if case is None:
            raise web.HTTPNotFound(reason="no such open or recent case")
        if case["status"] == "rated":
            raise CaseError(errors.R_BAD_STATE, "case %s is already rated" % text, 409)
        link = signer.link(case["case_key"], case["deadline"])
        headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        if fmt == "png":
            return web.Response(body=png(link, box_size=box, border=BORDER), content_type="image/png",
                                headers=headers)
        if fmt == "svg":
            return web.Response(body=svg(link), content_type="image/svg+xml", headers=headers)
        return web.json_response({"case_id": case["case_id"], "url": link, "expires": case["deadline"]},
                                 headers=headers)

    app.router.add_route("GET", PATH, allow(ROLES, case_qr))
