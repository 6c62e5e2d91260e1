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
    return apply_config(RATING_DEFAULTS, record or {})


def apply_config(cfg, record):
    """A new rating config: `cfg` with a CONFIG record applied (SPEC 3.5). Fields present replace
    theirs; `texts` replace only the keys they name, and a text left empty gives its key back to
    the built-in word (the gateway sends that when a device moves to a window without it)."""
    out = dict(cfg)
    for k in record:
        if k != "texts":
            out[k] = record[k]
            continue
        named = [t["key"] for t in record["texts"]]
        texts = [t for t in cfg.get("texts", ()) if t["key"] not in named]
        for t in record["texts"]:
            if t.get("text"):
                texts.append(t)
        out["texts"] = texts
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
    """Save a rating config (the merged one: several CONFIG messages may have made it)."""
    fs.write_atomic(join(root, RATING_CONFIG_FILE), codec.encode(schema.CONFIG, record))
