"""The glyph supplement (SPEC.md 3.8): bitmaps of the characters the evaluators' font lacks, drawn
from a chain of system fonts and sent with the CONTEXT.

    sup = glyphs.from_config(cfg.raw, alarm=gw.alarm)
    ctx = sup.attach(ctx, qr_modules)     # adds "glyphs" (and "qr_modules") within 1,024 bytes

The device's coverage is read from the very font file the firmware carries (firmware/fonts/*.bin,
format in tools/build_font.py: a header and a run table), so the gateway sends exactly what the
device cannot draw. Fonts are tried in order ([glyphs] fonts = [...], default DEFAULT_FONTS that
exist); a font "has" a character when FreeType draws something other than its .notdef for it.
Rendering is Pillow/FreeType at 16 px without anti-aliasing, on the font file's baseline (row 14),
so GNU Unifont comes out pixel-identical to the device's own glyphs. A character no font has
raises the alarm `glyph_missing` naming U+XXXX; the device draws its placeholder for it.
"""

import bisect
import functools
import logging
import os
import struct
import threading
import unicodedata

from protocol import codec, schema

log = logging.getLogger("gateway.glyphs")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE_FONT = os.path.join(ROOT, "firmware", "fonts", "unifont16.bin")
DEFAULT_FONTS = (
    "/usr/share/fonts/opentype/unifont/unifont.otf",            # fonts-unifont: the device's look
    "/usr/share/fonts/opentype/unifont/unifont_upper.otf",
    "/usr/share/fonts/truetype/unifont/unifont.ttf",
    "/usr/share/fonts/truetype/unifont/unifont_upper.ttf",
    "/usr/share/fonts/truetype/babelstone/BabelStoneHan.ttf",   # fonts-babelstone-han: Ext B-H
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",   # fonts-noto-cjk
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
)
HEIGHT = schema.GLYPH_HEIGHT
BASELINE = 14          # rows above the baseline in the device font (Unifont: ascent 14, descent 2)
_NOT_A_CHAR = 0x10FFFD  # private use, assigned to nothing: what a font draws for a missing glyph
# Fields whose characters the device draws, in the order their glyphs are sent (SPEC 3.8).
NAME_FIELDS = ("staff_name",)
OTHER_FIELDS = ("matter_name", "items", "staff_id", "serials")


class FontFileError(ValueError):
    pass


class Coverage:
    """The code points a device font file holds: dense runs searched by bisection, plus the code
    points of its sparse runs."""

    def __init__(self, runs, scattered=()):
        self._runs = sorted(runs)                 # (first, last) inclusive
        self._firsts = [r[0] for r in self._runs]
        self._scattered = frozenset(scattered)
        self.glyph_count = sum(last - first + 1 for first, last in self._runs) + len(self._scattered)

    def has(self, cp):
        if cp in self._scattered:
            return True
        i = bisect.bisect_right(self._firsts, cp) - 1
        return i >= 0 and cp <= self._runs[i][1]


def read_coverage(path):
    """Coverage of a device font file (format: tools/build_font.py, versions 1 and 2)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 16 or blob[:4] != b"HFNT" or blob[4] not in (1, 2):
        raise FontFileError("%s is not a device font file (version 1 or 2)" % path)
    nruns = struct.unpack_from("<H", blob, 6)[0]
    if len(blob) < 16 + 12 * nruns:
        raise FontFileError("%s: run table truncated" % path)
    runs = []
    scattered = []
    for i in range(nruns):
        first, count, _, flags, offset = struct.unpack_from("<IHBBI", blob, 16 + 12 * i)
        if not flags:
            runs.append((first, first + count - 1))
            continue
        for block in range((count + 255) // 256):      # sparse: 42-byte entries, bitmap MSB first
            bits = blob[offset + 42 * block + 10:offset + 42 * block + 42]
            for k in range(min(256, count - 256 * block)):
                if bits[k >> 3] & (0x80 >> (k & 7)):
                    scattered.append(first + 256 * block + k)
    return Coverage(runs, scattered)


class FontChain:
    """Renders one code point from the first font of the chain that has it; results are cached."""

    def __init__(self, paths, cache_size=2048):
        self.paths = [p for p in paths if os.path.exists(p)]
        self._fonts = {}
        self._lock = threading.Lock()    # FreeType faces are not shared across threads safely
        self.glyph = functools.lru_cache(maxsize=cache_size)(self._glyph)

    def _font(self, path):
        entry = self._fonts.get(path)
        if entry is None:
            from PIL import ImageFont
            font = ImageFont.truetype(path, HEIGHT)
            mask = font.getmask(chr(_NOT_A_CHAR), mode="1")
            entry = self._fonts[path] = (font, (mask.size, bytes(mask)))
        return entry

    def _glyph(self, cp):
        """(width, bits, font path) from the first font that has cp, or None."""
        ch = chr(cp)
        with self._lock:
            for path in self.paths:
                font, notdef = self._font(path)
                mask = font.getmask(ch, mode="1")
                if (mask.size, bytes(mask)) == notdef:
                    continue
                width = _width(font, ch)
                return width, _draw(font, ch, width), path
        return None


def _width(font, ch):
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return 16
    return 8 if font.getlength(ch) <= 8 else 16


def _draw(font, ch, width):
    from PIL import Image, ImageDraw
    image = Image.new("1", (width, HEIGHT), 0)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"                       # no anti-aliasing: the device draws 1-bit
    draw.text((0, BASELINE), ch, font=font, fill=1, anchor="ls")
    return image.tobytes()                    # rows MSB first, width/8 bytes each: MONO_HLSB


def _texts(ctx, fields):
    for name in fields:
        value = ctx.get(name)
        if not value:
            continue
        if name == "items":
            for item in value:
                yield item.get("name", "")
        elif isinstance(value, list):
            yield from value
        else:
            yield value


def _item_size(glyph):
    body = len(codec.encode_fields(schema.GLYPH, glyph))
    return 1 + 1 + body                       # key 15 and a one-byte length (a glyph < 128 bytes)


def _bytes_size(data):
    n = len(data)
    return 2 + (1 if n < 128 else 2) + n      # key 16 takes two bytes


class Supplement:
    """What a CONTEXT needs beyond the device font; counts what it sends and what it cannot."""

    def __init__(self, coverage, chain, alarm=None, limit=schema.MAX_RECORD_BYTES):
        self.coverage = coverage
        self.chain = chain
        self.alarm = alarm
        self.limit = limit
        self.stats = {"sent": 0, "missing": 0, "overflow": 0}

    def missing(self, texts):
        """Code points of the texts that the device font lacks, first appearance first."""
        out = []
        seen = set()
        for text in texts:
            for ch in text:
                cp = ord(ch)
                if cp not in seen and not self.coverage.has(cp):
                    seen.add(cp)
                    out.append(cp)
        return out

    def glyphs(self, texts, skip=()):
        """GLYPH records for the characters of `texts` the device lacks (not those in `skip`);
        a character no font has raises `glyph_missing` and gets no record."""
        out = []
        for cp in self.missing(texts):
            if cp in skip:
                continue
            hit = self.chain.glyph(cp)
            if hit is None:
                self.stats["missing"] += 1
                self._alarm("glyph_missing", "U+%04X: no font of the chain has it; the evaluator"
                            " shows a placeholder" % cp)
                continue
            width, bits, _ = hit
            out.append({"cp": cp, "width": width, "bits": bits})
        return out

    def attach(self, ctx, qr_modules=None):
        """ctx with `glyphs` and `qr_modules` added, as much as fits in one record (SPEC 3.8):
        the staff name's glyphs, then the QR matrix, then the rest's glyphs."""
        ctx = dict(ctx)
        ctx.pop("glyphs", None)
        ctx.pop("qr_modules", None)
        size = len(codec.encode_fields(schema.CONTEXT_FIELDS, ctx))
        names = self.glyphs(_texts(ctx, NAME_FIELDS))
        others = self.glyphs(_texts(ctx, OTHER_FIELDS), skip=set(g["cp"] for g in names))
        chosen = []
        dropped = 0
        for glyph in names:
            size, ok = self._take(size, _item_size(glyph), len(chosen))
            if ok:
                chosen.append(glyph)
            else:
                dropped += 1
        if qr_modules:
            size, ok = self._take(size, _bytes_size(qr_modules), 0)
            if ok:
                ctx["qr_modules"] = qr_modules
            else:
                log.warning("case %s: the QR matrix does not fit the CONTEXT", ctx.get("case_id"))
        for glyph in others:
            size, ok = self._take(size, _item_size(glyph), len(chosen))
            if ok:
                chosen.append(glyph)
            else:
                dropped += 1
        if chosen:
            ctx["glyphs"] = chosen
        self.stats["sent"] += len(chosen)
        if dropped:
            self.stats["overflow"] += dropped
            self._alarm("glyph_overflow", "case %s: %d glyph(s) do not fit its CONTEXT; the"
                        " evaluator shows placeholders" % (ctx.get("case_id"), dropped))
        return ctx

    def _take(self, size, extra, count):
        if size + extra > self.limit or count >= schema.MAX_GLYPHS:
            return size, False
        return size + extra, True

    def _alarm(self, name, detail):
        if self.alarm is not None:
            self.alarm(name, detail)
        else:
            log.warning("%s: %s", name, detail)


def from_config(raw, alarm=None):
    """The hall's Supplement from the [glyphs] table: fonts (the chain), device_font (the
    evaluators' font file), cache (rendered glyphs kept). None when the device font is absent."""
    conf = (raw or {}).get("glyphs") or {}
    device_font = conf.get("device_font", DEVICE_FONT)
    if not os.path.exists(device_font):
        log.warning("no device font at %s: no glyph supplement is sent", device_font)
        return None
    chain = FontChain(conf.get("fonts", DEFAULT_FONTS), cache_size=int(conf.get("cache", 2048)))
    if not chain.paths:
        log.warning("none of the configured fonts exists: rare characters show as placeholders")
    return Supplement(read_coverage(device_font), chain, alarm=alarm)
