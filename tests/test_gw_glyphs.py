"""gateway.glyphs: the device font's coverage read from its file, the font chain's bitmaps, and
what a CONTEXT carries within one record; gateway.cases: printable staff ids and serials."""

import pytest

from firmware.ui.font import Font
from gateway import glyphs
from gateway.cases import CaseError, parse_event, qr_modules
from gateway.qr_links import LinkSigner
from protocol import codec, schema, supplement
from tools import build_font

FONT = build_font.DEFAULT_OUT
UNIFONT_OTF = glyphs.DEFAULT_FONTS[0]


@pytest.fixture(scope="module")
def sup():
    alarms = []
    s = glyphs.from_config({}, alarm=lambda name, detail: alarms.append((name, detail)))
    s.alarms = alarms
    return s


def test_coverage_read_by_the_gateway_is_the_devices_own(sup):
    font = Font(FONT, cache=0)
    for cp in list(range(0x20, 0x3100)) + list(range(0x4E00, 0xA000)) + list(range(0xFF00, 0x10000)):
        assert sup.coverage.has(cp) == (font._find(cp) is not None), hex(cp)
    assert sup.coverage.glyph_count == font.glyph_count


def test_coverage_of_a_dense_file(tmp_path):
    out = tmp_path / "mini.bin"
    build_font.main(["--chars", "王喆", "--out", str(out)])
    cov = glyphs.read_coverage(str(out))
    assert cov.has(ord("王")) and cov.has(ord("喆")) and cov.has(ord("A")) and not cov.has(ord("李"))
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"HFNT\x09" + bytes(11))
    with pytest.raises(glyphs.FontFileError):
        glyphs.read_coverage(str(bad))


def test_unifont_from_the_chain_is_pixel_identical_to_the_devices_glyphs():
    """The baseline and cell are right: the OTF rendered at 16 px equals the .hex bitmaps."""
    chain = glyphs.FontChain([UNIFONT_OTF])
    font = Font(FONT, cache=0)
    for ch in "王喆居民A9（":
        width, bits, path = chain.glyph(ord(ch))
        assert (width, bits) == font.glyph(ord(ch)) and path == UNIFONT_OTF, ch


def test_the_chain_falls_through_to_the_font_that_has_it_and_caches():
    chain = glyphs.FontChain(glyphs.DEFAULT_FONTS)
    w, bits, path = chain.glyph(0x2020C)           # 𠈌, Extension B: not in Unifont 15.0
    assert w == 16 and len(bits) == 32 and any(bits) and "BabelStone" in path
    assert chain.glyph(0x4DAE)[2] == UNIFONT_OTF    # 䶮, Extension A: Unifont has it
    assert chain.glyph(0x3FFFD) is None             # unassigned: nobody
    hits = chain.glyph.cache_info().hits
    chain.glyph(0x2020C)
    assert chain.glyph.cache_info().hits == hits + 1


def test_only_the_characters_the_device_lacks_are_sent_and_a_missing_one_is_alarmed(sup):
    del sup.alarms[:]
    ctx = {"case_id": 9, "node": 3, "staff_name": "王䶮明", "matter_name": "居民身份证换领",
           "staff_id": "综窗-𠈌7", "serials": ["粤B-\U0003FFFD"],
           "items": [{"code": "T1", "name": "龥"}]}
    out = sup.attach(ctx)
    assert [g["cp"] for g in out["glyphs"]] == [0x4DAE, 0x9FA5, 0x2020C]   # name first
    assert all(supplement.glyph_ok(g) for g in out["glyphs"])
    assert sup.alarms == [("glyph_missing", "U+3FFFD: no font of the chain has it; the evaluator"
                           " shows a placeholder")]
    assert "glyphs" not in sup.attach({"case_id": 9, "node": 3, "staff_name": "王喆"})


def _link_of_modules(n):
    """QR modules of a link whose code is n modules wide (version 4-M holds 62 bytes, 10-M 213)."""
    for length in range({33: 20, 57: 160}[n], 300):
        data = qr_modules("https://pj.example.gov.cn/r?t=" + "x" * length)
        if data is not None and data[0] == n:
            return data
    raise AssertionError(n)


def test_the_specs_worst_case_fits_one_record(sup):
    """SPEC 3.5: a 40-character matter, a name of 4 rare characters with their glyphs, a 20-character
    non-ASCII staff id and a QR matrix of 33 modules in one CONTEXT, RS-485 frame and MQTT alike."""
    del sup.alarms[:]
    ctx = {"case_id": 4294967295, "window": "W" * 16, "staff_id": "综合窗口" * 5,
           "staff_name": "\U0002A700\U0002B740\U0002B820\U0002CEB0", "matter_code": "M" * 40,
           "matter_name": "不动产登记" * 8, "serials": ["粤B-2026-000126"], "node": 3,
           "indicators": 7, "tags_version": 4294967295, "deadline": 4102444800,
           "qr": "U1oyMDI2MDEwMTAwMDEyNiM0.1767830400.kM2pQ8vR4sT6uW1x", "time": 4102444800}
    out = sup.attach(ctx, _link_of_modules(33))
    assert len(out["glyphs"]) == 4 and out["qr_modules"][0] == 33 and sup.alarms == []
    size = len(codec.encode(schema.CONTEXT, out))
    assert size <= 700 and len(codec.to_json(schema.CONTEXT, out).encode()) < 3000
    print({"context_bytes": size})


def test_what_does_not_fit_is_left_out_name_first_then_qr_then_the_rest(sup):
    del sup.alarms[:]
    rare = [chr(0x2A700 + i) for i in range(60)]
    ctx = {"case_id": 1, "node": 3, "staff_name": "".join(rare[:4]), "matter_name": "".join(rare[4:60])}
    out = sup.attach(ctx, _link_of_modules(57))
    raw = codec.encode(schema.CONTEXT, out)          # never over the limit: encode would refuse
    assert len(raw) <= schema.MAX_RECORD_BYTES
    cps = [g["cp"] for g in out["glyphs"]]
    assert cps[:4] == [ord(c) for c in rare[:4]] and "qr_modules" in out
    assert 4 < len(cps) < 60 and cps == [ord(c) for c in rare[:len(cps)]]
    assert [a[0] for a in sup.alarms] == ["glyph_overflow"]
    assert "%d glyph(s)" % (60 - len(cps)) in sup.alarms[0][1]


def test_qr_modules_is_the_signed_link_at_error_correction_m():
    signer = LinkSigner("s" * 32, "https://pj.example.gov.cn/r")
    link = signer.link("SZ20260101000126#4", 1767830400)
    data = qr_modules(link)
    n = supplement.qr_size(data)
    from gateway.qr_links import matrix
    assert [[int(supplement.qr_dark(data, n, x, y)) for x in range(n)] for y in range(n)] == matrix(link)
    assert qr_modules("https://x.cn/?t=" + "y" * 400) is None       # beyond version 10: none


def test_staff_ids_and_serials_are_any_printable_text_but_never_control_characters():
    base = {"window": "07", "node": "completion", "matter_name": "居民身份证换领"}
    ev = parse_event(dict(base, serials=["粤B-2026 000126"], staff_id="综窗-07"))
    assert ev["serials"] == ["粤B-2026 000126"] and ev["staff_id"] == "综窗-07"
    for bad in ({"serials": ["SZ\x07"]}, {"serials": ["S" * 41]}, {"serials": ["ok"], "staff_id": "A\n1"},
                {"serials": ["ok"], "staff_id": "工" * 21}):
        with pytest.raises(CaseError) as e:
            parse_event(dict(base, **bad))
        assert e.value.status == 400


def test_no_device_font_no_supplement(tmp_path):
    assert glyphs.from_config({"glyphs": {"device_font": str(tmp_path / "none.bin")}}) is None
    s = glyphs.from_config({"glyphs": {"fonts": [str(tmp_path / "none.ttf")]}})
    assert s.chain.paths == [] and s.glyphs(["\U0002020C"]) == []


def test_a_case_too_big_for_one_context_is_refused_before_anything_is_kept(tmp_path):
    """Printable serials make a batch of 16 Chinese serials possible: 1,900 bytes, no record."""
    from gateway.cases import Cases
    from gateway.registry import Registry
    from gateway.store import Store
    store = Store(str(tmp_path / "outbox.db"))
    pushed = []
    cases = Cases("hall-1", store, Registry([{"id": "win07", "window": "07", "key": "5c" * 32,
                                                "board": "button5"}]),
                  lambda device, ctx: pushed.append(ctx), rating_days=7)
    cases.sign_in("07", {"staff_id": "综窗-07", "staff_name": "王喆"})
    body = {"window": "07", "node": "completion", "matter_name": "居民身份证换领",
            "serials": ["粤B%02d" % i + "号" * 36 for i in range(16)]}
    with pytest.raises(CaseError) as e:
        cases.event(body)
    assert e.value.status == 400 and "at most 1024" in e.value.detail
    assert pushed == [] and cases.stats["opened"] == 0 and store.backlog()["cases"] == 0
    status, _ = cases.event(dict(body, serials=body["serials"][:4]))      # four of them fit
    assert status == 201 and len(codec.encode(schema.CONTEXT, pushed[0])) <= schema.MAX_RECORD_BYTES
    store.close()


def test_the_gateways_status_counts_glyphs_sent_and_missing(tmp_path):
    from gateway import config
    from gateway.app import Gateway
    cfg = config.from_dict({"gateway": {"hall": "h1", "data_dir": str(tmp_path)},
                            "mqtt": {"host": "127.0.0.1", "port": 1}})
    gw = Gateway(cfg)
    gw.cases.glyphs.attach({"case_id": 1, "node": 3, "staff_name": "王䶮\U0003FFFD"})
    assert gw.status()["glyphs"] == {"sent": 1, "missing": 1, "overflow": 0}
    assert gw.alarms.get("glyph_missing") == 1
