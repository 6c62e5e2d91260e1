"""GET /api/v1/cases/{case_id}/qr (gateway.qr_api): the receipt printer's rate-later link and its
QR code as PNG and SVG, on the whole gateway (real Mosquitto, real HTTP on loopback).

No QR decoder is installed here (zbar is not a dependency), so the images are checked module by
module against qrcode's own matrix of the link (gateway.qr_links.matrix, the matrix the devices
draw): the PNG by sampling each module's centre, the SVG by reading its path's squares."""

import asyncio
import io
import re
import time
from xml.etree import ElementTree

import aiohttp
from PIL import Image

from gateway import qr_links
from gateway.qr_links import LinkSigner
from gw_support import FakeDevice, make_rating
from protocol import codec, schema, vocab
from test_gw_api import Rig, case_body

QR = {"secret": "receipt-link-secret-0123456789", "base_url": "https://rate.example.gov.cn/r"}


def png_modules(data, box, border=4):
    image = Image.open(io.BytesIO(data)).convert("L")
    n = image.size[0] // box - 2 * border
    assert image.size == ((n + 2 * border) * box,) * 2
    for i in range(border * box):                       # the quiet zone is white all round
        assert image.getpixel((i, i)) == 255 and image.getpixel((image.size[0] - 1 - i, i)) == 255
    return [[1 if image.getpixel(((border + x) * box + box // 2, (border + y) * box + box // 2)) < 128
             else 0 for x in range(n)] for y in range(n)]


def svg_modules(data, n, border=4):
    root = ElementTree.fromstring(data)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox") == "0 0 %d %d" % (n + 2 * border, n + 2 * border)
    (path,) = root.iter("{http://www.w3.org/2000/svg}path")
    rows = [[0] * n for _ in range(n)]
    for x, y in re.findall(r"M(\d+),(\d+)H", path.get("d")):
        rows[int(y) - border][int(x) - border] = 1
    return rows


async def _get(rig, path, role="queue"):
    headers = {"Authorization": "Bearer " + rig.gw.credentials[role]} if role else {}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(rig.base + path) as resp:
            body = await resp.read()
            return resp.status, resp.content_type, body


def test_receipt_link_png_and_svg(mosquitto_broker, tmp_path):
    device = FakeDevice(mosquitto_broker, "dev-a")

    async def scenario():
        async with Rig(mosquitto_broker, tmp_path, extra={"qr": QR}) as rig:
            assert (await rig.call("POST", "/api/v1/windows/A01/sign-in",
                                   {"staff_id": "综窗-07", "staff_name": "王䶮明"}))[0] == 200
            status, case = await rig.call("POST", "/api/v1/cases", case_body(serials=["粤B-2026-000126"]))
            assert status == 201
            cid = case["case_id"]
            ctx = codec.from_json(schema.CONTEXT, await asyncio.to_thread(
                device.wait_for, "context", lambda p: b"000126" in p))

            status, kind, body = await _get(rig, "/api/v1/cases/%d/qr" % cid)
            assert status == 200 and kind == "application/json", body
            answer = __import__("json").loads(body)
            assert set(answer) == {"case_id", "url", "expires"} and answer["case_id"] == cid
            assert b"\\u" not in body and "李堃".encode() not in body and b"440301" not in body
            url = answer["url"]
            signer = LinkSigner(QR["secret"], QR["base_url"])
            key, deadline = signer.verify(url, now=time.time())
            assert answer["expires"] == deadline == ctx["deadline"]
            assert deadline - time.time() > 6 * 86400                 # the 7-day rating window
            assert url == QR["base_url"] + "?t=" + ctx["qr"]           # the link the evaluator shows
            rows = qr_links.matrix(url)

            for box in (1, 3, 4):
                status, kind, png = await _get(rig, "/api/v1/cases/%d/qr?format=png&box=%d" % (cid, box))
                assert status == 200 and kind == "image/png"
                assert png_modules(png, box) == rows, box
            status, kind, svg = await _get(rig, "/api/v1/cases/%d/qr?format=svg" % cid, "operator")
            assert status == 200 and kind == "image/svg+xml"
            assert svg_modules(svg, len(rows)) == rows

            # refused, each with a 4xx and a reason, nothing else changed
            for path, want in (("/api/v1/cases/999999/qr", 404), ("/api/v1/cases/abc/qr", 404),
                               ("/api/v1/cases/%d/qr?format=gif" % cid, 400),
                               ("/api/v1/cases/%d/qr?format=png&box=0" % cid, 400),
                               ("/api/v1/cases/%d/qr?format=png&box=99" % cid, 400)):
                status, kind, body = await _get(rig, path)
                assert status == want and kind == "application/json" and b'"error"' in body, path
            assert (await _get(rig, "/api/v1/cases/%d/qr" % cid, "viewer"))[0] == 403
            assert (await _get(rig, "/api/v1/cases/%d/qr" % cid, None))[0] == 401

            # once rated at the window, no link for a second rating
            device.rate(make_rating("dev-a", 1, level=vocab.SATISFIED, case_id=cid,
                                    serials=["粤B-2026-000126"], staff_id="综窗-07"))
            assert (await asyncio.to_thread(device.ack))["result"] == vocab.ACK_STORED
            await rig.until(lambda: rig.gw.cases.cases[cid]["status"] != "open", "the case to close")
            status, _kind, body = await _get(rig, "/api/v1/cases/%d/qr" % cid)
            assert status == 409 and b"bad_state" in body, body
    try:
        asyncio.run(scenario())
    finally:
        device.close()


def test_no_qr_secret_no_links(mosquitto_broker, tmp_path):
    async def scenario():
        async with Rig(mosquitto_broker, tmp_path) as rig:
            await rig.call("POST", "/api/v1/windows/A01/sign-in", {"staff_id": "1001", "staff_name": "王喆"})
            status, case = await rig.call("POST", "/api/v1/cases", case_body())
            assert status == 201
            for fmt in ("", "?format=png", "?format=svg"):
                status, kind, body = await _get(rig, "/api/v1/cases/%d/qr%s" % (case["case_id"], fmt))
                assert status == 404 and b"no QR links" in body, body
    asyncio.run(scenario())
