"""Screen words, tag lists, timings, volume and large text per hall, window and device: the CONFIG
each device gets is built for the device and the window it stands at (gateway.app: at start, when
a device is added or moves, and when the live configuration changes, gateway.live_config).

gateway.toml:

    [device_config]              # the whole hall (the CONFIG record's fields, as before)
    version = 1                  # optional: folded into every device's version (bump to resend)
    rating_timeout_s = 60
    idle_text = "欢迎光临"
    volume = 5                   # voice prompts 0 (mute) .. 10
    large_text = false           # large type for the elderly (适老化)
    texts = { thanks = "谢谢您的评价" }          # any screen word by its key (or [{key, text}])
    tags = [{ code = 501, label = "等待时间长", indicator = 4 }]

    [windows."A05"]              # one window: overrides the hall's, key by key
    idle_text = "Welcome"
    volume = 7
    large_text = true
    rating_timeout_s = 90        # timings: rating_timeout_s, thanks_s, press_guard_ms, status_interval_s
    texts = { prompt = "Please rate our service", thanks = "Thank you", level1 = "Very satisfied" }
    tag_labels = { 501 = "Long wait" }          # a tag's label here (code = label)
    tags = { service = [{ code = 502, label = "态度差" }] }   # this indicator's tag list here

    [devices_config."ev-0a1b2c3d4e5f"]           # one device, over its window's: the same keys

`tags` in a window or device table is either a whole list ([{code, label, indicator}], as the
hall's) or a table of indicator name (overall, business, service) = [{code, label}], which
replaces the tags of that indicator only (a tag of several indicators loses the one replaced).
Per-device tables are keyed by device id in [devices_config] (not inside [[devices]]: devices
added through the API live in the registry, and their words belong to the hall's config).

The text keys are the evaluator's screen words (firmware/ui/ui.py names them: prompt, thanks,
level1 .. level5, ...); a key it does not know changes nothing; a window's language is its words.
idle_text (any level) is sent as the text "idle" (the idle screen's word), so that it too can
be given back to the built-in word.

A device keeps what it was sent until it is sent something else: absent CONFIG fields keep their
value, and texts are kept key by key (SPEC 3.5). So that a device moved from an English window to
a Chinese one forgets the English, every CONFIG names every text key any level sets: with its own
word, or no text, which gives the device's built-in word back; and every CONFIG carries volume,
large_text, the timings (the hall's, else the evaluator's defaults) and the whole tag list. Every
CONFIG must fit one record (1,024 bytes, SPEC 3.5): checked, the error names the table and size.

Each device's CONFIG `version` is derived from its content (sha256 of the record, 32 bits, never
0): it changes whenever that device's effective config changes, and the device copies it into
each rating's tags_version (SPEC 3.6), so a rating says which tag list its rater was offered.
"""

import hashlib

from gateway.config import ConfigError
from protocol import codec, schema, supplement, vocab
from protocol.errors import LocalProtocolError, ProtocolError

TIMINGS = ("rating_timeout_s", "thanks_s", "press_guard_ms", "status_interval_s")
WINDOW_KEYS = ("texts", "tag_labels", "idle_text", "volume", "large_text", "tags") + TIMINGS
DEFAULT_VOLUME = 5          # the hall's when [device_config] has none (the evaluator's own default)
# the evaluator's own timings (firmware/rating_config.py), sent when no level sets one
DEFAULT_TIMINGS = {"rating_timeout_s": 60, "thanks_s": 5, "press_guard_ms": 600, "status_interval_s": 300}
INDICATORS = {"overall": vocab.IND_OVERALL, "business": vocab.IND_BUSINESS, "service": vocab.IND_SERVICE}


def is_token(value, limit):
    return isinstance(value, str) and bool(value) and codec.text_problem(schema.T, value, limit) is None


def _texts(value, where):
    """{key: word} from a TOML table {key = word} or the record form [{key, text}]."""
    if value is None:
        return {}
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list) and all(isinstance(t, dict) for t in value):
        pairs = [(t.get("key"), t.get("text", "")) for t in value]
    else:
        raise ConfigError("%s texts: a table of key = word" % where)
    out = {}
    for key, word in pairs:
        if not isinstance(key, str) or not is_token(key, 24):
            raise ConfigError("%s texts: %r is not a key ([A-Za-z0-9._-], up to 24)" % (where, key))
        if not isinstance(word, str) or not word:
            raise ConfigError("%s texts.%s: a word (text) is needed" % (where, key))
        out[key] = word
    return out


def _idle(table, texts, where):
    """idle_text moved into the texts as "idle" (texts.idle, when given, wins)."""
    idle = table.pop("idle_text", "")
    if not isinstance(idle, str):
        raise ConfigError("%s idle_text: a text" % where)
    if idle:
        texts.setdefault("idle", idle)


def _wire(record, where):
    """volume 0..10 and large_text true/false as the CONFIG's wire values (protocol.supplement)."""
    if "volume" in record:
        v = record["volume"]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= schema.VOLUME_MAX:
            raise ConfigError("%s volume: 0 (mute) .. %d" % (where, schema.VOLUME_MAX))
        record["volume"] = supplement.volume_wire(v)
    if "large_text" in record:
        if not isinstance(record["large_text"], bool):
            raise ConfigError("%s large_text: true or false" % where)
        record["large_text"] = supplement.large_text_wire(record["large_text"])


def _tags(value, where):
    """A level's tags: a whole list [{code, label, indicator}], or {indicator name: [{code, label}]}."""
    if isinstance(value, list):
        return list(value)
    if not isinstance(value, dict) or any(k not in INDICATORS or not isinstance(v, list)
                                          for k, v in value.items()):
        raise ConfigError("%s tags: a list of {code, label, indicator}, or a table of %s = [{code, "
                          "label}]" % (where, " / ".join(INDICATORS)))
    out = {}
    for name, tags in value.items():
        if not all(isinstance(t, dict) and set(t) <= {"code", "label"} for t in tags):
            raise ConfigError("%s tags.%s: a list of {code, label}" % (where, name))
        out[INDICATORS[name]] = tags
    return out


def _apply_tags(tags, own):
    """The tag list `tags` with a level's tags (a whole list, or per indicator) applied."""
    if isinstance(own, list):
        return [dict(t) for t in own]
    out = []
    for t in tags:
        left = t.get("indicator", 0) & ~sum(own)
        if left:
            out.append(dict(t, indicator=left))
    for bit, listed in sorted(own.items()):
        out.extend(dict(t, indicator=bit) for t in listed)
    return out


def config_version(record):
    """The CONFIG's version: 32 bits of the sha256 of the record as sent without it (never 0)."""
    body = dict(record)
    given = body.pop("version", 0)
    digest = hashlib.sha256(codec.encode(schema.CONFIG, body) + str(given).encode()).digest()
    return int.from_bytes(digest[:4], "big") or 1


class WindowWords:
    """config_for(window, device) -> the CONFIG record for that device at that window (None: the
    gateway has no [device_config], [windows] nor [devices_config], and sends no CONFIG)."""

    def __init__(self, device_config, windows=None, devices=None, placed=None):
        """`placed` {device id: window}: where each device table is checked (else at the hall's)."""
        windows, devices = windows or {}, devices or {}
        if not isinstance(windows, dict):
            raise ConfigError("[windows]: tables named by window, e.g. [windows.\"A05\"]")
        if not isinstance(devices, dict):
            raise ConfigError("[devices_config]: tables named by device id, e.g. [devices_config.\"ev-1\"]")
        if not isinstance(device_config, (dict, type(None))):
            raise ConfigError("[device_config]: a table")
        self.enabled = bool(device_config) or bool(windows) or bool(devices)
        hall = dict(device_config or {})
        self.hall_texts = _texts(hall.pop("texts", None), "[device_config]")
        _idle(hall, self.hall_texts, "[device_config]")
        hall.setdefault("volume", DEFAULT_VOLUME)
        hall.setdefault("large_text", False)
        _wire(hall, "[device_config]")
        for key, value in DEFAULT_TIMINGS.items():
            hall.setdefault(key, value)
        hall.setdefault("version", 1)
        hall.setdefault("tags", [])
        self.hall = hall
        self.windows = dict((w, self._own(t, '[windows."%s"]' % w, 16, "a window number"))
                            for w, t in windows.items())
        self.devices = dict((d, self._own(t, '[devices_config."%s"]' % d, 24, "a device id"))
                            for d, t in devices.items())
        # every key set anywhere: each CONFIG names them all (see the module's doc)
        keys = set(self.hall_texts)
        for own in list(self.windows.values()) + list(self.devices.values()):
            keys.update(own["texts"])
        self.keys = sorted(keys)
        self._records = {}
        if self.enabled:      # every table is checked now: the hall's, each window's, each device's
            for window in [None] + sorted(self.windows):
                self.config_for(window)
            for device in sorted(self.devices):
                self.config_for((placed or {}).get(device), device)

    def _own(self, table, where, limit, what):
        name = where.split('"')[1]
        if not is_token(name, limit) or not isinstance(table, dict):
            raise ConfigError("%s: %s ([A-Za-z0-9._-], up to %d) and a table" % (where, what, limit))
        unknown = sorted(set(table) - set(WINDOW_KEYS))
        if unknown:
            raise ConfigError("%s: unknown key(s) %s (allowed: %s)" % (where, ", ".join(unknown),
                                                                       ", ".join(WINDOW_KEYS)))
        own = dict(table)
        own["texts"] = _texts(own.get("texts"), where)
        _idle(own, own["texts"], where)
        labels = own.get("tag_labels") or {}
        if not isinstance(labels, dict):
            raise ConfigError("%s tag_labels: a table of code = label" % where)
        own["tag_labels"] = labels
        if "tags" in own:
            own["tags"] = _tags(own["tags"], where)
        _wire(own, where)
        return own

    def _build(self, window, device):
        levels = [(self.windows.get(window), '[windows."%s"]' % window),
                  (self.devices.get(device), '[devices_config."%s"]' % device)]
        record = dict(self.hall)
        words = dict(self.hall_texts)
        where = "[device_config]"
        for own, name in levels:
            if own is None:
                continue
            where = name
            for k, v in own.items():
                if k == "tags":
                    record["tags"] = _apply_tags(record["tags"], v)
                elif k not in ("texts", "tag_labels"):
                    record[k] = v
            words.update(own["texts"])
            self._label(record, own["tag_labels"], where)
        texts = []
        for key in self.keys:
            texts.append({"key": key, "text": words[key]} if key in words else {"key": key})
        if texts:
            record["texts"] = texts
        try:
            record["version"] = config_version(record)
        except (ProtocolError, LocalProtocolError, ValueError, TypeError) as e:
            raise ConfigError("%s: not a valid device CONFIG (%s)" % (where, e)) from None
        return record

    @staticmethod
    def _label(record, labels, where):
        codes = [t.get("code") for t in record["tags"]]
        for code, label in labels.items():
            if not (str(code).isdigit() and int(code) in codes):
                raise ConfigError("%s tag_labels: %s is not a tag code offered there" % (where, code))
            if not isinstance(label, str) or not label:
                raise ConfigError("%s tag_labels.%s: a label (text) is needed" % (where, code))
        if labels:
            named = dict((int(c), v) for c, v in labels.items())
            record["tags"] = [dict(t, label=named.get(t.get("code"), t.get("label", "")))
                              for t in record["tags"]]

    def config_for(self, window, device=None):
        """The CONFIG record for `device` at `window` (the hall's for a window without a table);
        ConfigError if that combination makes no valid CONFIG (checked by gateway.live_config)."""
        if not self.enabled:
            return None
        window = window if window in self.windows else None
        device = device if device in self.devices else None
        key = (window, device)
        if key not in self._records:
            self._records[key] = self._build(window, device)
        return self._records[key]

    def sources(self, window, device=None):
        """{key: "device" | "window" | "hall"}: the level that set each key of this CONFIG (text
        keys as texts.<key>); a key no level sets is the evaluator's default."""
        out = {}
        levels = [("hall", dict(self.hall, texts=self.hall_texts)),
                  ("window", self.windows.get(window)), ("device", self.devices.get(device))]
        for name, own in levels:
            for k, v in (own or {}).items():
                if k == "texts":
                    out.update(("texts." + t, name) for t in v)
                elif k == "tag_labels":
                    if v:
                        out["tags"] = name
                elif k != "version":
                    out[k] = name
        return out
