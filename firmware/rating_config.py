"""The gateway's CONFIG record (tags, texts, timeouts) as the device keeps it: defaults overlaid
with the last CONFIG received, saved beside the device config so it survives a reboot."""

from protocol import codec, schema
from protocol.errors import ProtocolError
from firmware.flashfs import join

RATING_CONFIG_FILE = "config.bin"

# volume and large_text hold their wire values (protocol.supplement): volume 1 + 0..10, 6 = level 5
RATING_DEFAULTS = {"version": 0, "tags": [], "texts": [], "rating_timeout_s": 60, "thanks_s": 5,
                   "press_guard_ms": 600, "status_interval_s": 300, "idle_text": "",
                   "volume": 6, "large_text": 1}


def volume(cfg):
    """The volume 0 (mute) .. 10 a rating config sets."""
    wire = cfg.get("volume") or RATING_DEFAULTS["volume"]
    return wire - 1


def rating_config(record=None):
    """Defaults overlaid with a CONFIG record's non-empty fields."""
    out = dict(RATING_DEFAULTS)
    if record:
        for k in record:
            out[k] = record[k]
    return out


def load_rating_config(fs, root):
    raw = fs.read(join(root, RATING_CONFIG_FILE))
    if raw:
        try:
            return rating_config(codec.decode(schema.CONFIG, raw))
        except ProtocolError:
            pass  # a damaged file: the defaults, until the gateway sends CONFIG again
    return rating_config()


def save_rating_config(fs, root, record):
    fs.write_atomic(join(root, RATING_CONFIG_FILE), codec.encode(schema.CONFIG, record))
