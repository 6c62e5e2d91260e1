"""Render every screen of the evaluator on both boards (sim) as PNGs.

    python tools/screenshots.py --out /tmp/shots          # all scenes
    python tools/screenshots.py --out DIR --only case      # scenes whose name contains "case"

Each scene is (profile, name, view, events): the view is drawn with Ui.render, then the raw events
(if any) go through Ui.action, as the flow would send them (e.g. the touch theme's next page).
tests/test_fw_ui_screens.py renders the same scenes and compares them pixel by pixel with the
reviewed references in tests/screenshots/ref/<profile>-<name>.png (refresh them with
`python tools/screenshots.py --out tests/screenshots/ref` after reviewing the change).
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

FONT = os.path.join(ROOT, "firmware", "fonts", "unifont16.bin")

IND_OVERALL, IND_BUSINESS, IND_SERVICE = 1, 2, 4
ALL = (IND_OVERALL, IND_BUSINESS, IND_SERVICE)


def _ctx(**kw):
    ctx = {"case_id": 7, "window": "3", "staff_id": "A0123", "staff_name": "王喆",
           "matter_code": "440300-001", "matter_name": "居民身份证换领",
           "serials": ["SZ20241101000123"], "node": 3, "indicators": 7}
    ctx.update(kw)
    return ctx


LONG_MATTER = "深圳市企业职工基本养老保险参保缴费证明开具及个人权益记录查询打印"
THEME_ITEMS = [{"code": "T1", "name": "营业执照"}, {"code": "T2", "name": "食品经营许可"},
               {"code": "T3", "name": "公共场所卫生许可证核发"}, {"code": "T4", "name": "消防安全检查"}]
TAGS = [{"code": 501, "label": "等待时间长", "indicator": 7},
        {"code": 502, "label": "服务态度差", "indicator": 4},
        {"code": 503, "label": "办事效率低", "indicator": 2},
        {"code": 504, "label": "一次性告知不到位来回跑", "indicator": 2},
        {"code": 505, "label": "其他原因", "indicator": 7}]


def scenes():
    out = []
    for profile in ("five_button", "touch"):
        touch = profile == "touch"
        ask = ALL if touch else (IND_OVERALL,)

        def add(name, view, events=()):
            out.append((profile, name, view, list(events)))

        add("idle", {"screen": "idle", "window": "3", "staff_name": "李堃", "idle_text": ""})
        add("case", {"screen": "case", "context": _ctx(), "ask": ask, "levels": {},
                     "item_levels": {}, "qr": ""})
        add("case_long", {"screen": "case", "context": _ctx(matter_name=LONG_MATTER, staff_name="李堃",
                                                            staff_id="B20240017"),
                          "ask": ask, "levels": {}, "item_levels": {}, "qr": ""})
        add("case_batch", {"screen": "case", "context": _ctx(
            staff_name="朱镕", serials=["SZ20241101000201", "SZ20241101000202", "SZ20241101000203"]),
            "ask": ask, "levels": {}, "item_levels": {}, "qr": ""})
        add("case_receipt", {"screen": "case", "context": _ctx(node=1, indicators=4),
                             "ask": (IND_SERVICE,), "levels": {}, "item_levels": {}, "qr": ""})
        add("case_missing_glyph", {"screen": "case", "context": _ctx(staff_name="王\U0002A6A5"),
                                   "ask": ask, "levels": {}, "item_levels": {}, "qr": ""})
        theme = {"screen": "case", "context": _ctx(matter_name="我要开餐馆", items=THEME_ITEMS),
                 "ask": (IND_OVERALL,), "levels": {}, "item_levels": {}, "qr": ""}
        add("case_theme", theme)
        if touch:
            add("case_chosen", {"screen": "case", "context": _ctx(), "ask": ask,
                                "levels": {"overall": 2, "business": 1}, "item_levels": {},
                                "qr": "https://hp.example.gov.cn/r/7Q2F"})
            add("case_theme_page2", dict(theme, item_levels={"T2": 3}), [("touch", 96, 226)])
        add("tags", {"screen": "tags", "tags": TAGS, "cursor": 0, "chosen": []})
        add("tags_chosen", {"screen": "tags", "tags": TAGS, "cursor": 3, "chosen": [502, 504]})
        for screen in ("thanks", "not_rated", "no_case", "storage_full", "busy"):
            add(screen, {"screen": screen})
        add("provisioning", {"screen": "provisioning", "device": "EV-3F2A91"})
        add("error", {"screen": "error", "message": "配置文件损坏：config.json"})
    return out


def render(profile, view, events, font, fs_root):
    from firmware.boards.sim import make_board
    from firmware.ui.ui import Ui
    board = make_board({"profile": profile, "fs_root": fs_root})
    ui = Ui(board, font)
    ui.render(view)
    for ev in events:
        ui.action(view, ev)
    return board


def main(argv=None):
    p = argparse.ArgumentParser(description="Render every evaluator screen as PNG (sim boards).")
    p.add_argument("--out", required=True)
    p.add_argument("--only", default="")
    p.add_argument("--font", default=FONT)
    args = p.parse_args(argv)
    from firmware.ui.font import Font
    font = Font(args.font)
    os.makedirs(args.out, exist_ok=True)
    import tempfile
    fs_root = tempfile.mkdtemp(prefix="screens-fs-")
    n = 0
    for profile, name, view, events in scenes():
        if args.only and args.only not in name:
            continue
        board = render(profile, view, events, font, fs_root)
        board.save_png(os.path.join(args.out, "%s-%s.png" % (profile, name)))
        n += 1
    print("%d screenshots in %s" % (n, args.out))


if __name__ == "__main__":
    main()
