"""The gateway's status screen: an SSD1306 128x64 OLED on I2C (luma.oled) on a Pi.

Four 16-pixel lines in Unifont (it has every CJK glyph the hall names need):
    福田区行政服务大厅          hall
    DEV 14/16 Q 1234          devices online/total, outbox depth (framed at the 80 % alarm)
    UPLINK up / UP retry 12s  uplink state (and seconds to the next try when backing off)
    A07 已评价 14:13           last rating: window, rated / 未评价, China time (words drop if
                               too long). Never the level: the screen may be in sight of the
                               clerks, and nobody may watch how a window is rated (rules Art. 4).
Off a Pi the same frames go to luma.core's dummy device and can be saved as PNG (no pygame needed,
which luma.emulator would pull in).
"""

import datetime as _dt
import os
import time

from PIL import Image, ImageDraw, ImageFont

from protocol import vocab

WIDTH, HEIGHT = 128, 64
LINE = 16
FONT_PATHS = ("/usr/share/fonts/opentype/unifont/unifont.otf",
              "/usr/share/fonts/truetype/unifont/unifont.ttf")
NOT_RATED_SOURCE = vocab.SOURCE_NAMES[vocab.SRC_NOT_RATED]
CHINA_TZ = _dt.timezone(_dt.timedelta(hours=8))
UPLINK_WORDS = {"idle": "idle", "up": "up", "backoff": "retry", "down": "DOWN"}


def find_font(paths=FONT_PATHS):
    for path in paths:
        if os.path.exists(path):
            return ImageFont.truetype(path, LINE)
    return ImageFont.load_default()   # ASCII only; Chinese shows as boxes


def make_device(i2c_port=1, address=0x3C):
    """The real OLED when its I2C bus exists, else luma.core's dummy device (same interface)."""
    if os.path.exists("/dev/i2c-%d" % i2c_port):
        try:
            from luma.core.interface.serial import i2c
            from luma.oled.device import ssd1306
            return ssd1306(i2c(port=i2c_port, address=address), width=WIDTH, height=HEIGHT)
        except Exception:   # no display on the bus: fall through to the dummy
            pass
    from luma.core.device import dummy
    return dummy(width=WIDTH, height=HEIGHT, mode="1")


def snapshot(hall, devices_online, devices_total, backlog=None, uplink=None, last_rating=None,
             now=None):
    """The screen's data from the gateway's parts: store.backlog(), uplink.status.as_dict(),
    last_rating {"window", "source" ("press" | "not_rated"), "time"} (other keys are ignored: the
    level is never shown). Identity is never part of it."""
    backlog = backlog or {}
    uplink = uplink or {}
    now = time.time() if now is None else now
    next_try = uplink.get("next_try_at")
    return {"hall": hall, "online": devices_online, "total": devices_total,
            "outbox": backlog.get("ratings", 0) + backlog.get("cases", 0),
            "fill": backlog.get("fill", 0.0), "uplink": uplink.get("state", "idle"),
            "retry_in": max(0, int(next_try - now)) if next_try else None,
            "last_rating": last_rating}


def _fit(draw, candidates, font, width=WIDTH):
    """The first candidate (most detailed first) that fits; the last one cut if none does.
    Numbers are never cut: a shorter candidate drops words, not digits."""
    for text in candidates:
        if draw.textlength(text, font=font) <= width:
            return text
    text = candidates[-1]
    while text and draw.textlength(text, font=font) > width:
        text = text[:-1]
    return text


def render(snap, font=None):
    """A 1-bit 128x64 image of the snapshot."""
    font = font or find_font()
    image = Image.new("1", (WIDTH, HEIGHT), 0)
    draw = ImageDraw.Draw(image)
    counts = (snap["online"], snap["total"], snap["outbox"])
    lines = [[snap["hall"]],
             ["DEV %d/%d Q %d" % counts, "D %d/%d Q %d" % counts, "D%d/%d Q%d" % counts],
             _uplink_line(snap)]
    last = snap.get("last_rating")
    if last:
        level = "未评价" if last.get("source") == NOT_RATED_SOURCE else "已评价"
        window = last.get("window", "")
        stamp = _dt.datetime.fromtimestamp(last["time"], CHINA_TZ).strftime("%H:%M") \
            if last.get("time") else ""
        lines.append(["%s %s %s" % (window, level, stamp), "%s %s" % (window, level), level])
    else:
        lines.append(["no rating yet"])
    for row, candidates in enumerate(lines):
        draw.text((0, row * LINE), _fit(draw, candidates, font), font=font, fill=1)
    if snap.get("fill", 0) >= 0.8:          # store alarm: frame the outbox line
        draw.rectangle((0, LINE, WIDTH - 1, 2 * LINE - 1), outline=1)
    return image


def _uplink_line(snap):
    word = UPLINK_WORDS.get(snap["uplink"], snap["uplink"])
    if snap.get("retry_in") is not None and snap["uplink"] in ("backoff", "down"):
        return ["UPLINK %s %ds" % (word, snap["retry_in"]), "UP %s %ds" % (word, snap["retry_in"])]
    return ["UPLINK %s" % word]


class StatusDisplay:
    def __init__(self, device=None, font=None):
        self.device = device or make_device()
        self.font = font or find_font()
        self.last_image = None

    def show(self, snap):
        self.last_image = render(snap, self.font)
        self.device.display(self.last_image.convert(self.device.mode))
        return self.last_image

    def save_png(self, path, scale=4):
        """The last frame as a PNG (scaled up so it can be read on a PC screen)."""
        image = self.last_image.convert("L")
        if scale != 1:
            image = image.resize((WIDTH * scale, HEIGHT * scale), Image.NEAREST)
        tmp = "%s.tmp" % path
        image.save(tmp, format="PNG")
        os.replace(tmp, path)      # a reader never sees half a file
        return path
