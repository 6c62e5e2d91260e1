# mpy_check: compile-only
"""I2S amplifier (MAX98357A class D, mono, 3.2 W) on an ESP32: the sink firmware/audio.py plays
its prompts into, through machine.I2S in non-blocking mode.

board cfg `audio` (no `audio`: the board has no amplifier, board.audio is None):
    {"sck": BCLK pin, "ws": LRC pin, "sd": DIN pin, "id": I2S unit (0), "ibuf": bytes}
Pins left out take the board's defaults (esp32.py AUDIO_PINS: five_button BCLK 18, LRC 19, DIN 23;
touch BCLK 5, LRC 6, DIN 7). SD_MODE stays on the breakout's pull-up (on, left+right mix).

write() hands a buffer to the I2S driver and returns at once; the driver copies it into its own
buffer (`ibuf`, 4,000 bytes = 250 ms at 8 kHz, outside the MicroPython heap) and calls back when
it has taken all of it; until then ready() is False and the buffer is left alone. When nothing is
written the driver sends zeros: silence, never a repeated buffer.
"""

import machine


class I2sSink:
    def __init__(self, cfg, defaults):
        pins = dict(defaults)
        for k in cfg:
            pins[k] = cfg[k]
        self._pins = pins
        self._rate = 0
        self._i2s = None
        self._busy = False

    def _done(self, _arg):
        self._busy = False

    def start(self, name, rate, volume):
        if rate != self._rate:
            if self._i2s is not None:
                self._i2s.deinit()
            p = self._pins
            self._i2s = machine.I2S(p.get("id", 0), sck=machine.Pin(p["sck"]),
                                    ws=machine.Pin(p["ws"]), sd=machine.Pin(p["sd"]),
                                    mode=machine.I2S.TX, bits=16, format=machine.I2S.MONO,
                                    rate=rate, ibuf=p.get("ibuf", 4000))
            self._i2s.irq(self._done)
            self._rate = rate
            self._busy = False

    def ready(self):
        return self._i2s is not None and not self._busy

    def write(self, samples):
        i2s = self._i2s
        if i2s is not None:       # ready() was True: it is
            self._busy = True
            i2s.write(samples)

    def stop(self):
        pass     # what the driver holds plays out; then it sends zeros
