"""--screenshots DIR: every evaluator's screen as PNG (the sim board's own renderer), and the
gateway's status OLED when gateway/status_display.py can draw it from the gateway's /status.

Files: DIR/<device>.png (e.g. w01.png) and DIR/gateway-oled.png. Returns the paths written.
"""

import json
import os
import urllib.request


def save_evaluators(evaluators, directory):
    os.makedirs(directory, exist_ok=True)
    written = []
    for ev in evaluators:
        path = os.path.join(directory, "%s.png" % ev.id)
        if ev.save_png(path):
            written.append(path)
    return written


def gateway_status(http_url, timeout=3.0):
    with urllib.request.urlopen(http_url.rstrip("/") + "/status", timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))


def oled_snapshot(status):
    """gateway/status_display's snapshot from the gateway's /status JSON."""
    from gateway import status_display
    devices = status.get("devices") or {}
    last = status.get("last_rating") or None
    if last:
        last = {"window": last.get("window") or last.get("device", ""), "level": last.get("level"),
                "time": last.get("time")}
    return status_display.snapshot(status.get("hall", ""), devices.get("online", 0),
                                   devices.get("total", 0), backlog=status.get("outbox"),
                                   uplink=status.get("uplink"), last_rating=last)


def save_gateway_oled(http_url, directory):
    """The gateway's OLED page for its current status (gateway/status_display.py draws it)."""
    from gateway import status_display
    display = status_display.StatusDisplay()
    display.show(oled_snapshot(gateway_status(http_url)))
    os.makedirs(directory, exist_ok=True)
    return display.save_png(os.path.join(directory, "gateway-oled.png"))


def save_all(hall, directory):
    written = save_evaluators(hall.evaluators.values(), directory)
    try:
        oled = save_gateway_oled(hall.gateway.http_url, directory)
    except OSError:
        oled = None
    if oled:
        written.append(oled)
    return written
