"""The web console in real headless Chromium (tests/browser.py): what a person does, click by click,
with a screenshot of each page in docs/images/console-*.png."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regard.store import open_store
from regard.store.core import Store
from tests.browser import Browser, browser  # noqa: F401 - the fixture
from tests.conftest import FIXTURES, TWO_PEOPLE, lfw
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


# ---------------------------------------------------------------- the flows a person does, click by click
#
# One service for the module: the collection made in the first flow is the one searched, audited
# and hidden from another office's key in the next ones (pytest runs them in this order).

COLLECTION = "volunteers"
PURPOSE = "checking a reported sighting, ticket 4711"

_LABELLED = """
const missing = [];
for (const field of document.querySelectorAll("input, select, textarea")) {
  if (field.type === "hidden") continue;
  const byFor = field.id && document.querySelector(`label[for="${CSS.escape(field.id)}"]`);
  if (!byFor && !field.getAttribute("aria-label")) missing.push(field.outerHTML.slice(0, 160));
}
for (const image of document.querySelectorAll("img")) {
  if (!(image.getAttribute("alt") || "").trim()) missing.push(image.outerHTML.slice(0, 160));
}
return missing;
"""


def _page_is_sound(browser: Browser) -> None:  # noqa: F811
    """Accessibility smoke and a clean console on the page shown: every field has a <label for> or
    an aria-label, every image a text alternative, and nothing was logged (no CSP violation)."""
    assert browser.driver.execute_script(_LABELLED) == [], browser.path
    assert browser.console_errors() == [], browser.path


def _as(browser: Browser, console: Service, key: tuple[str, str]) -> None:  # noqa: F811
    """Signed in afresh with `key` (whoever was signed in before is forgotten)."""
    browser.driver.delete_all_cookies()
    browser.go(console.url, "/console/sign-in")
    browser.fill("#key", f"{key[0]}.{key[1]}")
    _load(browser, "form[action='/console/sign-in'] button[type=submit]")
    assert browser.path == "/console", browser.text[:500]
    browser.console_errors()  # start each flow with an empty log


def _load(browser: Browser, css: str) -> None:  # noqa: F811
    """Click a link or a button that loads another page, and wait for that page."""
    browser.submit(css)


def _click(browser: Browser, css: str) -> None:  # noqa: F811
    """Click a link or a button that loads another page, and check the page shown."""
    _load(browser, css)
    _page_is_sound(browser)


def Select(element):  # type: ignore[no-untyped-def]  # noqa: N802 - selenium's, imported only when it is there
    from selenium.webdriver.support.ui import Select as Chosen

    return Chosen(element)


def _shot(browser: Browser, name: str) -> None:  # noqa: F811
    """The page from its top (an anchor may have scrolled it) as docs/images/console-<name>.png."""
    browser.driver.execute_script("window.scrollTo(0, 0)")
    browser.screenshot(name)


@pytest.fixture(scope="module")
def coordinator(console: Service) -> tuple[str, str]:
    """The admin who runs the collections (one key for the module, so the keys page stays short)."""
    return console.key("admin", name="volunteer coordinator")


@pytest.fixture(scope="module")
def officer(console: Service) -> tuple[str, str]:
    """The privacy officer: an admin who reads the audit trail and manages the keys."""
    return console.key("admin", name="privacy officer")


def _client(browser: Browser, console: Service) -> httpx.Client:  # noqa: F811
    """An HTTP client holding the browser's session (its cookies, the HttpOnly one included)."""
    cookies = {c["name"]: c["value"] for c in browser.driver.get_cookies()}
    return httpx.Client(base_url=console.url, cookies=cookies, timeout=120)


@pytest.fixture()
def store(console: Service) -> Iterator[Store]:
    opened = open_store(console.store_url)
    try:
        yield opened
    finally:
        opened.close()


def _ensure_collection(store: Store) -> None:
    """The first flow's collection, made by the library if that flow did not run (run on its own)."""
    if COLLECTION not in [c.id for c in store.list_collections()]:
        store.create_collection(COLLECTION, purpose="Recognise our volunteers at events", actor="test")


def test_an_admin_creates_a_collection_records_consent_and_enrolls_one_face_of_two(
    browser: Browser, console: Service, store: Store, coordinator: tuple[str, str]  # noqa: F811
) -> None:
    _as(browser, console, coordinator)
    _click(browser, "nav a[href='/console/collections']")
    browser.fill("#new-collection-id", COLLECTION)
    browser.fill("#new-collection-purpose", "Recognise our volunteers at events")
    browser.fill("#new-collection-retention", "365")
    Select(browser.find("#new-collection-quality")).select_by_value("MEDIUM")
    _click(browser, "#create-collection-submit")
    assert browser.path == f"/console/collections/{COLLECTION}" and browser.find("#collection-done").is_displayed()
    created = store.get_collection(COLLECTION)
    assert created.purpose == "Recognise our volunteers at events" and created.retention_days == 365
    assert browser.find("#collection-purpose").text == created.purpose
    assert browser.find("#collection-threshold").text.startswith(f"{store.search_threshold(COLLECTION):.1f}")

    browser.fill("#new-person-id", "bob")
    browser.fill("#new-person-name", "Bob Martin")
    _click(browser, "#add-person-submit")
    assert "bob" in [p.id for p in store.list_persons(COLLECTION)]
    assert browser.find("#consent-state-bob").get_attribute("data-consent") == "none"
    browser.find("#manage-bob summary").click()  # the person's forms open under "manage"
    Select(browser.find("#consent-basis-bob")).select_by_value("consent")
    browser.fill("#consent-reference-bob", "signed form 2024-17")
    browser.find("#consent-expires-bob").send_keys("12312030")  # typed as a person does (en-US: mm/dd/yyyy)
    _click(browser, "#consent-submit-bob")
    consent = store.get_person(COLLECTION, "bob").consent
    assert consent is not None and consent.reference == "signed form 2024-17"
    assert consent.basis.value == "consent" and consent.expires_at is not None and consent.expires_at.date().isoformat() == "2030-12-31"
    assert browser.find("#consent-state-bob").get_attribute("data-consent") == "valid"
    assert "signed form 2024-17" in browser.find("#consent-state-bob").text
    _shot(browser, "collection")
    _click(browser, "#back-to-collections")
    row = browser.find(f"#collection-{COLLECTION}").text
    assert COLLECTION in row and "Recognise our volunteers at events" in row
    _shot(browser, "collections")

    _click(browser, f"#collection-link-{COLLECTION}")
    _click(browser, "#enroll-link-bob")
    assert browser.path == f"/console/collections/{COLLECTION}/persons/bob/enroll"
    assert browser.all("#enrolled-none")
    browser.find("#enroll-photos").send_keys(str(TWO_PEOPLE))
    _click(browser, "#enroll-submit")
    assert browser.find("#outcome-1").get_attribute("data-outcome") == "choose"
    assert store.list_faces(COLLECTION, "bob") == []  # nothing enrolled until a face is picked
    radios = browser.all("#enroll-choices input[type=radio][name=face]")
    assert [r.get_attribute("value") for r in radios] == ["1", "2"]
    labels = [browser.find(f"label[for='{r.get_attribute('id')}']").text for r in radios]
    assert labels == ["face 1", "face 2"]
    assert browser.find("#enroll-choices img.preview").get_attribute("src").startswith("data:image/jpeg;base64,")
    _shot(browser, "enroll-choose")
    second = radios[1]
    box = [float(second.get_attribute(f"data-{side}")) for side in ("left", "top", "width", "height")]
    browser.find(f"label[for='{second.get_attribute('id')}']").click()
    assert second.is_selected()
    _click(browser, "#enroll-choices button[type=submit]")
    faces = store.list_faces(COLLECTION, "bob")
    assert len(faces) == 1  # exactly the face picked
    assert list(faces[0].box) == pytest.approx(box, abs=0.5)
    assert faces[0].face_id in browser.find("#enroll-done").text
    assert browser.all(f"#face-row-{faces[0].face_id}") and not browser.all("#enroll-choices")


def test_a_reviewer_searches_with_a_purpose_and_is_refused_without_one(
    browser: Browser, console: Service, store: Store, coordinator: tuple[str, str]  # noqa: F811
) -> None:
    _ensure_collection(store)
    # The coordinator enrolls Angela from a portrait: one face, enrolled at once.
    _as(browser, console, coordinator)
    browser.go(console.url, f"/console/collections/{COLLECTION}")
    _page_is_sound(browser)
    browser.fill("#new-person-id", "angela")
    _click(browser, "#add-person-submit")
    browser.find("#manage-angela summary").click()
    _click(browser, "#consent-submit-angela")
    _click(browser, "#enroll-link-angela")
    browser.find("#enroll-photos").send_keys(str(lfw("Angela_Bassett", 1)))
    _click(browser, "#enroll-submit")
    assert browser.find("#outcome-1").get_attribute("data-outcome") == "enrolled"
    assert len(store.list_faces(COLLECTION, "angela")) == 1

    reviewer = console.key("search", collections=[COLLECTION], name="reviewer")
    _as(browser, console, reviewer)
    _click(browser, "nav a[href='/console/search']")
    assert Select(browser.find("#search-collection")).first_selected_option.get_attribute("value") == COLLECTION
    searches = len(store.audit_entries(action="search"))
    browser.find("#search-photo").send_keys(str(lfw("Angela_Bassett", 2)))
    browser.fill("#search-purpose", PURPOSE)
    _click(browser, "#search-submit")
    assert browser.find("#search-photo-drawn").get_attribute("src").startswith("data:image/jpeg;base64,")
    candidates = browser.all("#search-face-1 tr.search-candidate")
    assert candidates and candidates[0].get_attribute("data-person") == "angela"
    assert f"{store.search_threshold(COLLECTION):.1f}" in browser.find("#search-threshold").text
    entries = store.audit_entries(action="search")
    assert len(entries) == searches + 1
    assert entries[-1].actor == f"key:{reviewer[0]}" and entries[-1].purpose == PURPOSE
    _shot(browser, "search")

    # Without a purpose the browser does not send the form (the field is required) ...
    browser.go(console.url, "/console/search")
    browser.find("#search-photo").send_keys(str(lfw("Angela_Bassett", 2)))
    browser.find("#search-submit").click()
    time.sleep(0.3)
    assert browser.path == "/console/search" and not browser.all("#search-results")
    assert browser.driver.execute_script("return document.querySelector('#search-purpose').validity.valueMissing")
    # ... and the server refuses it too when the page's check is taken away.
    browser.driver.execute_script("document.querySelector('#search-purpose').removeAttribute('required')")
    _load(browser, "#search-submit")
    assert "the purpose is required" in browser.find("#search-error").text
    assert not browser.all("#search-results")
    browser.console_errors()  # the refusal's 400 is logged by the browser: expected
    assert len(store.audit_entries(action="search")) == searches + 1  # nothing searched, nothing audited


def test_the_privacy_officer_reads_the_search_in_the_audit_trail_and_verifies_the_chain(
    browser: Browser, console: Service, store: Store, officer: tuple[str, str]  # noqa: F811
) -> None:
    searches = store.audit_entries(action="search", collection=COLLECTION)
    assert searches, "the search flow runs first"
    search = searches[-1]
    _as(browser, console, officer)
    _click(browser, "nav a[href='/console/audit']")
    seqs = [int(row.get_attribute("data-seq")) for row in browser.all("#audit-entries tr.audit-entry")]
    assert seqs == sorted(seqs, reverse=True)  # newest first
    row = browser.find(f"#audit-entry-{search.seq}")
    assert row.get_attribute("data-action") == "search"
    cells = row.find_elements("css selector", "td")
    assert search.actor in cells[2].text and "reviewer" in cells[2].text  # the key, and its name
    assert cells[4].text == COLLECTION and cells[5].text == PURPOSE
    _shot(browser, "audit")
    _click(browser, "#audit-verify")
    report = store.verify_audit()
    assert report.ok
    assert browser.find("#audit-verify-result").get_attribute("data-ok") == "true"
    assert "The chain verifies" in browser.find("#audit-verify-result").text
    assert browser.find("#audit-head-hash").text == report.head_hash
    assert browser.find("#audit-head-seq").text == str(report.head_seq)


def test_a_key_of_another_office_neither_sees_nor_opens_the_collection(
    browser: Browser, console: Service, store: Store  # noqa: F811
) -> None:
    _ensure_collection(store)
    if "elsewhere" not in [c.id for c in store.list_collections()]:
        store.create_collection("elsewhere", purpose="another office", actor="test")
    _as(browser, console, console.key("admin", collections=["elsewhere"], name="other office"))
    _click(browser, "nav a[href='/console/collections']")
    assert browser.all("#collection-elsewhere") and not browser.all(f"#collection-{COLLECTION}")
    assert COLLECTION not in browser.text
    client = _client(browser, console)
    for path in (f"/console/collections/{COLLECTION}", f"/console/collections/{COLLECTION}/persons/bob/enroll"):
        browser.go(console.url, path)
        assert browser.find("h1").text == "That did not work" and "Recognise our volunteers" not in browser.text, path
        assert not browser.all("#add-person-form") and not browser.all("#enroll-form")
        assert client.get(path).status_code == 404, path
    browser.console_errors()  # the refusals' 404s are logged by the browser: expected
    _click(browser, "nav a[href='/console/search']")
    options = [o.get_attribute("value") for o in browser.all("#search-collection option")]
    assert options == ["elsewhere"]
    _click(browser, "nav a[href='/console/audit']")
    assert browser.all("#audit-scoped")
    shown = browser.driver.execute_script(
        "return [...document.querySelectorAll('#audit-entries tr.audit-entry td:nth-child(5)')].map(td => td.textContent.trim())"
    )
    assert shown and COLLECTION not in shown  # only its own collection's entries
    assert COLLECTION not in browser.find("#audit-entries").text
    client.close()


def test_an_editor_blurs_every_face_of_a_group_photo_and_downloads_it(
    browser: Browser, console: Service, tmp_path: Path  # noqa: F811
) -> None:
    import numpy as np
    from PIL import Image

    import regard
    from regard.image import load_image

    group = FIXTURES / "2008_002470.jpg"  # six people
    _as(browser, console, console.key("detect", name="newsroom"))
    _click(browser, "nav a[href='/console/redact']")
    assert browser.find("#redact-nothing-stored").is_displayed()
    browser.find("#redact-media").send_keys(str(group))
    browser.find("label[for='redact-mode-blur']").click()
    assert browser.find("#redact-mode-blur").is_selected()
    _click(browser, "#redact-submit")
    assert "6 face(s) redacted" in browser.find("#redact-summary").text
    previews = browser.all("#redact-photo-1 img.preview")
    assert len(previews) == 1 and previews[0].get_attribute("src").startswith("data:image/jpeg;base64,")
    assert browser.driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", previews[0]) > 0
    _shot(browser, "redact")

    # The download, as the browser saves it.
    browser.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    link = browser.find("#redact-download")
    assert link.get_attribute("download") == "2008_002470.redacted.jpg"
    href = link.get_attribute("href")
    link.click()
    saved = tmp_path / "2008_002470.redacted.jpg"
    deadline = time.monotonic() + 30
    while not saved.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert saved.exists(), sorted(p.name for p in tmp_path.iterdir())
    original = load_image(group)
    redacted = np.asarray(Image.open(saved).convert("RGB"))
    assert redacted.shape == original.shape  # the same size
    difference = np.abs(redacted.astype(int) - original.astype(int)).mean(axis=2)
    faces = regard.detect(original, embed=False)
    assert len(faces) >= 5
    for face in faces:  # every face the recognition detector finds in the original is changed
        b = face.box
        assert difference[int(b.top) : int(b.bottom), int(b.left) : int(b.right)].mean() > 8, b
    # Downloaded once: gone from the server.
    with _client(browser, console) as client:
        assert client.get(href).status_code == 404


def test_an_admin_creates_a_key_that_works_then_revokes_it_and_it_is_refused(
    browser: Browser, console: Service, store: Store, officer: tuple[str, str]  # noqa: F811
) -> None:
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    _ensure_collection(store)
    _as(browser, console, officer)
    _click(browser, "nav a[href='/console/keys']")
    browser.fill("#new-key-name", "field volunteer")
    for role in ("search", "enroll"):
        browser.find(f"label[for='new-key-role-{role}']").click()
    browser.fill("#new-key-collections", COLLECTION)
    _click(browser, "#create-key-submit")
    bearer = browser.find("#new-key-secret").text
    key_id, secret = bearer.split(".", 1)
    assert browser.find("#new-key-id").text == key_id and secret
    created = store.get_api_key(key_id)
    assert created.active and created.name == "field volunteer" and tuple(created.collections or ()) == (COLLECTION,)
    assert sorted(r.value for r in created.roles) == ["enroll", "search"]
    _click(browser, "#keys-back")
    assert secret not in browser.driver.page_source  # shown once: not on the list
    assert browser.find(f"#key-{key_id}").get_attribute("data-active") == "true"
    _load(browser, "form[action='/console/sign-out'] button[type=submit]")
    assert browser.path == "/console/sign-in"

    # The volunteer signs in with it, sees what it may, and signs out.
    _as(browser, console, (key_id, secret))
    assert "field volunteer" in browser.text
    assert [a.text for a in browser.all("nav a")] == ["Collections", "Search", "Accuracy"]  # its roles (and the accuracy reports, open to every key)
    kept = _client(browser, console)  # a second window of the volunteer's session, still open after the revocation
    assert kept.get("/console/search").status_code == 200
    _load(browser, "form[action='/console/sign-out'] button[type=submit]")
    assert browser.path == "/console/sign-in"

    # The admin revokes it (the page asks to confirm first) ...
    _as(browser, console, officer)
    browser.go(console.url, "/console/keys")
    _page_is_sound(browser)
    browser.fill(f"#revoke-reason-{key_id}", "the volunteer left")
    browser.driver.execute_script("window.__regardOldPage = true")
    browser.find(f"#revoke-submit-{key_id}").click()
    confirm = WebDriverWait(browser.driver, 10).until(expected_conditions.alert_is_present())
    assert key_id in confirm.text and "field volunteer" in confirm.text
    confirm.accept()
    WebDriverWait(browser.driver, 60).until(
        lambda driver: driver.execute_script("return !window.__regardOldPage && document.readyState === 'complete'")
    )
    _page_is_sound(browser)
    assert key_id in browser.find("#keys-revoked").text
    assert browser.find(f"#key-{key_id}").get_attribute("data-active") == "false"
    assert not store.get_api_key(key_id).active
    _shot(browser, "keys")
    # ... and the key is refused: at sign-in, and in the session it had open.
    browser.driver.delete_all_cookies()
    browser.go(console.url, "/console/sign-in")
    browser.fill("#key", bearer)
    _load(browser, "form[action='/console/sign-in'] button[type=submit]")
    assert browser.path == "/console/sign-in" and "This key was refused" in browser.text
    browser.console_errors()  # the refusal's 401 is logged by the browser: expected
    stopped = kept.get("/console/search", follow_redirects=False)
    assert stopped.status_code == 303 and stopped.headers["location"].startswith("/console/sign-in")
    kept.close()


def test_a_detect_only_key_sees_only_what_it_may_use(browser: Browser, console: Service) -> None:  # noqa: F811
    browser.sign_in(console.url, console.key("detect", name="newsroom"))
    assert [a.text for a in browser.all("nav a")] == ["Redact", "Accuracy"]
    browser.go(console.url, "/console/keys")
    assert "may not" in browser.text  # refused on the server, not only hidden
    browser.sign_out()
