"""Raspberry Pi hall gateway: RS-485 master, MQTT bridge, queueing-system API, durable outbox."""
