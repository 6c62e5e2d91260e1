"""Where the duty manager's alerts go: the channels a Chinese office uses, each in its documented
format, from [[alerts.channels]] entries (type, url, secret, name, kinds):

    wecom     企业微信 group robot: POST {"msgtype": "markdown", "markdown": {"content"}} to the
              robot's webhook URL (key in the URL); success is errcode 0. Content at most 4096 bytes.
    dingtalk  钉钉 custom robot, "加签": sign = urlencode(base64(HMAC-SHA256(key=secret,
              msg=timestamp_ms + "\\n" + secret))), appended as &timestamp=&sign=; body
              {"msgtype": "markdown", "markdown": {"title", "text"}}; success errcode 0 (a wrong
              signature answers 310000).
    feishu    飞书 custom bot: sign = base64(HMAC-SHA256(key=timestamp_s + "\\n" + secret, msg="")),
              body {"timestamp", "sign", "msg_type": "text", "content": {"text"}}; success code 0
              (older bots: StatusCode 0).
    webhook   our own JSON (the alert's fields, see alerts.py), with X-Hall-Signature:
              sha256=<hex HMAC-SHA256(secret, body)> when a secret is set; any 2xx is success.
    email     SMTP (host, port, tls = "starttls" | "ssl" | "none", username, password, sender,
              to = [...]), UTF-8 subject and body, sent in the executor.

send() never raises: it answers (ok, detail). Every request times out after TIMEOUT_S. A send is
"ok" only on a 2xx with the channel's own success code: anything else is retried by the queue.
Secrets and bodies are never logged (a body names staff; the rater is never in it).
"""

import asyncio
import base64
import hashlib
import hmac
import json
import smtplib
import ssl
import time
import urllib.parse
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiohttp

TYPES = ("wecom", "dingtalk", "feishu", "webhook", "email")
TIMEOUT_S = 5.0
WECOM_MAX_BYTES = 4096       # the group robot's markdown limit
TEXT_MAX_BYTES = 4000        # kept well inside DingTalk's and Feishu's limits too
DETAIL_MAX = 200


class ChannelConfigError(ValueError):
    pass


def _clip(text, limit):
    """`text` cut to at most `limit` UTF-8 bytes on a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit - 3].decode("utf-8", "ignore") + "..."


def markdown(alert, newline="\n"):
    """The alert as the robots' markdown: a heading, then one quoted line per field (DingTalk
    renders a line break only between paragraphs: newline="\n\n" there)."""
    lines = ["### " + alert["title"]]
    lines += ["> %s：%s" % (label, value) for label, value in alert["lines"]]
    return newline.join(lines)


def plain(alert):
    return "\n".join([alert["title"]] + ["%s：%s" % (label, value) for label, value in alert["lines"]])


def dingtalk_sign(secret, timestamp_ms):
    """DingTalk's 加签 value, already URL-encoded."""
    to_sign = ("%d\n%s" % (timestamp_ms, secret)).encode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), to_sign, hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


def feishu_sign(secret, timestamp_s):
    """Feishu's sign: timestamp + "\\n" + secret is the HMAC key, the message is empty."""
    key = ("%d\n%s" % (timestamp_s, secret)).encode("utf-8")
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def webhook_signature(secret, body):
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Channel:
    type = ""

    def __init__(self, spec, index, clock=time.time):
        self.name = spec.get("name") or "%s-%d" % (self.type, index + 1)
        self.url = spec.get("url", "")
        self.secret = spec.get("secret", "")
        self.kinds = spec.get("kinds")      # None: every kind of alert
        self.clock = clock
        if self.kinds is not None and (not isinstance(self.kinds, list)
                                       or not all(isinstance(k, str) for k in self.kinds)):
            raise ChannelConfigError("[[alerts.channels]] %s: kinds is a list of alert kinds" % self.name)
        if self.type != "email" and not (isinstance(self.url, str)
                                         and self.url.startswith(("http://", "https://"))):
            raise ChannelConfigError("[[alerts.channels]] %s: url must be an http(s) URL" % self.name)
        if not isinstance(self.secret, str):
            raise ChannelConfigError("[[alerts.channels]] %s: secret must be text" % self.name)

    def wants(self, kind):
        return self.kinds is None or kind in self.kinds

    def public(self):
        """What the console shows of a channel: never its URL (robot keys live in it) or secret."""
        return {"name": self.name, "type": self.type, "kinds": self.kinds}

    async def send(self, session, alert):
        """(ok, detail); never raises."""
        try:
            return await self._send(session, alert)
        except asyncio.CancelledError:
            raise
        except asyncio.TimeoutError:
            return False, "timeout after %.0f s" % TIMEOUT_S
        except (aiohttp.ClientError, OSError, smtplib.SMTPException) as e:
            return False, "%s: %s" % (type(e).__name__, str(e)[:DETAIL_MAX])
        except Exception as e:      # a bug here must not stop the other alerts
            return False, "unexpected %s" % type(e).__name__

    async def _post(self, session, url, body, headers=None):
        """(HTTP status, parsed JSON or None)."""
        headers = dict(headers or {}, **{"Content-Type": "application/json; charset=utf-8"})
        async with session.post(url, data=body, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as resp:
            raw = await resp.read()
        try:
            return resp.status, json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return resp.status, None

    @staticmethod
    def _verdict(status, answer, code_keys):
        if not 200 <= status < 300:
            return False, "HTTP %d" % status
        if not isinstance(answer, dict):
            return False, "HTTP %d without a JSON answer" % status
        for key in code_keys:
            if key in answer:
                code = answer[key]
                if code == 0:
                    return True, "ok"
                message = answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage") or ""
                return False, ("%s %s %s" % (key, code, message))[:DETAIL_MAX]
        return False, "HTTP %d without %s" % (status, "/".join(code_keys))


class WeCom(Channel):
    type = "wecom"

    async def _send(self, session, alert):
        body = {"msgtype": "markdown", "markdown": {"content": _clip(markdown(alert), WECOM_MAX_BYTES)}}
        status, answer = await self._post(session, self.url, _dumps(body))
        return self._verdict(status, answer, ("errcode",))


class DingTalk(Channel):
    type = "dingtalk"

    async def _send(self, session, alert):
        url = self.url
        if self.secret:
            ts = int(self.clock() * 1000)
            url += "%stimestamp=%d&sign=%s" % ("&" if "?" in url else "?", ts,
                                                dingtalk_sign(self.secret, ts))
        body = {"msgtype": "markdown",
                "markdown": {"title": alert["title"],
                             "text": _clip(markdown(alert, "\n\n"), TEXT_MAX_BYTES)}}
        status, answer = await self._post(session, url, _dumps(body))
        return self._verdict(status, answer, ("errcode",))


class Feishu(Channel):
    type = "feishu"

    async def _send(self, session, alert):
        body = {"msg_type": "text", "content": {"text": _clip(plain(alert), TEXT_MAX_BYTES)}}
        if self.secret:
            ts = int(self.clock())
            body = dict({"timestamp": str(ts), "sign": feishu_sign(self.secret, ts)}, **body)
        status, answer = await self._post(session, self.url, _dumps(body))
        return self._verdict(status, answer, ("code", "StatusCode"))


class Webhook(Channel):
    type = "webhook"

    async def _send(self, session, alert):
        body = _dumps(dict(alert["data"], title=alert["title"], text=plain(alert)))
        headers = {"X-Hall-Signature": webhook_signature(self.secret, body)} if self.secret else {}
        status, _ = await self._post(session, self.url, body, headers)
        return (True, "ok") if 200 <= status < 300 else (False, "HTTP %d" % status)


class Email(Channel):
    type = "email"
    TLS = ("starttls", "ssl", "none")

    def __init__(self, spec, index, clock=time.time):
        super().__init__(spec, index, clock)
        self.host = spec.get("host", "")
        self.port = spec.get("port", 587)
        self.tls = spec.get("tls", "starttls")
        self.username = spec.get("username", "")
        self.password = spec.get("password", "")
        self.sender = spec.get("sender", "")
        self.to = spec.get("to", [])
        self.cafile = spec.get("cafile")
        if isinstance(self.to, str):
            self.to = [self.to]
        if (not self.host or not self.sender or not self.to or self.tls not in self.TLS
                or isinstance(self.port, bool) or not isinstance(self.port, int)):
            raise ChannelConfigError("[[alerts.channels]] %s: email needs host, port, sender, to and"
                                     " tls one of %s" % (self.name, ", ".join(self.TLS)))

    def public(self):
        return dict(super().public(), to=len(self.to))

    def message(self, alert):
        msg = EmailMessage()
        msg["Subject"] = alert["title"]
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(self.clock(), localtime=False)
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        msg.set_content(plain(alert) + "\n", charset="utf-8")
        return msg

    async def _send(self, session, alert):
        msg = self.message(alert)
        await asyncio.get_running_loop().run_in_executor(None, self._deliver, msg)
        return True, "ok"

    def _deliver(self, msg):
        context = ssl.create_default_context(cafile=self.cafile)
        if self.tls == "ssl":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=TIMEOUT_S, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_S)
        with smtp:
            if self.tls == "starttls":
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(msg)   # raises unless at least one recipient took it


CLASSES = {c.type: c for c in (WeCom, DingTalk, Feishu, Webhook, Email)}


def from_config(entries, clock=time.time):
    """[[alerts.channels]] as Channel objects; ChannelConfigError for a bad entry (at start)."""
    out = []
    for i, spec in enumerate(entries or []):
        if not isinstance(spec, dict) or spec.get("type") not in CLASSES:
            raise ChannelConfigError("[[alerts.channels]] #%d: type must be one of %s"
                                     % (i + 1, ", ".join(TYPES)))
        out.append(CLASSES[spec["type"]](spec, i, clock=clock))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ChannelConfigError("[[alerts.channels]]: each channel needs its own name")
    return out
