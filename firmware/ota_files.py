"""The few file steps an update takes besides Fs's own (firmware/ota.py): a file's length, bytes
at an offset, an append that returns only once the bytes are flushed, directories made on the way.
Each write step is one the tests' fake flash can cut (tests/fw_flash_support.py)."""

from firmware.flashfs import join


def size(fs, path):
    """Length of the file, 0 when it does not exist."""
    try:
        f = fs.open(path, "rb")
    except OSError:
        return 0
    try:
        return f.seek(0, 2)
    finally:
        f.close()


def read_at(fs, path, pos, n):
    f = fs.open(path, "rb")
    try:
        f.seek(pos)
        return f.read(n)
    finally:
        f.close()


def append(fs, path, data):
    f = fs.open(path, "ab")
    try:
        f.write(data)
        f.flush()
    finally:
        f.close()


def remove(fs, path):
    if fs.exists(path):
        fs.remove(path)


def mkdirs(fs, top, rel):
    """top/a, top/a/b, ... for a relative directory path `rel`."""
    cur = top
    for seg in rel.split("/"):
        if seg:
            cur = join(cur, seg)
            fs.mkdir(cur)
