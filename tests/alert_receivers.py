"""Loopback stand-ins for the alert channels' servers, each checking what the real one documents:

    /wecom/send?key=K            WeCom group robot: the key, msgtype "markdown" with a non-empty
                                 markdown.content of at most 4096 bytes; errcode 0, else 93000
                                 (bad key) or 40008 (bad message)
    /dingtalk/send?access_token  DingTalk robot with 加签: timestamp (ms, within an hour) and sign =
                                 base64(HMAC-SHA256(secret, timestamp + "\\n" + secret)); errcode
                                 310000 when it does not match; msgtype "markdown" with title + text
    /feishu/hook/ID              Feishu bot: timestamp (s) and sign = base64(HMAC-SHA256(key =
                                 timestamp + "\\n" + secret, msg = "")); code 19021 when wrong;
                                 msg_type "text" with content.text
    /webhook                     our JSON, X-Hall-Signature = sha256=HMAC(secret, body) if a secret
and an SMTP server (aiosmtpd). The signature checks are written here from the vendors' docs, not
with gateway.alert_channels' functions, so a wrong signer fails them.
All run on a loop thread of their own; `down` makes a receiver answer 503 (a server in trouble),
stop()/start() closes and reopens the port (a server gone).
"""

import asyncio
import base64
import email
import email.policy
import hashlib
import hmac
import json
import threading
import time

from aiohttp import web
from aiosmtpd.controller import Controller

from conftest import free_port

WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
DINGTALK_TOKEN = "dt-token"
DINGTALK_SECRET = "SECf1a2b3c4d5e6f7a8b9c0"
FEISHU_HOOK = "0f2d-hook"
FEISHU_SECRET = "feishu-秘密"
WEBHOOK_SECRET = "webhook-secret"


def _b64_hmac(key, msg):
    return base64.b64encode(hmac.new(key.encode("utf-8"), msg.encode("utf-8"), hashlib.sha256).digest()).decode()


class Receivers:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.got = {"wecom": [], "dingtalk": [], "feishu": [], "webhook": [], "email": []}
        self.refused = {"wecom": [], "dingtalk": [], "feishu": [], "webhook": []}
        self.raw = []              # every body received, accepted or not (the privacy checks)
        self.down = set()          # receivers answering 503
        self.lock = threading.Lock()
        self.port = None
        self._runner = None
        self._smtp = None

    # --- life ------------------------------------------------------------------------------
    def __enter__(self):
        self.thread.start()
        self.start()
        self._smtp = Controller(_SmtpHandler(self), hostname="127.0.0.1", port=free_port())
        self._smtp.start()
        return self

    def __exit__(self, *exc):
        self._smtp.stop()
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self):
        async def up():
            app = web.Application()
            app.router.add_post("/wecom/send", self._wecom)
            app.router.add_post("/dingtalk/send", self._dingtalk)
            app.router.add_post("/feishu/hook/{hook}", self._feishu)
            app.router.add_post("/webhook", self._webhook)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", self.port or 0, reuse_address=True)
            await site.start()
            self.port = self._runner.addresses[0][1]
        self._run(up())

    def stop(self):
        if self._runner is not None:
            self._run(self._runner.cleanup())
            self._runner = None

    # --- where the channels point -----------------------------------------------------------
    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def channels(self, dingtalk_secret=DINGTALK_SECRET, feishu_secret=FEISHU_SECRET, email=True):
        out = [{"name": "企业微信值班群", "type": "wecom", "url": "%s/wecom/send?key=%s" % (self.base, WECOM_KEY)},
               {"name": "dingtalk", "type": "dingtalk", "secret": dingtalk_secret,
                "url": "%s/dingtalk/send?access_token=%s" % (self.base, DINGTALK_TOKEN)},
               {"name": "feishu", "type": "feishu", "secret": feishu_secret,
                "url": "%s/feishu/hook/%s" % (self.base, FEISHU_HOOK)},
               {"name": "webhook", "type": "webhook", "secret": WEBHOOK_SECRET, "url": self.base + "/webhook"}]
        if email:
            out.append({"name": "email", "type": "email", "host": "127.0.0.1", "port": self._smtp.port,
                        "tls": "none", "sender": "gateway@hall.example.cn",
                        "to": ["值班经理 <duty@hall.example.cn>"]})
        return out

    def count(self, name):
        with self.lock:
            return len(self.got[name])

    def wait(self, name, n=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(name) >= n:
                with self.lock:
                    return list(self.got[name])
            time.sleep(0.02)
        raise AssertionError("%s got %d of %d message(s)" % (name, self.count(name), n))

    def wait_refused(self, name, n=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.refused[name]) >= n:
                    return list(self.refused[name])
            time.sleep(0.02)
        raise AssertionError("%s refused nothing" % name)

    # --- the servers' checks --------------------------------------------------------------
    async def _body(self, request, name):
        raw = await request.read()
        with self.lock:
            self.raw.append(raw)
        if name in self.down:
            return None, web.json_response({"error": "unavailable"}, status=503)
        try:
            return json.loads(raw.decode("utf-8")), None
        except ValueError:
            return None, web.json_response({"errcode": 40008, "errmsg": "invalid json"})

    def _accept(self, name, item):
        with self.lock:
            self.got[name].append(item)

    def _refuse(self, name, answer):
        with self.lock:
            self.refused[name].append(answer)
        return web.json_response(answer)

    async def _wecom(self, request):
        body, early = await self._body(request, "wecom")
        if early is not None:
            return early
        if request.query.get("key") != WECOM_KEY:
            return self._refuse("wecom", {"errcode": 93000, "errmsg": "invalid webhook url"})
        content = (body.get("markdown") or {}).get("content") if body.get("msgtype") == "markdown" else None
        if not isinstance(content, str) or not content or len(content.encode("utf-8")) > 4096:
            return self._refuse("wecom", {"errcode": 40008, "errmsg": "invalid message type"})
        self._accept("wecom", body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _dingtalk(self, request):
        body, early = await self._body(request, "dingtalk")
        if early is not None:
            return early
        q = request.query            # already URL-decoded, as DingTalk reads it
        try:
            ts = int(q.get("timestamp", ""))
        except ValueError:
            ts = 0
        expected = _b64_hmac(DINGTALK_SECRET, "%d\n%s" % (ts, DINGTALK_SECRET))
        if (q.get("access_token") != DINGTALK_TOKEN or abs(time.time() * 1000 - ts) > 3600_000
                or not hmac.compare_digest(q.get("sign", ""), expected)):
            return self._refuse("dingtalk", {"errcode": 310000, "errmsg": "sign not match"})
        md = body.get("markdown") or {}
        if body.get("msgtype") != "markdown" or not md.get("title") or not md.get("text"):
            return self._refuse("dingtalk", {"errcode": 40035, "errmsg": "缺少参数 markdown"})
        self._accept("dingtalk", body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _feishu(self, request):
        body, early = await self._body(request, "feishu")
        if early is not None:
            return early
        ts = str(body.get("timestamp", ""))
        expected = _b64_hmac("%s\n%s" % (ts, FEISHU_SECRET), "")
        if (request.match_info["hook"] != FEISHU_HOOK or not ts.isdigit()
                or abs(time.time() - int(ts)) > 3600
                or not hmac.compare_digest(str(body.get("sign", "")), expected)):
            return self._refuse("feishu", {"code": 19021, "msg": "sign match fail or timestamp is not"
                                                                 " within one hour from current time"})
        text = (body.get("content") or {}).get("text")
        if body.get("msg_type") != "text" or not isinstance(text, str) or not text:
            return self._refuse("feishu", {"code": 9499, "msg": "Bad Request"})
        self._accept("feishu", body)
        return web.json_response({"code": 0, "msg": "success", "data": {}, "StatusCode": 0,
                                  "StatusMessage": "success"})

    async def _webhook(self, request):
        raw = await request.read()
        with self.lock:
            self.raw.append(raw)
        if "webhook" in self.down:
            return web.Response(status=503)
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Hall-Signature", ""), expected):
            with self.lock:
                self.refused["webhook"].append({"status": 401})
            return web.Response(status=401)
        self._accept("webhook", json.loads(raw.decode("utf-8")))
        return web.json_response({"ok": True})


class _SmtpHandler:
    def __init__(self, receivers):
        self.receivers = receivers

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.receivers.lock:    # decoded: the privacy checks read what a person would
            self.receivers.raw.append((str(message["Subject"]) + message.get_content()).encode("utf-8"))
            self.receivers.got["email"].append({"rcpt": list(envelope.rcpt_tos), "message": message})
        return "250 Message accepted for delivery"
