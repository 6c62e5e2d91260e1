"""Status LEDs on the Pi's GPIO (RPi.GPIO, or rpi-lgpio's drop-in module on a Pi 5).

    run     steady on while the gateway runs
    uplink  on = up, blinking = retrying, off = down or idle without data
    alarm   on while any alarm is active (store fill, corrupt store, replay ...)
Off a Pi (no RPi.GPIO, or not a Pi) every call is a no-op on a NullGpio that remembers the levels,
so the gateway runs the same code everywhere. A GPIO module can be injected (tests use a fake).
"""

DEFAULT_PINS = {"run": 17, "uplink": 27, "alarm": 22}   # BCM numbers


class NullGpio:
    """Stands in for RPi.GPIO where there is none."""
    BCM = "BCM"
    OUT = "OUT"
    available = False

    def __init__(self):
        self.levels = {}

    def setwarnings(self, flag):
        pass

    def setmode(self, mode):
        pass

    def setup(self, pin, mode, initial=0):
        self.levels[pin] = initial

    def output(self, pin, value):
        self.levels[pin] = value

    def cleanup(self, pins=None):
        pass


def load_gpio():
    """RPi.GPIO if it imports and works here, else a NullGpio."""
    try:
        import RPi.GPIO as gpio   # rpi-lgpio provides the same module name on a Pi 5
        gpio.setwarnings(False)
        gpio.setmode(gpio.BCM)
        return gpio
    except (ImportError, RuntimeError):   # RuntimeError: imported, but not on a Pi
        return NullGpio()


class StatusLeds:
    def __init__(self, gpio=None, pins=None):
        self.gpio = gpio if gpio is not None else load_gpio()
        self.pins = dict(DEFAULT_PINS if pins is None else pins)
        self.state = {name: 0 for name in self.pins}
        self._blink = False
        self.gpio.setmode(self.gpio.BCM)
        for pin in self.pins.values():
            self.gpio.setup(pin, self.gpio.OUT, initial=0)

    @property
    def available(self):
        return getattr(self.gpio, "available", True)

    def set(self, name, on):
        value = 1 if on else 0
        if self.state[name] != value:
            self.state[name] = value
            self.gpio.output(self.pins[name], value)

    def update(self, uplink_state, alarms_active):
        """Call about twice a second: LEDs follow the gateway's state; retrying blinks."""
        self._blink = not self._blink
        self.set("run", True)
        if uplink_state == "up":
            self.set("uplink", True)
        elif uplink_state == "backoff":
            self.set("uplink", self._blink)
        else:
            self.set("uplink", False)
        self.set("alarm", bool(alarms_active))

    def close(self):
        for name in self.pins:
            self.set(name, False)
        self.gpio.cleanup(list(self.pins.values()))
