"""The console over a running hall-sim: the login hall-sim prints opens it, a citizen's rating on a
simulated evaluator (real firmware, over the real bus or broker, into the real gateway process)
shows on its window's card within 2 s of the citizen being told it was recorded, and every page
renders from that hall. With $HALL_CONSOLE_SHOTS set, the pages are saved as PNGs (docs/console/
hall-sim-*.png are made so)."""

import asyncio
import io
import threading
import time

import pytest

from console_browser import LAPTOP, PHONE, browser, css, login  # noqa: F401 (fixture)
from console_browser import no_horizontal_scroll, shot, text, viewport, wait_for
from hall_simulator import hall as hall_mod
from protocol import vocab

LIVE_S = 2.0
LEVEL_WORDS = tuple(vocab.LEVEL_NAMES.values())


class RunningHall:
    """A hall (2 windows on RS-485, 2 on Wi-Fi, one of them touch) with its queueing system
    opening cases, its loop in a thread."""

    def __init__(self, workdir):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.hall = hall_mod.Hall(2, 2, seed=31, workdir=workdir, out=io.StringIO(), touch=1,
                                  duration_s=600.0)
        self.call(self.hall.start())
        self.queue_task = asyncio.run_coroutine_threadsafe(self.hall.queue.run(), self.loop)

    def call(self, coro, timeout=90):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def login(self, role):
        (login_,) = [(u, p) for u, r, p in self.hall.console_logins if r == role]
        return login_

    def close(self):
        try:
            self.hall.queue.stop_new_cases()
            self.queue_task.cancel()
            self.call(self.hall.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture(scope="module")
def running_hall(tmp_path_factory):
    live = RunningHall(str(tmp_path_factory.mktemp("sim") / "hall"))
    yield live
    live.close()


def card_rating(browser, window):
    cards = css(browser, '.win-card[data-window="%s"] .last-rating' % window)
    return cards[0].text if cards else ""


def test_a_citizens_rating_in_hall_sim_shows_live_and_every_page_renders(running_hall, browser):
    hall = running_hall.hall
    base = hall.gateway.http_url
    login(browser, base, *running_hall.login("operator"))
    wait_for(lambda: "on" in css(browser, "#live")[0].get_attribute("class"), what="the live stream")
    windows = sorted(hall_mod_windows(hall))
    wait_for(lambda: len(css(browser, "#windows .win-card")) == len(windows), what="a card per window")
    # the next press a citizen is told was recorded, and its card: within LIVE_S of the telling
    seen = len(hall.confirmations)
    before = dict((w, card_rating(browser, w)) for w in windows)
    entry = wait_for(lambda: next((e for e in hall.confirmations[seen:]
                                   if e["source"] == vocab.SRC_PRESS), None),
                     timeout=60, what="a citizen's rating")
    window = entry["window"]
    wait_for(lambda: card_rating(browser, window) != before[window]
             and vocab.LEVEL_NAMES[entry["level"]] in card_rating(browser, window),
             timeout=LIVE_S + 1, what="the rating on window %s's card" % window)
    assert time.time() - entry["at"] < LIVE_S + 0.5, "the card changed late"
    shot(browser, "hall-sim-operator-hall-laptop", LAPTOP)
    for page_name in ("ratings", "bad", "devices", "alerts"):
        browser.execute_script("location.hash = arguments[0]", "#/" + page_name)
        wait_for(lambda: browser.execute_script("return document.getElementById('view').dataset.page")
                 == page_name, what="the %s page" % page_name)
        wait_for(lambda: "读取中" not in text(browser), what="the %s page's data" % page_name)
        shot(browser, "hall-sim-operator-%s-laptop" % page_name, LAPTOP)
    browser.execute_script("location.hash = '#/hall'")
    viewport(browser, PHONE)
    wait_for(lambda: no_horizontal_scroll(browser), timeout=3, what="no horizontal scroll")
    shot(browser, "hall-sim-operator-hall-phone", PHONE)
    viewport(browser, LAPTOP)
    # the lobby screen of the same hall: health, never a level
    login(browser, base, *running_hall.login("viewer"))
    wait_for(lambda: len(css(browser, "#windows .win-card")) == len(windows), what="the lobby")
    assert not any(word in text(browser) for word in LEVEL_WORDS)
    shot(browser, "hall-sim-viewer-lobby-laptop", LAPTOP)


def hall_mod_windows(hall):
    return [dev[1:] for ids in hall.device_ids() for dev in ids]
