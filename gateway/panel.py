"""The gateway's front panel while it runs: the status OLED (status_display) and the LEDs (leds).

One asyncio task ticks every `blink_s` (LEDs: cheap GPIO writes, on the loop). The screen is
redrawn every `refresh_s`, and at the next tick after a rating (`mark_dirty()`, any thread: a
flag, so a burst of ratings costs no wake-ups). Drawing runs in the executor: it reads the store's
backlog (its lock may be held through a group commit's fsync) and writes 1 KB over I2C (~25 ms
at 400 kHz); the loop never waits for either. A failing display is logged once and retried at
the next refresh; it never stops the gateway.
"""

import asyncio
import logging
import time

log = logging.getLogger("gateway.panel")

DISPLAY_TICK_S = 0.5   # how soon a rating shows when there are no LEDs to blink


class Panel:
    def __init__(self, snapshot, uplink_state, alarms_active, display=None, leds=None,
                 refresh_s=5.0, blink_s=0.5, png_path="", mono=time.monotonic):
        """snapshot(): status_display.snapshot(...) dict (called in the executor);
        uplink_state(): "idle" | "up" | "backoff" | "down"; alarms_active(): bool (on the loop)."""
        self.snapshot = snapshot
        self.uplink_state = uplink_state
        self.alarms_active = alarms_active
        self.display = display
        self.leds = leds
        self.refresh_s = refresh_s
        self.tick_s = blink_s if leds is not None else DISPLAY_TICK_S
        self.png_path = png_path
        self.mono = mono
        self.frames = 0
        self.failures = 0
        self._dirty = True
        self._pending = None

    def mark_dirty(self):
        self._dirty = True

    def refresh_display(self):
        """Draw the current state (blocking: executor or tests)."""
        image = self.display.show(self.snapshot())
        if self.png_path:
            self.display.save_png(self.png_path)
        self.frames += 1
        return image

    def _refresh_logged(self):
        try:
            self.refresh_display()
        except Exception as e:   # I2C gone, disk full for the PNG ...: the gateway goes on
            self.failures += 1
            if self.failures == 1:
                log.exception("status display failed (logged once; retried every refresh)")
            else:
                log.debug("status display failed again: %s", e)

    def update_leds(self):
        if self.leds is not None:
            self.leds.update(self.uplink_state(), self.alarms_active())

    async def run(self):
        loop = asyncio.get_running_loop()
        next_frame = 0.0
        while True:
            self.update_leds()
            now = self.mono()
            if (self.display is not None and (self._pending is None or self._pending.done())
                    and (self._dirty or now >= next_frame)):
                self._dirty = False
                next_frame = now + self.refresh_s
                self._pending = loop.run_in_executor(None, self._refresh_logged)
            await asyncio.sleep(self.tick_s)

    async def close(self):
        """After run() was cancelled: let a frame in progress finish, turn the LEDs off."""
        if self._pending is not None:
            await asyncio.wait([self._pending], timeout=3)
        if self.leds is not None:
            self.leds.close()


def from_config(cfg, snapshot, uplink_state, alarms_active):
    """A Panel for gateway.toml's [display] and [leds], or None when both are off."""
    display = leds = None
    if cfg.display.enabled:
        from gateway import status_display
        display = status_display.StatusDisplay(
            status_display.make_device(cfg.display.i2c_port, cfg.display.i2c_address))
    if cfg.leds.enabled:
        from gateway.leds import StatusLeds
        leds = StatusLeds(pins=cfg.leds.pins)
    if display is None and leds is None:
        return None
    return Panel(snapshot, uplink_state, alarms_active, display=display, leds=leds,
                 refresh_s=cfg.display.refresh_s, blink_s=cfg.leds.blink_s,
                 png_path=cfg.display.png_path)
