"""An over-the-air update played on a sim device with a fake flash, the gateway's side played by
the test: for tests/test_fw_ota*.py, on CPython and on MicroPython alike (no f-strings, no
pathlib). The fake flash keeps files by path, so the release directories live in it too."""

import hashlib
from binascii import hexlify

from fw_flash_support import FakeFlash, PowerCut
from fw_support import Rig
from firmware import boot_select
from firmware.boards.sim import Reboot
from protocol import ota, schema

RELEASE_KEY = hashlib.sha256(b"hall release key for tests").digest()
OTHER_KEY = hashlib.sha256(b"another hall's release key").digest()
CHUNK = 96

# The release provisioned onto the filesystem's top (bundle.json names its files) and the next one:
# one file changed, one new, the font and main.py the same (copied on the device, not sent).
FONT = bytes(range(256)) * 5
OLD = {"main.py": b"from firmware import main\nmain.run()\n", "fonts/f.bin": FONT,
       "firmware/app.mpy": b"M\x06old app " * 20}
NEW = {"main.py": OLD["main.py"], "fonts/f.bin": FONT,
       "firmware/app.mpy": "M\x06新 app 王䶮明 𠈌 ".encode() * 25, "firmware/extra.mpy": b"M\x06extra" * 30}


def _sha(data):
    return hexlify(hashlib.sha256(data).digest()).decode()


def release(files, version, boards=("five_button",)):
    """(manifest bytes, [file bytes in manifest order])."""
    manifest = ota.manifest_bytes(version, [(p, _sha(d), len(d)) for p, d in files.items()], boards)
    return manifest, [files[p] for p, _, _ in ota.parse_manifest(manifest)["files"]]


def factory_flash(root, cut_at=0, torn=0.5):
    """A fake flash holding the top release (OLD) as tools/flash.py provisions it."""
    flash = FakeFlash(torn=torn)
    top = root + "/app"
    listing = []
    for path in OLD:
        flash.files[top + "/" + path] = bytearray(OLD[path])
        listing.append('"%s": {"sha256": "%s", "size": %d}' % (path, _sha(OLD[path]), len(OLD[path])))
    flash.files[top + "/bundle.json"] = bytearray(('{"version": "1.0.0", "files": {%s}}'
                                                   % ", ".join(listing)).encode())
    flash.cut_at = cut_at
    return flash


class Unit:
    """One device on a fake flash, rebooted as main.run does: boot_select.boot first."""

    def __init__(self, root, flash, key=RELEASE_KEY, extra=None, clock=None, net=None):
        self.root = root
        self.flash = flash
        self.top = root + "/app"
        self.cfg_extra = {"release_key": hexlify(key).decode() if key else "", "app_top": self.top}
        for k in extra or ():
            self.cfg_extra[k] = extra[k]
        self.base = boot_select.boot(flash, root + "/data")
        self.rig = Rig("five_button", root=root + "/data", fs=flash, extra=self.cfg_extra, clock=clock,
                       net=net)

    @property
    def dev(self):
        return self.rig.dev

    def reboot(self, flash=None):
        if flash is not None:
            self.flash = flash
        self.base = boot_select.boot(self.flash, self.root + "/data")
        self.rig.fs = self.flash
        self.rig.reboot()

    def booted_files(self):
        """{path: bytes} of the release the pointer boots, read through the manifest it claims."""
        base = self.base
        d = self.top + "/" + base if base else self.top
        names = OLD if not base else NEW
        out = {}
        for path in names:
            data = self.flash.files.get(d + "/" + path)
            out[path] = bytes(data) if data is not None else None
        return out

    def boots_whole_release(self):
        """True when the directory the pointer names holds a whole release, old or new."""
        got = self.booted_files()
        want = NEW if self.base else OLD
        return got == want


def serve(unit, manifest, contents, key=RELEASE_KEY, chunk=CHUNK, rounds=4000, spoil=None):
    """The gateway: offer the release and answer every need with its chunk until the device is no
    longer receiving. `spoil(file, offset, data)` may change what is sent. The last state."""
    dev = unit.dev
    state = dev.on_update(schema.UPDATE_OFFER, ota.offer(key, manifest))
    rid = ota.release_id(manifest)
    for _ in range(rounds):
        if state.get("state") != ota.ST_RECEIVING:
            return state
        if state.get("busy"):
            dev.step()
            state = dev.update_state() if dev.ota is not None else {}
            continue
        f, off = state.get("file", 0), state.get("offset", 0)
        data = (manifest if f == 0 else contents[f - 1])[off:off + chunk]
        if spoil is not None:
            data = spoil(f, off, data)
        state = dev.on_update(schema.UPDATE_CHUNK, {"release_id": rid, "file": f, "offset": off,
                                                    "data": data})
    raise AssertionError("the update did not end")


def commit(unit, manifest):
    """COMMIT, then the reboot the device asks for. The answer to the COMMIT."""
    state = unit.dev.on_update(schema.UPDATE_COMMIT, {"release_id": ota.release_id(manifest)})
    if state.get("state") == ota.ST_SWITCHED:
        try:
            unit.dev.step()
        except Reboot:
            pass
        else:
            raise AssertionError("a switch must restart the device")
        unit.reboot()
    return state


def outbox_bytes(unit):
    return bytes(unit.flash.files.get(unit.root + "/data/outbox.log", b""))


def update_to_the_end(root, cut_at, torn):
    """The whole update on a flash that loses power at write step `cut_at` (0: never): a rating
    waits in the outbox; offer, chunks, commit, switch, confirm. After the cut: reboot, check the
    device boots a whole release, serve again until confirmed. (write steps used, problems)."""
    manifest, contents = release(NEW, "1.1.0")
    flash = factory_flash(root, 0, torn)
    problems = []
    unit = Unit(root, flash)
    unit.rig.context(31)
    unit.rig.wait(1000)
    unit.rig.press_level(2)
    unit.rig.wait(unit.dev.app.cfg["thanks_s"] * 1000 + 100)   # no switch under the thank-you
    before = outbox_bytes(unit)
    if not before:
        return 0, ["no rating in the outbox"]
    flash.cut_at = flash.steps + cut_at if cut_at else 0
    start = flash.steps
    unit.dev.on_clear({"case_id": 31})
    try:
        _run(unit, manifest, contents)
    except PowerCut:
        unit.reboot(flash.reboot())
        if not unit.boots_whole_release():
            problems.append("boots neither release: %r" % unit.base)
        for _ in range(3):
            if unit.base and unit.dev.ota is not None and not unit.dev.ota.pointer.get("trial"):
                break
            _run(unit, manifest, contents)
    steps = unit.flash.steps if cut_at == 0 else 0
    if unit.base != "rel/a" or not unit.boots_whole_release():
        problems.append("did not end on the new release: %r" % unit.base)
    ptr = boot_select.read(unit.flash, root + "/data")
    if ptr.get("trial") or ptr.get("state") != ota.ST_CONFIRMED:
        problems.append("not confirmed: %r" % ptr)
    if outbox_bytes(unit) != before:
        problems.append("the outbox changed")
    return steps - start if cut_at == 0 else 0, problems


def _run(unit, manifest, contents):
    """Serve, commit when verified, then the device comes online (a poll answered)."""
    state = serve(unit, manifest, contents)
    if state.get("state") == ota.ST_VERIFIED:
        state = commit(unit, manifest)
    unit.dev.on_online()
