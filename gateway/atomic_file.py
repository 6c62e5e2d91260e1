"""Files the gateway rewrites whole (the device registry, the HTTP credentials, the broker's password
and ACL files): written under a temp name of their own, fsynced, then renamed over the old file.

mkstemp creates the temp file 0600, so a secret is never in a wider file, not even for an instant;
`prepare(fd)` may widen it (the broker's files) before a byte is written. Each writer has its own
temp name, so a concurrent writer of the same file (tools/flash.py registering offline) never
renames a half-written one. On any failure the temp file is removed and the error raised."""

import os
import tempfile


def write(path, data, prefix=None, prepare=None, sync_dir=False):
    """Replace `path` with `data` (bytes) atomically; `sync_dir` also makes the rename durable."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp",
                               prefix=prefix or "." + os.path.basename(path) + "-")
    try:
        if prepare is not None:
            prepare(fd)
        with os.fdopen(fd, "wb") as f:
            fd = None
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync_dir:
        sync_folder(folder)


def sync_folder(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
