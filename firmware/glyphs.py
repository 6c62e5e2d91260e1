"""The glyph supplement cache (SPEC.md 3.8): bitmaps a CONTEXT brought for characters the font
file lacks (a staff name with 䶮 or 𠈌), kept by code point so the screens draw them like any glyph.

    sup = Glyphs(); sup.add_all(context["glyphs"]); sup.get(0x4DAE) -> (16, 32 bytes of rows)

RAM: one bytearray of `size` 32-byte slots, allocated up front (no surprise later), plus a small
dict code point -> slot. When full, the least recently used glyph gives its slot to the new one.
"""

from protocol.supplement import glyph_ok

_SLOT = 32   # bytes of a 16x16 glyph; an 8x16 one uses the first half


class Glyphs:
    def __init__(self, size=48):
        self.size = size
        self._bits = bytearray(size * _SLOT)
        self._width = bytearray(size)
        self._cp = [-1] * size
        self._used = [0] * size          # last use, for least-recently-used replacement
        self._slot = {}                  # code point -> slot
        self._clock = 0
        self.rejected = 0                # glyphs refused as malformed (protocol.supplement.glyph_ok)

    def __len__(self):
        return len(self._slot)

    def add(self, glyph):
        """Keep one GLYPH record ({cp, width, bits}); False (and counted) if it is malformed."""
        if not glyph_ok(glyph):
            self.rejected += 1
            return False
        cp = glyph["cp"]
        slot = self._slot.get(cp)
        if slot is None:
            slot = self._free()
            old = self._cp[slot]
            if old >= 0:
                del self._slot[old]
            self._cp[slot] = cp
            self._slot[cp] = slot
        bits = glyph["bits"]
        at = slot * _SLOT
        self._bits[at:at + len(bits)] = bits
        self._width[slot] = glyph["width"]
        self._touch(slot)
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
        self._touch(slot)
        w = self._width[slot]
        at = slot * _SLOT
        return w, memoryview(self._bits)[at:at + 2 * w]

    def _touch(self, slot):
        self._clock += 1
        self._used[slot] = self._clock

    def _free(self):
        used = self._used
        best = 0
        for i in range(self.size):
            if self._cp[i] < 0:
                return i
            if used[i] < used[best]:
                best = i
        return best
