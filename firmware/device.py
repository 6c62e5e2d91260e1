"""One evaluator put together: board, durable state, flow, screen, and the calls transports make.

Everything is driven by step(), one turn of the main loop (the asyncio loop in main.py calls it,
tests call it directly): read input, run the flow's timers, redraw, feed the watchdog, and let
the transport do its share. Nothing here blocks.

The transport (RS-485 or MQTT; firmware.main.attach_transport builds the one the config names)
is any object with:
    step()   one turn, non-blocking: move bytes, hand what arrived to the device (on_context,
             on_clear, on_config, on_time, on_ack) and offer the device's head() until it is
             acknowledged; send status() when status_due(). It keeps its own `stats`.
Neither the device nor the app ever asks which transport it has.

The rating a transport offers is head(): (counter, stored bytes, MAC) of the oldest rating in the
outbox, or, while custody copies are marked for re-offer (SPEC 3.11), of the lowest of them, its
stored bytes followed by field 23 `reoffer` = 1 (outside the MAC, and after every stored field,
so the bytes stay canonical). The stored bytes are the rating's canonical binary
encoding (App._save appends exactly codec.encode(RATING, signed record)), so RS-485 puts them
into its RATING frame as they are and MQTT builds its JSON from them once per head. The flash is
read only when the head changes (at boot, after an append to an empty outbox, after a release or
a SETTLE); the MAC, which an ACK must be bound to (SPEC 7.5), is read from those bytes at the
same time.
"""

import json
import sys

from protocol import auth, codec, schema, vocab
from protocol.errors import LocalProtocolError
from firmware.app import App
from firmware.rating_config import load_rating_config, save_rating_config, volume
from firmware.flashfs import Fs, join
from firmware.health import Health, Uptime
from firmware.outbox import Outbox
from firmware.store import Store

_MAC_FIELD = tuple(f for f in schema.RATING_FIELDS if f[1] == "mac")   # the MAC alone
_TIME_FIELD = tuple(f for f in schema.RATING_FIELDS if f[1] == "device_time")
_REOFFER = b"\xb8\x01\x01"   # RATING field 23 (varint key 23 << 3) = 1: a custody copy offered again


class Device:
    def __init__(self, board, cfg, fs=None, font_path=None, prompts=None):
        self.board = board
        self.cfg = cfg
        self.fs = fs if fs is not None else Fs()
        root = board.fs_root
        self.store = Store(self.fs, root).load()
        self.uptime = Uptime(board.ticks_ms)
        self.health = Health(self.store, board.profile, cfg["device"], self.uptime, board.free_heap)
        self.safe_mode = self.health.boot()
        self.outbox = Outbox(self.fs, root, cfg.get("outbox_capacity", 500),
                             custody=cfg.get("custody", True), count=self.health.count).open()
        self.app = App(board.profile, cfg["device"], cfg["key_bytes"], self.outbox, self.health,
                       self.uptime, load_rating_config(self.fs, root), self.store,
                       cfg.get("window", ""), cfg.get("counter_floor", 0))
        self.ui = None
        if self.safe_mode:
            self.app.state = "error"        # safe mode: no UI code runs, the transport still does
        elif font_path:
            from firmware.ui.font import Font
            from firmware.ui.ui import Ui
            # the touch board's smooth words (ui/say.py) sit beside the font
            self.ui = Ui(board, Font(font_path), font_path.rsplit("/", 1)[0] or "/")
        self.audio = None                   # voice prompts: with an amplifier and prompt files
        if prompts and not self.safe_mode and getattr(board, "audio", None) is not None:
            from firmware.audio import Player
            self.audio = Player(board.audio, prompts, self.health)
        self.transport = None
        self._status_at = 0
        self._head = None                   # (counter, bytes, MAC) of what head() offers
        self._again = False                 # ... and it is a custody copy offered again
        self._oldest = None                 # (counter, device_time) of the oldest custody copy
        self.ota = None                     # firmware.ota.Updater while an update is under way
        if self.fs.exists(join(root, "ota.json")) or self._pointer_news(root):
            self._updater()

    # --- the main loop ------------------------------------------------------------------------
    def step(self):
        for event in self.board.read_input():
            if not self.safe_mode:
                self.app.input(event, self.ui)
        self.app.tick()
        self.health.check_stable()
        if self.app.say is not None:
            if self.audio is not None:
                self.audio.play(self.app.say, volume(self.app.cfg))
            self.app.say = None
        if self.audio is not None:
            self.audio.step()
        if self.ui is not None:
            if self.app.dirty:
                self.app.dirty = False
                self.ui.render(self.app.view())
            else:
                self.ui.tick()
        if self.transport is not None:
            self.transport.step()
        if self.ota is not None:
            self._ota_call(self.ota.step)
            if self.ota is not None and self.ota.idle():
                self.ota = None
        self.board.wdt_feed()

    # --- over-the-air update (firmware/ota.py, loaded only when one is under way) -------------
    def _pointer_news(self, root):
        """The boot pointer (firmware/boot_select.py) says a trial runs or the gateway must hear."""
        raw = self.fs.read(join(root, "boot.json"))
        try:
            p = json.loads(raw) if raw else None
        except ValueError:
            return False
        return isinstance(p, dict) and bool(p.get("trial") or p.get("news"))

    def _updater(self):
        if self.ota is None:
            from firmware.ota import Updater
            # the release directories sit on the device's top; a host's sim device keeps its own
            top = self.cfg.get("app_top") or ("/" if sys.implementation.name == "micropython"
                                              else join(self.board.fs_root, "app"))
            self.ota = Updater(self, top)
        return self.ota

    def _ota_call(self, fn, *args):
        """An update never stops the device: a failure (a flash error, a file that went bad) is
        counted and answered with `io` (`no_space` when the flash is full)."""
        try:
            return fn(*args)
        except Exception as e:
            self.health.count("ota_error")
            from protocol import ota
            why = ota.WHY_NO_SPACE if isinstance(e, OSError) and e.args and e.args[0] == 28 else ota.WHY_IO
            return self._updater().state(ota.ST_REFUSED, why)

    def on_update(self, msg_type, record, answered=True):
        """An UPDATE_* request: the UPDATE_STATE record to answer with. `answered` False (an
        RS-485 broadcast): nobody hears the answer, so the next poll gets it."""
        up = self._updater()
        rec = self._ota_call(up.handle, msg_type, record)
        if answered:
            up.reported()
        else:
            up.news = True
        return rec

    def update_news(self):
        """True when the gateway should hear this device's UPDATE_STATE unasked."""
        return self.ota is not None and self.ota.news

    def update_state(self):
        up = self._updater()
        rec = self._ota_call(up.state)
        up.reported()
        return rec

    def on_online(self):
        """The transport reached the gateway: a release on trial is confirmed."""
        if self.ota is not None:
            self._ota_call(self.ota.online)

    # --- what transports call -----------------------------------------------------------------
    def on_context(self, record):
        glyphs = record.pop("glyphs", None)   # the font supplement (SPEC 3.8): kept by the font
        if glyphs and self.ui is not None:
            self.ui.font.supplement.add_all(glyphs)
        self.app.on_context(record)

    def on_clear(self, record):
        self.app.on_clear(record)

    def on_config(self, record):
        self.app.on_config(record)
        try:
            save_rating_config(self.fs, self.board.fs_root, self.app.cfg)   # what a reboot resumes
        except OSError:
            self.health.count("flash_error")
        except LocalProtocolError:
            self.health.count("config_big")     # over one record: applied, not kept over a reboot

    def on_time(self, unix_s):
        self.app.on_time(unix_s)

    def on_ack(self, record):
        """Settle a rating. True when the outbox let it go. Only an ACK signed under our key for the
        very rating head() offers counts (SPEC 7.5): its MAC covers that rating's MAC, so whoever
        talks on the bus or the broker can neither forge one nor get the gateway to sign one for
        junk sent under our counter. A re-offered custody copy is answered the same way, and its
        ACK must also name the generation the device took last (the MAC covers it); any other
        ACK may name none, or that one."""
        if record.get("device") not in (None, "", self.cfg["device"]):
            self.health.count("ack_foreign")
            return False
        head = self.head()
        if head is None or head[0] != record.get("counter"):
            self.health.count("ack_unknown")    # settled already, or never ours: nothing to do
            return False
        if not auth.verify_ack(self.cfg["key_bytes"], self.cfg["device"], record, head[2]):
            self.health.count("ack_forged")
            return False
        ob = self.outbox
        gen = record.get("generation", 0)
        if gen != ob.generation and (self._again or gen and ob.generation):
            # another store's ACK (an old one's, replayed) proves nothing about the store that now
            # holds custody (SPEC 3.11): a re-offered copy needs this one's; a rating releases
            # into custody on none (a gateway without custody) or the generation taken last
            self.health.count("ack_stale")
            return False
        result = record.get("result", 0)
        if not vocab.device_releases(result):
            self.health.count("ack_rejected" if result == vocab.ACK_REJECTED else "ack_retry")
            return False
        try:
            released = ob.unmark(head[0]) if self._again else ob.release(head[0])
        except OSError:
            self.health.count("flash_error")
            return False
        if not released:
            self.health.count("ack_unknown")
        self._head = None
        return released

    def on_settle(self, record):
        """A SETTLE (SPEC 3.11): the gateway's store is `generation`, the central API holds our
        ratings below `settled`. Taken only when signed under our key for our own id; a new
        generation or `reoffer` marks every custody copy for re-offer; a stale seq is ignored.
        True when it was taken."""
        cfg = self.cfg
        if (record.get("device") not in (None, "", cfg["device"])
                or not auth.verify_settle(cfg["key_bytes"], cfg["device"], record)):
            self.health.count("settle_forged")
            return False
        ob = self.outbox
        gen = record.get("generation", 0)
        seq = record.get("seq", 0)
        mark = gen != ob.generation
        if not mark and seq <= ob.seq:
            self.health.count("settle_stale")   # a replay, or a reordering
            return False
        try:
            ob.settle(gen, seq, record.get("settled", 0), mark or bool(record.get("reoffer")))
        except OSError:
            self.health.count("flash_error")
            return False
        return True                             # head() sees for itself whether its head moved

    def head(self):
        """(counter, stored bytes, MAC) of what to offer: the lowest custody copy marked for
        re-offer (its bytes with `reoffer` = 1), else the oldest unacknowledged rating, or None.
        The outbox knows both counters in RAM; the flash is read only when the head changes."""
        ob = self.outbox
        counter = ob.reoffer_head()
        again = counter is not None
        if not again:
            if not ob.depth:
                self._head = None
                return None
            counter = ob.counters[0]
        head = self._head
        if head is None or head[0] != counter or self._again != again:
            self._head = None
            try:
                raw = ob.copy(counter) if again else ob.get(counter)
            except OSError:
                raw = None
            if raw is None:
                self.health.count("flash_error")   # tried again on the next turn
                return None
            mac = codec.decode_fields(_MAC_FIELD, raw).get("mac")
            head = self._head = (counter, raw + _REOFFER if again else raw, mac)
            self._again = again
        return head

    def next_rating(self):
        """The head rating as a record (decoded from the stored bytes), or None."""
        head = self.head()
        return codec.decode(schema.RATING, head[1]) if head is not None else None

    def idle_record(self):
        ob = self.outbox
        return {"outbox": ob.depth, "case_id": self.app.case_id(), "custody": ob.kept,
                "generation": ob.generation}

    def status_due(self):
        interval = self.app.cfg["status_interval_s"] * 1000
        return not self._status_at or self.uptime.now() - self._status_at >= interval

    def status(self, rssi_neg=0):
        self._status_at = self.uptime.now() or 1
        ob = self.outbox
        return self.health.status(ob, ob.high, self.app.case_id(), rssi_neg, self.custody_oldest())

    def custody_oldest(self):
        """device_time of the oldest custody copy (0: none or unknown); read when that changes."""
        ob = self.outbox
        if not ob.kept:
            return 0
        counter = ob.runs[0]
        if self._oldest is None or self._oldest[0] != counter:
            try:
                raw = ob.copy(counter)
            except OSError:
                raw = None
            t = codec.decode_fields(_TIME_FIELD, raw).get("device_time", 0) if raw else 0
            self._oldest = (counter, t)
        return self._oldest[1]
