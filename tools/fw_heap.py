"""Resident heap of the evaluator firmware under real MicroPython 1.29, for tools/mpy_check.py.

Boots the firmware from its compiled .mpy (the flash tool's mpy-cross flags) in the two forms
the flash tool deploys, and reports both:
  - ROMFS (heap_resident_bytes, the deployed form on a MicroPython image with a ROMFS
    partition): the modules in a ROMFS image built like the flash tool's
    (tools/flashkit/romfs.py), mounted with vfs.VfsRom at /rom, first on sys.path. MicroPython
    runs .mpy bytecode and constants in place from a ROMFS, so they take no heap. The image
    buffer itself is flash on a device: it is read into memory before the baseline.
  - filesystem (heap_resident_bytes_fs, the fallback on an image without a ROMFS partition,
    e.g. the stock ESP32_GENERIC/ESP32_GENERIC_S3 builds): the .mpy loaded into RAM.
The boot runs on the sim board of each profile through firmware.main.build() as on a device: the device file
read and validated by the boot-only firmware.config (dropped again), Device with the UI, and the
transport the config names (five_button: RS-485, answering one POLL; touch: MQTT over Wi-Fi,
not connected).
The device's outbox holds CUSTODY_COPIES acknowledged ratings in custody (SPEC 3.11), all marked
for re-offer by a new gateway store, so custody at its largest (the default outbox_capacity) and
the re-offered copy the device holds are measured too (custody_log()).
Then it puts a case on the screen (the greeting playing from the real prompt files into the sim
board's amplifier, firmware/audio.py's buffers allocated), collects garbage and reports the bytes
still allocated beyond an interpreter that has only the runtime's own modules imported:
    {"heap_resident_bytes": {"five_button": n, "touch": n}, "heap_resident_bytes_fs": {...},
     "heap_goal_bytes": {"five_button": 49152}}
and, second and clearly apart, the estimate for a build with the modules frozen into flash:
    {"heap_data_bytes": {"five_button": n, "touch": n}}   (objects the boot creates; data_bytes())
and the flash the bundle takes (flash_bytes()): {"flash_bytes": {"data": {folder: bytes},
"data_files": {...}, "code_mpy": n, "code_romfs_image": n}} (the font, the voice prompts ...).
The sim board's frame buffer is the same size as the real one (five_button 1 KiB, touch 37.5 KiB).

Imported before the baseline, because they are C modules in the ESP32 firmware (no heap) but
frozen Python packages in the wasm port: os (with collections) and binascii. asyncio is frozen
on both, and the measurement needs it to yield. Everything of ours is measured.

    .venv/bin/python tools/fw_heap.py [--breakdown]   # JSON; --breakdown: bytes per import
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULT_PREFIX = "FW_HEAP "
HEAP_ROOT = "/tmp/heap"
CUSTODY_COPIES = 500     # the default outbox_capacity: custody full
_CUSTODY_GAP_EVERY = 100  # a burnt counter every 100 ratings: the copies lie in five runs
PROFILES = ("five_button", "touch")
RUNTIME_MODULES = ("os", "binascii")

# One POLL from the gateway to address 1 (seq 1, want_status): the device decodes it and answers.
# Built with protocol.frame/codec on CPython so the measured script carries no gateway code.
_POLL_HEX = None


def poll_frame_hex():
    global _POLL_HEX
    if _POLL_HEX is None:
        from protocol import codec, schema
        from protocol.frame import encode_frame
        _POLL_HEX = encode_frame(1, schema.POLL, 1, codec.encode(schema.POLL, {"time": 1700000000})).hex()
    return _POLL_HEX


# The wasm port frees garbage only once the script has yielded to the JS event loop (until then
# the JS stack pins it), hence the awaits before each measurement. With breakdown, the modules of
# IMPORT_ORDER are imported one by one first (dependencies before dependants) and each delta is
# reported; the total is the same either way. A delta includes the growth of the qstr pool, which
# happens in steps, so it lands on whichever module crosses a step.
SCRIPT = """
import gc, json, asyncio, sys
from binascii import unhexlify
for _m in %(runtime)r:
    __import__(_m)
profile = %(profile)r
# the device's config file, as the flash tool writes it (before the baseline: flash, not RAM)
_cfg = {"device": "win07", "key": "5c" * 32, "window": "07", "board": {"profile": profile}}
if profile == "touch":
    _cfg["transport"] = "mqtt"
    _cfg["hall"] = "hall1"
    _cfg["mqtt"] = {"host": "192.168.1.2"}
try:
    import os
    os.mkdir("/tmp/heap")
except OSError:
    pass
with open("/tmp/heap/device.json", "w") as _f:
    _f.write(json.dumps(_cfg))
del _cfg, _f
class _Net:
    def connect(self):
        pass
    def isconnected(self):
        return False
    def socket_factory(self, host, port):
        raise OSError("no wifi")
async def _alloc():
    await asyncio.sleep_ms(1)
    gc.collect()
    return gc.mem_alloc()
%(prelude)s
_base = await _alloc()
_parts = []
_prev = _base
for _m in %(order)r:
    if _m not in sys.modules:
        try:
            __import__(_m)
        except ImportError:
            continue
        _a = await _alloc()
        _parts.append((_m, _a - _prev))
        _prev = _a
from firmware.boards.sim import make_board
from firmware.main import build
board = make_board({"profile": profile, "fs_root": "/tmp/heap", "net": _Net()})
dev, board, _err = build("/tmp/heap", %(font)r, board=board, prompts=%(prompts)r)
assert dev is not None, _err
dev.step()
dev.on_context({"case_id": 1, "node": 3, "window": "07", "staff_id": "A0123", "staff_name": "王喆",
                "matter_name": "企业投资项目备案（含变更）", "serials": ["SZ202400001"]})
dev.step()
board.advance(1000)
if profile == "five_button":
    board.uart.feed(unhexlify(%(poll)r))
dev.step()
assert dev.app.state == "case", dev.app.state
assert board.audio.played == [("greet", 5)] and dev.audio.playing, "the greeting is not playing"
if profile == "five_button":
    assert board.uart.take_tx()[:2] == b"\\xa5\\x5a", "no reply to the POLL"
assert dev.outbox.kept == %(custody)d, dev.outbox.kept
dev.head()          # a custody copy offered again, its bytes held as an outbox head would be
_a = await _alloc()
_parts.append(("boot", _a - _prev))
_mods = sorted(k for k in sys.modules if k.startswith("firmware") or k.startswith("protocol"))
_late = [k for k in _mods if k not in %(order)r]
_where = sorted(set(getattr(sys.modules[k], "__file__", "?").split("/")[1] for k in _mods))
print(%(prefix)r + json.dumps({"bytes": _a - _base, "parts": _parts, "modules": _mods, "late": _late,
                              "from": _where}))
"""

# Our modules in dependency order, for the breakdown (those a profile does not load are skipped
# by Python's own import machinery only if listed here: keep this to what boot loads).
IMPORT_ORDER = {
    "five_button": (
        "protocol", "protocol.errors", "protocol.schema", "protocol.vocab", "protocol.codec",
        "protocol.supplement", "protocol.auth", "protocol.crc", "protocol.frame", "protocol.timing",
        "protocol.slave",
        "firmware", "firmware.flashfs", "firmware.store", "firmware.rating_config",
        "firmware.health", "firmware.custody_runs", "firmware.outbox", "firmware.views", "firmware.app",
        "firmware.device",
        "firmware.main", "firmware.transport_rs485", "firmware.boards", "firmware.boards.sim",
        "firmware.audio",
        "firmware.boards.sim_io", "firmware.glyphs", "firmware.ui", "firmware.ui.font", "firmware.ui.ui",
        "firmware.ui.shapes", "firmware.ui.say", "firmware.ui.mono"),
    "touch": (
        "protocol", "protocol.errors", "protocol.schema", "protocol.vocab", "protocol.codec",
        "protocol.supplement", "protocol.jsonform", "protocol.auth", "protocol.rating",
        "protocol.topics", "protocol.mqtt_wire",
        "firmware", "firmware.flashfs", "firmware.store", "firmware.rating_config",
        "firmware.health", "firmware.custody_runs", "firmware.outbox", "firmware.views", "firmware.app",
        "firmware.device",
        "firmware.main", "firmware.mqtt_client", "firmware.transport_mqtt", "firmware.boards",
        "firmware.boards.sim", "firmware.boards.sim_io", "firmware.audio", "firmware.glyphs",
        "firmware.ui", "firmware.ui.font", "firmware.ui.ui", "firmware.ui.colors", "firmware.ui.shapes",
        "firmware.ui.words", "firmware.ui.say", "firmware.ui.touch", "firmware.ui.qr",
        "firmware.ui.touch_screens"),
}


# The ROMFS form: the image is read into a buffer (flash on a device) and mounted before the
# baseline, as MicroPython mounts a ROMFS partition at /rom during mp_init(); the buffer stays
# referenced, so it is never part of the measured difference.
ROMFS_IMAGE = "/romfs/bundle.romfs"
ROMFS_FONT = "/fonts/unifont16.bin"
ROMFS_PRELUDE = """
import vfs
with open(%r, "rb") as _f:
    _image = _f.read()
del _f
vfs.mount(vfs.VfsRom(memoryview(_image)), "/rom")
sys.path[:0] = ["/rom", "/rom/lib"]
""" % ROMFS_IMAGE
FS_FONT = "/repo/firmware/fonts/unifont16.bin"
ROMFS_PROMPTS = "/prompts"                  # firmware.main.DEFAULT_PROMPTS (beside the font)
FS_PROMPTS = "/repo/firmware/prompts"


def custody_log(copies=CUSTODY_COPIES):
    """The bytes of an outbox.log holding `copies` custody copies (ratings of the measured device,
    signed under its key), marked for re-offer by a new generation, written by the firmware's own
    outbox (firmware/outbox.py) on the host."""
    import os
    import tempfile
    from firmware.flashfs import Fs
    from firmware.outbox import Outbox
    from protocol import auth, codec, schema
    key = bytes.fromhex("5c" * 32)
    with tempfile.TemporaryDirectory() as root:
        ob = Outbox(Fs(), root, copies + 1, custody=True).open()
        c = 1700000000
        for i in range(copies):
            c += 2 if i and i % _CUSTODY_GAP_EVERY == 0 else 1
            rec = auth.sign(key, {"device": "win07", "counter": c, "case_id": 1000 + i,
                                  "serials": ["SZ2024%05d" % i], "node": 3, "source": 1,
                                  "overall": 1, "staff_id": "A0123", "window": "07",
                                  "device_time": 1700000000 + 60 * i, "uptime_ms": 1000 * i})
            ob.append(c, codec.encode(schema.RATING, rec))
            ob.release(c)
        if copies:
            ob.settle(0x1234567890ABCDEF, 1, 0, True)
        ob.compact()
        with open(os.path.join(root, "outbox.log"), "rb") as f:
            return f.read()


def _script(profile, breakdown, romfs=False, custody=CUSTODY_COPIES):
    return SCRIPT % {"custody": custody, "profile": profile, "prefix": RESULT_PREFIX, "runtime": RUNTIME_MODULES,
                     "order": IMPORT_ORDER[profile] if breakdown else (), "poll": poll_frame_hex(),
                     "prelude": ROMFS_PRELUDE if romfs else "", "font": ROMFS_FONT if romfs else FS_FONT,
                     "prompts": ROMFS_PROMPTS if romfs else FS_PROMPTS}


def romfs_files(files):
    """The device-file dict of measure_detail turned into its ROMFS form: the modules in one ROMFS
    image built as the flash tool builds it, the font and the voice prompts outside it (they stay
    on the filesystem)."""
    from tools.flashkit import romfs
    from tools.mpy_runner import MP_ROOT
    prefix = MP_ROOT + "/"
    mods = dict((p[len(prefix):], d) for p, d in files.items() if p.endswith(".mpy"))
    out = {ROMFS_IMAGE: romfs.image(mods), ROMFS_FONT: files[FS_FONT]}
    for p, d in files.items():
        if p.startswith(FS_PROMPTS + "/"):
            out[ROMFS_PROMPTS + p[len(FS_PROMPTS):]] = d
    return out



def measure_detail(files, run_micropython, breakdown=False, romfs=False, custody=CUSTODY_COPIES,
                   profiles=PROFILES) -> dict:
    """{profile: {"bytes": n, "parts": [(module or "boot", bytes)], "modules": [loaded],
    "late": [loaded by the boot itself, not imported before it], "from": [top folders the
    modules came from: "repo" or "rom"]}} or {profile: "failed: ..."}.
    With breakdown, every module of IMPORT_ORDER is imported before the boot, so the "boot" part
    is what the running firmware allocates beyond its modules (see data_bytes).
    With romfs, the modules run from a ROMFS image (romfs_files) instead of .mpy files.
    `custody`: how many custody copies the device's outbox holds at boot (custody_log)."""
    out = {}
    if romfs:
        files = romfs_files(files)
    files = dict(files)
    files[HEAP_ROOT + "/outbox.log"] = custody_log(custody)
    for profile in profiles:
        r = run_micropython(_script(profile, breakdown, romfs, custody), files=files, trees=())
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
        if r.returncode != 0 or not lines:
            out[profile] = "failed: " + (r.stderr.strip() or r.stdout.strip())[-300:]
            continue
        out[profile] = json.loads(lines[-1][len(RESULT_PREFIX):])
    return out


def data_bytes(detail) -> dict:
    """heap_data_bytes from a breakdown measure_detail(): the objects the boot creates (frame
    buffer, outbox index, state, caches, the config) with every module already imported, i.e.
    without module code, constants, qstrs, module dicts and function objects. An estimate for a
    build with the modules frozen into flash, and a lower bound: a frozen build still keeps the
    module dicts and function objects in RAM. None for a profile whose boot imported a module
    IMPORT_ORDER lacks (its code would be counted as data)."""
    out = {}
    for profile, got in detail.items():
        if isinstance(got, str):
            out[profile] = got
        elif got["late"]:
            out[profile] = None
        else:
            out[profile] = dict(got["parts"])["boot"]
    return out


def measure(files, run_micropython, romfs=False) -> dict:
    """{profile: bytes} (or the failure text)."""
    got = measure_detail(files, run_micropython, romfs=romfs)
    return {p: v if isinstance(v, str) else v["bytes"] for p, v in got.items()}


def device_files(ctx):
    """The trees of an mpy_check context as the device holds them: every module compiled the way
    the flash tool's bundle compiles it (tools/flashkit/bundle.compile_mpy, same mpy-cross flags),
    plus the data files (the font)."""
    from tools import mpy_check
    from tools.flashkit.bundle import compile_mpy
    trees = ("protocol", "firmware")
    files = mpy_check.vfs_files(ctx, trees)
    exe = mpy_check.find_mpy_cross()
    for src in ctx.sources:
        if src.rel not in ctx.failed and src.rel.split("/", 1)[0] in trees:
            files["%s/%s.mpy" % (mpy_check.MP_ROOT, src.rel[: -len(".py")])] = compile_mpy(
                str(src.path), src.rel, exe)
    return files


def compiled_files():
    """The compiled protocol/ and firmware/ trees, as the device would hold them."""
    from tools import mpy_check
    root = mpy_check.REPO_ROOT
    ctx = mpy_check.CheckContext(root=root, sources=mpy_check.find_sources(root, ("protocol", "firmware")))
    return device_files(ctx)


def heap_report(ctx) -> dict:
    """mpy_check REPORT_HOOK: measured on this check's sources, compiled as the bundle does."""
    from tools.mpy_runner import run_micropython
    if not any(rel.startswith("firmware/") for rel in ctx.compiled):
        return {}
    files = device_files(ctx)
    return report(files, run_micropython, measure_detail(files, run_micropython, breakdown=True))


HEAP_FORM = ("heap_resident_bytes: modules executed in place from a ROMFS partition (what flash.py "
             "deploys to a MicroPython image with one); heap_resident_bytes_fs: .mpy files on the "
             "filesystem, loaded into RAM (flash.py's fallback on an image without a ROMFS "
             "partition, e.g. the stock ESP32_GENERIC and ESP32_GENERIC_S3 builds)")


HEAP_GOAL = {"five_button": 48 * 1024}     # ROMFS form, with the glyph supplement and voice in place


def flash_bytes(files) -> dict:
    """Flash the bundle takes on a device, by part: its data files by folder (fonts, the voice
    prompts, the UI's pre-rendered words ...; as the flash tool copies them) and its code, both as
    .mpy files and as the ROMFS image the flash tool builds of them. Host-only modules excluded."""
    from tools.flashkit import bundle, romfs
    from tools.mpy_runner import MP_ROOT
    data, files_of, mods = {}, {}, {}
    for path, blob in files.items():
        rel = path[len(MP_ROOT) + 1:]
        if rel.endswith(".mpy"):
            if rel[:-4] + ".py" not in bundle.HOST_ONLY:
                mods[rel] = blob
        elif not rel.endswith(bundle.SKIP_EXT) and not set(rel.split("/")) & set(bundle.SKIP_DIRS):
            folder = rel.rsplit("/", 1)[0]
            data[folder] = data.get(folder, 0) + len(blob)
            files_of[rel] = len(blob)
    return {"data": data, "data_files": files_of, "code_mpy": sum(len(b) for b in mods.values()),
            "code_romfs_image": len(romfs.image(mods))}


def report(files, run_micropython, breakdown_detail) -> dict:
    return {"heap_resident_bytes": measure(files, run_micropython, romfs=True),
            "heap_resident_bytes_fs": measure(files, run_micropython),
            "heap_resident_form": HEAP_FORM,
            "heap_goal_bytes": HEAP_GOAL,
            "heap_data_bytes": data_bytes(breakdown_detail),
            "flash_bytes": flash_bytes(files)}


def main(argv=None) -> int:
    from tools.mpy_runner import run_micropython
    args = sys.argv[1:] if argv is None else argv
    files = compiled_files()
    detail = measure_detail(files, run_micropython, breakdown=True)
    if "--breakdown" in args:
        got = {"fs": detail, "romfs": measure_detail(files, run_micropython, breakdown=True, romfs=True)}
    else:
        got = report(files, run_micropython, detail)
    print(json.dumps(got, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
