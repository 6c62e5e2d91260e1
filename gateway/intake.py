"""One path for a rating, whatever carried it: verify -> check -> enrich -> commit -> acknowledge.

The transports are thin adapters that only move bytes: the MQTT bridge hands in a rating's JSON
(or the head of one too long to read), the RS-485 master a RATING record its link layer decoded.
Each gives `reply`, where an answer goes: reply(ack) is called with the signed ACK record
{device, counter, result, reason, mac} once the commit is durable, and only when there is a
rating MAC to bind it to (SPEC 7.3, 7.5). The intake does not commit: from_json / from_record /
from_head return a pending (item, done) or None (nothing to keep), and the adapter commits in its
own way: the MQTT bridge gathers a group and calls committer.commit_batch(pending list) on its
ingest thread; the RS-485 master commits one and waits (commit(pending, committer)). done(result)
answers, moves the registry on and tells `on_rating` (with the case's enrichment, computed once).

The answers (SPEC 7.3-7.5): a rating verifiably the sender's own gets its commit's result
(stored, duplicate, or a releasing dead letter for a rule); whatever the gateway cannot
authenticate as the sender's own (bad or no MAC, another device's rating, a payload that does not
decode, an oversized one) is kept as a dead letter (evidence, counted per device) and answered
ACK_REJECTED, which no device releases on. A rating on behalf of a device not in the registry is
counted and neither kept nor answered: nobody holds its key.

A RATING with `reoffer` = 1 is a custody copy offered again (SPEC 3.11): the flag is taken off
the record (it is outside the MAC and never kept or uploaded) and, when custody is on
(`custody`), handed to the store as the item's fourth element, which lets a verified copy
whose id is not stored be committed at or below the device's mark. With custody off it is
ignored: the copy meets 7.3's replay rule like any other rating.
"""

import json
import re
import time

from gateway.fastcodec import ack_mac, rating_from_json, rating_mac_of, verify_mac
from gateway.ledger import RawPayload
from protocol import codec, errors, schema, vocab

HEAD_BYTES = 2048   # of a payload that does not decode, kept as evidence (SPEC 7.3)
_COUNTER = re.compile(r'"counter"\s*:\s*([0-9]{1,10})[,}\s]')   # in a payload JSON cannot parse
_MAC = re.compile(r'"mac"\s*:\s*"([0-9a-fA-F]{32})"')
_UNAUTHENTIC = (errors.R_BAD_MAC, errors.R_UNKNOWN_DEVICE, errors.R_WRONG_DEVICE)


def authenticate(key, rating, problem, signed=None):
    """(problem, authentic) in SPEC 7.3's order: the rating is verifiably its sender's own when
    there is no problem, or only a rule problem and its MAC verifies; a rule problem on a rating
    whose MAC fails becomes R_BAD_MAC (registry.check_rating may stop at a rule before the MAC)."""
    if problem is None:
        return None, True
    if problem[0] in _UNAUTHENTIC:
        return problem, False
    if verify_mac(key, rating, signed):
        return problem, True
    return (errors.R_BAD_MAC, "MAC does not verify (and %s)" % problem[1]), False


def answer(result, is_authentic):
    """The ACK result for a commit result (SPEC 7.3): a dead letter the gateway could not
    authenticate as the sender's own rating is ACK_REJECTED, which no device releases on."""
    if not is_authentic and result[0] == vocab.ACK_DEAD_LETTER:
        return (vocab.ACK_REJECTED, result[1])
    return result


def ack_record(device_id, counter, result, key=None, rating_mac=None, generation=0):
    """The ACK for `device_id`'s rating `counter`: every field written (zeros too), signed under
    `key` and bound to the answered rating's MAC (SPEC 7.5); unsigned when key is None (the device
    has left the registry meanwhile: it ignores an unsigned ACK). `generation`: the store's with
    custody on or for a re-offered custody copy (SPEC 3.11), else 0."""
    ack = {"device": device_id, "counter": counter, "result": result[0], "reason": result[1],
           "generation": generation}
    if key is not None:
        ack["mac"] = ack_mac(key, device_id, ack, rating_mac)
    return ack


def commit(pending, committer):
    """Commit one pending rating and wait (RS-485): committer.commit_now, then its done(result)
    on the calling thread, as commit_batch would call it. The result, or None without one."""
    if pending is None:
        return None
    item, done = pending
    result = committer.commit_now(*item)
    done(result)
    return result


def generation_of(committer):
    """The generation of the store behind `committer`, read at each use (a salvage renews it)."""
    return lambda: getattr(committer.store, "generation", 0)


class Intake:
    def __init__(self, hall, registry, rejections, enrich=None, on_rating=None, clock=time.time,
                 custody=True, generation=lambda: 0):
        self.hall = hall
        self.custody = custody          # [custody] enabled: a re-offered copy may be committed
        self.generation = generation    # the store's generation, named in the ACKs (SPEC 3.11)
        self.registry = registry
        self.rejections = rejections
        self.enrich = enrich or (lambda rating: None)
        self.on_rating = on_rating      # called (rating, (ack, reason), enrichment) after the commit
        self.clock = clock

    # --- what a transport hands in -------------------------------------------------------
    def from_json(self, where, device_id, payload, reply):
        """A RATING's JSON from `device_id`'s own channel (MQTT: its topic)."""
        device = self._device(where, device_id)
        if device is None:
            return None
        try:
            rating, signed = rating_from_json(payload)
        except errors.ProtocolError as e:
            return self._undecoded(where, device_id, payload, e, reply)
        return self._decoded(where, device, rating, signed, reply, lambda: _raw(payload, device_id))

    def from_record(self, where, device_id, rating, reply):
        """A RATING record decoded from `device_id`'s slot (RS-485: the polled address)."""
        device = self._device(where, device_id)
        if device is None:
            return None
        return self._decoded(where, device, rating, None, reply,
                             lambda: RawPayload(codec.to_json(schema.RATING, rating), device_id))

    def from_head(self, where, device_id, head, length, reply):
        """A rating too long to read, by its first bytes: a dead letter, answered if they show its
        counter and MAC, so the device moves on to its next rating."""
        if self._device(where, device_id) is None:
            return None
        error = errors.ProtocolError(errors.R_OVERSIZE, "message of %d bytes" % length)
        return self._undecoded(where, device_id, head, error, reply)

    # --- the one path ---------------------------------------------------------------------
    def _device(self, where, device_id):
        """The sender's registry entry; None (counted) for a device not in the registry."""
        device = self.registry.get(device_id)
        if device is None:
            self.rejections.reject(where, errors.R_UNKNOWN_DEVICE,
                                   "rating from a device not in the registry", device_id)
        return device

    def _decoded(self, where, device, rating, signed, reply, as_received):
        device_id = device.id
        counter = rating["counter"]
        mac = rating_mac_of(rating)
        # Every answer names the store's generation with custody on, and a re-offered copy's with
        # custody off too (SPEC 3.11): a device that took a generation takes no ACK naming
        # another, so a lost store's ACK, replayed, releases nothing into a custody the new store
        # would then settle; and a copy the device cannot settle would hold its outbox.
        offered_again = rating.pop("reoffer", 0)
        named = self.generation() if offered_again or self.custody else 0
        reoffer = bool(offered_again) and self.custody
        if rating["device"] != device_id:
            # Another device's rating (genuine or not) from this sender: kept as received, filed
            # under the sender, never an answer it releases on.
            return self._reject(where, device_id, counter, mac, errors.R_WRONG_DEVICE,
                                "names %s" % rating["device"], as_received(), False, reply, named)
        problem = self.registry.check_rating(rating, device_id, signed)
        rating["hall"] = self.hall
        rating["gateway_time"] = int(self.clock())
        if problem is not None:
            problem, is_authentic = authenticate(device.key, rating, problem, signed)
            return self._reject(where, device_id, counter, mac, problem[0], problem[1], rating,
                                is_authentic, reply, named)

        enrichment = self.enrich(rating)

        def done(result):
            self._answer(reply, device_id, counter, result, mac, named)
            self.registry.rated(device_id, counter, result[0] == vocab.ACK_STORED)
            if self.on_rating is not None:
                self.on_rating(rating, result, enrichment)
        return ((rating, enrichment, None, True) if reoffer else (rating, enrichment)), done

    def _reject(self, where, device_id, counter, mac, reason, detail, item, is_authentic, reply,
                generation=0):
        """Keep what may not be committed as a rating as a dead letter, count it, and answer it
        once kept: releasing only when it verifiably is this device's own (SPEC 7.3)."""
        self.rejections.reject(where, reason, "rating %s:%d: %s" % (device_id, counter, detail),
                               device_id)
        self.registry.count_error(device_id, errors.REASON_NAMES.get(reason, str(reason)))

        def done(result):
            if mac is not None:
                self._answer(reply, device_id, counter, answer(result, is_authentic), mac,
                             generation)
        return (item, None, reason), done

    def _undecoded(self, where, device_id, payload, error, reply):
        """A payload that does not decode as a RATING: kept as received (its head), answered
        ACK_REJECTED when a counter and a 16-byte MAC can be read from it."""
        self.rejections.reject(where, error.reason, "rating: %s" % error.detail, device_id)
        self.registry.count_error(device_id, errors.REASON_NAMES.get(error.reason, "malformed"))
        raw = _raw(payload, device_id)
        counter, mac = _counter_and_mac(raw.text)

        def done(result):   # (REJECTED, reason) once kept; (RETRY, STORE_FULL) if it could not be
            if mac is not None:
                self._answer(reply, device_id, counter, answer(result, False), mac)
        return (raw, None, error.reason), done

    def _answer(self, reply, device_id, counter, result, mac, generation=0):
        device = self.registry.get(device_id)
        reply(ack_record(device_id, counter, result, device and device.key, mac, generation))


def _raw(payload, device_id):
    return RawPayload(bytes(payload[:HEAD_BYTES]).decode("utf-8", "replace"), device_id)


def _counter_and_mac(text):
    """(counter, 16-byte MAC) read from a payload that did not decode, or (None, None) when not
    both can be: nothing to bind an answer to."""
    try:
        obj = json.loads(text)
        counter, mac = obj.get("counter"), obj.get("mac")
    except Exception:       # cut short (an oversized rating's head) or not JSON at all
        found = _COUNTER.search(text)
        counter = int(found.group(1)) if found else None
        found = _MAC.search(text)
        mac = found.group(1) if found else None
    try:
        mac = bytes.fromhex(mac) if isinstance(mac, str) and len(mac) == 32 else None
    except ValueError:
        mac = None
    if (isinstance(counter, int) and not isinstance(counter, bool)
            and 0 < counter <= schema.U32 and mac is not None):
        return counter, mac
    return None, None
