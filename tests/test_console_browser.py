"""The web console in real headless Chromium (tests/browser.py): what a person does, click by click,
with a screenshot of each page in docs/images/console-*.png."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser import Browser, browser  # noqa: F401 - the fixture
from tests.service_harness import Service, running_service


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("console-browser")) as svc:
        yield svc


def test_sign_in_find_the_sections_and_sign_out(browser: Browser, console: Service) -> None:  # noqa: F811
    browser.go(console.url, "/")
    assert browser.path == "/console/sign-in"  # / -> /console -> sign-in
    browser.screenshot("sign-in")
    browser.fill("#key", "RGKNOPE.wrong")
    browser.submit("form[action='/console/sign-in'] button[type=submit]")
    assert "refused" in browser.text
    browser.console_errors()  # the refusal's 401 is expected: start the log afresh
    browser.sign_in(console.url, console.key("admin", name="privacy officer"))
    assert browser.path == "/console" and "privacy officer" in browser.text
    sections = [a.text for a in browser.all("nav a")]
    assert sections == ["Redact", "Collections", "Search", "Audit trail", "Accuracy", "Keys"]
    browser.screenshot("home")
    assert not browser.console_errors()  # no CSP violation, no failed asset
    browser.sign_out()
    assert browser.path == "/console/sign-in"
    browser.go(console.url, "/console")
    assert browser.path == "/console/sign-in"


def test_the_console_switches_to_french_and_keeps_the_choice(browser: Browser, console: Service) -> None:  # noqa: F811
    from selenium.webdriver.support.ui import Select

    browser.go(console.url, "/console/sign-in")
    Select(browser.find("#lang")).select_by_value("fr")
    browser.submit("form[action='/console/language'] button[type=submit]")
    assert browser.find("html").get_attribute("lang") == "fr" and "Connexion" in browser.text
    browser.go(console.url, "/console/sign-in")
    assert "Connexion" in browser.text
    Select(browser.find("#lang")).select_by_value("en")
    browser.submit("form[action='/console/language'] button[type=submit]")
    assert "Sign in" in browser.text
