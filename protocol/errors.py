"""Two error families, as in h11: the peer sent something wrong, or we misused the API.

Every remote error carries a reason code (R_*) so it can be counted and answered with a REFUSE.
"""

# Reason codes: stable numbers, listed in SPEC.md. They travel in REFUSE and ACK messages.
R_OK = 0
R_TRUNCATED = 1        # ran out of bytes inside a field, header or frame
R_OVERSIZE = 2         # a length beyond the stated limit
R_BAD_CRC = 3          # frame CRC-16 mismatch
R_BAD_HEADER = 4       # header CRC-8 mismatch
R_MALFORMED = 5        # structurally wrong: wire type, duplicate scalar, bad varint, bad UTF-8
R_OUT_OF_RANGE = 6     # a value outside its stated range (level 9, 61-char name ...)
R_UNKNOWN_TYPE = 7     # a message type this side does not know
R_MISSING = 8          # a required field is absent
R_BAD_MAC = 9          # rating MAC does not verify
R_REPLAY = 10          # counter already used with different content / below the high-water mark
R_UNKNOWN_DEVICE = 11  # sender not in the registry
R_STORE_FULL = 12      # receiver cannot take it now; the sender keeps it and retries
R_BAD_STATE = 13       # valid message, wrong moment (e.g. rating for a closed case)
R_WRONG_DEVICE = 14    # a rating naming another device than its sender (topic or bus address)

_NAMES = ("REASON_NAMES",)


def __getattr__(name):
    """REASON_NAMES lives in protocol/names.py, loaded on first use (never on a device)."""
    from protocol.names import lookup
    return lookup(_NAMES, name)


class ProtocolError(Exception):
    """The peer sent something we cannot accept. `reason` is an R_* code."""

    def __init__(self, reason, detail=""):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self):
        # the reason's name is looked up only when the error is shown (protocol/names.py)
        from protocol.names import REASON_NAMES
        return "%s: %s" % (REASON_NAMES.get(self.reason, self.reason), self.detail)


class LocalProtocolError(Exception):
    """We tried to send something the protocol forbids (a bug on our side, never the peer's)."""
