"""Render every screen of the evaluator on both boards (sim) as PNGs: the five-button OLED (128x64,
x3), the touch panel at 320x240 and at 480x320 (x2).

    python tools/screenshots.py                         # all scenes into docs/screens/
    python tools/screenshots.py --out DIR --only case   # scenes whose name contains "case"

Each scene is (profile, name, view, events): profile "five_button", "touch" (320x240) or
"touch480"; the view is drawn with Ui.render, then the raw events (if any) go through Ui.action,
as the flow would send them (e.g. the touch theme's next page). The contexts are built as the
gateway builds them: the glyph supplement for characters the device font lacks (gateway.glyphs)
and the QR module matrix of the rate-later link (gateway.cases.qr_modules).
tests/test_screens_committed.py renders the same scenes and compares them pixel by pixel with
the committed docs/screens/<profile>-<name>.png; after an intended change look at the new images,
then commit them. Output is deterministic (same inputs, same bytes).
"""

import argparse
import os
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

FONT = os.path.join(ROOT, "firmware", "fonts", "unifont16.bin")
OUT = os.path.join(ROOT, "docs", "screens")
PROFILES = ("five_button", "touch", "touch480")
SCALE = {"five_button": 3, "touch": 2, "touch480": 2}
OLED_ON, OLED_OFF = (0x9E, 0xE6, 0xFF), (0x08, 0x0C, 0x14)

IND_OVERALL, IND_BUSINESS, IND_SERVICE = 1, 2, 4
ALL = (IND_OVERALL, IND_BUSINESS, IND_SERVICE)
LINK = "https://hp.example.gov.cn/r/7Q2F9KX3TB?d=1733212800&s=9f2c41d0"


def _ctx(**kw):
    ctx = {"case_id": 7, "window": "3", "staff_id": "A0123", "staff_name": "王喆",
           "matter_code": "440300-001", "matter_name": "居民身份证换领",
           "serials": ["SZ20241101000123"], "node": 3, "indicators": 7}
    ctx.update(kw)
    return ctx


def _gateway_ctx(ctx, link=None):
    """ctx as the gateway sends it: glyphs the device font lacks, the QR matrix of the link."""
    from gateway import cases, glyphs
    sup = glyphs.from_config({})
    modules = cases.qr_modules(link) if link else None
    return sup.attach(ctx, modules) if sup is not None else ctx


# 40 characters: a long matter name of the kind Shenzhen's catalogue has
LONG_MATTER = "深圳市企业职工基本养老保险参保缴费证明开具及个人权益记录查询打印业务一次办结服务"
THEME_ITEMS = [{"code": "T1", "name": "营业执照"}, {"code": "T2", "name": "食品经营许可"},
               {"code": "T3", "name": "公共场所卫生许可证核发"}, {"code": "T4", "name": "消防安全检查"}]
TAGS = [{"code": 501, "label": "等待时间长", "indicator": 7},
        {"code": 502, "label": "服务态度差", "indicator": 4},
        {"code": 503, "label": "办事效率低", "indicator": 2},
        {"code": 504, "label": "一次性告知不到位来回跑", "indicator": 2},
        {"code": 505, "label": "其他原因", "indicator": 7}]
ENGLISH = {"prompt": "Please rate", "prompt_receipt": "Rate our service", "idle": "Welcome",
           "window": "Window %s", "thanks": "Thank you", "not_rated": "Not rated",
           "no_case": "Nothing to rate", "storage_full": "Storage full\nPlease wait",
           "busy": "Too fast\nPlease wait", "provisioning": "Setting up",
           "error": "Out of service", "tags_title": "Why?", "serial": "Case no.",
           "batch": "%d cases", "staff": "Staff", "ind_overall": "Overall",
           "ind_business": "Process", "ind_service": "Service", "submit": "Submit",
           "back": "Back", "confirm": "OK", "prev": "Prev", "next": "Next", "qr": "Scan to rate",
           "level1": "Excellent", "level2": "Good", "level3": "Fair", "level4": "Poor",
           "level5": "Very poor", "maint_hint": "Please ask our staff", "code": "Code %s",
           "left": "%d s left", "scan": "Scan with your\nphone to rate later",
           "on_duty": "On duty:"}
ENGLISH_TAGS = [{"code": 501, "label": "Long wait", "indicator": 7},
                {"code": 502, "label": "Unfriendly staff", "indicator": 4},
                {"code": 505, "label": "Other", "indicator": 7}]


def _case(ctx, ask, **kw):
    view = {"screen": "case", "context": ctx, "ask": ask, "levels": {}, "item_levels": {},
            "qr": "", "left_s": 57}
    view.update(kw)
    return view


def scenes():
    out = []
    qr_ctx = _gateway_ctx(_ctx(qr=LINK), LINK)
    for profile in PROFILES:
        touch = profile != "five_button"
        ask = ALL if touch else (IND_OVERALL,)
        big = profile == "touch480"
        qr_tap = [("touch", 8 + 24, 320 - 8 - 24)] if big else [("touch", 6 + 18, 240 - 6 - 18)]

        def add(name, view, events=()):
            out.append((profile, name, view, list(events)))

        add("idle", {"screen": "idle", "window": "3", "staff_name": "李堃", "idle_text": "",
                     "texts": {"hall": "深圳市民中心 行政服务大厅"}})
        add("case", _case(qr_ctx if touch else _ctx(), ask, qr=LINK if touch else ""))
        add("case_ext_a", _case(_gateway_ctx(_ctx(staff_name="王䶮明")), ask))
        add("case_ext_b", _case(_gateway_ctx(_ctx(staff_name="李𠈌", staff_id="B0042")), ask))
        add("case_long", _case(_gateway_ctx(_ctx(matter_name=LONG_MATTER, staff_name="欧阳䶮明",
                                                 staff_id="综窗-017号",
                                                 serials=["SZ-2024-11-01-000123-0007"])), ask))
        add("case_batch", _case(_ctx(staff_name="朱镕", serials=[
            "SZ20241101000201", "SZ20241101000202", "SZ20241101000203"]), ask))
        add("case_receipt", _case(_ctx(node=1, indicators=4), (IND_SERVICE,)))
        add("case_missing_glyph", _case(_ctx(staff_name="王\U000F0001"), ask))
        theme = _case(_ctx(matter_name="我要开餐馆", items=THEME_ITEMS), (IND_OVERALL,))
        add("case_theme", theme)
        if touch:
            add("case_chosen", _case(qr_ctx, ask, qr=LINK, levels={"overall": 2, "business": 1,
                                                                    "service": 1}))
            next_x = 480 - 26 + 5 if big else 320 - 20 + 5
            add("case_theme_item", dict(theme, item_levels={"T2": 3}),
                [("touch", next_x, 20)] * 2)
            add("case_qr", _case(qr_ctx, ask, qr=LINK), qr_tap)
            add("case_large", _case(qr_ctx, ask, qr=LINK, large_text=1))
        add("case_english", _case(_ctx(staff_name="Anna Müller", staff_id="EN-07",
                                       matter_name="Residence permit for foreigners"), ask,
                                  texts=ENGLISH))
        add("tags", {"screen": "tags", "tags": TAGS, "cursor": 0, "chosen": []})
        add("tags_chosen", {"screen": "tags", "tags": TAGS, "cursor": 3, "chosen": [502, 504]})
        add("tags_english", {"screen": "tags", "tags": ENGLISH_TAGS, "cursor": 1, "chosen": [502],
                             "texts": ENGLISH})
        for screen in ("thanks", "not_rated", "no_case", "storage_full", "busy"):
            add(screen, {"screen": screen})
        add("provisioning", {"screen": "provisioning", "device": "EV-3F2A91"})
        add("error", {"screen": "error", "message": "config"})
        add("idle_english", {"screen": "idle", "window": "12", "staff_name": "Anna Müller",
                             "texts": ENGLISH})
        add("thanks_english", {"screen": "thanks", "texts": ENGLISH})
        add("error_english", {"screen": "error", "message": "flash", "texts": ENGLISH})
        if touch:
            add("idle_large", {"screen": "idle", "window": "3", "staff_name": "李堃",
                               "large_text": 1})
            add("tags_large", {"screen": "tags", "tags": TAGS, "cursor": 0, "chosen": [501],
                               "large_text": 1})
    return out


def make_board(profile, fs_root):
    if profile == "touch480":
        from firmware.boards.sim_io import panel_board
        return panel_board({"fs_root": fs_root})
    from firmware.boards.sim import make_board as sim_board
    return sim_board({"profile": profile, "fs_root": fs_root})


def render(profile, view, events, font, fs_root):
    """The board after drawing the scene; the font's supplement holds the context's glyphs, as
    the device's does once the CONTEXT arrived."""
    from firmware.ui.ui import Ui
    board = make_board(profile, fs_root)
    ctx = view.get("context") or {}
    font.supplement.add_all(ctx.get("glyphs") or ())
    ui = Ui(board, font)
    ui.render(view)
    for ev in events:
        ui.action(view, tuple(ev))
    return board


def rgb_rows(board, scale):
    """The screen as PNG scanlines (filter byte 0, RGB8), each pixel scale x scale."""
    d = board.display
    w, h = d.width, d.height
    if board.profile == "five_button":
        colours = (bytes(OLED_OFF) * scale, bytes(OLED_ON) * scale)
    else:
        from firmware.ui.colors import PALETTE
        colours = tuple(bytes(c) * scale for c in PALETTE)
    px = d.pixel
    out = bytearray()
    for y in range(h):
        row = b"\x00" + b"".join(colours[px(x, y)] for x in range(w))
        out += row * scale
    return w * scale, h * scale, bytes(out)


def png_bytes(board, scale):
    w, h, raw = rgb_rows(board, scale)

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def main(argv=None):
    p = argparse.ArgumentParser(description="Render every evaluator screen as PNG (sim boards).")
    p.add_argument("--out", default=OUT)
    p.add_argument("--only", default="")
    p.add_argument("--font", default=FONT)
    args = p.parse_args(argv)
    from firmware.ui.font import Font
    import tempfile
    os.makedirs(args.out, exist_ok=True)
    fs_root = tempfile.mkdtemp(prefix="screens-fs-")
    n = 0
    for profile, name, view, events in scenes():
        if args.only and args.only not in name:
            continue
        font = Font(args.font)
        board = render(profile, view, events, font, fs_root)
        font.close()
        with open(os.path.join(args.out, "%s-%s.png" % (profile, name)), "wb") as f:
            f.write(png_bytes(board, SCALE[profile]))
        n += 1
    print("%d screenshots in %s" % (n, args.out))


if __name__ == "__main__":
    main()
