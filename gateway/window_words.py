"""Screen words, tag labels, volume and large text per window: the CONFIG each device gets is built
for the window it stands at (gateway.app: at start, when a device is added, and when it moves).

gateway.toml:

    [device_config]              # the whole hall (the CONFIG record's fields, as before)
    version = 1
    rating_timeout_s = 60
    idle_text = "欢迎光临"
    volume = 5                   # voice prompts 0 (mute) .. 10
    large_text = false           # large type for the elderly (适老化)
    texts = { thanks = "谢谢您的评价" }          # any screen word by its key (or [{key, text}])
    tags = [{ code = 501, label = "等待时间长", indicator = 4 }]

    [windows."A05"]              # one window: overrides any of the hall's words, key by key
    idle_text = "Welcome"
    volume = 7
    large_text = true
    texts = { prompt = "Please rate our service", thanks = "Thank you", level1 = "Very satisfied" }
    tag_labels = { 501 = "Long wait" }          # a hall tag's label at this window (code = label)

The text keys are the evaluator's screen words (firmware/ui/ui.py names them: prompt, thanks,
level1 .. level5, ...); a key it does not know changes nothing. Tag codes, their indicators and the
CONFIG version and the timings stay hall-wide: the central platform knows a tag by its code.
idle_text (hall or window) is sent as the text "idle" (the idle screen's word), so that it too can
be given back to the built-in word.

A device keeps what it was sent until it is sent something else: absent CONFIG fields keep their
value, and texts are kept key by key (SPEC 3.5). So that a device moved from an English window to
a Chinese one forgets the English, every window's CONFIG names every text key any window (or the
hall) sets: with this window's word, the hall's, or no text, which gives the device's built-in word
back; and every CONFIG carries volume and large_text (the hall's: default 5 and off). Every window's CONFIG must fit one record (1,024 bytes,
SPEC 3.5): checked at start, the error names the window and its size.
"""

from gateway.config import ConfigError
from protocol import codec, schema, supplement
from protocol.errors import LocalProtocolError, ProtocolError

WINDOW_KEYS = ("texts", "tag_labels", "idle_text", "volume", "large_text")
DEFAULT_VOLUME = 5          # the hall's when [device_config] has none (the evaluator's own default)


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


class WindowWords:
    """config_for(window) -> the CONFIG record for a device at that window (None: the gateway has
    neither [device_config] nor [windows], and sends no CONFIG, as before)."""

    def __init__(self, device_config, windows=None):
        windows = windows or {}
        if not isinstance(windows, dict):
            raise ConfigError("[windows]: tables named by window, e.g. [windows.\"A05\"]")
        self.enabled = bool(device_config) or bool(windows)
        hall = dict(device_config or {})
        self.hall_texts = _texts(hall.pop("texts", None), "[device_config]")
        _idle(hall, self.hall_texts, "[device_config]")
        hall.setdefault("volume", DEFAULT_VOLUME)
        hall.setdefault("large_text", False)
        _wire(hall, "[device_config]")
        hall.setdefault("version", 1)
        self.hall = hall
        self.windows = {}
        for window, table in windows.items():
            where = '[windows."%s"]' % window
            if not is_token(window, 16) or not isinstance(table, dict):
                raise ConfigError("%s: a window number ([A-Za-z0-9._-], up to 16) and a table" % where)
            unknown = sorted(set(table) - set(WINDOW_KEYS))
            if unknown:
                raise ConfigError("%s: unknown key(s) %s (allowed: %s)" % (where, ", ".join(unknown),
                                                                           ", ".join(WINDOW_KEYS)))
            own = dict(table)
            own["texts"] = _texts(own.get("texts"), where)
            _idle(own, own["texts"], where)
            own["tag_labels"] = self._labels(own.get("tag_labels"), where)
            _wire(own, where)
            self.windows[window] = own
        # every key set anywhere: each window's CONFIG names them all (see the module's doc)
        keys = set(self.hall_texts)
        for own in self.windows.values():
            keys.update(own["texts"])
        self.keys = sorted(keys)
        self._records = {}
        if self.enabled:
            for window in [None] + sorted(self.windows):
                self._records[window] = self._build(window)

    def _labels(self, value, where):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError("%s tag_labels: a table of code = label" % where)
        codes = [t.get("code") for t in self.hall.get("tags") or ()]
        out = {}
        for code, label in value.items():
            if not (str(code).isdigit() and int(code) in codes):
                raise ConfigError("%s tag_labels: %s is not a tag code of [device_config] tags" % (where, code))
            if not isinstance(label, str) or not label:
                raise ConfigError("%s tag_labels.%s: a label (text) is needed" % (where, code))
            out[int(code)] = label
        return out

    def _build(self, window):
        own = self.windows.get(window, {})
        record = dict(self.hall)
        for k, v in own.items():
            if k not in ("texts", "tag_labels"):
                record[k] = v
        labels = own.get("tag_labels") or {}
        if labels:
            record["tags"] = [dict(t, label=labels.get(t.get("code"), t.get("label", "")))
                              for t in self.hall.get("tags") or ()]
        words = dict(self.hall_texts)
        words.update(own.get("texts") or {})
        texts = []
        for key in self.keys:
            texts.append({"key": key, "text": words[key]} if key in words else {"key": key})
        if texts:
            record["texts"] = texts
        where = '[windows."%s"]' % window if window is not None else "[device_config]"
        try:
            size = len(codec.encode(schema.CONFIG, record))
        except (ProtocolError, LocalProtocolError, ValueError, TypeError) as e:
            raise ConfigError("%s: not a valid device CONFIG (%s)" % (where, e)) from None
        if size > schema.MAX_RECORD_BYTES:   # pragma: no cover - codec.encode refuses it first
            raise ConfigError("%s: the CONFIG takes %d bytes, over %d" % (where, size, schema.MAX_RECORD_BYTES))
        return record

    def config_for(self, window):
        """The CONFIG record for a device at `window` (the hall's for a window without a table)."""
        if not self.enabled:
            return None
        return self._records.get(window) or self._records[None]
