"""The over-the-air update records' field tables (SPEC.md 3.10; the type codes are in schema.py).

Importing this module adds them to schema.MESSAGES and schema.REQUIRED. schema.table() does so on
a device the first time an update record is met; on a host schema.py does at once.
"""

from protocol import schema
from protocol.schema import B, S, T, U, U8, U32

RELEASE = (1, "release_id", B, 32, 0, None)   # sha256 of the release's canonical manifest
UPDATE_OFFER_FIELDS = (
    RELEASE,
    (2, "version", T, 24, 0, None),
    (3, "manifest_size", U, 16384, 0, None),  # ota.MANIFEST_MAX
    (4, "mac", B, 16, 0, None),               # ota.release_mac under the hall's release key
    (5, "total", U, U32, 0, None),            # bytes of every file (informative)
)
UPDATE_CHUNK_FIELDS = (
    RELEASE,
    (2, "file", U, 255, 0, None),             # 0 = the manifest, 1.. = its files in order
    (3, "offset", U, U32, 0, None),
    (4, "data", B, 768, 0, None),             # ota.CHUNK_MAX
)
UPDATE_COMMIT_FIELDS = (RELEASE,)
UPDATE_CANCEL_FIELDS = (RELEASE,)
UPDATE_STATE_FIELDS = (
    (1, "device", T, 24, 0, None),
    (2, "release_id", B, 32, 0, None),        # the release this state is about (none: idle)
    (3, "state", U, 7, 0, None),              # ota.ST_*
    (4, "file", U, 255, 0, None),             # next bytes needed: file ...
    (5, "offset", U, U32, 0, None),           # ... at offset (receiving only)
    (6, "reason", U, U8, 0, None),            # ota.WHY_*: why refused or rolled back
    (7, "version", T, 24, 0, None),           # that release's version
    (8, "running", T, 24, 0, None),           # the version running now
    (9, "received", U, U32, 0, None),         # bytes in place (copied or received)
    (10, "total", U, U32, 0, None),           # bytes the release needs in all
    (11, "boots", U, 255, 0, None),           # trial boots so far
    (12, "image", U, 1, 0, None),             # 1: the board could take a full image (ota_0/ota_1)
    (13, "detail", S, 60, 0, None),
    (14, "busy", U, 1, 0, None),              # 1: copying or checking on its own: send nothing
)


schema.MESSAGES.update({
    schema.UPDATE_OFFER: UPDATE_OFFER_FIELDS, schema.UPDATE_CHUNK: UPDATE_CHUNK_FIELDS,
    schema.UPDATE_COMMIT: UPDATE_COMMIT_FIELDS, schema.UPDATE_CANCEL: UPDATE_CANCEL_FIELDS,
    schema.UPDATE_STATE: UPDATE_STATE_FIELDS,
})
schema.REQUIRED.update({
    schema.UPDATE_OFFER: ("release_id", "manifest_size", "mac"),
    schema.UPDATE_CHUNK: ("release_id", "data"),
    schema.UPDATE_COMMIT: ("release_id",),
    schema.UPDATE_CANCEL: ("release_id",),
    schema.UPDATE_STATE: ("device",),
})
