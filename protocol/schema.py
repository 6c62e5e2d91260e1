"""Every message, defined once. The binary codec and the JSON codec are both driven by these tables.

A field is (number, name, kind, limit, repeat, sub):
  kind  U unsigned integer (varint)      limit = largest value
        S UTF-8 text                      limit = most characters (code points), no control chars
        T ASCII token [A-Za-z0-9._-]      limit = most characters
        B raw bytes (hex in JSON)         limit = most bytes
        M nested message                  sub = its field table
  repeat 0 for a single value, else the most items a list may hold.
Numbers are wire field numbers and never change meaning; new fields get new numbers.
"""

# Glyph supplement, QR matrix, CONFIG volume and large_text: the numbers live in protocol.supplement
# (SPEC.md 3.8-3.9), so screen code can check a glyph without loading these tables.
from protocol.supplement import (GLYPH_HEIGHT, MAX_GLYPHS, QR_MIN, QR_MAX,  # noqa: F401
                                 QR_MODULES_BYTES, VOLUME_MAX, LARGE_TEXT_OFF, LARGE_TEXT_ON)

U, S, T, B, M = "U", "S", "T", "B", "M"

U8 = 0xFF
U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF

# Message type codes: the frame's type byte on RS-485 and the "type" name in SPEC.md.
# Bit 7 set = sent by a device. Every gateway request is idempotent, so retransmission is safe.
POLL = 0x01     # anything to send?
ACK = 0x02      # your rating <counter> is settled: result
CONTEXT = 0x03  # show this case
CLEAR = 0x04    # withdraw the case on screen
CONFIG = 0x05   # tags, strings, timeouts
IDLE = 0x81     # nothing to send
RATING = 0x82   # the oldest unacknowledged rating in my outbox
STATUS = 0x83   # health report
REFUSE = 0x84   # I could not take your request: reason
# Over-the-air update (SPEC.md 3.10, protocol/ota.py): the device pulls, the gateway answers.
UPDATE_OFFER = 0x06   # release <id> is for you: its manifest's size and MAC
UPDATE_CHUNK = 0x07   # bytes of file <file> (0 = the manifest) at <offset>
UPDATE_COMMIT = 0x08  # switch to the verified release <id> (never while a case is on screen)
UPDATE_CANCEL = 0x09  # drop the release <id> being received
UPDATE_STATE = 0x85   # where my update stands and which bytes I need next
# Custody (SPEC.md 3.11): which of my acknowledged ratings the central API holds now.
SETTLE = 0x0A   # your ratings below <settled> are settled upstream; my store is <generation>



def from_device(msg_type):
    return bool(msg_type & 0x80)


# --- sub-messages -------------------------------------------------------------------------------
THEME_ITEM = (            # one related matter of a theme service (主题服务)
    (1, "code", T, 40, 0, None),
    (2, "name", S, 40, 0, None),
)
ITEM_RATING = (           # the rater's level for one theme item
    (1, "code", T, 40, 0, None),
    (2, "level", U, 5, 0, None),
)
TAG = (                   # a refining tag (标签) offered after a bad rating
    (1, "code", U, 9999, 0, None),
    (2, "label", S, 12, 0, None),
    (3, "indicator", U, 7, 0, None),   # IND_* bits the tag belongs to
)
TEXT = (                  # a screen string override, by key
    (1, "key", T, 24, 0, None),
    (2, "text", S, 40, 0, None),
)
GLYPH = (                 # a 16-px bitmap the device's font lacks (SPEC.md 3.8)
    (1, "cp", U, 0x10FFFF, 0, None),      # Unicode code point
    (2, "width", U, 16, 0, None),         # 8 or 16 pixels
    (3, "bits", B, 32, 0, None),          # 16 rows of width/8 bytes, MSB = leftmost pixel, 1 = ink
)
COUNTER = (               # a named error counter in a status report
    (1, "name", T, 16, 0, None),
    (2, "count", U, U32, 0, None),
)

# --- messages -----------------------------------------------------------------------------------
POLL_FIELDS = (
    (1, "time", U, U64, 0, None),         # gateway wall clock, unix seconds (clock sync)
    (2, "want_status", U, 1, 0, None),    # 1: answer with STATUS rather than IDLE/RATING
)
SETTLE_FIELDS = (                         # answered like a POLL (SPEC.md 3.11)
    (1, "device", T, 24, 0, None),
    (2, "generation", U, U64, 0, None),   # the gateway store's id, random, never 0
    (3, "settled", U, U32, 0, None),      # every counter below this is held by the central API
    (4, "seq", U, U64, 0, None),          # strictly increasing within a generation
    (5, "reoffer", U, 1, 0, None),        # 1: offer every custody copy again
    (6, "mac", B, 16, 0, None),           # HMAC-SHA256/16 under the device key (auth.settle_mac)
)
ACK_FIELDS = (
    (1, "device", T, 24, 0, None),
    (2, "counter", U, U32, 0, None),
    (3, "result", U, 4, 0, None),         # vocab.ACK_*
    (4, "reason", U, U8, 0, None),        # errors.R_* for dead letters
    (5, "mac", B, 16, 0, None),           # HMAC-SHA256/16 under the device key (auth.ack_mac)
    (6, "generation", U, U64, 0, None),   # the store's with custody on, and to a re-offered copy
)
CONTEXT_FIELDS = (
    (1, "case_id", U, U32, 0, None),      # gateway-assigned, unique in the hall, never 0
    (2, "window", T, 16, 0, None),
    (3, "staff_id", S, 20, 0, None),      # 工号, any printable text
    (4, "staff_name", S, 16, 0, None),    # 姓名
    (5, "matter_code", T, 40, 0, None),
    (6, "matter_name", S, 60, 0, None),   # 事项名称 (theme name for a theme)
    (7, "serials", S, 40, 16, None),      # 办件流水号 (printable text); two or more = a batch, rated once
    (8, "node", U, 4, 0, None),           # vocab.NODE_*
    (9, "items", M, 0, 8, THEME_ITEM),    # theme sub-items
    (10, "indicators", U, 7, 0, None),    # IND_* bits that may be rated
    (11, "tags_version", U, U32, 0, None),
    (12, "deadline", U, U64, 0, None),    # unix seconds: end of the 7-day window
    (13, "qr", S, 200, 0, None),          # signed rate-later URL (touch board shows a QR code)
    (14, "time", U, U64, 0, None),        # gateway wall clock, unix seconds
    (15, "glyphs", M, 0, MAX_GLYPHS, GLYPH),  # bitmaps of characters the device's font lacks
    (16, "qr_modules", B, QR_MODULES_BYTES, 0, None),  # N, then N*N module bits (SPEC.md 3.9)
)
CLEAR_FIELDS = (
    (1, "case_id", U, U32, 0, None),
)
CONFIG_FIELDS = (
    (1, "version", U, U32, 0, None),
    (2, "tags", M, 0, 16, TAG),
    (3, "texts", M, 0, 40, TEXT),
    (4, "rating_timeout_s", U, 3600, 0, None),   # no press within this: SRC_NOT_RATED
    (5, "thanks_s", U, 60, 0, None),             # how long the thank-you screen stays
    (6, "press_guard_ms", U, 60000, 0, None),          # misuse guard: ignore presses closer than this
    (7, "status_interval_s", U, 86400, 0, None),
    (8, "idle_text", S, 40, 0, None),
    (9, "volume", U, 11, 0, None),               # 1 + volume 0..10 (1 = mute); 0 = keep
    (10, "large_text", U, 2, 0, None),           # 1 = off, 2 = on (适老化); 0 = keep
)
IDLE_FIELDS = (
    (1, "outbox", U, U32, 0, None),       # ratings waiting in flash
    (2, "case_id", U, U32, 0, None),      # case on screen, 0 = none
    (3, "custody", U, U32, 0, None),      # acknowledged ratings kept until settled (SPEC 3.11)
    (4, "generation", U, U64, 0, None),   # the last SETTLE generation taken, 0 = none
)
RATING_FIELDS = (
    (1, "device", T, 24, 0, None),
    (2, "counter", U, U32, 0, None),      # per device, strictly increasing, never reused
    (3, "case_id", U, U32, 0, None),
    (4, "serials", S, 40, 16, None),
    (5, "node", U, 4, 0, None),
    (6, "source", U, 3, 0, None),         # vocab.SRC_*
    (7, "overall", U, 5, 0, None),        # levels 1..5, absent = not rated
    (8, "business", U, 5, 0, None),
    (9, "service", U, 5, 0, None),
    (10, "tags", U, 9999, 8, None),
    (11, "text", S, 140, 0, None),
    (12, "items", M, 0, 8, ITEM_RATING),
    (13, "staff_id", S, 20, 0, None),
    (14, "window", T, 16, 0, None),
    (15, "device_time", U, U64, 0, None), # device's idea of unix seconds at the press, 0 unknown
    (16, "uptime_ms", U, U64, 0, None),   # device monotonic ms at the press
    (17, "tags_version", U, U32, 0, None),  # the CONFIG version whose tag list the rater was offered
    (20, "mac", B, 16, 0, None),          # HMAC-SHA256 truncated to 16 bytes (auth.py)
    (21, "gateway_time", U, U64, 0, None),  # added by the gateway, outside the MAC
    (22, "hall", T, 32, 0, None),           # added by the gateway, outside the MAC
    (23, "reoffer", U, 1, 0, None),         # 1: a custody copy offered again (SPEC 3.11), outside the MAC
)
STATUS_FIELDS = (
    (1, "device", T, 24, 0, None),
    (2, "firmware", T, 24, 0, None),
    (3, "board", T, 16, 0, None),
    (4, "uptime_s", U, U64, 0, None),
    (5, "heap_free", U, U32, 0, None),
    (6, "outbox", U, U32, 0, None),
    (7, "outbox_capacity", U, U32, 0, None),
    (8, "counter", U, U32, 0, None),      # last rating counter issued
    (9, "case_id", U, U32, 0, None),
    (10, "boots", U, U32, 0, None),
    (11, "safe_mode", U, 1, 0, None),
    (12, "errors", M, 0, 16, COUNTER),
    (13, "rssi_neg", U, 200, 0, None),    # Wi-Fi signal as -dBm (0 = not on Wi-Fi)
    (14, "custody", U, U32, 0, None),     # acknowledged ratings kept until settled (SPEC 3.11)
    (15, "custody_oldest", U, U64, 0, None),  # device_time of the oldest of them, 0 = none/unknown
)
REFUSE_FIELDS = (
    (1, "reason", U, U8, 0, None),        # errors.R_*
    (2, "request", U, U8, 0, None),       # type code of the refused request
    (3, "detail", S, 60, 0, None),
)

MESSAGES = {
    POLL: POLL_FIELDS, ACK: ACK_FIELDS, CONTEXT: CONTEXT_FIELDS, CLEAR: CLEAR_FIELDS,
    CONFIG: CONFIG_FIELDS, IDLE: IDLE_FIELDS, RATING: RATING_FIELDS, STATUS: STATUS_FIELDS,
    REFUSE: REFUSE_FIELDS, SETTLE: SETTLE_FIELDS,
}
# The update records' tables (protocol/update_records.py) join MESSAGES and REQUIRED on first use
# (table()): a device that is not being updated never holds them (about 1.1 KB of RAM). On a host,
# importing protocol.codec loads them at once.
UPDATE_TYPES = (UPDATE_OFFER, UPDATE_CHUNK, UPDATE_COMMIT, UPDATE_CANCEL, UPDATE_STATE)

# Most bytes a record's binary encoding may take, whatever the transport: it must fit one RS-485
# frame (frame.MAX_PAYLOAD). Field limits alone would allow more (a CONFIG of 16 texts of 40
# four-byte characters); such content is sent in several messages (SPEC.md 3.5).
MAX_RECORD_BYTES = 1024

# Fields that must be present (non-zero / non-empty) for a message to mean anything.
REQUIRED = {
    ACK: ("counter",),
    CONTEXT: ("case_id", "node"),
    CLEAR: ("case_id",),
    RATING: ("device", "counter", "source"),
    STATUS: ("device",),
    REFUSE: ("reason",),
    SETTLE: ("generation", "seq"),
}

# Rating fields the MAC does not cover: the MAC itself and what the gateway adds on the way.
MAC_EXCLUDED = ("mac", "gateway_time", "hall", "reoffer")




def table(msg_type):
    """The field table of a message type, or None when it has none."""
    fields = MESSAGES.get(msg_type)
    if fields is None and msg_type in UPDATE_TYPES:
        from protocol import update_records  # noqa: F401 (fills MESSAGES and REQUIRED)
        fields = MESSAGES.get(msg_type)
    return fields


_NAMES = ("TYPE_NAMES",)


def __getattr__(name):
    """TYPE_NAMES lives in protocol/names.py, loaded on first use (never on a device)."""
    from protocol.names import lookup
    return lookup(_NAMES, name)
