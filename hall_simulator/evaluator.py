"""One virtual evaluator: the real firmware (firmware.device.Device, its real transport) on the
sim board, in its own thread, with its own flash directory, and a citizen in front of it.

    ev = Evaluator(spec, clock, confirm=log.write, citizens=mix, seed=11, bus_url=..., mqtt=...)
    ev.start(); ev.power_cut(down_s=1.0); ev.wifi_drop(5.0); ev.save_png("w01.png"); ev.stop()

- Provisioning writes device.json into the flash directory once, as tools/flash.py would; every
  boot reads it back (firmware.config.load_device), like the real device.
- Power cut: the device's file system is armed to fail the next few writes (a torn write keeps a
  random prefix of the bytes, as flash does), or the power goes between two loop turns; either
  way the Device object and everything in RAM is dropped and a fresh one boots from the flash
  directory after `down_s`. The UART / Wi-Fi connection is dropped too.
- Power cut mid-update: cut_mid_update(down_s, share) cuts the power between two loop turns once
  the update under way holds `share` of the release's bytes but not all of them (checked after
  each turn, in the evaluator's own thread); `update_cut` then says what the device held on
  flash when the power went and what it held when it was back.
- Boot as firmware.main.run does: boot_select.boot first (a trial boot counted, a trial that spent
  its boots rolled back), then the chosen release directory is started: its own firmware/main.py,
  when it has one, is run as a module (a release whose entry raises fails to start, which is a
  crash: the watchdog restarts the device and boot_select counts one more failed trial boot); the
  device code itself stays the host's (one interpreter serves every evaluator). A COMMIT's Reboot
  is a reboot, not a crash.
- The citizen: when the screen shows a new case, a citizens.Visit decides the keys; presses go
  through board.press() and the real five-button UI. On a touch board (spec.profile "touch") a
  citizens.TouchVisit decides taps at screen points, through board.touch() and the real touch UI.
  The thank-you screen is recorded in the confirmation log at the moment the flow enters it
  (source press), and "not rated" likewise.
- The gateway's ACK: when a rating leaves the device's outbox (the gateway committed it), the wall
  time is kept in `acked_at` {(device, counter): time}, for the press -> gateway part of latency.
Threads, not asyncio: the RS-485 transport waits out the line time of its replies (sleep_us), as
the device does; each evaluator sleeps in its own thread.
"""

import os
import random
import threading
import time

from protocol import rating as rating_rules
from protocol import vocab
from firmware import boot_select
from firmware import ota as fw_ota
from firmware import main as fw_main
from firmware.boards.sim import PowerCut, Reboot, make_board
from firmware.boards.sim_io import SimNet
from firmware.config import load_device, save_device, validate
from firmware.device import Device
from firmware.flashfs import Fs, join
from hall_simulator import citizens

LOOP_S = 0.004
FONT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "firmware", "fonts", "unifont16.bin")


class _TornFile:
    def __init__(self, fs, f):
        self._fs = fs
        self._f = f

    def write(self, data):
        self._fs._mutate(self._f, data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


class CuttableFs(Fs):
    """The host file system with a power switch: arm(n, rng) cuts at the n-th mutating call."""

    def __init__(self):
        self.cut_in = 0
        self.rng = random.Random(0)
        self.cuts = 0

    def arm(self, n, rng):
        self.cut_in = max(1, n)
        self.rng = rng

    def _mutate(self, f=None, data=None):
        if not self.cut_in:
            return
        self.cut_in -= 1
        if self.cut_in:
            return
        self.cuts += 1
        if f is not None and data:
            keep = self.rng.randrange(0, len(data) + 1)     # a torn write: a prefix survives
            f.write(bytes(data)[:keep])
            f.flush()
        raise PowerCut()

    def open(self, path, mode):
        if "r" in mode:
            return Fs.open(self, path, mode)
        self._mutate()
        return _TornFile(self, Fs.open(self, path, mode))

    def rename(self, old, new):
        self._mutate()
        Fs.rename(self, old, new)

    def remove(self, path):
        self._mutate()
        Fs.remove(self, path)


class WifiNet(SimNet):
    """Wi-Fi for the MQTT evaluators: the sim board's real-TCP network (firmware's SimNet) with an
    access point that can go away for a while (connect() fails until it is back)."""

    def __init__(self, timeout=3.0):
        SimNet.__init__(self, timeout)
        self.down_until = 0.0

    def connect(self):
        if time.monotonic() < self.down_until:
            raise OSError("no access point")
        SimNet.connect(self)

    def drop(self, seconds=0.0):
        self.down_until = max(self.down_until, time.monotonic() + seconds)
        SimNet.drop(self)


class Spec:
    """What provisioning gives one evaluator."""

    def __init__(self, device, key_hex, window, transport, root, address=0, baud=9600,
                 profile="five_button", hall="", mqtt=None, release_key=""):
        self.device = device
        self.key_hex = key_hex
        self.window = window
        self.transport = transport
        self.root = root
        self.address = address
        self.baud = baud
        self.profile = profile
        self.hall = hall
        self.mqtt = mqtt or {}
        self.release_key = release_key      # hex: the hall's [ota] release key, as provisioned

    def device_json(self):
        cfg = {"device": self.device, "key": self.key_hex, "window": self.window,
               "board": {"profile": self.profile, "sim": True}, "transport": self.transport,
               "outbox_capacity": 500}
        if self.transport == "rs485":
            cfg.update(address=self.address, baud=self.baud)
        else:
            cfg.update(hall=self.hall, mqtt=dict(self.mqtt))
        if self.release_key:
            cfg["release_key"] = self.release_key
        return cfg


class BootClock:
    """A board clock: the simulator's (possibly accelerated) time in ms."""

    def __init__(self, sim_clock):
        self.sim = sim_clock

    def ticks_ms(self):
        return self.sim.ticks_ms()


class Evaluator:
    def __init__(self, spec, clock, confirm, mix=None, seed=0, bus_url=None, font=FONT,
                 on_event=None):
        self.spec = spec
        self.clock = clock            # hall_simulator.clock.SimClock
        self.confirm = confirm        # fn(entry dict): the confirmation log
        self.mix = mix or citizens.Mix()
        self.seed = seed
        self.bus_url = bus_url
        self.font = font
        self.on_event = on_event or (lambda *a: None)
        self.fs = CuttableFs()
        self.net = WifiNet() if spec.transport == "mqtt" else None
        self.rng = random.Random("power/%s/%s" % (seed, spec.device))
        self.lock = threading.RLock()
        self.device = None
        self.board = None
        self.uart = None
        self.boots = 0
        self.visits = 0
        self.visit = None
        self.visit_case = 0
        self.next_press_at = None      # sim seconds
        self.pending_tap = None
        self.seen_counter = 0
        self.acked_at = {}             # (device, counter) -> wall time the outbox released it
        self.citizens = True           # False: nobody stands at this window any more
        self.stats = {"confirmed": 0, "not_rated": 0, "presses": 0, "taps": 0, "power_cuts": 0,
                      "crashes": 0, "cases": 0, "wifi_drops": 0, "reboots": 0,
                      "failed_starts": 0}
        self._stop = threading.Event()
        self._cut = None               # (down_s, mode) requested by chaos
        self._update_cut = None        # (down_s, share): cut_mid_update armed
        self.update_cut = None         # what the device held at that cut and after it
        self._thread = None
        os.makedirs(self.app_top(), exist_ok=True)   # the top release's place (a device's "/")
        save_device(self.fs, spec.root, validate(spec.device_json()))

    @property
    def id(self):
        return self.spec.device

    # --- life -------------------------------------------------------------------------------------
    def start(self):
        self._try_boot()
        self._thread = threading.Thread(target=self._run, name="eval-" + self.id, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._unplug()

    def _boot(self):
        cfg = load_device(self.fs, self.spec.root)
        self._start_release(boot_select.boot(self.fs, self.spec.root))
        uart = None
        if cfg["transport"] == "rs485":
            from hall_simulator.bus_uart import BusUart
            uart = self.uart = BusUart(self.bus_url, baud=cfg["baud"])
        board = make_board({"profile": cfg["board"]["profile"], "fs_root": self.spec.root,
                            "uart": uart, "clock": BootClock(self.clock), "net": self.net})
        device = Device(board, cfg, self.fs, font_path=self.font)
        fw_main.attach_transport(device, board, cfg)
        self.board, self.device = board, device
        self.seen_counter = device.outbox.high
        cut = self.update_cut
        if cut is not None and "resumed_from" not in cut:
            held = self._update_held()
            cut["resumed_from"] = held[0] if held else None    # None: no update on flash
            cut["boots"] = 1
        self.visit = None
        self.visit_case = 0
        self.boots += 1

    def app_top(self):
        """Where the release directories live (firmware.device's default for a host device)."""
        return join(self.spec.root, "app")

    def _start_release(self, base):
        """firmware.main.hand_over's part the sim can play: the chosen release's entry module
        runs (a fresh module object, so nothing of it stays in sys.modules)."""
        if not base:
            return
        entry = os.path.join(self.app_top(), base, "firmware", "main.py")
        if not os.path.exists(entry):
            return
        with open(entry, "rb") as f:
            code = compile(f.read(), entry, "exec")
        exec(code, {"__name__": "release_main", "__file__": entry})

    def running_version(self):
        """The version the boot pointer names ("" = the release tools/flash.py wrote)."""
        return boot_select.read(self.fs, self.spec.root).get("version", "")

    def _unplug(self):
        if self.uart is not None:
            self.uart.close()
            self.uart = None
        if self.net is not None:
            self.net.drop()

    def _run(self):
        while not self._stop.is_set():
            cut = self._cut
            if cut is not None and cut[1] == "now":
                self._power_off(cut[0])
                continue
            if self.device is None:    # it did not start: the watchdog restarts it
                self._power_off(0.2, cut=False)
                continue
            try:
                with self.lock:
                    self._turn()
                    if self._update_cut is not None:
                        self._check_update_cut()
            except PowerCut:
                self._power_off(self._cut[0] if self._cut else 0.5)
                continue
            except Reboot:             # the device restarts itself (an update's switch)
                self.stats["reboots"] += 1
                self._power_off(0.05, cut=False)
                continue
            except Exception as exc:   # a firmware crash: the watchdog reboots the device
                self.stats["crashes"] += 1
                self.on_event("crash", self.id, repr(exc))
                self._power_off(0.2)
                continue
            time.sleep(LOOP_S)

    def _power_off(self, down_s, cut=True):
        with self.lock:
            if cut:
                self._cut = None
                self.fs.cut_in = 0
                self.stats["power_cuts"] += 1
            self.device = None
            self._unplug()
        self._stop.wait(down_s)
        if self._stop.is_set():
            return
        with self.lock:
            self._try_boot()

    def _try_boot(self):
        """Boot; a release that fails to start (or a cut during the boot's pointer write) leaves
        the device off, and the loop restarts it as the watchdog would."""
        try:
            self._boot()
        except PowerCut:
            self.device = None
        except Exception as exc:
            self.stats["failed_starts"] += 1
            self.on_event("failed_start", self.id, repr(exc))
            self.device = None

    # --- one loop turn: the citizen, the firmware, what the screen shows ----------------------------
    @property
    def touch(self):
        return self.spec.profile == "touch"

    def _turn(self):
        dev = self.device
        app = dev.app
        now = self.clock.monotonic()
        self._citizen(app, now)
        waiting = list(dev.outbox.counters)
        dev.step()
        if waiting and dev.outbox.counters != waiting:
            at = time.time()
            for counter in set(waiting) - set(dev.outbox.counters):
                self.acked_at[(self.id, counter)] = at
        self._observe(app)

    def _citizen(self, app, now):
        if not self.citizens:
            return
        cid = app.case_id()
        if app.state == "case" and cid and cid != self.visit_case:
            self.visit_case = cid
            self.visits += 1
            self.stats["cases"] += 1
            plan = self.mix.decide(citizens.citizen_rng(self.seed, self.id, self.visits))
            self.visit = citizens.TouchVisit(plan) if self.touch else citizens.Visit(plan)
            self.next_press_at = now + self.visit.first_delay()
            return
        if self.pending_tap is not None:
            self._press(self.pending_tap)
            self.pending_tap = None
            return
        visit = self.visit
        if visit is None or visit.done or self.next_press_at is None or now < self.next_press_at:
            return
        if self.touch:
            key = visit.next_tap(self.device.ui, app.view())
            again = visit.double_tap_point(key) if key is not None else None
        else:
            key = visit.next_key(app.view())
            again = visit.double_tap_key(key) if key is not None else None
        if key is None:
            self.next_press_at = now + 0.5
            return
        self._press(key)
        if again is not None:
            self.pending_tap = again    # lands on the next loop turn, a few ms later
        self.next_press_at = now + visit.next_delay()

    def _press(self, key):
        if isinstance(key, tuple):
            self.board.touch(key[0], key[1])
            self.stats["taps"] += 1
        else:
            self.board.press(key)
            self.stats["presses"] += 1

    def _observe(self, app):
        rec = app.last_rating
        # last_rating is set only when the outbox holds the rating, and the flow enters the
        # thank-you (or "not rated") screen at once: no look at the state, which a CONTEXT handled
        # later in the same loop turn may already have moved on
        if rec is None or rec["counter"] <= self.seen_counter:
            return
        self.seen_counter = rec["counter"]
        source = rec["source"]
        entry = {"rating_id": rating_rules.rating_id(rec), "device": rec["device"],
                 "counter": rec["counter"], "case_id": rec["case_id"],
                 "case_key": "%s#%d" % (rec["serials"][0] if rec.get("serials") else "",
                                        rec.get("node", 0)),
                 "window": rec.get("window", ""), "node": rec.get("node", 0), "source": source,
                 "level": max(rating_rules.levels(rec) or [0]),
                 "bad": rating_rules.is_bad(rec), "tags": list(rec.get("tags", ())),
                 "at": time.time(), "sim_at": self.clock.time()}
        if source == vocab.SRC_PRESS:
            self.stats["confirmed"] += 1
        else:
            self.stats["not_rated"] += 1
        self.confirm(entry)

    # --- chaos ------------------------------------------------------------------------------------
    def power_cut(self, down_s=0.5, instant=None):
        """Cut the power at a random instant: during one of the next flash writes, or between two
        loop turns when `instant` < 0.5 (or the device writes nothing soon)."""
        instant = self.rng.random() if instant is None else instant
        if instant < 0.5:
            self._cut = (down_s, "now")
        else:
            with self.lock:
                self.fs.arm(1 + int(instant * 8), random.Random(self.rng.random()))
                self._cut = (down_s, "armed")
            timer = threading.Timer(1.0, self._cut_now_if_still_armed)
            timer.daemon = True
            timer.start()

    def cut_mid_update(self, down_s=0.5, share=0.5):
        """Cut the power once, between two loop turns, when the update under way holds at least
        `share` of the release's bytes and not all of them (the first turn after which it does: a
        turn takes at most the gateway's window of chunks, so a release larger than two windows
        cannot step over its half); then
        `update_cut` = {"held", "total", "file", "at", "boots", "resumed_from"}: the bytes on
        flash when the power went, in the gateway's terms (manifest and files, as a rollout's
        `acked`), and those the device found on flash at the next boot."""
        with self.lock:
            self.update_cut = None
            self._update_cut = (down_s, share)

    def disarm_update_cut(self):
        with self.lock:
            self._update_cut = None

    def _update_held(self):
        """(bytes held, release bytes) of the update this device is receiving, or None."""
        dev = self.device
        up = dev.ota if dev is not None else None
        p = up.p if up is not None else None
        if not p or p.get("state") != fw_ota.RECEIVING:
            return None
        rec = {}
        up._progress(rec)
        held = rec["received"] + (p["size"] if p["file"] else 0)
        return held, p["size"] + p.get("total", 0)

    def _check_update_cut(self):
        armed = self._update_cut
        held = self._update_held() if armed is not None else None
        down_s, share = armed if armed is not None else (0, 0)
        if held is None or not share * held[1] <= held[0] < held[1]:
            return
        self._update_cut = None
        self.update_cut = {"held": held[0], "total": held[1], "file": self.device.ota.p["file"],
                           "at": time.time(), "boots": 0}
        self._cut = (down_s, "now")

    def _cut_now_if_still_armed(self):
        cut = self._cut
        if cut is not None and cut[1] == "armed":
            self._cut = (cut[0], "now")

    def wifi_drop(self, seconds):
        if self.net is None:
            raise ValueError("%s is not on Wi-Fi" % self.id)
        self.stats["wifi_drops"] += 1
        self.net.drop(seconds)

    def outbox_depth(self):
        dev = self.device
        return dev.outbox.depth if dev is not None else None

    def save_png(self, path):
        with self.lock:
            if self.board is not None:
                self.board.save_png(path)
                return True
        return False

    def state(self):
        dev = self.device
        return dev.app.state if dev is not None else "off"
