"""Real headless Chromium for the console's end-to-end tests: Debian's chromium and chromedriver
(scripts/install_browser.sh), driven by Selenium. No browser is downloaded at run time: without
them every browser test is skipped, and the run ends with a loud banner (tests/conftest.py).

    def test_x(browser: Browser, console: Service) -> None:
        browser.sign_in(console, key)
        browser.go(console, "/console/search")
        browser.screenshot("search")          # console-search.png (docs/images with REGARD_SCREENSHOTS=docs)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = (
    Path(__file__).resolve().parent.parent / "docs" / "images"
    if os.environ.get("REGARD_SCREENSHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "regard-console-screenshots"
)
"""Where screenshots go: docs/images (the README's pictures) with REGARD_SCREENSHOTS=docs, else a
temporary folder, so that a test run leaves the checkout as it was."""
SKIPPED: list[str] = []
"""Why the browser tests were skipped, if they were (the run's summary says so loudly)."""


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists() and shutil.which(path.name) is None:
            return f"{path} is not installed (bash scripts/install_browser.sh)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (bash scripts/setup.sh --dev)"
    return None


class Browser:
    """A Chromium window (1280 x 900) with the few moves the tests make."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService

        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--lang=en-US", "--force-device-scale-factor=1"):
            options.add_argument(argument)
        options.add_experimental_option("prefs", {"download.default_directory": "/tmp", "intl.accept_languages": "en-US,en"})
        driver = str(CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which("chromedriver"))
        self.driver = webdriver.Chrome(service=DriverService(executable_path=driver), options=options)
        self.driver.set_page_load_timeout(120)

    def go(self, base_url: str, path: str) -> None:
        self.driver.get(base_url + path)

    def find(self, css: str):  # type: ignore[no-untyped-def]
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str):  # type: ignore[no-untyped-def]
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def fill(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def submit(self, css: str) -> None:
        """Click a button or link that loads another page, and wait for that page. The old document
        is marked (a node of it going stale is not a reliable sign: while Chromium swaps documents,
        asking fails with "Node with given id does not belong to the document" instead)."""
        from selenium.common.exceptions import WebDriverException

        self.driver.execute_script("window.__regardOldPage = true")
        self.find(css).click()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.driver.execute_script("return !window.__regardOldPage && document.readyState === 'complete'"):
                    return
            except WebDriverException:  # the document is being replaced
                pass
            time.sleep(0.05)
        raise AssertionError(f"no new page after clicking {css}")

    @property
    def path(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.driver.current_url).path

    @property
    def text(self) -> str:
        return str(self.find("body").text)

    def sign_in(self, base_url: str, key: tuple[str, str]) -> None:
        self.go(base_url, "/console/sign-in")
        self.fill("#key", f"{key[0]}.{key[1]}")
        self.submit("form[action='/console/sign-in'] button[type=submit]")

    def sign_out(self) -> None:
        self.submit("form[action='/console/sign-out'] button[type=submit]")

    def screenshot(self, name: str) -> Path:
        """The page as console-<name>.png in SCREENSHOTS (the README links docs/images' copies)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"console-{name}.png"
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(1280, min(max(900, int(height)), 2400))
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(1280, 900)
        return path

    def console_errors(self) -> list[str]:
        """What the browser's console logged as errors (a CSP violation shows up here)."""
        try:
            return [e["message"] for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]
        except Exception:  # noqa: BLE001 - not every driver keeps the log
            return []

    def close(self) -> None:
        self.driver.quit()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    why = _missing()
    if why:
        SKIPPED.append(why)
        pytest.skip(f"browser test: {why}")
    window = Browser()
    try:
        yield window
    finally:
        window.close()
