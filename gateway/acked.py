"""The store's `<db>-acked` sidecar: how many records were acknowledged as stored, to catch a
store file that comes back holding fewer (a -wal file lost after a kill, an old copy restored,
a salvage): `store_short` with the numbers, and the store goes on from what it holds."""

import logging
import os

log = logging.getLogger("gateway.store")


def _text(n):
    return b"%020d\n" % n     # fixed width: each write covers the last, in one page


class AckedSidecar:
    def __init__(self, path, alarm):
        self.path = path
        self.count = 0
        self._alarm = alarm
        self._fd = None

    def check(self, held, db_path):
        """At open: the file holds `held` records; alarm (and True) if fewer were held than
        acknowledged."""
        self.count = held
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as e:
                log.warning("no acknowledgement sidecar (%s): a short store goes unnoticed", e)
                return False
        said = os.pread(self._fd, 64, 0)
        try:
            said = int(said) if said else None
        except ValueError:
            log.warning("acknowledgement sidecar unreadable (%r): starting it afresh", said[:32])
            said = None
        short = said is not None and said > held
        if short:
            self._alarm("store_short", "%s holds %d stored records but %d were acknowledged: %d"
                        " missing" % (db_path, held, said, said - held))
        self.add(0)
        try:
            os.ftruncate(self._fd, len(_text(0)))   # an old longer text's tail
        except OSError:
            pass
        return short

    def add(self, n):
        """After each commit that stored something: one pwrite, no fsync. A killed process's write
        is in the page cache and survives; a power cut may lose it, which only makes the count
        lower (never a false alarm): the database itself was fsynced before this line."""
        self.count += n
        if self._fd is not None:
            try:
                os.pwrite(self._fd, _text(self.count), 0)
            except OSError:
                pass

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
