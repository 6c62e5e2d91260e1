"""--screenshots DIR: every evaluator's screen as PNG (the sim board's own renderer: five-button
128x64 and touch 320x240 alike), and the gateway's status OLED: the frame the running gateway
drew itself (its [display] png_path, gateway/panel.py), or, when it has none, one drawn here by
gateway/status_display.py from the gateway's /status.

Files: DIR/<device>.png (e.g. w01.png) and DIR/gateway-oled.png. Returns the paths written.
"""

import json
import os
import shutil
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
                "level_name": last.get("level_name"), "time": last.get("time")}
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


def copy_gateway_oled(png_path, directory):
    """The gateway's own last OLED frame, when it draws one."""
    if not png_path or not os.path.exists(png_path):
        return None
    os.makedirs(directory, exist_ok=True)
    return shutil.copyfile(png_path, os.path.join(directory, "gateway-oled.png"))


def save_all(hall, directory):
    written = save_evaluators(hall.evaluators.values(), directory)
    oled = copy_gateway_oled(getattr(hall, "oled_png", None), directory)
    if oled is None:
        try:
            oled = save_gateway_oled(hall.gateway.http_url, directory)
        except OSError:
            oled = None
    if oled:
        written.append(oled)
    return written
