"""Which release directory boots (SPEC.md 3.10): the pointer file, trial mode, rollback.

The pointer `boot.json` in the data root names the running release:

    {"base": "rel/a", "release": <id hex>, "version": "1.1.0", "state": 3, "why": 0,
     "trial": 1, "boots": 2, "limit": 3, "prev": {"base": "", "release": "", "version": "1.0.0"},
     "news": 1}

`base` "" (or no pointer at all) is the release tools/flash.py put on the filesystem's top. Every
change is one atomic file replacement (Fs.write_atomic), so a power cut leaves the old or the new
pointer and the device boots one release or the other, never neither. A switch writes a pointer
on trial; every boot of a trial release counts one in `boots` before the release is imported
(boot()), the running release confirms it once it is back online (confirm()); a boot that finds
`limit` trial boots already spent goes back to `prev` (rollback()). `news` says the gateway has
not yet been told the state. This module is the factory release's: it runs before any release is
chosen, imports nothing of ours but flashfs, and main.py drops it again after the boot.
"""

import json

from firmware.flashfs import join

POINTER = "boot.json"
TRIAL_BOOTS = 3
# protocol.ota's numbers (tests/test_fw_ota.py checks they agree): not imported, so that a boot
# loads no hashing or MAC code
ST_SWITCHED = 3
ST_CONFIRMED = 4
ST_ROLLED_BACK = 5
WHY_BOOT_FAILED = 9
WHY_NO_CONFIRM = 10


def read(fs, root):
    """The pointer, or {} (boot the top release) when there is none or it is unreadable."""
    raw = fs.read(join(root, POINTER))
    if not raw:
        return {}
    try:
        p = json.loads(raw)
    except ValueError:
        return {}
    return p if isinstance(p, dict) else {}


def write(fs, root, pointer):
    fs.write_atomic(join(root, POINTER), json.dumps(pointer).encode())


def boot(fs, root):
    """Count this boot if the pointer is on trial, roll back when the trial has spent its boots;
    the base directory ("" = the top) to run. A flash that cannot be written boots what the
    pointer names (the boot count is then lost, never the release)."""
    p = read(fs, root)
    if p.get("trial"):
        boots = _count(p.get("boots")) + 1
        if boots > (_count(p.get("limit")) or TRIAL_BOOTS):
            p = rollback(p, WHY_BOOT_FAILED)
        else:
            p["boots"] = boots
            p["news"] = 1
        try:
            write(fs, root, p)
        except OSError:
            pass
    base = p.get("base", "")
    return base if isinstance(base, str) else ""


def _count(value):
    """A count from the pointer; 0 for anything that is not a small whole number."""
    return value if isinstance(value, int) and 0 <= value < 1000 else 0


def switch(fs, root, base, release, version, limit=TRIAL_BOOTS):
    """Point at a new release on trial: the one write that switches."""
    cur = read(fs, root)
    prev = {"base": cur.get("base", ""), "release": cur.get("release", ""),
            "version": cur.get("version", "")}
    p = {"base": base, "release": release, "version": version, "state": ST_SWITCHED, "why": 0,
         "trial": 1, "boots": 0, "limit": limit, "prev": prev, "news": 1}
    write(fs, root, p)
    return p


def confirm(fs, root, p):
    """The trial release is online: it stays."""
    p = dict(p)
    p["trial"] = 0
    p["state"] = ST_CONFIRMED
    p["news"] = 1
    p.pop("prev", None)
    write(fs, root, p)
    return p


def rollback(p, why):
    """The pointer back at the previous release, recording what failed and why (not written)."""
    prev = p.get("prev") or {}
    return {"base": prev.get("base", ""), "release": prev.get("release", ""),
            "version": prev.get("version", ""), "state": ST_ROLLED_BACK, "why": why, "trial": 0,
            "failed": p.get("release", ""), "failed_version": p.get("version", ""),
            "boots": p.get("boots", 0), "news": 1}
