"""The console's keys section over HTTP (a real `regard serve`): an admin creates a key (its secret
shown once, never cached, and it signs in), revokes one (its session stops at once; revoking one's
own key signs out), the store and the audit log hold what was done with the key as the actor; a
key scoped to collections creates only narrower keys and sees only those; other roles are refused
and forms without the session's CSRF token too."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from regard.auditlog import AuditAction
from regard.store import open_store
from regard.store.base import Role
from regard.store.core import Store
from tests.service_harness import Service, running_service
from tests.test_console import _csrf, sign_in


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("console-keys")) as svc:
        yield svc


@pytest.fixture
def store(service: Service) -> Iterator[Store]:
    opened = open_store(service.store_url)
    yield opened
    opened.close()


def _form(client: httpx.Client) -> str:
    page = client.get("/console/keys")
    assert page.status_code == 200, page.text[-1500:]
    return _csrf(page.text)


def _create(client: httpx.Client, csrf: str | None = None, **fields: object) -> httpx.Response:
    data = {"csrf": csrf if csrf is not None else _form(client), "name": "", "collections": "", "purpose": "", "rate_per_minute": ""}
    data.update({k: v for k, v in fields.items()})  # type: ignore[misc]
    return client.post("/console/keys", data=data)


def _ids(store: Store) -> set[str]:
    return {k.key_id for k in store.list_api_keys()}


def test_an_admin_creates_a_key_its_secret_shown_once_and_it_signs_in(service: Service, store: Store) -> None:
    admin = service.key("admin", name="ops")
    client = sign_in(service, admin)
    before = _ids(store)
    created = _create(
        client, name="photo desk", roles=["search", "enroll"], collections="news, archive", purpose="verify sources",
        rate_per_minute="30",
    )  # fmt: skip
    assert created.status_code == 201, created.text[-1500:]
    assert created.headers["cache-control"] == "no-store"
    bearer = re.search(r'<code id="new-key-secret"[^>]*>([^<]+)</code>', created.text)
    assert bearer, created.text[-2000:]
    key_id, _, secret = bearer.group(1).partition(".")
    assert 'id="key-secret-warning"' in created.text and "only this once" in created.text

    new = _ids(store) - before
    assert new == {key_id}
    key = store.get_api_key(key_id)
    assert key.name == "photo desk" and key.roles == (Role.SEARCH, Role.ENROLL) and key.collections == ("news", "archive")
    assert key.default_purpose == "verify sources" and key.rate_per_minute == 30 and key.created_by == f"key:{admin[0]}"
    entry = store.audit_entries(action=AuditAction.KEY_CREATE.value)[-1]
    assert entry.actor == f"key:{admin[0]}" and entry.details["key_id"] == key_id and "secret" not in str(entry.details)

    # The secret works, and the list shows the key but never the secret again.
    other = sign_in(service, (key_id, secret))
    assert other.get("/console").status_code == 200
    listing = client.get("/console/keys")
    assert f'id="key-{key_id}"' in listing.text and "photo desk" in listing.text
    assert secret not in listing.text and "news, archive" in listing.text and "30" in listing.text
    assert f'id="revoke-form-{key_id}"' in listing.text and "data-confirm=" in listing.text


def test_form_mistakes_show_the_form_again_and_create_nothing(service: Service, store: Store) -> None:
    client = sign_in(service, service.key("admin"))
    before = _ids(store)
    for fields, words in (
        ({"name": "no roles"}, "at least one role"),
        ({"name": "", "roles": ["detect"]}, "needs a name"),
        ({"name": "bad rate", "roles": ["detect"], "rate_per_minute": "0"}, "whole number"),
        ({"name": "bad collection", "roles": ["detect"], "collections": "a/b"}, "not a collection id"),
        ({"name": "bad role", "roles": ["root"]}, "no role root"),
    ):
        response = _create(client, **fields)
        assert response.status_code == 400 and words in response.text, (fields, response.text[-1500:])
        assert 'id="create-key-form"' in response.text and 'id="keys-error"' in response.text
    assert _ids(store) == before


def test_a_scoped_admin_creates_only_narrower_keys_and_sees_only_those(service: Service, store: Store) -> None:
    scoped_id, scoped_secret = service.key("admin", collections=["news", "sport"], name="news desk admin")
    outsider_id, _ = service.key("search", collections=["finance"], name="finance search")
    client = sign_in(service, (scoped_id, scoped_secret))
    before = _ids(store)
    for fields in (
        {"name": "admin", "roles": ["admin"], "collections": "news"},  # an admin key reaches every role
        {"name": "unscoped", "roles": ["search"], "collections": ""},  # every collection
        {"name": "elsewhere", "roles": ["search"], "collections": "news, finance"},  # outside its scope
    ):
        refused = _create(client, **fields)
        assert refused.status_code == 403 and 'id="keys-error"' in refused.text, (fields, refused.text[-1500:])
    assert _ids(store) == before

    made = _create(client, name="sport searcher", roles=["search"], collections="sport")
    assert made.status_code == 201, made.text[-1500:]
    (new_id,) = _ids(store) - before
    assert store.get_api_key(new_id).collections == ("sport",)

    listing = client.get("/console/keys")
    shown = set(re.findall(r'<tr id="key-(RGK[A-Z0-9]+)"', listing.text))
    assert new_id in shown and outsider_id not in shown and scoped_id in shown  # itself, to revoke it if need be
    others = [store.get_api_key(k) for k in shown - {scoped_id}]
    assert all(k.collections is not None and set(k.collections) <= {"news", "sport"} and Role.ADMIN not in k.roles for k in others)
    assert not any(k.name == "bootstrap" for k in others)
    # A key outside its scope cannot be revoked by URL either: it does not exist for this key.
    gone = client.post(f"/console/keys/{outsider_id}/revoke", data={"csrf": _csrf(listing.text), "reason": "not mine"})
    assert gone.status_code == 404 and store.get_api_key(outsider_id).active


def test_revoking_a_key_ends_its_session_at_once(service: Service, store: Store) -> None:
    admin = service.key("admin", name="ops")
    victim = service.key("detect", name="leaked laptop")
    client, theirs = sign_in(service, admin), sign_in(service, victim)
    assert theirs.get("/console").status_code == 200
    csrf = _form(client)
    no_reason = client.post(f"/console/keys/{victim[0]}/revoke", data={"csrf": csrf, "reason": "  "})
    assert no_reason.status_code == 400 and 'id="keys-revoke-error"' in no_reason.text and store.get_api_key(victim[0]).active

    revoked = client.post(f"/console/keys/{victim[0]}/revoke", data={"csrf": csrf, "reason": "laptop stolen"})
    assert revoked.status_code == 303 and revoked.headers["location"] == f"/console/keys?revoked={victim[0]}"
    key = store.get_api_key(victim[0])
    assert not key.active and key.revoked_by == f"key:{admin[0]}"
    entry = store.audit_entries(action=AuditAction.KEY_REVOKE.value)[-1]
    assert entry.actor == f"key:{admin[0]}" and entry.details == {"key_id": victim[0], "reason": "laptop stolen"}
    after = client.get(revoked.headers["location"])
    assert 'id="keys-revoked"' in after.text and f'<tr id="key-{victim[0]}" data-active="false"' in after.text

    refused = theirs.get("/console", follow_redirects=False)
    assert refused.status_code == 303 and refused.headers["location"].startswith("/console/sign-in")


def test_revoking_the_key_you_are_signed_in_with_signs_you_out(service: Service, store: Store) -> None:
    own = service.key("admin", name="leaving")
    client = sign_in(service, own)
    cookie = client.cookies.get("regard_session")
    listing = client.get("/console/keys")
    assert "you will be signed out" in listing.text  # its own row's confirmation says so
    response = client.post(f"/console/keys/{own[0]}/revoke", data={"csrf": _csrf(listing.text), "reason": "rotating"})
    assert response.status_code == 303 and response.headers["location"] == "/console/sign-in"
    assert not store.get_api_key(own[0]).active
    assert client.get("/console/keys").status_code == 303  # the cookie was cleared
    with httpx.Client(base_url=service.url, cookies={"regard_session": cookie or ""}) as replay:
        again = replay.get("/console/keys", follow_redirects=False)  # and the old cookie no longer works
        assert again.status_code == 303 and again.headers["location"].startswith("/console/sign-in")


def test_other_roles_are_refused_and_forms_need_the_csrf_token(service: Service, store: Store) -> None:
    before = _ids(store)
    for roles in (("detect",), ("enroll", "search")):
        client = sign_in(service, service.key(*roles))
        assert client.get("/console/keys").status_code == 403
        csrf = _csrf(client.get("/console").text)
        assert _create(client, csrf=csrf, name="mine", roles=["admin"]).status_code == 403
        bootstrap = next(k for k in store.list_api_keys() if k.name == "bootstrap")
        assert client.post(f"/console/keys/{bootstrap.key_id}/revoke", data={"csrf": csrf, "reason": "x"}).status_code == 403
    admin = sign_in(service, service.key("admin"))
    after_admin = _ids(store)
    assert _create(admin, csrf="forged", name="forged", roles=["admin"]).status_code == 403
    assert admin.post("/console/keys", data={"name": "no token", "roles": ["admin"]}).status_code == 403
    target = service.key("detect")
    assert admin.post(f"/console/keys/{target[0]}/revoke", data={"reason": "no token"}).status_code == 403
    assert store.get_api_key(target[0]).active
    assert _ids(store) - after_admin == {target[0]} and before <= _ids(store)
