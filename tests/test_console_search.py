"""The console's search section over HTTP (a real `regard serve`, real photos): a search needs a
purpose, finds the enrolled person among every face of the photo, shows the threshold's
expectations and the "no candidate" state, is audited with the key as the actor, and is refused
to keys without the role or the collection."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import httpx
import pytest

from regard import gallery
from regard.store import ConsentBasis, open_store
from regard.store.core import Store
from tests.conftest import FIXTURES, lfw, side_by_side
from tests.service_harness import Service, running_service
from tests.test_console import _csrf, sign_in

PURPOSE = "checking a reported sighting, ticket 4711"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("console-search")) as svc:
        store = open_store(svc.store_url)
        try:
            store.create_collection("club", purpose="members of the club", actor="setup")
            store.create_collection("other", purpose="another office", actor="setup")
            store.add_person("club", "angela", actor="setup")
            store.record_consent("club", "angela", basis=ConsentBasis.CONSENT, actor="setup", reference="form-1")
            assert gallery.enroll(store, "club", lfw("Angela_Bassett", 1), person_id="angela", actor="setup").enrolled
        finally:
            store.close()
        yield svc


@pytest.fixture
def store(service: Service) -> Iterator[Store]:
    opened = open_store(service.store_url)
    yield opened
    opened.close()


def _searches(store: Store) -> list:  # type: ignore[type-arg]
    return store.audit_entries(action="search")


def _post(client: httpx.Client, photo: bytes | None, **fields: str) -> httpx.Response:
    csrf = _csrf(client.get("/console/search").text)
    files = {"photo": ("photo.jpg", photo, "image/jpeg")} if photo is not None else {"photo": ("", b"", "application/octet-stream")}
    return client.post("/console/search", data={"csrf": csrf, **fields}, files=files)


def test_a_search_with_a_purpose_finds_the_enrolled_person_and_is_audited_with_the_key(
    service: Service, store: Store
) -> None:
    key = service.key("search", collections=["club"], name="reviewer")
    client = sign_in(service, key)
    form = client.get("/console/search")
    assert form.status_code == 200
    assert 'id="search-form"' in form.text and 'enctype="multipart/form-data"' in form.text
    assert re.search(r'<input id="search-purpose"[^>]* required', form.text)
    assert '<option value="club"' in form.text and '<option value="other"' not in form.text  # only what it may search
    before = len(_searches(store))

    photo = side_by_side(lfw("Angela_Bassett", 2), lfw("Anthony_Fauci", 1))
    response = _post(client, photo, collection="club", purpose=PURPOSE)
    assert response.status_code == 200, response.text[-2000:]
    page = response.text
    # Both faces outlined and numbered on the photo, sent inside the page.
    assert re.search(r'<img class="preview" id="search-photo-drawn" src="data:image/jpeg;base64,[A-Za-z0-9+/=]+"', page)
    assert 'id="search-face-1"' in page and 'id="search-face-2"' in page and 'id="search-face-3"' not in page
    # Angela's face (the left one, detected first or second) has her as a candidate; the other has none.
    assert page.count('data-person="angela"') == 1
    assert len(re.findall(r'id="search-none-\d"', page)) == 1
    # The threshold and what it means, in the store's words; the note that candidates are leads.
    expected = store.search_expectations("club")
    assert html.escape(expected["words"]) in page
    assert f"{expected['threshold']:.1f}" in page
    assert "leads for a person to review, not identifications" in page
    assert "False-match rate at this score" in page
    for attribute in ("age", "gender", "emotion"):
        assert not re.search(rf"\b{attribute}\b", page.split("<footer", 1)[0].lower())

    entries = _searches(store)
    assert len(entries) == before + 1
    entry = entries[-1]
    assert entry.actor == f"key:{key[0]}" and entry.purpose == PURPOSE and entry.collection == "club"
    assert entry.details["request"]["faces_found"] == 2
    found = [c["person_id"] for result in entry.details["results"] for c in result]
    assert found == ["angela"]


def test_a_search_without_a_purpose_is_refused_and_not_audited(service: Service, store: Store) -> None:
    client = sign_in(service, service.key("search"))
    before = len(_searches(store))
    photo = lfw("Angela_Bassett", 3).read_bytes()
    for purpose in ("", "   "):
        refused = _post(client, photo, collection="club", purpose=purpose)
        assert refused.status_code == 400
        assert 'id="search-error"' in refused.text and "the purpose is required" in refused.text
        assert 'id="search-form"' in refused.text and 'id="search-results"' not in refused.text
    assert len(_searches(store)) == before


def test_a_photo_of_someone_not_enrolled_shows_no_candidate_and_a_photo_without_a_face_says_so(
    service: Service, store: Store
) -> None:
    client = sign_in(service, service.key("search"))
    stranger = _post(client, lfw("Amber_Tamblyn", 1).read_bytes(), collection="club", purpose=PURPOSE)
    assert stranger.status_code == 200
    assert 'id="search-none-1"' in stranger.text and "No candidate" in stranger.text
    assert 'data-person="' not in stranger.text
    nobody = _post(client, (FIXTURES / "dogs.jpg").read_bytes(), collection="club", purpose=PURPOSE, largest="1")
    assert nobody.status_code == 200
    assert 'id="search-no-face"' in nobody.text and 'id="search-face-1"' not in nobody.text
    assert _searches(store)[-1].details["request"]["faces_found"] == 0  # audited all the same


def test_a_photo_that_is_not_an_image_is_refused_on_the_form(service: Service, store: Store) -> None:
    client = sign_in(service, service.key("search"))
    before = len(_searches(store))
    refused = _post(client, b"not a photo at all", collection="club", purpose=PURPOSE)
    assert refused.status_code == 400 and 'id="search-error"' in refused.text
    missing = _post(client, None, collection="club", purpose=PURPOSE)
    assert missing.status_code == 400 and "Choose a photo" in missing.text
    assert len(_searches(store)) == before


def test_a_key_without_the_search_role_is_refused(service: Service, store: Store) -> None:
    client = sign_in(service, service.key("detect", "enroll"))
    assert client.get("/console/search").status_code == 403
    csrf = _csrf(client.get("/console").text)
    before = len(_searches(store))
    refused = client.post(
        "/console/search",
        data={"csrf": csrf, "collection": "club", "purpose": PURPOSE},
        files={"photo": ("a.jpg", lfw("Angela_Bassett", 2).read_bytes(), "image/jpeg")},
    )
    assert refused.status_code == 403
    assert len(_searches(store)) == before


def test_a_key_scoped_to_another_collection_cannot_search_this_one(service: Service, store: Store) -> None:
    client = sign_in(service, service.key("search", collections=["other"]))
    form = client.get("/console/search")
    assert form.status_code == 200 and '<option value="club"' not in form.text
    assert client.get("/console/search", params={"collection": "club"}).status_code == 403
    before = len(_searches(store))
    refused = _post(client, lfw("Angela_Bassett", 2).read_bytes(), collection="club", purpose=PURPOSE)
    assert refused.status_code == 403 and "angela" not in refused.text
    assert len(_searches(store)) == before


def test_a_search_without_the_forms_token_is_refused(service: Service, store: Store) -> None:
    client = sign_in(service, service.key("search"))
    before = len(_searches(store))
    forged = client.post(
        "/console/search",
        data={"csrf": "forged", "collection": "club", "purpose": PURPOSE},
        files={"photo": ("a.jpg", lfw("Angela_Bassett", 2).read_bytes(), "image/jpeg")},
    )
    assert forged.status_code == 403
    assert len(_searches(store)) == before


def test_the_search_page_speaks_french(service: Service) -> None:
    client = sign_in(service, service.key("search"))
    client.headers["Accept-Language"] = "fr"
    response = _post(client, lfw("Angela_Bassett", 4).read_bytes(), collection="club", purpose=PURPOSE)
    assert response.status_code == 200
    assert "pas des identifications" in response.text and "Visage 1" in response.text


def test_largest_face_only_searches_one_face(service: Service, store: Store) -> None:
    client = sign_in(service, service.key("search"))
    photo = side_by_side(lfw("Angela_Bassett", 2), lfw("Anthony_Fauci", 1))
    response = _post(client, photo, collection="club", purpose=PURPOSE, largest="1")
    assert response.status_code == 200
    assert 'id="search-face-1"' in response.text and 'id="search-face-2"' not in response.text
    assert "Only the largest face was searched." in response.text
    assert re.search(r'<input id="search-largest"[^>]* checked', response.text)
    assert _searches(store)[-1].details["request"]["faces_found"] == 1
