"""The web console over HTTP (a real `regard serve`, a real client): sign-in, sessions, CSRF, roles,
the Content-Security-Policy, languages. The browser tests (test_console_browser.py) drive the pages."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.service_harness import Service, running_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("console")) as svc:
        yield svc


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def sign_in(service: Service, key: tuple[str, str]) -> httpx.Client:
    client = httpx.Client(base_url=service.url, follow_redirects=False)
    form = client.get("/console/sign-in")
    response = client.post(
        "/console/sign-in", data={"key": f"{key[0]}.{key[1]}", "csrf": _csrf(form.text), "next": "/console"}
    )
    assert response.status_code == 303 and response.headers["location"] == "/console", response.text[:300]
    return client


def test_root_goes_to_the_console_and_a_stranger_to_sign_in(service: Service) -> None:
    with httpx.Client(base_url=service.url) as client:
        first = client.get("/", follow_redirects=False)
        assert first.status_code == 307 and first.headers["location"] == "/console"
        page = client.get("/console", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/console/sign-in?next=/console"
        form = client.get("/console/sign-in")
        assert form.status_code == 200 and "<form" in form.text
        csp = form.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "http" not in re.sub(r'(href|src)="/console', "", form.text).split("<body", 1)[0].lower().replace(
            "http-equiv", ""
        )  # nothing in the head comes from elsewhere


def test_sign_in_sets_a_strict_http_only_cookie_and_shows_what_the_roles_allow(service: Service) -> None:
    key = service.key("detect", name="newsroom")
    client = sign_in(service, key)
    cookie = next(c for c in client.cookies.jar if c.name == "regard_session")
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.get_nonstandard_attr("SameSite", "").lower() == "strict"
    assert key[1] not in cookie.value  # a signed key id and nonce, never the secret
    home = client.get("/console")
    assert home.status_code == 200 and "newsroom" in home.text
    assert 'href="/console/redact"' in home.text and 'href="/console/keys"' not in home.text


def test_a_wrong_key_is_refused_and_a_form_without_its_token_is_refused(service: Service) -> None:
    with httpx.Client(base_url=service.url) as client:
        form = client.get("/console/sign-in")
        refused = client.post("/console/sign-in", data={"key": "RGKNOPE.secret", "csrf": _csrf(form.text)})
        assert refused.status_code == 401 and "refused" in refused.text
        forged = client.post("/console/sign-in", data={"key": "x.y", "csrf": "forged"})
        assert forged.status_code == 403
    client = sign_in(service, service.key("admin"))
    assert client.post("/console/sign-out", data={"csrf": "forged"}).status_code == 403
    assert client.get("/console").status_code == 200  # still signed in
    home = client.get("/console")
    out = client.post("/console/sign-out", data={"csrf": _csrf(home.text)})
    assert out.status_code == 303
    client.cookies.clear()
    assert client.get("/console").status_code == 303


def test_a_revoked_key_loses_its_session_at_once(service: Service) -> None:
    from regard.service.keys import KeyRing
    from regard.store import open_store

    key = service.key("admin", name="to revoke")
    client = sign_in(service, key)
    assert client.get("/console").status_code == 200
    store = open_store(service.store_url)
    try:
        KeyRing(store, service.master_key).revoke(key[0], actor="test", reason="left the team")
    finally:
        store.close()
    response = client.get("/console")
    assert response.status_code == 303 and response.headers["location"].startswith("/console/sign-in")


def test_a_tampered_or_expired_session_is_sent_to_sign_in(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    key = service.key("admin")
    client = sign_in(service, key)
    value = client.cookies["regard_session"]
    client.cookies.clear()
    client.cookies.set("regard_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"), path="/console")
    assert client.get("/console").status_code == 303
    # An expired one: signed by the same secret, but older than the session's lifetime.
    from itsdangerous import URLSafeTimedSerializer

    from regard.service.keys import KeyRing
    from regard.store import open_store

    store = open_store(service.store_url)
    try:
        secret = KeyRing(store, service.master_key).session_secret()
    finally:
        store.close()
    import time

    signer = URLSafeTimedSerializer(secret, salt="regard-console-session")
    client.cookies.clear()
    client.cookies.set("regard_session", signer.dumps({"key": key[0], "nonce": "n"}), path="/console")
    assert client.get("/console").status_code == 200  # signed now: a valid session
    monkeypatch.setattr(time, "time", lambda: 1_000_000_000.0)  # 2001
    old = signer.dumps({"key": key[0], "nonce": "n"})
    monkeypatch.undo()
    client.cookies.clear()
    client.cookies.set("regard_session", old, path="/console")
    assert client.get("/console").status_code == 303


def test_the_console_speaks_french_when_asked(service: Service) -> None:
    with httpx.Client(base_url=service.url, headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"}) as client:
        page = client.get("/console/sign-in")
        assert 'lang="fr"' in page.text and "Connexion" in page.text


def test_every_message_has_its_french_translation() -> None:
    import json

    from regard.console.i18n import _messages

    english, french = _messages("en"), _messages("fr")
    assert set(english) == set(french), sorted(set(english) ^ set(french))
    fields = re.compile(r"\{(\w+)\}")
    for key, text in english.items():
        assert set(fields.findall(text)) == set(fields.findall(french[key])), key
