"""The glyph supplement cache (SPEC.md 3.8): bitmaps a CONTEXT brought for characters the font
file lacks (a staff name with 䶮 or 𠈌), kept by code point so the screens draw them like any glyph.

    sup = Glyphs(); sup.add_all(context["glyphs"]); sup.get(0x4DAE) -> (16, 32 bytes of rows)

RAM: nothing until the first glyph arrives; then one bytearray of `size` 32-byte slots (32: one
CONTEXT's 24 and more) and a small dict code point -> slot, about 1.6 KiB in all. When full, the
least recently used glyph gives its slot up. A malformed glyph is refused and counted; the case is
shown all the same.
"""

_SLOT = 32   # bytes of a 16x16 glyph; an 8x16 one uses the first half


class Glyphs:
    def __init__(self, size=32):
        self.size = size
        self._bits = bytearray()     # size * 32 bytes, made on the first add
        self._width = bytearray()
        self._slot = {}          # code point -> slot
        self._order = []         # code points, least recently used first
        self.rejected = 0

    def __len__(self):
        return len(self._slot)

    def add(self, glyph):
        """Keep one GLYPH record ({cp, width, bits}); False (and counted) if it is malformed:
        width not 8 or 16, bits not 16 rows of width/8 bytes, or a control or surrogate code
        point (protocol.supplement.glyph_ok says the same, for the gateway's side)."""
        cp = glyph.get("cp", 0)
        w = glyph.get("width", 0)
        bits = glyph.get("bits", b"")
        if (w != 8 and w != 16) or len(bits) != 2 * w or cp < 0x20 or 0x7F <= cp <= 0x9F \
                or 0xD800 <= cp <= 0xDFFF:
            self.rejected += 1
            return False
        if not self._bits:
            self._bits = bytearray(self.size * _SLOT)
            self._width = bytearray(self.size)
        slot = self._slot.get(cp)
        if slot is not None:
            self._order.remove(cp)
        elif len(self._order) < self.size:
            slot = len(self._order)
        else:
            slot = self._slot.pop(self._order.pop(0))
        self._slot[cp] = slot
        self._order.append(cp)
        at = slot * _SLOT
        self._bits[at:at + len(bits)] = bits
        self._width[slot] = w
        return True

    def add_all(self, glyphs):
        n = 0
        for g in glyphs:
            if self.add(g):
                n += 1
        return n

    def width(self, cp):
        slot = self._slot.get(cp)
        return 0 if slot is None else self._width[slot]

    def get(self, cp):
        """(width, bitmap rows MONO_HLSB) of a kept glyph, or None."""
        slot = self._slot.get(cp)
        if slot is None:
            return None
        if self._order[-1] != cp:
            self._order.remove(cp)
            self._order.append(cp)
        w = self._width[slot]
        at = slot * _SLOT
        return w, memoryview(self._bits)[at:at + 2 * w]
