"""Readable names of the protocol's numbers, for logs, reports, SPEC.md and the gateway.

Kept apart so a device never loads them (about 1 KiB of RAM on MicroPython): errors, vocab and
schema hand them out on first use through a module __getattr__ (errors.REASON_NAMES,
vocab.LEVEL_NAMES, ...), so callers on CPython see no difference.
"""

from protocol import errors as _e, schema as _s, vocab as _v

REASON_NAMES = {
    _e.R_OK: "ok", _e.R_TRUNCATED: "truncated", _e.R_OVERSIZE: "oversize", _e.R_BAD_CRC: "bad_crc",
    _e.R_BAD_HEADER: "bad_header", _e.R_MALFORMED: "malformed", _e.R_OUT_OF_RANGE: "out_of_range",
    _e.R_UNKNOWN_TYPE: "unknown_type", _e.R_MISSING: "missing", _e.R_BAD_MAC: "bad_mac",
    _e.R_REPLAY: "replay", _e.R_UNKNOWN_DEVICE: "unknown_device", _e.R_STORE_FULL: "store_full",
    _e.R_BAD_STATE: "bad_state", _e.R_WRONG_DEVICE: "wrong_device",
}

TYPE_NAMES = {_s.POLL: "poll", _s.ACK: "ack", _s.CONTEXT: "context", _s.CLEAR: "clear",
              _s.CONFIG: "config", _s.IDLE: "idle", _s.RATING: "rating", _s.STATUS: "status",
              _s.REFUSE: "refuse", _s.UPDATE_OFFER: "update_offer", _s.UPDATE_CHUNK: "update_chunk",
              _s.UPDATE_COMMIT: "update_commit", _s.UPDATE_CANCEL: "update_cancel",
              _s.UPDATE_STATE: "update_state", _s.SETTLE: "settle"}

LEVEL_NAMES = {
    _v.VERY_SATISFIED: "非常满意",
    _v.SATISFIED: "满意",
    _v.BASICALLY_SATISFIED: "基本满意",
    _v.DISSATISFIED: "不满意",
    _v.VERY_DISSATISFIED: "非常不满意",
}
INDICATOR_NAMES = {_v.IND_OVERALL: "总体评价", _v.IND_BUSINESS: "业务评价", _v.IND_SERVICE: "服务评价"}
NODE_NAMES = {_v.NODE_RECEIPT: "收件", _v.NODE_ACCEPTANCE: "受理", _v.NODE_COMPLETION: "办结",
              _v.NODE_PICKUP: "领证"}
SOURCE_NAMES = {_v.SRC_PRESS: "press", _v.SRC_NOT_RATED: "not_rated",
                _v.SRC_SYSTEM_DEFAULT: "system_default"}
ACK_NAMES = {_v.ACK_STORED: "stored", _v.ACK_DUPLICATE: "duplicate", _v.ACK_DEAD_LETTER: "dead_letter",
             _v.ACK_RETRY: "retry", _v.ACK_REJECTED: "rejected"}


def lookup(module_names, name):
    """The body of a module __getattr__ handing out the tables listed in `module_names`."""
    if name in module_names:
        return globals()[name]
    raise AttributeError(name)
