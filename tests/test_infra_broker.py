"""The broker fixture runs a real Mosquitto that a paho-mqtt 2.x client can use."""

import queue

import paho.mqtt.client as mqtt
import pytest

from conftest import free_port


def _client(broker, received, **auth):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
    if auth:
        client.username_pw_set(**auth)
    connected = queue.Queue()
    client.on_connect = lambda c, u, flags, rc, props: connected.put(rc)
    client.on_message = lambda c, u, msg: received.put((msg.topic, msg.payload, msg.qos))
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    return client, connected.get(timeout=10)


def _round_trip(broker, payload, **auth):
    received = queue.Queue()
    client, rc = _client(broker, received, **auth)
    try:
        assert not rc.is_failure, rc
        subscribed = queue.Queue()
        client.on_subscribe = lambda c, u, mid, codes, props: subscribed.put(codes)
        client.subscribe("hall/test/#", qos=1)
        assert not subscribed.get(timeout=10)[0].is_failure
        client.publish("hall/test/window-3", payload, qos=1).wait_for_publish(timeout=10)
        return received.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_publish_subscribe_round_trip(mosquitto_broker):
    payload = "评价 王喆 非常满意".encode("utf-8")
    assert _round_trip(mosquitto_broker, payload) == ("hall/test/window-3", payload, 1)


def test_restart_keeps_port_and_serves_again(mosquitto_broker):
    port = mosquitto_broker.port
    mosquitto_broker.restart()
    assert mosquitto_broker.port == port and mosquitto_broker.running
    assert _round_trip(mosquitto_broker, b"after restart")[1] == b"after restart"


def test_stopped_broker_refuses_connections(mosquitto_broker):
    mosquitto_broker.stop()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    with pytest.raises(ConnectionRefusedError):
        client.connect(mosquitto_broker.host, mosquitto_broker.port)


def test_extra_config_password_file(mosquitto_factory, tmp_path):
    import subprocess

    password_file = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(password_file), "gateway", "秘密-1"], check=True)
    password_file.chmod(0o600)
    broker = mosquitto_factory(allow_anonymous=False, extra_config=f"password_file {password_file}")
    assert _round_trip(broker, b"ok", username="gateway", password="秘密-1")[1] == b"ok"
    received = queue.Queue()
    client, rc = _client(broker, received)
    client.disconnect()
    client.loop_stop()
    assert rc.is_failure  # anonymous refused


def test_free_port_is_bindable():
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
