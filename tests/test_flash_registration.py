"""Registration through the running gateway's real HTTP API (gateway.queue_api) on loopback."""

import asyncio
import threading

import pytest
from aiohttp import web

from gateway.queue_api import make_app
from gateway.registry import Registry
from gateway.rejects import Rejections
from tools.flashkit import registration
from tools.flashkit.errors import GatewayError

TOKEN = "t0ken-for-tests"


class _Cfg:
    class http:
        operator_token = TOKEN      # registering devices is the operator's (gateway.http_auth)


class _Gateway:
    def __init__(self, path):
        self.cfg = _Cfg
        self.registry = Registry(path=path)
        self.rejections = Rejections()


@pytest.fixture
def gateway_http(tmp_path):
    gw = _Gateway(str(tmp_path / "registry.json"))
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box = {}

    async def start():
        runner = web.AppRunner(make_app(gw))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box["runner"] = runner
        box["url"] = "http://127.0.0.1:%d" % site._server.sockets[0].getsockname()[1]
        started.set()

    t = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    t.start()
    assert started.wait(10)
    gw.url = box["url"]
    yield gw
    asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    t.join(10)


def _spec(key="aa" * 32, window="07", address=7):
    return {"id": "ev-240ac4123456", "window": window, "board": "five_button", "transport": "rs485",
            "address": address, "key": key, "firmware": "1.0.0+abc"}


def test_register_add_update_and_refusals_over_http(gateway_http):
    gw = gateway_http
    assert registration.register(gw.url, _spec(), TOKEN) == "added"
    assert gw.registry.get("ev-240ac4123456").key.hex() == "aa" * 32
    assert registration.register(gw.url, _spec(key="bb" * 32, window="08", address=8), TOKEN) == "updated"
    dev = gw.registry.get("ev-240ac4123456")
    assert (dev.key.hex(), dev.window, dev.address) == ("bb" * 32, "08", 8)
    with pytest.raises(GatewayError) as exc:
        registration.register(gw.url, _spec(), "wrong-token")
    assert "HTTP 401" in str(exc.value)
    gw.registry.add({"id": "ev-other", "transport": "rs485", "address": 9, "key": "cc" * 32})
    with pytest.raises(GatewayError) as exc:  # the address is taken: the gateway's reason is shown
        registration.register(gw.url, dict(_spec(), id="ev-third", address=9), TOKEN)
    assert "HTTP 400" in str(exc.value) and "taken" in str(exc.value)
    with pytest.raises(GatewayError) as exc:
        registration.register("http://127.0.0.1:9", _spec(), TOKEN)
    assert "does not answer" in str(exc.value)
