"""A real headless Chromium for the console's browser tests (Debian's chromium and
chromium-driver, driven by Selenium): one browser per test module, a laptop and a phone size,
page checks, and screenshots into $HALL_CONSOLE_SHOTS (only when it is set, so an ordinary run
never rewrites the committed docs/console/*.png)."""

import os
import time

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
LAPTOP = (1366, 900)
PHONE = (390, 844)
WAIT_S = 10.0
SHOTS_ENV = "HALL_CONSOLE_SHOTS"


@pytest.fixture(scope="module")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):     # scripts/setup installs both: a failure, never a skip
            pytest.fail("%s is missing (run scripts/setup)" % path, pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--lang=zh-CN", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--window-size=%d,%d" % LAPTOP):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(*LAPTOP)
    yield driver
    driver.quit()


def viewport(driver, size):
    """Make the page's viewport (not the window) `size`, as the device would have it."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": size == PHONE})


def wait_for(predicate, timeout=WAIT_S, what="the condition"):
    """Poll `predicate` until it returns something true; its value, or AssertionError."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = predicate()
        except (StaleElementReferenceException, WebDriverException):
            last = None
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))


def css(driver, selector):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def click(driver, selector):
    """Click the element `selector` names, found afresh (a live re-render may replace it)."""
    wait_for(lambda: css(driver, selector) and (css(driver, selector)[0].click() or True),
             what="clicking " + selector)


def text(driver):
    return driver.find_element(By.TAG_NAME, "body").text


def no_horizontal_scroll(driver):
    return driver.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def login(driver, base, user, password):
    driver.get(base + "/")
    wait_for(lambda: css(driver, "#login-form") and css(driver, "#login-form")[0].is_displayed()
             or css(driver, "#logout") and css(driver, "#logout")[0].is_displayed(), what="the page")
    if css(driver, "#logout")[0].is_displayed():
        css(driver, "#logout")[0].click()
        wait_for(lambda: css(driver, "#login-form")[0].is_displayed(), what="the login form")
    driver.find_element(By.ID, "login-user").send_keys(user)
    driver.find_element(By.ID, "login-password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    wait_for(lambda: css(driver, "#windows .win-card"), what="the hall view after logging in")


def shot(driver, name, size):
    """Save a full-page PNG as $HALL_CONSOLE_SHOTS/<name>.png when that is set."""
    folder = os.environ.get(SHOTS_ENV)
    if not folder:
        return None
    os.makedirs(folder, exist_ok=True)
    driver.execute_script("const t = document.getElementById('toast'); if (t) t.hidden = true;")
    height = driver.execute_script("return Math.max(document.documentElement.scrollHeight, %d)" % size[1])
    viewport(driver, (size[0], min(height, 4000)))
    time.sleep(0.3)            # let the layout settle at the new height
    path = os.path.join(folder, name + ".png")
    driver.save_screenshot(path)
    viewport(driver, size)
    return path
