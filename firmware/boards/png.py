"""Minimal PNG writer for the sim board's screenshots (8-bit RGB, no filter). Uses zlib where it
exists (CPython); elsewhere it writes stored (uncompressed) deflate blocks, still a valid PNG."""

import struct

try:
    import zlib
except ImportError:
    zlib = None


def _crc32(data, crc=0):
    if zlib is not None:
        return zlib.crc32(data, crc) & 0xFFFFFFFF
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _stored_zlib(raw):
    out = bytearray(b"\x78\x01")
    a, b = 1, 0
    for byte in raw:
        a = (a + byte) % 65521
        b = (b + a) % 65521
    pos = 0
    while True:
        block = raw[pos:pos + 65535]
        pos += len(block)
        last = 1 if pos >= len(raw) else 0
        out += struct.pack("<BHH", last, len(block), len(block) ^ 0xFFFF) + block
        if last:
            break
    return bytes(out + struct.pack(">I", (b << 16) | a))


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", _crc32(kind + data))


def write_png(path, width, height, rgb_at, scale=1):
    """rgb_at(x, y) -> (r, g, b); each source pixel becomes a scale x scale block."""
    raw = bytearray()
    for y in range(height):
        row = bytearray(b"\x00")
        for x in range(width):
            row += bytes(rgb_at(x, y)) * scale
        raw += bytes(row) * scale
    raw = bytes(raw)
    data = zlib.compress(raw, 9) if zlib is not None else _stored_zlib(raw)
    ihdr = struct.pack(">IIBBBBB", width * scale, height * scale, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
