"""What makes a rating record meaningful beyond its field ranges (rules Art. 10-20)."""

from protocol import errors, vocab
from protocol.errors import ProtocolError

LEVEL_FIELDS = ("overall", "business", "service")
_INDICATOR_OF = {"overall": vocab.IND_OVERALL, "business": vocab.IND_BUSINESS,
                 "service": vocab.IND_SERVICE}


def rating_id(rating):
    """The permanent, hall-wide unique id: device id and its counter. The central side dedupes on it."""
    return "%s:%d" % (rating["device"], rating["counter"])


def split_rating_id(text):
    device, _, counter = text.rpartition(":")
    if not device or not counter.isdigit():
        raise ProtocolError(errors.R_MALFORMED, "rating id %r" % text)
    return device, int(counter)


def levels(rating):
    return [rating[name] for name in LEVEL_FIELDS if rating.get(name)]


def is_bad(rating):
    """A bad rating (差评) in any indicator or theme item: it opens a work order."""
    for level in levels(rating):
        if vocab.is_bad(level):
            return True
    for item in rating.get("items", ()):
        if vocab.is_bad(item.get("level", 0)):
            return True
    return False


def check(rating, indicators=None):
    """Raise ProtocolError if a device's rating breaks a rule; `indicators` = IND_* bits the case
    allows. A system default is made by the central side, never sent by a device."""
    source = rating.get("source")
    rated = levels(rating)
    if source == vocab.SRC_PRESS:
        if not rated and not rating.get("items"):
            raise ProtocolError(errors.R_MISSING, "a press carries at least one level")
    elif source == vocab.SRC_NOT_RATED:
        if rated:
            raise ProtocolError(errors.R_BAD_STATE, "'not rated' carries no level")
        for name in ("tags", "text", "items"):
            if rating.get(name):
                raise ProtocolError(errors.R_BAD_STATE, "'%s' without a press" % name)
    elif source == vocab.SRC_SYSTEM_DEFAULT:
        raise ProtocolError(errors.R_BAD_STATE, "a system default is set by the central side only")
    else:
        raise ProtocolError(errors.R_OUT_OF_RANGE, "source %r" % source)
    if rating.get("tags") and not is_bad(rating):
        raise ProtocolError(errors.R_BAD_STATE, "tags refine a bad rating only")
    if indicators is not None:
        for name in LEVEL_FIELDS:
            if rating.get(name) and not indicators & _INDICATOR_OF[name]:
                raise ProtocolError(errors.R_BAD_STATE, "%s may not be rated at this node" % name)


def verdict(counter, high_water, stored_mac, mac):
    """(ACK result, reason) for a rating whose MAC has verified (SPEC.md 7.3).

    high_water: the highest counter of this device the gateway has committed (0 = none).
    stored_mac: the MAC stored under this rating id, or None when the id is not stored.
    An identical retransmission of a stored id is a duplicate; the same id with other content,
    or an unstored counter at or below the high-water mark, is a replay.
    """
    if stored_mac is not None:
        if bytes(stored_mac) == bytes(mac):
            return vocab.ACK_DUPLICATE, errors.R_OK
        return vocab.ACK_DEAD_LETTER, errors.R_REPLAY
    if counter <= high_water:
        return vocab.ACK_DEAD_LETTER, errors.R_REPLAY
    return vocab.ACK_STORED, errors.R_OK
