"""Status OLED frames (luma.core dummy device off a Pi) and status LEDs (fake and absent GPIO)."""

import os
import sys

from PIL import Image, ImageDraw

from gateway import leds, status_display
from gateway.leds import NullGpio, StatusLeds
from gateway.status_display import StatusDisplay, render, snapshot

SHOTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "screenshots")
NOW = 1718000000


def lit(image, top, bottom):
    return sum(1 for y in range(top, bottom) for x in range(image.width) if image.getpixel((x, y)))


def test_frame_carries_each_line(tmp_path):
    snap = snapshot("福田区行政服务大厅", 14, 16, backlog={"ratings": 1234, "cases": 6, "fill": 0.1},
                    uplink={"state": "backoff", "next_try_at": NOW + 12},
                    last_rating={"window": "A07", "level": 1, "time": NOW}, now=NOW)
    assert snap["outbox"] == 1240 and snap["retry_in"] == 12
    assert status_display._fit(ImageDraw.Draw(Image.new("1", (1, 1))),
                               ["DEV 14/16 Q 12345678", "D14/16 Q12345678"],
                               status_display.find_font()) == "D14/16 Q12345678"
    display = StatusDisplay()
    image = display.show(snap)
    assert image.size == (128, 64) and image.mode == "1"
    for row in range(4):                               # every 16-px line has text on it
        assert lit(image, row * 16, row * 16 + 16) > 40, row
    assert lit(image, 0, 64) < 128 * 64 // 2           # text, not a filled screen
    assert display.device.image.getbbox() is not None  # the dummy device got the frame
    path = display.save_png(str(tmp_path / "oled.png"))
    saved = Image.open(path)
    assert saved.size == (512, 256) and saved.getextrema() == (0, 255)
    os.makedirs(SHOTS, exist_ok=True)
    display.save_png(os.path.join(SHOTS, "gateway_oled.png"))


def test_frames_differ_with_the_state():
    base = dict(hall="南山", devices_online=3, devices_total=4, now=NOW)
    up = render(snapshot(uplink={"state": "up"}, **base))
    down = render(snapshot(uplink={"state": "down", "next_try_at": NOW + 30}, **base))
    assert up.tobytes() != down.tobytes()
    assert lit(up, 0, 16) == lit(down, 0, 16)           # the hall line is the same
    full = render(snapshot(backlog={"ratings": 900, "fill": 0.9}, **base))
    calm = render(snapshot(backlog={"ratings": 900, "fill": 0.5}, **base))
    assert lit(full, 16, 32) > lit(calm, 16, 32)        # store alarm frames the outbox line
    no_rating = render(snapshot(**base))
    assert lit(no_rating, 48, 64) > 0


def test_the_screen_never_shows_how_a_window_was_rated():
    """Rules Art. 4: nobody may watch a window's ratings; the screen says rated or not, no level."""
    base = dict(hall="南山", devices_online=3, devices_total=4, now=NOW)
    frames = [render(snapshot(last_rating={"window": "A07", "level": level, "source": "press",
                                           "level_name": name, "time": NOW}, **base))
              for level, name in ((1, "非常满意"), (5, "非常不满意"))]
    assert frames[0].tobytes() == frames[1].tobytes()
    walked_away = render(snapshot(last_rating={"window": "A07", "source": "not_rated", "time": NOW},
                                  **base))
    assert walked_away.tobytes() != frames[0].tobytes()


def test_long_hall_name_is_cut_to_the_screen():
    image = render(snapshot("深圳市福田区政务服务中心第一分中心综合窗口大厅", 1, 1, now=NOW))
    assert image.getbbox()[2] <= 128


class FakeGpio:
    BCM = "bcm"
    OUT = "out"

    def __init__(self):
        self.calls = []
        self.levels = {}

    def setmode(self, mode):
        self.calls.append(("setmode", mode))

    def setup(self, pin, mode, initial=0):
        self.calls.append(("setup", pin, mode))
        self.levels[pin] = initial

    def output(self, pin, value):
        self.calls.append(("output", pin, value))
        self.levels[pin] = value

    def cleanup(self, pins=None):
        self.calls.append(("cleanup", tuple(pins)))


def test_leds_follow_the_state_on_a_fake_gpio():
    gpio = FakeGpio()
    status = StatusLeds(gpio, pins={"run": 5, "uplink": 6, "alarm": 13})
    assert ("setup", 6, "out") in gpio.calls and status.available
    status.update("up", alarms_active=False)
    assert gpio.levels == {5: 1, 6: 1, 13: 0}
    blinks = []
    for _ in range(4):
        status.update("backoff", alarms_active=True)
        blinks.append(gpio.levels[6])
    assert blinks in ([0, 1, 0, 1], [1, 0, 1, 0]) and gpio.levels[13] == 1
    status.update("down", alarms_active=False)
    assert gpio.levels == {5: 1, 6: 0, 13: 0}
    writes = len([c for c in gpio.calls if c[0] == "output"])
    status.update("down", alarms_active=False)          # no change, no GPIO write
    assert len([c for c in gpio.calls if c[0] == "output"]) == writes
    status.close()
    assert gpio.calls[-1] == ("cleanup", (5, 6, 13)) and set(gpio.levels.values()) == {0}


def test_leds_fall_back_off_a_pi(monkeypatch):
    monkeypatch.setitem(sys.modules, "RPi", None)       # import RPi.GPIO fails, as on a PC
    status = StatusLeds()
    assert isinstance(status.gpio, NullGpio) and not status.available
    status.update("up", alarms_active=True)
    assert status.gpio.levels == {17: 1, 27: 1, 22: 1}
    status.close()

    class NotAPi:
        def __getattr__(self, name):
            raise RuntimeError("This module can only be run on a Raspberry Pi!")

    monkeypatch.setitem(sys.modules, "RPi", type(sys)("RPi"))
    monkeypatch.setitem(sys.modules, "RPi.GPIO", NotAPi())
    sys.modules["RPi"].GPIO = sys.modules["RPi.GPIO"]
    assert isinstance(leds.load_gpio(), NullGpio)


def test_a_failing_display_is_logged_once_and_the_leds_go_on(caplog):
    from gateway.panel import Panel

    class BrokenDisplay:
        def show(self, snap):
            raise OSError("I2C: remote I/O error")

    leds_ = StatusLeds(FakeGpio(), pins={"run": 5, "uplink": 6, "alarm": 13})
    panel = Panel(lambda: snapshot("南山", 1, 1, now=NOW), lambda: "up", lambda: True,
                  display=BrokenDisplay(), leds=leds_)
    for _ in range(3):
        panel._refresh_logged()
        panel.update_leds()
    assert panel.failures == 3 and panel.frames == 0
    assert len([r for r in caplog.records if "status display failed" in r.getMessage()]) == 1
    assert leds_.gpio.levels == {5: 1, 6: 1, 13: 1}
