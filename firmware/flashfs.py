"""The few file operations the firmware's durable state needs, behind one object.

Everything durable (outbox, counters, config) goes through an Fs, so tests can swap in a fake
that cuts the power between any two operations. Paths are plain strings joined with "/".
"""

import os


class Fs:
    """The real filesystem (LittleFS on the device, the host's on CPython)."""

    def open(self, path, mode):
        return open(path, mode)

    def rename(self, old, new):
        os.rename(old, new)  # atomic replace on LittleFS and POSIX

    def remove(self, path):
        os.remove(path)

    def exists(self, path):
        try:
            os.stat(path)
            return True
        except OSError:
            return False

    def mkdir(self, path):
        if not self.exists(path):
            os.mkdir(path)

    def read(self, path):
        """Whole file as bytes, or None when it does not exist."""
        try:
            f = self.open(path, "rb")
        except OSError:
            return None
        try:
            return f.read()
        finally:
            f.close()

    def write_atomic(self, path, data):
        """Replace `path` with `data` so that a power cut leaves either the old or the new file."""
        tmp = path + ".tmp"
        f = self.open(tmp, "wb")
        try:
            f.write(data)
            f.flush()
        finally:
            f.close()
        self.rename(tmp, path)


def join(root, name):
    if not root or root.endswith("/"):
        return root + name
    return root + "/" + name
