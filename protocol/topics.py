"""MQTT topic layout (SPEC.md section 6). Every topic of a hall lives under hall/<hall>/.

device -> gateway   hall/<hall>/dev/<device>/rating        QoS 1, not retained, RATING JSON
                    hall/<hall>/dev/<device>/status        QoS 0, not retained, STATUS JSON
                    hall/<hall>/dev/<device>/availability  QoS 1, retained, "online" | "offline" (last will)
                    hall/<hall>/dev/<device>/update_state  QoS 1, not retained, UPDATE_STATE JSON
gateway -> device   hall/<hall>/dev/<device>/context       QoS 1, retained, CONTEXT JSON ("" = no case)
                    hall/<hall>/dev/<device>/ack           QoS 1, not retained, ACK JSON
                    hall/<hall>/dev/<device>/config        QoS 1, retained, CONFIG JSON
                    hall/<hall>/dev/<device>/update        QoS 1, not retained, UPDATE_* JSON with "type"
                    hall/<hall>/dev/<device>/settle        QoS 1, retained, SETTLE JSON (custody, SPEC 3.11)
gateway             hall/<hall>/gateway/state              QoS 1, retained, "online" | "offline" (last will)
                    hall/<hall>/gateway/devices            QoS 1, retained, registry JSON
                    hall/<hall>/gateway/event              QoS 0, alarms and notable events
Hall and device ids are tokens ([A-Za-z0-9._-]), so they never contain MQTT wildcards or '/'.
"""

from protocol import errors
from protocol.codec import _is_token_char
from protocol.errors import LocalProtocolError, ProtocolError

ROOT = "hall"
DEVICE_TO_GATEWAY = ("rating", "status", "availability", "update_state")
GATEWAY_TO_DEVICE = ("context", "ack", "config", "update", "settle")
QOS = {"rating": 1, "status": 0, "availability": 1, "context": 1, "ack": 1, "config": 1,
       "state": 1, "devices": 1, "event": 0, "update_state": 1, "update": 1, "settle": 1}
RETAINED = ("availability", "context", "config", "state", "devices", "settle")
ONLINE = "online"
OFFLINE = "offline"


def _is_id(value):
    """1-32 token characters: no '/', no wildcard, nothing MQTT or a shell could misread."""
    if not value or len(value) > 32:
        return False
    for c in value:
        if not _is_token_char(c):
            return False
    return True


def _token(value, what):
    if not _is_id(value):
        raise LocalProtocolError("bad %s id %r" % (what, value))
    return value


def device_topic(hall, device, kind):
    if kind not in DEVICE_TO_GATEWAY and kind not in GATEWAY_TO_DEVICE:
        raise LocalProtocolError("unknown device topic %r" % kind)
    return "%s/%s/dev/%s/%s" % (ROOT, _token(hall, "hall"), _token(device, "device"), kind)


def gateway_topic(hall, kind):
    if kind not in ("state", "devices", "event"):
        raise LocalProtocolError("unknown gateway topic %r" % kind)
    return "%s/%s/gateway/%s" % (ROOT, _token(hall, "hall"), kind)


def gateway_subscriptions(hall, kinds=DEVICE_TO_GATEWAY):
    """What the gateway subscribes to: everything devices send in its hall (or those kinds)."""
    return ["%s/%s/dev/+/%s" % (ROOT, _token(hall, "hall"), kind) for kind in kinds]


def device_subscriptions(hall, device):
    return [device_topic(hall, device, kind) for kind in GATEWAY_TO_DEVICE]


def parse(topic):
    """(hall, device or None, kind) of a topic in our layout; ProtocolError otherwise."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[0] == ROOT and parts[2] == "dev" and _is_id(parts[1]) and _is_id(parts[3]):
        if parts[4] in DEVICE_TO_GATEWAY or parts[4] in GATEWAY_TO_DEVICE:
            return parts[1], parts[3], parts[4]
    if len(parts) == 4 and parts[0] == ROOT and parts[2] == "gateway" and _is_id(parts[1]):
        if parts[3] in ("state", "devices", "event"):
            return parts[1], None, parts[3]
    raise ProtocolError(errors.R_MALFORMED, "topic %r" % topic)
