"""Voice prompts: Player(sink, prompt_dir) plays firmware/prompts/<name>.ima on the board's
amplifier, a chunk per main-loop turn, so the screen and the transport never wait for it.

    player = Player(board.audio, "/prompts"); player.play("greet", 6); ... player.step() each turn

Files (tools/build_prompts.py): b"IMA1", the sample rate (u16 LE), then IMA-ADPCM, two samples a
byte, the first in the high nibble, decoded from predictor 0 and step index 0. A chunk is 64 file
bytes -> 128 16-bit samples (16 ms at 8 kHz) in one preallocated buffer: 320 bytes of RAM while a
board has an amplifier, none without one (firmware.device makes no Player then).

The sink (boards/i2s.py on an ESP32 with a MAX98357A, boards/sim.py's recorder on the host):
    start(name, rate, volume)  a prompt begins (volume 1..10)
    ready()                    True when it takes a buffer now without waiting
    write(samples)             a memoryview of signed 16-bit native-endian samples; it may keep
                               reading them until ready() is True again
    stop()                     the prompt ended or was cut off
Volume 0 (mute) plays nothing; a missing or damaged prompt file plays nothing and is counted.
"""

from array import array

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

MAGIC = b"IMA1"
_CHUNK = const(64)         # file bytes a chunk: 128 samples, 16 ms at 8 kHz
_PER_STEP = const(4)       # chunks a turn at most (64 ms of sound)

# IMA-ADPCM step sizes and index changes (the IMA/DVI standard's tables)
# (steps as u16 little-endian bytes: a constant that stays in flash under ROMFS, no heap)
_STEPS = (b"\x07\x00\x08\x00\x09\x00\x0a\x00\x0b\x00\x0c\x00\x0d\x00\x0e\x00\x10\x00\x11\x00\x13\x00"
          b"\x15\x00\x17\x00\x19\x00\x1c\x00\x1f\x00\x22\x00\x25\x00\x29\x00\x2d\x00\x32\x00\x37\x00"
          b"\x3c\x00\x42\x00\x49\x00\x50\x00\x58\x00\x61\x00\x6b\x00\x76\x00\x82\x00\x8f\x00\x9d\x00"
          b"\xad\x00\xbe\x00\xd1\x00\xe6\x00\xfd\x00\x17\x01\x33\x01\x51\x01\x73\x01\x98\x01\xc1\x01"
          b"\xee\x01\x20\x02\x56\x02\x92\x02\xd4\x02\x1c\x03\x6c\x03\xc3\x03\x24\x04\x8e\x04\x02\x05"
          b"\x83\x05\x10\x06\xab\x06\x56\x07\x12\x08\xe0\x08\xc3\x09\xbd\x0a\xd0\x0b\xff\x0c\x4c\x0e"
          b"\xba\x0f\x4c\x11\x07\x13\xee\x14\x06\x17\x54\x19\xdc\x1b\xa5\x1e\xb6\x21\x15\x25\xca\x28"
          b"\xdf\x2c\x5b\x31\x4b\x36\xb9\x3b\xb2\x41\x44\x48\x7e\x4f\x71\x57\x2f\x60\xce\x69\x62\x74"
          b"\xff\x7f")
_INDEX = (-1, -1, -1, -1, 2, 4, 6, 8)
# volume 1..9 -> gain in 1/256 (4 dB a step; 10 is 256, unscaled)
_GAIN = b"\x00\x04\x06\x0a\x10\x1a\x29\x40\x66\xa2"


def gain(volume):
    return 256 if volume >= 10 else _GAIN[volume] if volume > 0 else 0


def decode(src, n, out, state, g):
    """Decode n bytes of `src` into out[0:2n]; state = [predictor, index], updated. Samples are
    scaled by g/256 (the predictor itself is not, so the next chunk decodes the same)."""
    pred = state[0]
    idx = state[1]
    steps = _STEPS
    table = _INDEX
    for i in range(2 * n):
        d = (src[i >> 1] >> (4 - ((i & 1) << 2))) & 15
        step = steps[2 * idx] | steps[2 * idx + 1] << 8
        diff = step >> 3
        if d & 4:
            diff += step
        if d & 2:
            diff += step >> 1
        if d & 1:
            diff += step >> 2
        if d & 8:
            pred -= diff
            if pred < -32768:
                pred = -32768
        else:
            pred += diff
            if pred > 32767:
                pred = 32767
        idx += table[d & 7]
        if idx < 0:
            idx = 0
        elif idx > 88:
            idx = 88
        out[i] = pred if g == 256 else (pred * g) >> 8
    state[0] = pred
    state[1] = idx


class Player:
    def __init__(self, sink, prompt_dir, health=None):
        self.sink = sink
        self.dir = prompt_dir
        self.health = health
        self._f = None
        self._src = bytearray(_CHUNK)
        self._out = array("h", range(2 * _CHUNK))
        self._mv = memoryview(self._out)
        self._state = [0, 0]
        self._gain = 256
        self.playing = None          # name of the prompt being played

    def play(self, name, volume):
        """Start prompt `name` (cutting off any other); False when nothing is played."""
        self.stop()
        if not volume or volume < 0:
            return False
        try:
            f = open("%s/%s.ima" % (self.dir, name), "rb")
        except OSError:
            self._count("audio_missing")
            return False
        head = f.read(6)
        if len(head) != 6 or head[:4] != MAGIC:
            f.close()
            self._count("audio_bad")
            return False
        self._f = f
        self._state[0] = self._state[1] = 0
        self._gain = gain(volume)
        self.playing = name
        self.sink.start(name, head[4] | head[5] << 8, volume if volume < 10 else 10)
        return True

    def step(self):
        """Feed the sink what it takes now (at most _PER_STEP chunks); never waits."""
        f = self._f
        n = _PER_STEP
        while f is not None and n and self.sink.ready():
            got = f.readinto(self._src)
            if not got:
                self.stop()
                return
            decode(self._src, got, self._out, self._state, self._gain)
            self.sink.write(self._mv[:2 * got])
            n -= 1

    def stop(self):
        if self._f is not None:
            self._f.close()
            self._f = None
            self.playing = None
            self.sink.stop()

    def _count(self, what):
        if self.health is not None:
            self.health.count(what)
