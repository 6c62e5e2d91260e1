"""Over-the-air update, the parts both ends share (SPEC.md 3.10): the release manifest's canonical
form, the release id and MAC, the chunk plan, and the numbers of UPDATE_STATE.

A release manifest is UTF-8 text, one item per line, each line ending in LF:

    hall-release/1
    version <token>
    board <token>                    one line per board, sorted, none = any board
    file <sha256 hex> <size> <path>  one line per file, sorted by path

Paths are relative, '/'-separated, of [A-Za-z0-9._-] segments (no '.', '..' or empty segment).
Exactly one text stands for each manifest, and a receiver refuses any other (parse_manifest),
so the release id (sha256 of those bytes) names one release. The MAC is HMAC-SHA256 under the
hall's 32-byte release key over LABEL + manifest, first 16 bytes: every device holds the key, so
it proves "released by this hall's gateway" (a MAC, not a signature).

Files are numbered as the manifest lists them from 1; file 0 is the manifest itself. The device
asks for (file, offset) in UPDATE_STATE and the gateway answers with UPDATE_CHUNK; chunk_plan
lists the chunks a sender would send from a point on, each byte exactly once.
"""

import hashlib

from protocol import errors
from protocol.auth import hmac_sha256, _same
from protocol.errors import LocalProtocolError, ProtocolError

LABEL = b"hall-rating/2 release\x00"
MAGIC = "hall-release/1"
MAC_LEN = 16
KEY_LEN = 32
ID_LEN = 32
MANIFEST_MAX = 16384     # schema UPDATE_OFFER manifest_size
CHUNK_MAX = 768          # schema UPDATE_CHUNK data: 1,024-byte frame less the other fields
FILES_MAX = 254          # file numbers 1..254 (U8, 0 = the manifest)
PATH_MAX = 96

# UPDATE_STATE state
ST_IDLE = 0          # nothing under way
ST_RECEIVING = 1     # taking chunks: file/offset say what next
ST_VERIFIED = 2      # every file in place and its sha256 checked: ready for UPDATE_COMMIT
ST_SWITCHED = 3      # the pointer names the new release: on trial until confirmed
ST_CONFIRMED = 4     # the new release came back online: it stays
ST_ROLLED_BACK = 5   # the new release failed its trial: the old one runs again (reason says why)
ST_REFUSED = 6       # the offer or a commit was refused (reason says why)

# UPDATE_STATE reason
WHY_NONE = 0
WHY_BAD_MAC = 1          # the manifest's MAC does not verify under this device's release key
WHY_BAD_MANIFEST = 2     # not a canonical manifest, too big, sha256 is not the release id
WHY_BAD_HASH = 3         # a file's sha256 differs from the manifest (it is fetched again)
WHY_NO_KEY = 4           # this device holds no release key: it installs nothing
WHY_WRONG_BOARD = 5      # the manifest names boards, and not this one
WHY_CASE_OPEN = 6        # COMMIT while a case is on screen: ask again later
WHY_NOT_READY = 7        # COMMIT before the release is verified
WHY_NO_SPACE = 8         # the filesystem is full
WHY_BOOT_FAILED = 9      # the trial release failed to boot `trial_boots` times
WHY_NO_CONFIRM = 10      # the trial release did not come online within the deadline
WHY_BUSY = 11            # another release is on trial: offer again after it is settled
WHY_UNKNOWN = 12         # a chunk or commit for a release this device is not receiving
WHY_IO = 13              # a write failed

STATE_NAMES = ("idle", "receiving", "verified", "switched", "confirmed", "rolled_back", "refused")
WHY_NAMES = ("", "bad_mac", "bad_manifest", "bad_hash", "no_key", "wrong_board", "case_open",
             "not_ready", "no_space", "boot_failed", "no_confirm", "busy", "unknown_release", "io")

_HEX = "0123456789abcdef"


def path_ok(path):
    """True for a relative path of token segments: nothing a receiver could write outside its
    release directory with."""
    if not path or len(path) > PATH_MAX:
        return False
    for seg in path.split("/"):
        if not seg or seg == "." or seg == "..":
            return False
        for c in seg:
            if not (("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c in "._-"):
                return False
    return True


def _token_ok(value):
    return bool(value) and len(value) <= 24 and path_ok(value) and "/" not in value


def manifest_bytes(version, files, boards=()):
    """Canonical manifest of `files`, a list of (path, sha256 hex, size) in any order."""
    if not _token_ok(version):
        raise LocalProtocolError("release version must be a token: %r" % (version,))
    lines = [MAGIC, "version " + version]
    for b in sorted(boards):
        if not _token_ok(b):
            raise LocalProtocolError("bad board name %r" % (b,))
        lines.append("board " + b)
    seen = None
    for path, digest, size in sorted(files):
        if not path_ok(path) or path == seen:
            raise LocalProtocolError("bad or repeated path %r" % (path,))
        if len(digest) != 64 or any(c not in _HEX for c in digest) or not 0 <= size <= 0xFFFFFFFF:
            raise LocalProtocolError("bad sha256 or size for %s" % path)
        seen = path
        lines.append("file %s %d %s" % (digest, size, path))
    if len(lines) - 2 - len(boards) > FILES_MAX:
        raise LocalProtocolError("more than %d files" % FILES_MAX)
    out = ("\n".join(lines) + "\n").encode()
    if len(out) > MANIFEST_MAX:
        raise LocalProtocolError("manifest of %d bytes exceeds %d" % (len(out), MANIFEST_MAX))
    return out


def from_bundle(manifest):
    """Canonical manifest of a bundle's manifest.json (tools/flashkit/bundle.py): its version,
    boards and files with their sha256 and size."""
    files = [(p, f["sha256"], f["size"]) for p, f in manifest["files"].items()]
    return manifest_bytes(manifest["version"], files, manifest.get("boards", ()))


def parse_manifest(data):
    """{"version", "boards", "files": [(path, sha256 hex, size), ...]} of a canonical manifest;
    ProtocolError(R_MALFORMED) for anything else."""
    if len(data) > MANIFEST_MAX:
        raise ProtocolError(errors.R_OVERSIZE, "manifest")
    try:
        text = bytes(data).decode()
    except Exception:
        raise ProtocolError(errors.R_MALFORMED, "manifest is not UTF-8")
    lines = text.split("\n")
    if len(lines) < 3 or lines[0] != MAGIC or lines[-1] != "" or not lines[1].startswith("version "):
        raise ProtocolError(errors.R_MALFORMED, "manifest head")
    boards = []
    files = []
    for line in lines[2:-1]:
        parts = line.split(" ")
        if len(parts) == 2 and parts[0] == "board" and not files:
            boards.append(parts[1])
        elif len(parts) == 4 and parts[0] == "file" and parts[2].isdigit():
            files.append((parts[3], parts[1], int(parts[2])))
        else:
            raise ProtocolError(errors.R_MALFORMED, "manifest line %r" % line[:40])
    version = lines[1][8:]
    try:
        again = manifest_bytes(version, files, boards)
    except LocalProtocolError as e:
        raise ProtocolError(errors.R_MALFORMED, str(e))
    if again != bytes(data):
        raise ProtocolError(errors.R_MALFORMED, "manifest is not canonical")
    return {"version": version, "boards": boards, "files": files}


def release_id(manifest):
    """32-byte id of a release: sha256 of its canonical manifest."""
    return hashlib.sha256(bytes(manifest)).digest()


def release_mac(key, manifest):
    if len(key) != KEY_LEN:
        raise LocalProtocolError("release keys are %d bytes" % KEY_LEN)
    return hmac_sha256(bytes(key), LABEL + bytes(manifest))[:MAC_LEN]


def verify_release(key, manifest, mac):
    """True when `mac` is the release MAC of `manifest` under `key`; constant-time compare."""
    if not key or len(key) != KEY_LEN or not mac or len(mac) != MAC_LEN:
        return False
    return _same(release_mac(key, manifest), mac)


def offer(key, manifest):
    """The UPDATE_OFFER record of a canonical manifest (the gateway's side)."""
    info = parse_manifest(manifest)
    return {"release_id": release_id(manifest), "version": info["version"],
            "manifest_size": len(manifest), "mac": release_mac(key, manifest),
            "total": sum(f[2] for f in info["files"])}


def sizes(manifest_len, files):
    """Byte count per file number: the manifest, then every file in manifest order."""
    return [manifest_len] + [f[2] for f in files]


def chunk_plan(file_sizes, chunk=CHUNK_MAX, start=(0, 0)):
    """[(file, offset, length)] covering every byte of every file from `start` on, in order, each
    byte exactly once, no chunk longer than `chunk` (empty files take no chunk)."""
    if not 0 < chunk <= CHUNK_MAX:
        raise LocalProtocolError("chunk size 1..%d" % CHUNK_MAX)
    out = []
    f0, off0 = start
    for f in range(f0, len(file_sizes)):
        off = off0 if f == f0 else 0
        size = file_sizes[f]
        while off < size:
            n = min(chunk, size - off)
            out.append((f, off, n))
            off += n
    return out


# The records on a device's MQTT `update` topic, named by the payload's "type" member (one topic,
# so MQTT keeps an offer, its chunks and the commit in order).
UPDATE_TYPES = {"update_offer": 0x06, "update_chunk": 0x07, "update_commit": 0x08,
                "update_cancel": 0x09}


def update_json(msg_type, record):
    """Canonical JSON of an UPDATE_* record with its "type" first, for the `update` topic."""
    from protocol import codec
    for name in UPDATE_TYPES:
        if UPDATE_TYPES[name] == msg_type:
            body = codec.to_json(msg_type, record)
            return '{"type":"%s"%s%s' % (name, "," if len(body) > 2 else "", body[1:])
    raise LocalProtocolError("not an update record: %r" % (msg_type,))


def parse_update_json(text):
    """(type code, record) of an `update` topic payload; ProtocolError when it is not one."""
    import json
    from protocol import codec
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode()
    try:
        name = json.loads(text).get("type")
    except Exception:
        raise ProtocolError(errors.R_MALFORMED, "not a JSON object")
    msg_type = UPDATE_TYPES.get(name) if isinstance(name, str) else None
    if msg_type is None:
        raise ProtocolError(errors.R_UNKNOWN_TYPE, "update type %r" % (name,))
    return msg_type, codec.from_json(msg_type, text)


def state_name(state):
    return STATE_NAMES[state] if 0 <= state < len(STATE_NAMES) else str(state)


def why_name(reason):
    return WHY_NAMES[reason] if 0 <= reason < len(WHY_NAMES) else str(reason)
