"""RS-485 bus master: one thread per bus, pyserial serial_for_url (the same code for /dev/ttyUSB0,
a Pi UART in the kernel's RS-485 mode, or socket://host:port for the simulated bus).

Schedule (why: one dead slave with a long timeout stalls a whole Modbus bus):
- Every device of the bus gets one turn per round. A turn is one exchange: the ACK it is owed,
  else its CONTEXT/CLEAR/CONFIG change, else a POLL (with want_status every STATUS_EVERY polls).
- Timeouts come from protocol.timing (SPEC 5.1): a reply header must arrive within our frame time
  + reply_start_timeout (guard + the device's 10 ms + a 20 ms margin + 8 header bytes); once a
  header checks out we wait for the end of that frame (its length is in the header) plus the
  margin. A silent address therefore costs ~35 ms, not seconds.
- The line is shared (SPEC 4.3, 5.1): before each transmission the receiver is reset (a partial
  frame left by a device unplugged mid-reply can never complete), and after a reply (or giving up)
  the master keeps quiet for the guard time, so a device's transceiver can turn around.
- Retries: a request is resent (same seq, idempotent) `retries` times. After `slow_after` failed
  exchanges in a row the device moves to the slow lane: polled once every `slow_interval_s` with a
  single attempt, and marked offline. Its first answer brings it back.
- A RATING goes through gateway.intake (the one path for every transport: registry, rules, MAC,
  dead letters, the signed ACK): committed, and only then ACKed to the device, in the same turn.
- The CONTEXT a device should show is kept per device; an IDLE reporting another case gets it
  sent again (the device restarted), at most every RESEND_CONTEXT_S.
- Updates (gateway.rollout, `updates`): ratings first. An update exchange (offer, chunk, commit)
  only follows a POLL its device answered IDLE with an empty outbox, at most one per device per
  round, and all of a round's together get at most `ota_share` of an idle round's wire time
  (protocol.timing; on a short bus, one smallest exchange), the chunk cut to fit: a press
  anywhere on the bus waits at most that much longer for its device's turn. The devices take
  the update slots in turn (the round's first goes to the device after the last one served).
- Custody (gateway.custody, `custody`): a SETTLE goes in place of a POLL when it is due, and the
  device answers it as it answers a POLL; its IDLE and STATUS say what it holds.
"""

import logging
import threading
import time

import serial
import serial.rs485

from gateway import intake as intake_mod
from gateway import ota as ota_mod
from protocol import errors, schema, timing
from protocol.frame import MAX_FRAME
from protocol.link import MasterBus

log = logging.getLogger("gateway.rs485")

STATUS_EVERY = 50
RESEND_CONTEXT_S = 2.0
MAX_CHAIN = 4           # exchanges in one turn (a RATING, its ACK, the next RATING ...)
# A read returns after at most this long without bytes. Set once at open: assigning
# port.timeout reconfigures a real port (tcsetattr, and TIOCSRS485 in the kernel's RS-485 mode).
READ_TIMEOUT_S = 0.002
OTA_SHARE = 0.3         # of an idle round's wire time that updates may take (ratings first)
MIN_CHUNK = 64          # a chunk smaller than this is not worth its exchange's overhead
CHUNK_HEAD = 48         # UPDATE_CHUNK's bytes besides its data (release id, file, offset)
STATE_REPLY = 96        # what an UPDATE_STATE answer takes, about
IDLE_POLL = (8, 4)      # POLL and IDLE payloads, about: the idle round the share is of
_POLLS = (schema.POLL, schema.SETTLE)   # a SETTLE is answered as a POLL (SPEC 3.11)


def _noise(decoder):
    """Bytes and frames the decoder threw away so far (SPEC 4.3 counters)."""
    st = decoder.stats
    return (st["noise_bytes"] + st["bad_header"] + st["oversize"] + st["bad_crc"]
            + st["dropped_partial"])


class _Peer:
    """What the master keeps for one device."""

    def __init__(self):
        self.fails = 0
        self.lane = "fast"
        self.next_slow = 0.0
        self.ack = None              # ACK record owed to the device
        self.answered = None         # the counter of the rating last answered
        self.again = False           # ... and the device offered it again
        self.context = None          # CONTEXT the device should show (None: no case)
        self.context_sent = 0        # case id last sent successfully (0: CLEAR sent / nothing)
        self.context_sent_at = 0.0
        self.config = None
        self.config_sent = None
        self.polls = 0
        self.stats = {"exchanges": 0, "polls": 0, "timeouts": 0, "ratings": 0, "refused": 0}


class Rs485Master:
    def __init__(self, bus_cfg, bus_index, hall, registry, committer, rejections, enrich=None,
                 on_rating=None, alarm=None, clock=time.time, mono=time.monotonic,
                 open_serial=serial.serial_for_url, intake=None):
        self.cfg = bus_cfg
        self.index = bus_index
        self.hall = hall
        self.registry = registry
        self.committer = committer
        self.rejections = rejections
        self.intake = intake or intake_mod.Intake(hall, registry, rejections, enrich, on_rating, clock,
                                                  generation=intake_mod.generation_of(committer))
        self.alarm = alarm
        self.clock = clock
        self.mono = mono
        self.open_serial = open_serial
        self.bus = MasterBus()
        self.peers = {}
        self.rounds = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self.port = None
        baud = bus_cfg.baud
        self._reply_start_s = timing.reply_start_timeout_us(baud) / 1e6
        self._byte_s = timing.byte_us(baud) / 1e6
        self._guard_s = timing.guard_us(baud) / 1e6
        self._margin_s = timing.MASTER_MARGIN_US / 1e6
        self._line_free_at = 0.0     # mono time before which we must not drive the line (guard)
        # Quiet after which a partial frame can never complete: a device's silence reset (SPEC 4.3)
        # plus the margin, as a USB adapter hands bytes over in bursts (an FTDI every 16 ms).
        self._quiet_s = (timing.silence_reset_us(baud) + timing.MASTER_MARGIN_US) / 1e6
        self.line = {"noisy_replies": 0, "quiet_resets": 0}    # replies found behind noise
        self.updates = None          # gateway.rollout.Rollouts, when the hall rolls out updates
        self.custody = None          # gateway.custody.Custody, when custody is on
        self.ota_share = OTA_SHARE
        self._ota_left_s = 0.0       # update wire time left in this round
        self._ota_from = 0           # the round's update slot goes to the first device from here
        self._ota_served = False
        self._pos = 0
        self._update_fixed_s = timing.exchange_us(CHUNK_HEAD, STATE_REPLY, baud, 2000) / 1e6
        self.ota_stats = {"exchanges": 0, "chunk_bytes": 0, "skipped_budget": 0}

    # --- what others ask of the bus (any thread) ---------------------------------------
    def peer(self, device_id):
        with self._lock:
            p = self.peers.get(device_id)
            if p is None:
                p = self.peers[device_id] = _Peer()
            return p

    def set_context(self, device_id, context):
        p = self.peer(device_id)
        with self._lock:
            p.context = context

    def set_config(self, device_id, config):
        p = self.peer(device_id)
        with self._lock:
            p.config = config

    def stats(self, device_id):
        return dict(self.peer(device_id).stats, lane=self.peer(device_id).lane)

    # --- thread ---------------------------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self._run, name="rs485-%d" % self.index, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.port is not None:
            self.port.close()

    def _run(self):
        while not self._stop.is_set():
            if self.port is None:
                try:
                    self.port = self._open()
                except (serial.SerialException, OSError, ValueError) as e:
                    if self.alarm:
                        self.alarm("bus_unavailable", "RS-485 bus %s: %s" % (self.cfg.url, e))
                    self._stop.wait(1.0)
                    continue
            try:
                if not self.round():
                    self._stop.wait(0.02)
            except (serial.SerialException, OSError) as e:
                log.error("RS-485 bus %s failed: %s; reopening", self.cfg.url, e)
                try:
                    self.port.close()
                finally:
                    self.port = None

    def _open(self):
        port = self.open_serial(self.cfg.url, baudrate=self.cfg.baud, timeout=READ_TIMEOUT_S)
        if self.cfg.kernel_rs485:
            # The kernel raises DE (on RTS) for exactly the bytes sent: no user-space turnaround.
            # A driver without RS-485 support refuses (ValueError): an alarm, and retried.
            try:
                port.rs485_mode = serial.rs485.RS485Settings(
                    rts_level_for_tx=self.cfg.rts_high_for_tx,
                    rts_level_for_rx=not self.cfg.rts_high_for_tx)
            except BaseException:
                port.close()
                raise
        return port

    def round(self):
        """One pass over the bus; False when nobody was due (the caller may sleep)."""
        now = self.mono()
        busy = False
        devices = self.registry.rs485(self.index)
        # the round's share of wire time for updates, at least one smallest update exchange (on
        # a short bus the share alone is less, and updates would never move)
        share = self.ota_share * timing.poll_cycle_us(
            len(devices), self.cfg.baud, poll_payload=IDLE_POLL[0], reply_payload=IDLE_POLL[1]) / 1e6
        self._ota_left_s = max(share, self._update_fixed_s + MIN_CHUNK * self._byte_s)
        self._ota_served = False
        for pos, device in enumerate(devices):
            if self._stop.is_set():
                break
            self._pos = pos
            p = self.peer(device.id)
            if p.lane == "slow" and now < p.next_slow:
                continue
            busy = True
            self.turn(device, p)
        if not self._ota_served:
            self._ota_from = 0        # nobody from there on had an update: start over
        self.rounds += 1
        return busy

    # --- one device's turn ---------------------------------------------------------------
    def turn(self, device, p):
        for _ in range(MAX_CHAIN):
            msg_type, record, done = self._next_request(device, p)
            reply = self.exchange(device, p, msg_type, record)
            if reply is None:
                self._failed(device, p)
                return
            if p.fails or p.lane != "fast" or not device.online:
                self.registry.seen(device.id, lane="fast")
            p.fails = 0
            p.lane = "fast"
            if done is not None:
                done()
            if not self._handle(device, p, reply):
                # nothing waits on this device (an empty IDLE, or its update's news, which it
                # sends only when no rating waits, SPEC 3.10): its update may have the slot
                if msg_type in _POLLS and (reply.type == schema.UPDATE_STATE or (
                        reply.type == schema.IDLE and not reply.record.get("outbox", 0))):
                    self._update_slot(device, p)
                return

    def _update_slot(self, device, p):
        """One update exchange for `device`, within what is left of the round's share."""
        if self.updates is None or self._pos < self._ota_from:
            return                    # in turn: the devices after the last one served go first
        fixed = self._update_fixed_s
        room = int((self._ota_left_s - fixed) / self._byte_s)
        if room < MIN_CHUNK:
            self.ota_stats["skipped_budget"] += 1
            return
        step = self.updates.next_step(device.id, min(room, ota_mod.proto.CHUNK_MAX))
        if step is None:
            return
        msg_type, record = ota_mod.request(step)
        size = len(record.get("data", b""))
        self._ota_left_s -= fixed + size * self._byte_s
        self._ota_served = True
        self._ota_from = self._pos + 1
        self.ota_stats["exchanges"] += 1
        self.ota_stats["chunk_bytes"] += size
        reply = self.exchange(device, p, msg_type, record)
        if reply is None:
            self._failed(device, p)
            return
        self._handle(device, p, reply)

    def _next_request(self, device, p):
        if p.again and self.custody is not None:
            # a device refusing our ACKs for naming a store it has not heard of would refuse the
            # owed one too: its SETTLE first, answered with that rating again (gateway.custody)
            p.again = False
            settle = self.custody.rs485_settle(device.id)
            if settle is not None:
                return (schema.SETTLE,) + settle
        with self._lock:
            if p.ack is not None:
                ack = p.ack

                def done():
                    if p.ack is ack:
                        p.ack = None
                return schema.ACK, ack, done
            ctx = p.context
            if ctx is not None and p.context_sent != ctx["case_id"]:
                def done():
                    p.context_sent = ctx["case_id"]
                    p.context_sent_at = self.mono()
                return schema.CONTEXT, dict(ctx, time=int(self.clock())), done
            if ctx is None and p.context_sent:
                sent = p.context_sent

                def done():
                    if p.context_sent == sent:
                        p.context_sent = 0
                return schema.CLEAR, {"case_id": sent}, done
            cfg = p.config
            if cfg is not None and cfg is not p.config_sent:
                def done():
                    p.config_sent = cfg
                return schema.CONFIG, cfg, done
        # outside the lock: the mark is read under the store's, which a group commit holds
        settle = self.custody.rs485_settle(device.id) if self.custody is not None else None
        if settle is not None:
            return (schema.SETTLE,) + settle
        with self._lock:
            p.polls += 1
            p.stats["polls"] += 1
            want = 1 if p.polls % STATUS_EVERY == 1 else 0
            return schema.POLL, {"time": int(self.clock()), "want_status": want}, None

    def _failed(self, device, p):
        p.fails += 1
        if p.lane == "slow" or p.fails >= self.cfg.slow_after:
            if p.lane != "slow":
                log.warning("device %s (address %d) is silent: slow lane", device.id, device.address,
                            extra={"kind": "device_silent", "device": device.id, "window": device.window})
            p.lane = "slow"
            p.next_slow = self.mono() + self.cfg.slow_interval_s
            self.registry.set_offline(device.id)
            device.lane = "slow"

    def exchange(self, device, p, msg_type, record):
        """Send one request, resend on silence; the Reply, or None when the device stayed silent."""
        ch = self.bus.channel(device.address)
        data = ch.request(msg_type, record)
        attempts = 1 if p.lane == "slow" else 1 + self.cfg.retries
        p.stats["exchanges"] += 1
        for attempt in range(attempts):
            if attempt:
                data = ch.resend()
            reply = self._before_send(ch)
            if reply is not None:       # a late answer to the attempt before (same seq): it counts
                return reply
            self.port.write(data)
            reply = self._await_reply(ch, len(data))
            if reply is not None:
                return reply
            p.stats["timeouts"] += 1
            self._line_free_at = self.mono() + self._guard_s     # giving up also frees the line
        ch.give_up()
        return None

    def _before_send(self, ch):
        """SPEC 4.3 and 5.1 before driving the line: take in what is left on it (late replies,
        noise), reset the receiver (nothing it holds can answer the new request), then keep
        quiet until the guard time after the last reply has passed. A reply to `ch`'s outstanding
        request found on the way (a late answer to a resent request) is returned instead."""
        waiting = self.port.in_waiting
        if waiting:
            self.bus.receive_data(self.port.read(waiting))
            self._line_free_at = max(self._line_free_at, self.mono() + self._guard_s)
        self.bus.decoder.reset()
        found = self._collect(ch)
        if found is not None:
            return found
        delay = self._line_free_at - self.mono()
        if delay > 0:
            time.sleep(delay)
        return None

    def _collect(self, ch):
        """The decoded reply to `ch`, else None; every other decoded frame is stale and dropped."""
        while True:
            found = self.bus.next_reply()
            if found is None:
                return None
            if found[0] is ch:
                self._line_free_at = self.mono() + self._guard_s
                return found[1]

    def _await_reply(self, ch, sent_len):
        """SPEC 5.1: from the end of the request (its bytes still have to cross the line) wait
        reply_start_timeout for a reply header; once a header checks out, wait for the end of
        that frame plus the margin instead.

        Frames are found in any byte stream (SPEC 4.3), so what comes before the reply in the
        same answer window does not cost the attempt:
        - bytes arriving (noise, a broken frame) mean the line is busy: the wait goes on until
          the margin after the last byte, but never past one largest frame after the start wait
          (a babbling node cannot hold the master);
        - a partial frame still held when the line has gone quiet (a false or cut-short header
          claiming more bytes) can never complete: the receiver is reset on the spot, which
          delivers a real reply buffered behind it (SPEC 4.3 reset()).
        The noise is counted in the decoder's counters and, for a reply found behind it, in
        self.line["noisy_replies"]."""
        start = self.mono()
        base = start + sent_len * self._byte_s + self._reply_start_s
        cap = base + MAX_FRAME * self._byte_s + self._margin_s
        deadline = base
        decoder = self.bus.decoder
        noise_before = _noise(decoder)
        last_rx = None
        while True:
            now = self.mono()
            if last_rx is not None and decoder.buffered() and now - last_rx >= self._quiet_s:
                decoder.reset()
                self.line["quiet_resets"] += 1
                reply = self._collect(ch)
                if reply is not None:
                    return self._noted(reply, noise_before)
                deadline = max(base, last_rx + self._margin_s)   # that frame's extension is void
            if now >= deadline:
                return None
            data = self.port.read(max(1, self.port.in_waiting))
            if not data:
                continue
            last_rx = self.mono()
            self.bus.receive_data(data)
            reply = self._collect(ch)
            if reply is not None:
                return self._noted(reply, noise_before)
            total = decoder.expected_total()
            if total:
                deadline = max(deadline, last_rx + (total - decoder.buffered()) * self._byte_s
                               + self._margin_s)
            else:
                deadline = max(deadline, min(cap, last_rx + self._margin_s))

    def _noted(self, reply, noise_before):
        if _noise(self.bus.decoder) != noise_before:
            self.line["noisy_replies"] += 1
        return reply

    # --- replies -------------------------------------------------------------------------
    def _handle(self, device, p, reply):
        """Act on a reply; True when the turn should go on (an ACK is owed)."""
        if reply.error is not None:
            self.rejections.reject("rs485", reply.error.reason, "reply: %s" % reply.error.detail, device.id)
            self.registry.count_error(device.id, "bad_reply")
            return False
        rec = reply.record
        if reply.type == schema.IDLE:
            self.registry.seen(device.id, outbox=rec.get("outbox", 0), case_id=rec.get("case_id", 0),
                               custody=rec.get("custody", 0))
            if self.custody is not None:
                self.custody.idle(device.id, rec)
            with self._lock:
                if (p.context is not None and rec.get("case_id", 0) != p.context["case_id"]
                        and self.mono() - p.context_sent_at >= RESEND_CONTEXT_S):
                    p.context_sent = 0        # the device lost its case (restart): send it again
            return False
        if reply.type == schema.STATUS:
            if rec.get("device") != device.id:
                self.rejections.reject("rs485", errors.R_UNKNOWN_DEVICE,
                                       "status of %s at the address of %s" % (rec.get("device"), device.id),
                                       device.id)
                return False
            self.registry.status_report(device.id, rec)
            if self.custody is not None:
                self.custody.status(device.id, rec)
            return False
        if reply.type == schema.REFUSE:
            p.stats["refused"] += 1
            if rec.get("request") == schema.SETTLE and self.custody is not None:
                self.custody.refused(device.id)
            self.registry.count_error(device.id, "refused_%s" % errors.REASON_NAMES.get(rec.get("reason"), "?"))
            log.info("device %s refused type 0x%02x: %s", device.id, rec.get("request", 0), rec.get("detail", ""))
            return False
        if reply.type == schema.RATING:
            self._rating(device, p, rec)
            return True
        if reply.type == schema.UPDATE_STATE:
            if self.updates is not None and rec.get("device") in (None, "", device.id):
                ota_mod.report(self.updates, device.id, rec)
            return False
        self.rejections.reject("rs485", errors.R_UNKNOWN_TYPE, "reply type 0x%02x" % reply.type, device.id)
        return False

    def _rating(self, device, p, rating):
        """The intake's path for the rating, committed before this turn goes on; its ACK is the
        next request to the device (signed and bound to the rating's MAC, SPEC 7.5)."""
        p.stats["ratings"] += 1

        def reply(ack):
            with self._lock:
                p.ack = ack
                again = p.again = ack.get("counter") == p.answered
                p.answered = ack.get("counter")
            if again and self.custody is not None:   # our ACK lost, or refused (gateway.custody)
                self.custody.answered_again(device.id)
        intake_mod.commit(self.intake.from_record("rs485", device.id, rating, reply), self.committer)
