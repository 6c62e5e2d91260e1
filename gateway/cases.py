"""Which case is at which window: staff sign-in, case events from the queueing system, ratings back.

Rules (shared/reference/rules.md):
- A case event names a workflow node and whether it succeeded. A failed receipt or a failed
  acceptance opens no rating (Art. 17-18). A completion opens one whether approved or refused;
  a pickup opens one when the certificate is signed for.
- A receipt rates the receiving window's service only: the indicators come from vocab.NODE_INDICATORS.
- Serials submitted in one go are a batch: one case, one rating (Art. 20); theme items ride along.
- Rating stays open for `rating_days` (config, 7) natural days after completion: the deadline travels in
  the CONTEXT and the case upload record; the central side applies the default after it.
- Opening a case: a hall-wide case id (never reused, even across restarts), the case upload
  record committed to the outbox, the CONTEXT pushed to every device of the window.
- The applicant's identity is sealed (gateway.privacy.Sealer) before it is kept anywhere; without
  a privacy key it is not kept at all. It is never logged, and never in a CONTEXT.
- The queueing system hears "rated" or "not_rated" (the device timed out) for a case, never the
  level: the clerk must not see how the citizen rated (Art. 4).
The same case event sent twice (same first serial and node) returns the open case, unchanged.
Open cases live in the store's small state table, so a restart keeps enriching their ratings.
Closing a rated case is data: closing() says what storing a rating closes (the case id and the
queueing system's callback). The store asks closings() before a group commit and applies them
inside it where the case is still open (gateway.case_state: no fsync of its own, and no crash can
fall between the rating and its case's closing); on_rating then follows in memory, pushes and
notifies, and has the store apply the same closing alone if the commit did not.
"""

import functools
import logging
import threading
import time

from gateway.fastcodec import is_token
from gateway.text_rules import is_text
from protocol import codec, errors, schema, supplement, vocab
from protocol.rating import rating_id

log = logging.getLogger("gateway.cases")

NODE_BY_NAME = {"receipt": vocab.NODE_RECEIPT, "acceptance": vocab.NODE_ACCEPTANCE,
                "completion": vocab.NODE_COMPLETION, "pickup": vocab.NODE_PICKUP}
NO_RATING_WHEN_FAILED = (vocab.NODE_RECEIPT, vocab.NODE_ACCEPTANCE)
APPLICANT_KEYS = ("name", "id_number", "phone", "type")
# completed_at: 2000-01-01 .. 2100-01-01 UTC (unix seconds); the deadline stays a 32-bit number
COMPLETED_AT_MIN, COMPLETED_AT_MAX = 946684800, 4102444800


class CaseError(ValueError):
    """A request the queueing system must fix: `reason` is an R_* code, `status` the HTTP status."""

    def __init__(self, reason, detail, status=400):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status


def _token(body, name, limit, required=True):
    value = body.get(name)
    if value in (None, ""):
        if required:
            raise CaseError(errors.R_MISSING, "%s is required" % name)
        return ""
    if not is_token(value, limit):      # protocol's token rule
        raise CaseError(errors.R_OUT_OF_RANGE, "%s must be 1..%d of [A-Za-z0-9._-]" % (name, limit))
    return value


def _text(body, name, limit, required=False):
    value = body.get(name)
    if value in (None, ""):
        if required:
            raise CaseError(errors.R_MISSING, "%s is required" % name)
        return ""
    if not is_text(value, limit):
        raise CaseError(errors.R_OUT_OF_RANGE, "%s must be text of at most %d characters, without"
                        " control characters or lone surrogates" % (name, limit))
    return value


def parse_node(value):
    if isinstance(value, str) and value in NODE_BY_NAME:
        return NODE_BY_NAME[value]
    if isinstance(value, int) and not isinstance(value, bool) and value in vocab.NODE_NAMES:
        return value
    raise CaseError(errors.R_OUT_OF_RANGE, "node must be one of %s" % ", ".join(NODE_BY_NAME))


def parse_event(body):
    """Validated case event from the queueing system's JSON body."""
    if not isinstance(body, dict):
        raise CaseError(errors.R_MALFORMED, "the body must be a JSON object")
    event = {"window": _token(body, "window", 16), "node": parse_node(body.get("node"))}
    success = body.get("success", True)
    if not isinstance(success, bool):
        raise CaseError(errors.R_MALFORMED, "success must be true or false")
    event["success"] = success
    serials = body.get("serials")
    if not isinstance(serials, list) or not 1 <= len(serials) <= 16:
        raise CaseError(errors.R_MISSING, "serials must list 1..16 case serial numbers")
    for s in serials:   # printable text (SPEC 3.6): 粤B-2026-000126 is a serial too
        _text({"serial": s}, "serial", 40, True)
    if len(set(serials)) != len(serials):
        raise CaseError(errors.R_MALFORMED, "serials repeat")
    event["serials"] = list(serials)
    event["matter_code"] = _token(body, "matter_code", 40, required=False)
    event["matter_name"] = _text(body, "matter_name", 60, required=True)
    event["staff_id"] = _text(body, "staff_id", 20)
    event["staff_name"] = _text(body, "staff_name", 16)
    items = body.get("items") or []
    if not isinstance(items, list) or len(items) > 8:
        raise CaseError(errors.R_OVERSIZE, "items lists at most 8 theme items")
    event["items"] = []
    for item in items:
        if not isinstance(item, dict):
            raise CaseError(errors.R_MALFORMED, "each item is an object {code, name}")
        event["items"].append({"code": _token(item, "code", 40), "name": _text(item, "name", 40, True)})
    applicant = body.get("applicant")
    if applicant is not None:
        if not isinstance(applicant, dict) or set(applicant) - set(APPLICANT_KEYS):
            raise CaseError(errors.R_MALFORMED, "applicant holds only %s" % ", ".join(APPLICANT_KEYS))
        if not all(is_text(v, 60) for v in applicant.values()):
            raise CaseError(errors.R_OUT_OF_RANGE, "applicant values are short texts")
    event["applicant"] = applicant
    completed_at = body.get("completed_at")
    if completed_at is not None and (isinstance(completed_at, bool) or not isinstance(completed_at, int)
                                     or not COMPLETED_AT_MIN <= completed_at <= COMPLETED_AT_MAX):
        raise CaseError(errors.R_OUT_OF_RANGE, "completed_at is unix seconds (a whole number"
                        " from %d to %d)" % (COMPLETED_AT_MIN, COMPLETED_AT_MAX))
    event["completed_at"] = completed_at
    return event


@functools.lru_cache(maxsize=256)
def qr_modules(link):
    """CONTEXT qr_modules of a link (SPEC 3.9), or None when its QR code is beyond version 10."""
    from gateway.qr_links import matrix
    try:
        return supplement.qr_pack(matrix(link))
    except ValueError:
        log.warning("the rate-later link is too long for a QR code of 57 modules: none is sent")
        return None


TAGS_VERSION_ROOM = 0xFFFFFFFF   # a placeholder as large as any device's CONFIG version


class Cases:
    def __init__(self, hall, store, registry, push, notify=None, *, rating_days, sealer=None,
                 qr_token=None, qr_link=None, glyphs=None, tags_version=False, clock=time.time):
        self.hall = hall
        self.store = store
        self.registry = registry
        self.push = push              # push(device, context dict or None)
        self.notify = notify          # notify(event dict) -> the queueing system's callback
        self.rating_days = rating_days  # config [gateway] rating_days (rules Art. 17: 7): no default here
        self.sealer = sealer
        self.qr_token = qr_token      # qr_token(case_key, deadline) -> token text, optional
        self.qr_link = qr_link        # qr_link(case_key, deadline) -> the link its QR code holds
        self.glyphs = glyphs          # gateway.glyphs.Supplement: what the device font lacks
        # True: each CONTEXT keeps room for the tags_version push() writes per device (SPEC 3.6)
        self.tags_version = tags_version
        self.clock = clock
        self.stats = {"opened": 0, "no_rating": 0, "repeated": 0, "rated": 0, "not_rated": 0,
                      "unknown_case": 0}
        self.closing = {"in_commit": 0, "alone": 0}   # rated cases closed in the rating's commit or not
        self._lock = threading.RLock()
        self.windows = {}             # window -> {"staff_id", "staff_name", "case_id"}
        self.cases = {}               # case_id -> case dict
        self._by_key = {}
        for name, value in store.state_items("window:"):
            self.windows[name.split(":", 1)[1]] = value
        for name, case in store.state_items("case:"):
            self.cases[case["case_id"]] = case
            self._by_key[case["case_key"]] = case["case_id"]

    # --- staff --------------------------------------------------------------------------
    def sign_in(self, window, body):
        window = _token({"window": window}, "window", 16)
        if not isinstance(body, dict):
            raise CaseError(errors.R_MALFORMED, "the body must be a JSON object")
        staff = {"staff_id": _text(body, "staff_id", 20, True),
                 "staff_name": _text(body, "staff_name", 16, True)}
        with self._lock:
            state = dict(self.windows.get(window) or {"case_id": 0})
            state.update(staff, since=int(self.clock()))
            self.store.state_put("window:" + window, state)
            self.windows[window] = state
        return dict(state, window=window)

    def sign_out(self, window):
        window = _token({"window": window}, "window", 16)
        with self._lock:
            state = self.windows.get(window)
            if state is None or not state.get("staff_id"):
                raise CaseError(errors.R_BAD_STATE, "nobody is signed in at %s" % window, 409)
            state = dict(state, staff_id="", staff_name="")
            self.store.state_put("window:" + window, state)
            self.windows[window] = state
        return dict(state, window=window)

    # --- case events --------------------------------------------------------------------
    def event(self, body):
        """Handle one case event; returns the JSON answer for the queueing system."""
        ev = parse_event(body)
        node = ev["node"]
        if not ev["success"] and node in NO_RATING_WHEN_FAILED:
            self.stats["no_rating"] += 1
            return 200, {"rating": False, "reason": "a failed %s opens no rating"
                         % [k for k, v in NODE_BY_NAME.items() if v == node][0]}
        key = "%s#%d" % (ev["serials"][0], node)
        with self._lock:
            existing = self._by_key.get(key)
            if existing is not None and existing in self.cases:
                self.stats["repeated"] += 1
                return 200, self._answer(self.cases[existing], repeated=True)
            staff = self.windows.get(ev["window"]) or {}
            staff_id = ev["staff_id"] or staff.get("staff_id", "")
            staff_name = ev["staff_name"]
            if not staff_name and staff_id == staff.get("staff_id"):
                staff_name = staff.get("staff_name", "")
            if not staff_id:
                raise CaseError(errors.R_BAD_STATE, "nobody is signed in at window %s" % ev["window"], 409)
            completed_at = ev["completed_at"] or int(self.clock())
            case = {"case_key": key, "window": ev["window"], "node": node, "serials": ev["serials"],
                    "matter_code": ev["matter_code"], "matter_name": ev["matter_name"],
                    "staff_id": staff_id, "staff_name": staff_name, "items": ev["items"],
                    "completed_at": completed_at,
                    "deadline": completed_at + self.rating_days * 86400, "status": "open"}
            self._check_fits(case)
            if ev["applicant"] and self.sealer is not None:
                case["applicant"] = self.sealer.seal(ev["applicant"])
            window = dict(self.windows.get(ev["window"]) or {"staff_id": "", "staff_name": ""})
            # the case, its window and its upload record in one transaction: one fsync in all
            ack, _ = self.store.commit_case(self.upload_record(case), (case, ev["window"], window))
            if ack == vocab.ACK_RETRY:
                raise CaseError(errors.R_STORE_FULL, "the gateway's store is full; try again", 503)
            if ack == vocab.ACK_DUPLICATE:  # opened before and since rated: one rating per node
                self.stats["repeated"] += 1
                return 200, {"rating": False, "case_key": key,
                             "reason": "this case was already opened for rating at this node"}
            self.cases[case["case_id"]] = case
            self._by_key[key] = case["case_id"]
            self.windows[ev["window"]] = window
            self.stats["opened"] += 1
        devices = self._push_case(case)
        log.info("case %d (%s) opened at %s for %d device(s)", case["case_id"], key, case["window"],
                 len(devices), extra={"kind": "case_opened", "case": case["case_id"],
                                      "window": case["window"]})
        return 201, self._answer(case)

    def _answer(self, case, repeated=False):
        out = dict((k, case[k]) for k in ("case_id", "case_key", "window", "node", "serials",
                                          "deadline", "status"))
        out["rating"] = True
        out["devices"] = [d.id for d in self.registry.by_window(case["window"])]
        if repeated:
            out["repeated"] = True
        return out

    def upload_record(self, case):
        return {"case_key": case["case_key"], "serials": case["serials"], "node": case["node"],
                "matter_code": case["matter_code"], "matter_name": case["matter_name"],
                "staff_id": case["staff_id"], "staff_name": case["staff_name"],
                "window": case["window"], "hall": self.hall, "completed_at": case["completed_at"],
                "deadline": case["deadline"], "items": case["items"]}

    def context(self, case):
        """The CONTEXT record shown on the window's device: the case, then the glyphs its device
        lacks and the QR matrix, as much as fits one record (gateway.glyphs)."""
        ctx = self._base_context(case)
        modules = None
        if self.qr_link is not None and ctx.get("qr"):
            modules = qr_modules(self.qr_link(case["case_key"], case["deadline"]))
        if self.glyphs is not None:
            return self.glyphs.attach(ctx, modules)
        if modules is not None:
            with_qr = dict(ctx, qr_modules=modules)
            if len(codec.encode_fields(schema.CONTEXT_FIELDS, with_qr)) <= schema.MAX_RECORD_BYTES:
                return with_qr
        return ctx

    def _base_context(self, case):
        ctx = {"case_id": case["case_id"], "window": case["window"], "staff_id": case["staff_id"],
               "staff_name": case["staff_name"], "matter_code": case["matter_code"],
               "matter_name": case["matter_name"], "serials": case["serials"], "node": case["node"],
               "items": case["items"], "indicators": vocab.NODE_INDICATORS[case["node"]],
               "deadline": case["deadline"], "time": int(self.clock())}
        if self.tags_version:       # the largest value, so the glyphs and QR fitted leave its room
            ctx["tags_version"] = TAGS_VERSION_ROOM
        if self.qr_token is not None:
            try:
                ctx["qr"] = self.qr_token(case["case_key"], case["deadline"])
            except Exception:
                log.exception("QR token failed; the case is shown without one")
        return dict((k, v) for k, v in ctx.items() if v not in ("", None, []))

    def _check_fits(self, case):
        """Refuse (before anything is kept) a case whose CONTEXT cannot be one record: 16 serials of
        40 Chinese characters alone take 1,900 bytes (SPEC 3.5)."""
        size = len(codec.encode_fields(schema.CONTEXT_FIELDS,
                                       self._base_context(dict(case, case_id=0xFFFFFFFF))))
        if size > schema.MAX_RECORD_BYTES:
            raise CaseError(errors.R_OVERSIZE, "the case does not fit the evaluator's CONTEXT record"
                            " (%d bytes, at most %d): send fewer serials or items, or shorter ones"
                            % (size, schema.MAX_RECORD_BYTES))

    def _push_case(self, case):
        devices = self.registry.by_window(case["window"])
        ctx = self.context(case)
        for device in devices:
            self.push(device, ctx)
        return devices

    def current_context(self, window):
        """CONTEXT for the case now open at `window` (a device that joins or moves there)."""
        with self._lock:
            case = self.cases.get((self.windows.get(window) or {}).get("case_id"))
        return self.context(case) if case and case["status"] == "open" else None

    # --- ratings ------------------------------------------------------------------------
    def enrich(self, rating):
        case = self.cases.get(rating.get("case_id"))
        if case is None:
            return None
        out = dict((k, case[k]) for k in ("matter_code", "matter_name", "staff_name", "window"))
        if case.get("applicant"):
            out["applicant"] = case["applicant"]
        return out

    def closings(self, ratings):
        """The store's case_closer: for each rating, what storing it closes, or None. Asked before
        the group commit's transaction (the store holds no lock then); the store applies each
        closing only where the case is still open in its state table."""
        with self._lock:
            out = []
            for rating in ratings:
                case = self.cases.get(rating.get("case_id"))
                out.append(self._closing(case, rating) if case and case["status"] == "open" else None)
            return out

    def _closing(self, case, rating):
        """(case id, the queueing system's callback or None): gateway.case_state applies it."""
        if self.notify is None:
            return (case["case_id"], None)
        return (case["case_id"], self._callback(self._closed_status(rating), case, rating))

    @staticmethod
    def _closed_status(rating):
        return "not_rated" if rating.get("source") == vocab.SRC_NOT_RATED else "rated"

    def _callback(self, status, case, rating):
        # The level stays out: the clerk must not learn how the citizen rated.
        return {"event": status, "case_id": case["case_id"], "case_key": case["case_key"],
                "serials": case["serials"], "window": case["window"], "node": case["node"],
                "rating_id": rating_id(rating), "time": int(self.clock())}

    def on_rating(self, rating, result):
        """A rating was committed (any ACK result): close its case, tell the queueing system."""
        if result[0] != vocab.ACK_STORED:
            return
        with self._lock:
            case = self.cases.get(rating.get("case_id"))
            if case is None or case["status"] != "open":
                if case is None:
                    self.stats["unknown_case"] += 1
                return
            case_id, callback = self._closing(case, rating)
            in_commit = self.store.closed_in_commit(case_id)
            if not in_commit:   # its group commit did not close it: the same closing, alone
                self.store.close_cases([(case_id, callback)])
            status = self._closed_status(rating)
            case = dict(case, status=status)
            window = self.windows.get(case["window"]) or {}
            current = window.get("case_id") == case_id
            if current:
                self.windows[case["window"]] = dict(window, case_id=0)
            self.cases[case_id] = case
            self._by_key.pop(case["case_key"], None)
            self.stats[status] += 1
            self.closing["in_commit" if in_commit else "alone"] += 1
        if current:
            for device in self.registry.by_window(case["window"]):
                self.push(device, None)
        if callback is not None:
            self.notify(callback)

    def expire(self):
        """Forget open cases whose rating window closed (the central side applies the default)."""
        now = self.clock()
        with self._lock:
            old = [c for c in self.cases.values() if c["deadline"] < now or c["status"] != "open"]
            for case in old:
                self.cases.pop(case["case_id"], None)
                self._by_key.pop(case["case_key"], None)
                self.store.state_delete("case:%d" % case["case_id"])
        return len(old)

    def snapshot(self):
        with self._lock:
            return {"windows": dict((w, dict(s)) for w, s in self.windows.items()),
                    "open_cases": sum(1 for c in self.cases.values() if c["status"] == "open"),
                    "closed": dict(self.closing)}
