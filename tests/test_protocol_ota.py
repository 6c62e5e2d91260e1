"""The release manifest, id, MAC and chunk plan both ends share (protocol/ota.py, SPEC.md 3.10)."""

import hashlib

from hypothesis import given, settings, strategies as st

from protocol import codec, errors, ota, schema
from protocol.errors import ProtocolError

import pytest

KEY = hashlib.sha256(b"test release key").digest()
_SEG = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.", min_size=1,
               max_size=12).filter(lambda s: s not in (".", ".."))
_PATH = st.lists(_SEG, min_size=1, max_size=4).map("/".join).filter(lambda p: len(p) <= ota.PATH_MAX)
_FILE = st.tuples(_PATH, st.binary(min_size=32, max_size=32).map(lambda b: b.hex()),
                  st.integers(0, 0xFFFFFFFF))
_FILES = st.lists(_FILE, max_size=20, unique_by=lambda f: f[0])
_VERSION = st.from_regex(r"\A[0-9][0-9a-z._-]{0,15}\Z")
_BOARDS = st.lists(st.sampled_from(["five_button", "touch", "sim"]), unique=True, max_size=3)


@settings(max_examples=150, deadline=None)
@given(_VERSION, _FILES, _BOARDS)
def test_manifest_round_trips_in_any_order(version, files, boards):
    data = ota.manifest_bytes(version, files, boards)
    assert ota.manifest_bytes(version, list(reversed(files)), list(reversed(boards))) == data
    info = ota.parse_manifest(data)
    assert info["version"] == version
    assert info["boards"] == sorted(boards)
    assert info["files"] == sorted(files)
    assert ota.manifest_bytes(info["version"], info["files"], info["boards"]) == data


@settings(max_examples=150, deadline=None)
@given(_VERSION, _FILES.filter(bool), st.data())
def test_mac_refuses_any_change(version, files, data):
    manifest = ota.manifest_bytes(version, files)
    mac = ota.release_mac(KEY, manifest)
    assert ota.verify_release(KEY, manifest, mac)
    i = data.draw(st.integers(0, len(manifest) - 1))
    bit = data.draw(st.integers(0, 7))
    bent = bytearray(manifest)
    bent[i] ^= 1 << bit
    assert not ota.verify_release(KEY, bytes(bent), mac)
    assert ota.release_id(bytes(bent)) != ota.release_id(manifest)
    cut = data.draw(st.integers(0, len(manifest) - 1))
    assert not ota.verify_release(KEY, manifest[:cut], mac)
    assert not ota.verify_release(KEY, manifest + b"\n", mac)
    other = bytearray(KEY)
    other[data.draw(st.integers(0, 31))] ^= 0x80
    assert not ota.verify_release(bytes(other), manifest, mac)
    badmac = bytearray(mac)
    badmac[data.draw(st.integers(0, 15))] ^= 1
    assert not ota.verify_release(KEY, manifest, bytes(badmac))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=8), st.integers(1, ota.CHUNK_MAX), st.data())
def test_chunk_plan_covers_every_byte_exactly_once(sizes, chunk, data):
    f0 = data.draw(st.integers(0, len(sizes) - 1))
    off0 = data.draw(st.integers(0, sizes[f0]))
    plan = ota.chunk_plan(sizes, chunk, (f0, off0))
    seen = [bytearray(n) for n in sizes]
    for f, off, n in plan:
        assert 0 < n <= chunk
        for i in range(off, off + n):
            seen[f][i] += 1
    for f, n in enumerate(sizes):
        for i in range(n):
            before = f < f0 or (f == f0 and i < off0)
            assert seen[f][i] == (0 if before else 1)
    assert plan == sorted(plan)


@settings(max_examples=100, deadline=None)
@given(_VERSION, _FILES, st.binary(max_size=8), st.integers(0, 400))
def test_non_canonical_text_is_refused(version, files, junk, at):
    manifest = ota.manifest_bytes(version, files)
    at = min(at, len(manifest))
    changed = manifest[:at] + junk + manifest[at:]
    try:
        info = ota.parse_manifest(changed)
    except ProtocolError as e:
        assert e.reason in (errors.R_MALFORMED, errors.R_OVERSIZE)
        return
    # only an insertion that is itself canonical text may parse, and then it says so exactly
    assert ota.manifest_bytes(info["version"], info["files"], info["boards"]) == changed


@pytest.mark.parametrize("path", ["../x", "/abs", "a//b", "a/./b", "a b", "a/..", "王/x", ""])
def test_paths_outside_the_release_directory_are_refused(path):
    assert not ota.path_ok(path)
    line = "hall-release/1\nversion 1\nfile %s 1 %s\n" % ("0" * 64, path)
    with pytest.raises(ProtocolError):
        ota.parse_manifest(line.encode())


def test_a_full_chunk_fits_one_frame_and_larger_is_refused():
    rid = bytes(32)
    full = codec.encode(schema.UPDATE_CHUNK, {"release_id": rid, "file": 254, "offset": 0xFFFFFFFF,
                                              "data": bytes(ota.CHUNK_MAX)})
    assert len(full) <= schema.MAX_RECORD_BYTES
    with pytest.raises(Exception):
        codec.encode(schema.UPDATE_CHUNK, {"release_id": rid, "data": bytes(ota.CHUNK_MAX + 1)})


def test_update_topic_json_carries_the_type_and_round_trips():
    manifest = ota.manifest_bytes("2.0.0", [("main.py", "ab" * 32, 3)])
    offer = ota.offer(KEY, manifest)
    for t, rec in ((schema.UPDATE_OFFER, offer),
                   (schema.UPDATE_CHUNK, {"release_id": offer["release_id"], "file": 1, "data": b"abc"}),
                   (schema.UPDATE_COMMIT, {"release_id": offer["release_id"]}),
                   (schema.UPDATE_CANCEL, {"release_id": offer["release_id"]})):
        text = ota.update_json(t, rec)
        assert text.startswith('{"type":"update_')
        assert ota.parse_update_json(text) == (t, rec)
    with pytest.raises(ProtocolError) as e:
        ota.parse_update_json('{"type":"rating","device":"x"}')
    assert e.value.reason == errors.R_UNKNOWN_TYPE


def test_from_bundle_takes_the_build_tools_manifest():
    m = {"format": 1, "version": "1.2.0", "boards": ["touch", "five_button"],
         "files": {"main.py": {"sha256": "cd" * 32, "size": 40}, "fonts/u.bin": {"sha256": "ef" * 32, "size": 9}},
         "romfs": {"sha256": "00" * 32, "size": 1, "files": []}}
    info = ota.parse_manifest(ota.from_bundle(m))
    assert info == {"version": "1.2.0", "boards": ["five_button", "touch"],
                    "files": [("fonts/u.bin", "ef" * 32, 9), ("main.py", "cd" * 32, 40)]}
