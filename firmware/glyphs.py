"""The glyph supplement cache (SPEC.md 3.8): bitmaps a CONTEXT brought for characters the font
file lacks (a staff name with 䶮 or 𠈌), kept by code point so the screens draw them like any glyph.

    sup = Glyphs(); sup.add_all(context["glyphs"]); sup.get(0x4DAE) -> (16, 32 bytes of rows)

RAM: nothing until a glyph arrives; then each kept glyph is the decoder's own bytes object (no
copy) in a dict, at most `size` of them (48: two CONTEXTs' worth), the least recently used
dropped first. A malformed glyph is refused and counted; the case is shown all the same.
"""


class Glyphs:
    def __init__(self, size=48):
        self.size = size
        self._g = {}             # code point -> (width, bits)
        self._order = []         # least recently used first
        self.rejected = 0

    def __len__(self):
        return len(self._g)

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
        if cp in self._g:
            self._order.remove(cp)
        elif len(self._order) >= self.size:
            del self._g[self._order.pop(0)]
        self._g[cp] = (w, bytes(bits))
        self._order.append(cp)
        return True

    def add_all(self, glyphs):
        n = 0
        for g in glyphs:
            if self.add(g):
                n += 1
        return n

    def width(self, cp):
        g = self._g.get(cp)
        return g[0] if g is not None else 0

    def get(self, cp):
        """(width, bitmap rows MONO_HLSB) of a kept glyph, or None."""
        g = self._g.get(cp)
        if g is not None and self._order[-1] != cp:
            self._order.remove(cp)
            self._order.append(cp)
        return g
