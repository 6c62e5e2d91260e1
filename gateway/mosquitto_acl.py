"""Mosquitto password and ACL files from the registry, so a device can publish only under its own
topics and read only what is addressed to it (protocol.topics).

- Each device logs in with its id as user name and a password derived from its own 32-byte key
  (mqtt_password): the provisioning tool writes the same value into the device's config, so no
  second secret has to be handed around, and the broker file holds only a salted PBKDF2 hash.
- Hashes use Mosquitto 2's "$7$" format: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte hash, base64.
- The gateway user may read and write everything of its hall; nobody else gets a wildcard.
Files are written atomically with mode 0600; reload Mosquitto (SIGHUP) after writing.
"""

import base64
import hashlib
import os

from protocol import topics
from protocol.auth import mqtt_password  # the device computes the same (SPEC 6.2)

PBKDF2_ITERATIONS = 101


def hash_password(password, salt=None, iterations=PBKDF2_ITERATIONS):
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def password_file(hall, registry, gateway_user, gateway_password):
    lines = ["%s:%s" % (gateway_user, hash_password(gateway_password))]
    for device in sorted(registry.all(), key=lambda d: d.id):
        if device.transport == "mqtt":
            lines.append("%s:%s" % (device.id, hash_password(mqtt_password(device.key))))
    return "\n".join(lines) + "\n"


def acl_file(hall, registry, gateway_user):
    out = ["# generated from the gateway registry: do not edit",
           "user %s" % gateway_user, "topic readwrite %s/%s/#" % (topics.ROOT, hall), ""]
    for device in sorted(registry.all(), key=lambda d: d.id):
        if device.transport != "mqtt":
            continue
        out.append("user %s" % device.id)
        for kind in topics.DEVICE_TO_GATEWAY:
            out.append("topic write %s" % topics.device_topic(hall, device.id, kind))
        for kind in topics.GATEWAY_TO_DEVICE:
            out.append("topic read %s" % topics.device_topic(hall, device.id, kind))
        out.append("topic read %s" % topics.gateway_topic(hall, "state"))
        out.append("")
    return "\n".join(out)


def _write(path, text):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_files(directory, hall, registry, gateway_user, gateway_password):
    os.makedirs(directory, exist_ok=True)
    paths = {"password_file": os.path.join(directory, "passwords"),
             "acl_file": os.path.join(directory, "acl")}
    _write(paths["password_file"], password_file(hall, registry, gateway_user, gateway_password))
    _write(paths["acl_file"], acl_file(hall, registry, gateway_user))
    return paths
