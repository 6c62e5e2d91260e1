"""The bundle's code as a ROMFS image: MicroPython (1.25+) runs .mpy files in a ROMFS partition
in place from flash, so their bytecode and constants take no heap (tools/fw_heap.py measures it).

image(files) builds the image from the bundle's firmware/ and protocol/ trees with mpremote's
own writer (mpremote.romfs.VfsRomWriter, the code behind `mpremote romfs build`); the font,
main.py, board.json, the device config and the outbox stay on the normal filesystem. read()
parses an image back into {path: bytes} (the virtual device mounts its ROM region with it; the
tests check an image holds exactly the bundle's files).

Format (MicroPython extmod/vfs_rom.c): the magic b"\\xd2\\xcd\\x31", a varuint length, then
records of (varuint kind, varuint length, payload); a directory's payload is its name and its
records, a file's its name and a data record (verbatim, or a pointer to offset+length).
Varuints are big-endian groups of 7 bits, the high bit set on all but the last byte.
"""

from tools.flashkit.errors import BadInput

TREES = ("firmware", "protocol")   # bundle folders that go into the image
MAGIC = b"\xd2\xcd\x31"
_PADDING, _VERBATIM, _POINTER, _DIRECTORY, _FILE = 1, 2, 3, 4, 5


def in_image(path):
    return path.split("/", 1)[0] in TREES


def image(files):
    """ROMFS image bytes of the files (device path -> bytes) under TREES, in sorted order."""
    try:
        from mpremote.romfs import VfsRomWriter
    except ImportError:  # pragma: no cover - scripts/setup installs it
        raise BadInput("the ROMFS image needs mpremote: pip install 'hall-rating[tools]'") from None
    tree = {}
    for path in sorted(p for p in files if in_image(p)):
        node = tree
        parts = path.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = files[path]
    writer = VfsRomWriter()
    _write(writer, tree)
    return bytes(writer.finalise())


def _write(writer, node):
    for name in sorted(node):
        if isinstance(node[name], dict):
            writer.opendir(name)
            _write(writer, node[name])
            writer.closedir()
        else:
            writer.mkfile(name, node[name])


def _uint(data, i):
    value = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varuint at %d" % i)
        b = data[i]
        i += 1
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            return value, i


def image_size(data):
    """Bytes the image at the start of `data` occupies (a partition is usually larger), or None."""
    if bytes(data[:3]) != MAGIC:
        return None
    try:
        length, i = _uint(data, 3)
    except ValueError:
        return None
    return i + length


def read(data):
    """{path: bytes} of every file in a ROMFS image; ValueError when it is not a valid one."""
    data = bytes(data)
    size = image_size(data)
    if size is None or size > len(data):
        raise ValueError("not a ROMFS image")
    out = {}
    _, start = _uint(data, 3)
    _records(data, start, size, "", out)
    return out


def _records(data, i, end, prefix, out):
    while i < end:
        kind, i = _uint(data, i)
        length, i = _uint(data, i)
        body_end = i + length
        if body_end > end:
            raise ValueError("record runs past its parent at %d" % i)
        if kind in (_DIRECTORY, _FILE):
            n, j = _uint(data, i)
            name = data[j: j + n].decode("ascii")
            j += n
            if kind == _DIRECTORY:
                _records(data, j, body_end, prefix + name + "/", out)
            else:
                out[prefix + name] = _file_data(data, j, body_end)
        i = body_end  # padding, top-level data and unknown kinds are skipped, as the VFS does


def _file_data(data, i, end):
    while i < end:
        kind, i = _uint(data, i)
        length, i = _uint(data, i)
        if kind == _VERBATIM:
            return data[i: i + length]
        if kind == _POINTER:
            offset, j = _uint(data, i)
            size, _ = _uint(data, j)
            return data[offset: offset + size]
        i += length
    raise ValueError("file record without data")
