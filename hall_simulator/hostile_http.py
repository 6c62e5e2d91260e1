"""The hostile campaign's attacks on the gateway's HTTP API (hall_simulator.hostile: http_*)."""

import asyncio
import time

from hall_simulator.hostile_targets import loopback
from protocol import vocab

HTTP_TIMEOUT_S = 5.0
LEVEL_WORDS = tuple(vocab.LEVEL_NAMES.values())     # 非常满意 ... 非常不满意


async def attack_http(ledger, hall, targets, rng, hall_staff, deadline):
    import aiohttp
    base = hall.gateway.http_url.rstrip("/")
    loopback(base.split("//", 1)[1].rsplit(":", 1)[0])
    key = bytes(rng.randrange(256) for _ in range(32)).hex()
    victims = targets.victims
    rogue_id = "rogue%04d" % rng.randrange(10000)
    writes = [
        ("http_add_device", "POST", "/api/v1/devices",
         {"id": rogue_id, "window": targets.windows[victims[0]], "transport": "mqtt", "key": key}),
        ("http_move", "PATCH", "/api/v1/devices/%s" % victims[-1], {"window": "99"}),
        ("http_rekey", "PATCH", "/api/v1/devices/%s" % victims[0], {"key": key}),
        ("http_case", "POST", "/api/v1/cases",
         {"window": targets.windows[victims[0]], "staff_id": "X9999", "staff_name": "冒名顶替",
          "serials": ["ROGUE%06d" % rng.randrange(10 ** 6)], "matter_code": "X",
          "matter_name": "伪造事项", "node": "completion", "success": True}),
        ("http_sign_in", "POST", "/api/v1/windows/%s/sign-in" % targets.windows[victims[-1]],
         {"staff_id": "X9999", "staff_name": "冒名顶替"}),
        ("http_delete", "DELETE", "/api/v1/devices/%s" % victims[len(victims) // 2], None),
    ]
    reads = [("http_read", "GET", path, None) for path in ("/status", "/metrics", "/api/v1/windows")]
    queue_token = getattr(hall, "queue_token", None)
    as_queue = [("http_queue_role", method, path, body) for _, method, path, body in writes
                if "/devices" in path] + [("http_queue_role", "GET", "/status", None)]
    if not queue_token:
        as_queue = []
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for attack, method, path, body in writes + reads + as_queue:
            headers = {"Authorization": "Bearer %s" % queue_token} if attack == "http_queue_role" else {}
            while True:
                try:
                    async with session.request(method, base + path, json=body,
                                               headers=headers) as resp:
                        text = (await resp.read()).decode("utf-8", "replace")
                        status = resp.status
                    break
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    status = None     # the gateway is away (a kill): not a hit; try again
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
            if status is None:
                continue
            ledger.hit(attack)
            if not 200 <= status < 300:
                continue
            who = "with the queue role's credential" if headers else "without credentials"
            if method != "GET":
                ledger.breach(attack, "%s %s answered %d %s" % (method, path, status, who))
            else:
                # the queueing system sends the staff names itself: only levels are news to it
                leaked = _leaks(text, () if headers else hall_staff)
                if leaked:
                    ledger.breach(attack, "GET %s %s shows %s" % (path, who, ", ".join(leaked)))


def _leaks(text, staff):
    """Staff names, rating levels or level words found in an unauthenticated answer."""
    found = ["staff name %s" % n for n in staff if n in text]
    found += ["level word %s" % w for w in LEVEL_WORDS if w in text]
    if '"level":' in text or '"level": ' in text:
        found.append('field "level"')
    return found

