"""What a CONTEXT carries besides text (SPEC.md 3.8-3.10): glyph bitmaps the device's font lacks,
the rate-later QR code as a module matrix, and the CONFIG volume / large-text wire values.

The codec checks kinds and byte limits; the rules here are the ones a table cannot say (a glyph's
bitmap length follows its width, a matrix's length follows its side). A device that meets a bad
glyph or matrix ignores that one item and still shows the case: a supplement never blocks a case.
"""

# The numbers schema.py's CONTEXT and CONFIG tables use; kept here so that a device's screen code
# can check a glyph without loading the message tables.
GLYPH_HEIGHT = 16
MAX_GLYPHS = 24                 # 24 wide glyphs take 24 * 42 = 1,008 bytes: one record's worth
QR_MIN, QR_MAX = 21, 57         # QR versions 1..10: N = 17 + 4 * version modules per side
QR_MODULES_BYTES = 1 + (QR_MAX * QR_MAX + 7) // 8
VOLUME_MAX = 10                 # wire volume = 1 + level (1 = mute, 11 = loudest)
LARGE_TEXT_OFF, LARGE_TEXT_ON = 1, 2


def glyph_bytes(width):
    """Bytes of one bitmap of this width (16 rows of width/8 bytes)."""
    return GLYPH_HEIGHT * (width >> 3)


def glyph_ok(glyph):
    """True when a decoded GLYPH item can be drawn: width 8 or 16 and the bitmap that long, for a
    code point that is a character (not a surrogate, not a control)."""
    cp = glyph.get("cp", 0)
    width = glyph.get("width", 0)
    bits = glyph.get("bits", b"")
    if width != 8 and width != 16:
        return False
    if cp < 0x20 or 0xD800 <= cp <= 0xDFFF or 0x7F <= cp <= 0x9F:
        return False
    return len(bits) == glyph_bytes(width)


def qr_size(data):
    """Modules per side of a valid qr_modules value, else 0 (draw no QR code)."""
    if not data:
        return 0
    n = data[0]
    if n < QR_MIN or n > QR_MAX or (n - QR_MIN) % 4:
        return 0
    if len(data) != 1 + (n * n + 7) // 8:
        return 0
    return n


def qr_dark(data, n, x, y):
    """True when module (x, y) of the matrix is dark; row-major, most significant bit first."""
    i = y * n + x
    return bool(data[1 + (i >> 3)] & (0x80 >> (i & 7)))


def qr_pack(rows):
    """qr_modules bytes of a square matrix given as rows of 0/1 (1 = dark)."""
    n = len(rows)
    if n < QR_MIN or n > QR_MAX or (n - QR_MIN) % 4:
        raise ValueError("a QR matrix has 21..57 modules per side in steps of 4, not %d" % n)
    out = bytearray(1 + (n * n + 7) // 8)
    out[0] = n
    i = 0
    for row in rows:
        if len(row) != n:
            raise ValueError("the QR matrix is not square")
        for cell in row:
            if cell:
                out[1 + (i >> 3)] |= 0x80 >> (i & 7)
            i += 1
    return bytes(out)


def volume_wire(level):
    """CONFIG `volume` for a volume of 0 (mute) .. 10: the wire value is 1 + level (0 = keep)."""
    if not 0 <= level <= VOLUME_MAX:
        raise ValueError("volume is 0..%d" % VOLUME_MAX)
    return level + 1


def volume_level(wire, current):
    """The volume 0..10 a CONFIG `volume` value sets; `current` when it is 0 (absent: keep)."""
    return wire - 1 if wire else current


def large_text_wire(on):
    """CONFIG `large_text` for large text on or off: 2 or 1 (0 = keep)."""
    return LARGE_TEXT_ON if on else LARGE_TEXT_ON - 1


def large_text_on(wire, current):
    """Whether a CONFIG `large_text` value turns large text on; `current` when it is 0 (keep)."""
    return wire == LARGE_TEXT_ON if wire else current
