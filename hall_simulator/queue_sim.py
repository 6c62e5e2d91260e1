"""The simulated queueing system (排队叫号): tickets, windows, staff sign-in, and the case events that
open a rating, sent to the gateway's queueing API over HTTP exactly as a real one would.

Per window, in a loop: call the next ticket, serve it (service time), then tell the gateway the
case's outcome; wait until the gateway calls back "rated" / "not_rated", then call the next ticket.
The wait for a callback is bounded in simulated time by the rating timeout plus a margin
(`settle_wait_s`); when it passes (the gateway was SIGKILLed and its stored callbacks are still
being resent, or the rating is still in a device's outbox), the window asks the gateway
(GET /api/v1/cases/{id}): a case it no longer holds open is settled ("settled_by_query"), an open
one is waited for again, up to `settle_max_s`. Only then does the window give up
("settle_timeouts"). Callbacks are matched by case id: a callback for a case settled already is
"late" (or "repeated": delivery is at least once), one for a case never reported is "unknown".
Case kinds (rules Art. 14-20), drawn from a seeded mix:
  completion       办结: one serial, rated overall
  pickup           领证: certificate signed for at the window
  receipt          收件成功: only the receiving window's service may be rated
  failed_receipt   收件失败: opens no rating at all (the gateway must show nothing)
  batch            two to four cases of one matter submitted together: rated once
  theme            主题服务: a theme with its related matters
Staff names are real Chinese names, including characters outside GB2312 (王喆, 李堃, 朱镕).
"""

import asyncio
import json
import logging
import random

log = logging.getLogger("hall_simulator.queue")

STAFF = (("A1001", "王喆"), ("A1002", "李堃"), ("A1003", "朱镕"), ("A1004", "张伟"),
         ("A1005", "陈静"), ("A1006", "刘洋"), ("A1007", "黄敏"), ("A1008", "赵磊"),
         ("A1009", "周婷"), ("A1010", "吴昊"), ("A1011", "徐娜"), ("A1012", "孙琦"),
         ("A1013", "马骁"), ("A1014", "胡瑾"), ("A1015", "何睿"), ("A1016", "林琰"),
         ("A1017", "罗珺"), ("A1018", "郭晟"), ("A1019", "梁昇"), ("A1020", "谢玥"))
MATTERS = (("440300-001-01", "居民身份证换领"), ("440300-002-03", "营业执照设立登记"),
           ("440300-005-02", "社会保障卡补办"), ("440300-007-01", "不动产登记（首次登记）"),
           ("440300-011-04", "机动车驾驶证换证"), ("440300-013-02", "住房公积金提取"),
           ("440300-017-01", "个体工商户注册登记"), ("440300-021-05", "企业投资项目备案（含变更）"),
           ("440300-023-01", "城乡居民医疗保险参保登记"), ("440300-031-02", "往来港澳通行证签注"))
THEMES = (("T-CANYIN", "我要开餐馆", (("440300-002-03", "营业执照设立登记"),
                                     ("440300-041-01", "食品经营许可"),
                                     ("440300-043-02", "公众聚集场所投入使用前消防安全检查"))),
          ("T-CHUSHENG", "出生一件事", (("440300-051-01", "出生医学证明"),
                                        ("440300-052-01", "户口登记"),
                                        ("440300-005-01", "社会保障卡申领"))))
KINDS = ("completion", "pickup", "receipt", "failed_receipt", "batch", "theme")
DEFAULT_KIND_WEIGHTS = {"completion": 55, "pickup": 10, "receipt": 10, "failed_receipt": 7,
                        "batch": 10, "theme": 8}
NODE_OF = {"completion": 3, "pickup": 4, "receipt": 1, "failed_receipt": 1, "batch": 3, "theme": 3}


class CaseEvent:
    """One case outcome the queueing system reports. serials: 办件流水号 (two or more: a batch)."""

    def __init__(self, kind, window, staff, ticket, serials, matter, items=(), theme=None):
        self.kind = kind
        self.window = window
        self.staff_id, self.staff_name = staff
        self.ticket = ticket
        self.serials = list(serials)
        self.matter_code, self.matter_name = theme[:2] if theme else matter
        self.items = [{"code": c, "name": n} for c, n in items]
        self.node = NODE_OF[kind]
        self.case_id = None          # the gateway's id, once accepted

    @property
    def opens_rating(self):
        return self.kind != "failed_receipt"

    @property
    def case_key(self):
        return "%s#%d" % (self.serials[0], self.node)

    def body(self, completed_at=None):
        """The JSON body of the queueing API's case event (gateway/cases.py parse_event)."""
        out = {"window": self.window, "staff_id": self.staff_id, "staff_name": self.staff_name,
               "serials": self.serials, "matter_code": self.matter_code,
               "matter_name": self.matter_name, "node": _NODE_NAMES[self.node],
               "success": self.kind != "failed_receipt"}
        if self.items:
            out["items"] = self.items
        if completed_at is not None:
            out["completed_at"] = int(completed_at)
        return out


_NODE_NAMES = {1: "receipt", 2: "acceptance", 3: "completion", 4: "pickup"}


class CaseMaker:
    """Draws case events for a window from a seeded random source."""

    def __init__(self, rng, weights=None, prefix="SZ"):
        self.rng = rng
        weights = dict(DEFAULT_KIND_WEIGHTS if weights is None else weights)
        unknown = set(weights) - set(KINDS)
        if unknown or not sum(weights.values()):
            raise ValueError("case kinds: %s" % ", ".join(KINDS))
        self.kinds = [k for k in KINDS if weights.get(k)]
        self.weights = [weights[k] for k in self.kinds]
        self.prefix = prefix
        self.serial_no = 0
        self.counts = dict.fromkeys(KINDS, 0)

    def _serial(self, window):
        self.serial_no += 1
        return "%s%s-%05d" % (self.prefix, window, self.serial_no)

    def make(self, window, staff, ticket, kind=None):
        kind = kind or self.rng.choices(self.kinds, weights=self.weights)[0]
        self.counts[kind] += 1
        matter = self.rng.choice(MATTERS)
        if kind == "batch":
            serials = [self._serial(window) for _ in range(self.rng.randint(2, 4))]
            return CaseEvent(kind, window, staff, ticket, serials, matter)
        if kind == "theme":
            theme = self.rng.choice(THEMES)
            return CaseEvent(kind, window, staff, ticket, [self._serial(window)], matter,
                             items=theme[2], theme=theme)
        return CaseEvent(kind, window, staff, ticket, [self._serial(window)], matter)


class Window:
    def __init__(self, number, staff):
        self.number = number
        self.staff = staff
        self.served = 0
        self.open_case = None        # CaseEvent waiting for its rating callback
        self.settled = asyncio.Event()


class QueueSystem:
    """The hall's queueing system. `api` is a QueueApiClient (or a fake with the same methods)."""

    def __init__(self, api, windows, clock, seed=0, weights=None, service_s=(3.0, 12.0),
                 settle_wait_s=90.0, retry_s=1.0, completed_ago_s=0, settle_max_s=None,
                 recheck_s=5.0):
        self.api = api
        self.clock = clock           # SimClock: service times are simulated seconds
        self.rng = random.Random("queue/%s" % seed)
        self.maker = CaseMaker(random.Random("cases/%s" % seed), weights)
        self.windows = {}
        for i, number in enumerate(windows):
            self.windows[number] = Window(number, STAFF[i % len(STAFF)])
        self.service_s = service_s
        self.settle_wait_s = settle_wait_s
        self.settle_max_s = 4 * settle_wait_s if settle_max_s is None else settle_max_s
        self.recheck_s = recheck_s       # simulated seconds between two questions to the gateway
        self.retry_s = retry_s
        self.completed_ago_s = completed_ago_s   # > 7 days: the rating window is already closed
        self.tickets = 0
        self.events = []             # every CaseEvent accepted by the gateway
        self.callbacks = []          # every callback received
        self.stats = {"tickets": 0, "cases": 0, "api_errors": 0, "callbacks": 0,
                      "settled_by_callback": 0, "settled_by_query": 0, "settle_timeouts": 0,
                      "late_callbacks": 0, "repeated_callbacks": 0, "unknown_callbacks": 0}
        self._by_case = {}               # case id -> Window, for every case that opened a rating
        self._settled = {}               # case id -> how it settled: "callback" | "query" | "timeout"
        self._called_back = set()        # case ids with a callback received
        self._stopping = False

    # --- running ------------------------------------------------------------------------------
    async def run(self):
        await asyncio.gather(*(self._window_loop(w) for w in self.windows.values()))

    def stop_new_cases(self):
        """The hall closes: no new tickets; windows finish what they are serving."""
        self._stopping = True

    async def _call(self, fn, *args):
        """An API call, retried while the gateway is away (SIGKILLed, restarting)."""
        while True:
            try:
                return await fn(*args)
            except QueueApiError as exc:
                if exc.permanent:
                    raise
            except (OSError, asyncio.TimeoutError) as exc:
                log.debug("queue api: %s", exc)
            self.stats["api_errors"] += 1
            if self._stopping and fn != self.api.case:
                return None
            await asyncio.sleep(self.retry_s)

    async def _window_loop(self, w):
        await self._call(self.api.sign_in, w.number, w.staff[0], w.staff[1])
        while not self._stopping:
            self.tickets += 1
            ticket = "A%03d" % self.tickets
            self.stats["tickets"] += 1
            await self.clock.sleep(self.rng.uniform(*self.service_s))
            if self._stopping:
                break
            event = self.maker.make(w.number, w.staff, ticket)
            w.settled.clear()
            answer = await self._call(self.api.case, event.body(self.completed_at()))
            if answer is None:
                break
            event.case_id = answer.get("case_id")
            self.events.append(event)
            self.stats["cases"] += 1
            if not event.opens_rating:
                continue
            w.open_case = event
            if event.case_id is not None:
                self._by_case[event.case_id] = w
            how = await self._settle(w, event)
            if event.case_id is not None:
                self._settled[event.case_id] = how
            self.stats["settled_by_" + how if how != "timeout" else "settle_timeouts"] += 1
            w.open_case = None
            w.served += 1

    async def _settle(self, w, event):
        """Wait for the case's callback: "callback", "query" (the gateway no longer holds the case
        open, its callback is late) or "timeout" (still open after settle_max_s)."""
        waited = 0.0
        wait = self.settle_wait_s
        while True:
            try:
                await asyncio.wait_for(w.settled.wait(), self.clock.real_seconds(wait))
                return "callback"
            except asyncio.TimeoutError:
                waited += wait
            if event.case_id is not None and await self._closed_at_gateway(event.case_id):
                return "query"
            if w.settled.is_set():
                return "callback"
            if waited >= self.settle_max_s:
                log.warning("window %s: case %s still open after %.0f s", w.number, event.case_id,
                            waited)
                return "timeout"
            wait = min(self.recheck_s, self.settle_max_s - waited)

    async def _closed_at_gateway(self, case_id):
        """True when the gateway holds the case as rated / not rated, or no longer holds it."""
        try:
            case = await self.api.get_case(case_id)
        except QueueApiError as exc:
            if exc.permanent:
                return False
            self.stats["api_errors"] += 1
            return False
        except (OSError, asyncio.TimeoutError):     # the gateway is away: ask again later
            self.stats["api_errors"] += 1
            return False
        return case is None or case.get("status", "open") != "open"

    def completed_at(self):
        """When the business completed, in the hall's (possibly accelerated) time."""
        return int(self.clock.time()) - self.completed_ago_s

    # --- callbacks from the gateway -----------------------------------------------------------
    def on_callback(self, body):
        """A rated / timed-out notification (the gateway's callback body, already parsed)."""
        self.callbacks.append(body)
        self.stats["callbacks"] += 1
        case_id = body.get("case_id")
        w = self._by_case.get(case_id)
        if case_id in self._called_back:
            self.stats["repeated_callbacks"] += 1      # at-least-once delivery: drop the repeat
            return
        if w is None:
            self.stats["unknown_callbacks"] += 1
            return
        self._called_back.add(case_id)
        if w.open_case is None or w.open_case.case_id != case_id:
            self.stats["late_callbacks"] += 1           # settled by a question to the gateway
            return
        w.settled.set()

    def opened(self):
        """Case events that opened a rating."""
        return [e for e in self.events if e.opens_rating]


class QueueApiError(Exception):
    def __init__(self, status, text, permanent):
        super().__init__("%s: %s" % (status, text))
        self.status = status
        self.permanent = permanent


# --- HTTP: the gateway's queueing API (docs/queue-api.yaml), and our callback endpoint ------------
SIGN_IN_PATH = "/api/v1/windows/%s/sign-in"
CASES_PATH = "/api/v1/cases"
CALLBACK_PATH = "/queue/callback"


class QueueApiClient:
    """aiohttp client of the gateway's queueing API. 4xx (but 408/409/429) are permanent errors."""

    def __init__(self, base_url, token="", timeout_s=5.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self._session = None

    def _ensure_session(self):
        import aiohttp
        if self._session is None:
            headers = {"Authorization": "Bearer %s" % self.token} if self.token else {}
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def get_case(self, case_id):
        """The gateway's view of a case (dict with "status"), or None when it no longer holds it."""
        import aiohttp
        try:
            async with self._ensure_session().get(self.base_url + CASES_PATH + "/%d" % case_id) as resp:
                text = await resp.text()
                if resp.status == 404:
                    return None
                if resp.status >= 400:
                    raise QueueApiError(resp.status, text[:200], False)
                return json.loads(text) if text else {}
        except aiohttp.ClientError as exc:
            raise OSError(str(exc)) from None

    async def _post(self, path, body):
        import aiohttp
        try:
            async with self._ensure_session().post(self.base_url + path, json=body) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise QueueApiError(resp.status, text[:200],
                                        resp.status < 500 and resp.status not in (408, 409, 429))
                return await resp.json(content_type=None) if text else {}
        except aiohttp.ClientError as exc:
            raise OSError(str(exc)) from None

    async def sign_in(self, window, staff_id, staff_name):
        return await self._post(SIGN_IN_PATH % window, {"staff_id": staff_id, "staff_name": staff_name})

    async def case(self, body):
        return await self._post(CASES_PATH, body)

    async def close(self):
        if self._session is not None:
            await self._session.close()
            self._session = None


class CallbackServer:
    """Where the gateway tells the queueing system a case was rated / not rated (loopback HTTP)."""

    def __init__(self, queue, token="", host="127.0.0.1", port=0):
        self.queue = queue
        self.token = token
        self.host = host
        self.port = port
        self._runner = None

    @property
    def url(self):
        return "http://%s:%d%s" % (self.host, self.port, CALLBACK_PATH)

    async def start(self):
        from aiohttp import web
        app = web.Application()
        app.add_routes([web.post(CALLBACK_PATH, self._handle)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, request):
        from aiohttp import web
        if self.token and request.headers.get("Authorization") != "Bearer %s" % self.token:
            return web.json_response({"error": "token"}, status=401)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "not JSON"}, status=400)
        self.queue.on_callback(body)
        return web.json_response({"ok": True})

    async def stop(self):
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
