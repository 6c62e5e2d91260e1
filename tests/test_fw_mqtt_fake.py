"""The firmware's MQTT client byte for byte against a scripted broker (fake socket): CONNECT /
CONNACK, SUBSCRIBE / SUBACK, QoS 1 PUBLISH / PUBACK with a DUP resend after a lost PUBACK,
incoming PUBLISH, keepalive, reconnect. On CPython and on real MicroPython 1.29."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import fw_mqtt_fake  # noqa: E402


def test_scripted_broker_cpython():
    assert fw_mqtt_fake.scenario() == fw_mqtt_fake.CHECKS


MP_SCRIPT = """
import sys
sys.path.insert(0, "/repo/tests")
import fw_mqtt_fake
print("CHECKS", fw_mqtt_fake.scenario())
"""


def test_scripted_broker_micropython(micropython):
    files = {"/repo/tests/fw_mqtt_fake.py": (Path(__file__).parent / "fw_mqtt_fake.py").read_bytes()}
    r = micropython(MP_SCRIPT, files=files, trees=("protocol", "firmware")).check()
    assert "CHECKS %d" % fw_mqtt_fake.CHECKS in r.stdout, r.stdout + r.stderr
