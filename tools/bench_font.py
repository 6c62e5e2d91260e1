"""Benchmark: the device font before (every ideograph of U+4E00-U+9FFF, dense runs, format 1) and
after (GB 2312 and names, one sparse run, format 2), under real MicroPython 1.29 (wasm).

    .venv/bin/python tools/bench_font.py            # prints one JSON object

Both files are built in this run by tools/build_font.py from the same Unifont source. Measured on
each, with firmware/ui/font.py: file bytes, glyphs, run-table bytes kept in RAM, and per-character
microseconds of glyph() with no cache (a cold lookup: run search, block entry, glyph read) and of
width() (what every text measurement costs), over the characters of real names and matters, and
the file reads and bytes read per cold lookup (exact). "ratio" is after / before. Timings are the
wasm port's on a shared machine, best of interleaved rounds: compare the two, not absolute figures
with a board's, where the extra 34-byte read of a sparse lookup is one more flash access.
"""

import contextlib
import io
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools import build_font  # noqa: E402
from tools.mpy_runner import run_micropython  # noqa: E402

SAMPLE = ("王喆李堃朱镕基张伟刘洋陈静杨帆赵敏黄磊周杰吴昊徐晟孙悦马骏胡玥"
          "居民身份证换领不动产登记转移登记企业投资项目备案含变更食品经营许可公众聚集场所消防安全检查"
          "社会保险参保缴费证明开具个人权益记录查询打印营业执照设立变更注销出入境证件办理")
ROUNDS = 15
PASSES = 20        # passes over the sample per timing: the wasm port's clock steps coarsely

SCRIPT = r'''
import time, json, gc
from firmware.ui.font import Font
text = %r
rounds, passes = %d, %d
fonts = {}
best = {}


class Counted:
    """The font's file, counting reads and bytes read (deterministic, unlike the clock)."""

    def __init__(self, f):
        self.f = f
        self.reads = 0
        self.bytes = 0

    def seek(self, pos):
        self.f.seek(pos)

    def read(self, n):
        data = self.f.read(n)
        self.reads += 1
        self.bytes += len(data)
        return data


cps = [ord(c) for c in text]
io = {}
for name in ("before", "after"):
    font = Font("/bench/%%s.bin" %% name, cache=0)
    font._f = Counted(font._f)
    for cp in cps:
        font.glyph(cp)
    io[name] = (font._f.reads / len(cps), font._f.bytes / len(cps))
    font._f = font._f.f
    fonts[name] = font
    best[name] = [None, None]


def timed(fn):
    gc.collect()
    t = time.ticks_us()
    for _ in range(passes):
        for cp in cps:
            fn(cp)
    return time.ticks_diff(time.ticks_us(), t)


for _ in range(rounds):            # interleaved, best of rounds: the wasm clock and GC are noisy
    for name in ("before", "after"):
        font = fonts[name]
        for i, fn in ((0, font.glyph), (1, font.width)):
            t = timed(fn)
            if best[name][i] is None or t < best[name][i]:
                best[name][i] = t
out = {}
n = len(cps) * passes
for name in ("before", "after"):
    font = fonts[name]
    out[name] = {"glyph_us": round(best[name][0] / n, 2), "width_us": round(best[name][1] / n, 2),
                 "reads_per_glyph": io[name][0], "bytes_read_per_glyph": io[name][1],
                 "placeholders": font.placeholders, "run_table_bytes": 12 * font._nruns}
print(json.dumps(out))
'''


def measure():
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, args in (("before", ["--set", "full"]), ("after", [])):
            path = os.path.join(tmp, name + ".bin")
            with contextlib.redirect_stdout(io.StringIO()):
                build_font.main(args + ["--out", path])
            with open(path, "rb") as f:
                files[name] = f.read()
    result = run_micropython(SCRIPT % (SAMPLE, ROUNDS, PASSES), trees=("protocol", "firmware"),
                             files=dict(("/bench/%s.bin" % k, v) for k, v in files.items()),
                             timeout=300).check()
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    report = {"sample_chars": len(SAMPLE), "rounds": ROUNDS, "passes": PASSES,
              "runtime": "micropython-1.29-wasm"}
    for name, blob in files.items():
        runs[name]["file_bytes"] = len(blob)
        runs[name]["glyphs"] = int.from_bytes(blob[8:12], "little")
        runs[name]["format"] = blob[4]
        report[name] = runs[name]
    report["ratio"] = dict((k, round(runs["after"][k] / runs["before"][k], 3))
                           for k in ("file_bytes", "glyph_us", "width_us", "run_table_bytes",
                                     "reads_per_glyph", "bytes_read_per_glyph"))
    return report


if __name__ == "__main__":
    print(json.dumps(measure(), indent=1))
