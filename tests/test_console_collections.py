"""The console's collections section over HTTP (a real `regard serve`, real photos): creating a
collection (admin only), persons and consent, enrolling a photo, picking a face in a photo of two
people, revoking and forgetting with their erasure, collection scope, CSRF."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regard.console.pending import Pending
from regard.store import open_store
from regard.store.core import Store
from tests.conftest import TWO_PEOPLE, lfw
from tests.service_harness import Service, running_service
from tests.test_console import _csrf, sign_in

ALICE = lfw("Abel_Pacheco", 1)  # one face, high quality


@pytest.fixture(scope="module")
def temp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's temporary folder, where photos waiting for a face to be picked go."""
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, temp: Path) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("console-collections"), env={"TMPDIR": str(temp)}) as svc:
        yield svc


@pytest.fixture()
def store(service: Service) -> Iterator[Store]:
    opened = open_store(service.store_url)
    try:
        yield opened
    finally:
        opened.close()


def _new_collection(store: Store, collection_id: str) -> None:
    store.create_collection(collection_id, purpose="tests of the console", actor="test")


def _person_with_consent(store: Store, collection_id: str, person_id: str) -> None:
    from regard.store.base import ConsentBasis

    store.add_person(collection_id, person_id, actor="test")
    store.record_consent(collection_id, person_id, basis=ConsentBasis.CONSENT, actor="test")


def _post(client: httpx.Client, page: str, action: str, data: dict[str, str], **kwargs: object) -> httpx.Response:
    """Submit a form of `page` (a GET first, for its CSRF token)."""
    token = _csrf(client.get(page).text)
    return client.post(action, data={"csrf": token, **data}, **kwargs)  # type: ignore[arg-type]


def _pending_files(temp: Path) -> list[Path]:
    return sorted(temp.glob("regard-console-*/*/enroll/*.photo"))  # the console folder of this store


def test_an_admin_creates_a_collection_and_an_enroll_key_cannot(service: Service, store: Store) -> None:
    admin = service.key("admin", name="privacy officer")
    client = sign_in(service, admin)
    listing = client.get("/console/collections")
    assert listing.status_code == 200 and 'id="create-collection-form"' in listing.text
    refused = _post(client, "/console/collections", "/console/collections", {"id": "volunteers", "purpose": " "})
    assert refused.status_code == 400 and 'id="collections-error"' in refused.text
    created = _post(
        client,
        "/console/collections",
        "/console/collections",
        {"id": "volunteers", "purpose": "Recognise our volunteers at events", "retention_days": "30", "min_quality": "HIGH"},
    )
    assert created.status_code == 303 and created.headers["location"] == "/console/collections/volunteers?done=created"
    collection = store.get_collection("volunteers")
    assert (collection.purpose, collection.retention_days, collection.min_quality.value) == (
        "Recognise our volunteers at events", 30, "HIGH"
    )  # fmt: skip
    entry = store.audit_entries(collection="volunteers", action="collection_create")[-1]
    assert entry.actor == f"key:{admin[0]}"
    described = client.get(created.headers["location"])
    assert described.status_code == 200 and 'id="collection-done"' in described.text
    expected = store.search_expectations("volunteers")["words"]
    assert html.escape(expected) in described.text  # the threshold's FPIR/FNIR in words
    assert "30 days" in described.text and 'id="threshold-form"' in described.text
    listing = client.get("/console/collections")
    assert 'id="collection-volunteers"' in listing.text
    again = _post(client, "/console/collections", "/console/collections", {"id": "volunteers", "purpose": "again"})
    assert again.status_code == 409

    enroller = sign_in(service, service.key("enroll", name="coordinator"))
    page = enroller.get("/console/collections")
    assert page.status_code == 200 and 'id="create-collection-form"' not in page.text
    assert 'id="threshold-form"' not in enroller.get("/console/collections/volunteers").text
    forbidden = _post(enroller, "/console/collections", "/console/collections", {"id": "mine", "purpose": "a try"})
    assert forbidden.status_code == 403
    threshold = _post(
        enroller, "/console/collections/volunteers", "/console/collections/volunteers/threshold", {"threshold": "70", "reason": "x"}
    )
    assert threshold.status_code == 403 and store.get_collection("volunteers").threshold is None
    assert "mine" not in [c.id for c in store.list_collections()]
    # The admin sets the threshold; the page says it is the collection's own.
    set_ = _post(client, "/console/collections/volunteers", "/console/collections/volunteers/threshold", {"threshold": "72.5", "reason": "audited"})
    assert set_.status_code == 303 and store.get_collection("volunteers").threshold == 72.5
    assert "set for this collection" in client.get("/console/collections/volunteers").text


def test_add_a_person_record_consent_and_enroll_a_photo(service: Service, store: Store) -> None:
    _new_collection(store, "staff")
    key = service.key("enroll", collections=["staff"])
    client = sign_in(service, key)
    page = "/console/collections/staff"
    added = _post(client, page, "/console/collections/staff/persons", {"person_id": "alice", "display_name": "Alice A."})
    assert added.status_code == 303 and store.get_person("staff", "alice").display_name == "Alice A."
    bad = _post(client, page, "/console/collections/staff/persons", {"person_id": "not valid!"})
    assert bad.status_code == 400 and 'id="add-person-error"' in bad.text
    # Without consent the enroll page says so and offers no upload.
    enroll_page = client.get("/console/collections/staff/persons/alice/enroll")
    assert enroll_page.status_code == 200 and 'id="enroll-needs-consent"' in enroll_page.text
    past = _post(client, page, "/console/collections/staff/persons/alice/consent", {"basis": "consent", "expires": "2001-01-01"})
    assert past.status_code == 400 and 'id="person-error-alice"' in past.text and store.get_person("staff", "alice").consent is None
    consent = _post(
        client, page, "/console/collections/staff/persons/alice/consent",
        {"basis": "contract", "reference": "release 42", "expires": "2099-12-31"},
    )  # fmt: skip
    assert consent.status_code == 303
    recorded = store.get_person("staff", "alice").consent
    assert recorded is not None and recorded.basis.value == "contract" and recorded.reference == "release 42"
    assert recorded.expires_at is not None and recorded.expires_at.year == 2099
    assert store.audit_entries(collection="staff", action="consent_record")[-1].actor == f"key:{key[0]}"
    described = client.get(page)
    assert 'data-consent="valid"' in described.text and "release 42" in described.text

    enroll_url = "/console/collections/staff/persons/alice/enroll"
    token = _csrf(client.get(enroll_url).text)
    with open(ALICE, "rb") as photo:
        result = client.post(enroll_url, data={"csrf": token}, files={"photos": (ALICE.name, photo, "image/jpeg")})
    assert result.status_code == 200 and 'data-outcome="enrolled"' in result.text
    faces = store.list_faces("staff", "alice")
    assert len(faces) == 1 and faces[0].face_id in result.text
    entry = store.audit_entries(collection="staff", action="enroll")[-1]
    assert entry.actor == f"key:{key[0]}" and entry.details["face_ids"] == [faces[0].face_id]
    # The same photo again: skipped, nothing added.
    with open(ALICE, "rb") as photo:
        again = client.post(enroll_url, data={"csrf": token}, files={"photos": (ALICE.name, photo, "image/jpeg")})
    assert 'data-outcome="skipped"' in again.text and len(store.list_faces("staff", "alice")) == 1
    # A photo without a face says so.
    blank = _blank_jpeg()
    nothing = client.post(enroll_url, data={"csrf": token}, files={"photos": ("wall.jpg", blank, "image/jpeg")})
    assert 'data-outcome="no_face"' in nothing.text and len(store.list_faces("staff", "alice")) == 1


def _blank_jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 190, 180)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_a_photo_of_two_people_asks_which_face_and_enrolls_only_that_one(service: Service, store: Store, temp: Path) -> None:
    _new_collection(store, "club")
    _person_with_consent(store, "club", "bob")
    key = service.key("enroll", collections=["club"])
    client = sign_in(service, key)
    enroll_url = "/console/collections/club/persons/bob/enroll"
    token = _csrf(client.get(enroll_url).text)
    before = _pending_files(temp)
    with open(TWO_PEOPLE, "rb") as photo:
        asked = client.post(enroll_url, data={"csrf": token}, files={"photos": (TWO_PEOPLE.name, photo, "image/jpeg")})
    assert asked.status_code == 200 and 'data-outcome="choose"' in asked.text
    assert store.list_faces("club", "bob") == []  # nothing stored until a face is picked
    radios = re.findall(r'<input type="radio" name="face" value="(\d+)" id="face-([\w-]+)-\d+"[^>]*'
                        r'data-left="([\d.]+)" data-top="([\d.]+)" data-width="([\d.]+)" data-height="([\d.]+)"', asked.text)  # fmt: skip
    assert [r[0] for r in radios] == ["1", "2"]
    assert ">face 1</label>" in asked.text and ">face 2</label>" in asked.text
    assert re.search(r'<img class="preview" src="data:image/jpeg;base64,[^"]+" id="choose-image-[\w-]+" alt="[^"]+"', asked.text)
    assert "deleted once you pick a face or after 15 minutes" in asked.text
    waiting = [p for p in _pending_files(temp) if p not in before]
    assert len(waiting) == 1 and waiting[0].read_bytes() == TWO_PEOPLE.read_bytes()
    choice = radios[0][1]
    # The numbers and boxes are regard detect's.
    detected = httpx.post(
        f"{service.url}/v1/detect", headers=service.bearer("detect"), files={"image": TWO_PEOPLE.read_bytes()}
    ).json()["faces"]
    assert len(detected) == 2
    second = detected[1]["box"]
    assert [float(v) for v in radios[1][2:]] == pytest.approx([second[k] for k in ("left", "top", "width", "height")], abs=0.1)
    # Another key, even on the same collection, cannot use this photo.
    other = sign_in(service, service.key("enroll", collections=["club"]))
    stolen = _post(other, enroll_url, f"{enroll_url}/choose", {"token": choice, "face": "2"})
    assert stolen.status_code == 410 and store.list_faces("club", "bob") == []
    # No face named: asked again, the photo kept.
    unnamed = _post(client, enroll_url, f"{enroll_url}/choose", {"token": choice})
    assert unnamed.status_code == 400 and waiting[0].exists()
    picked = _post(client, enroll_url, f"{enroll_url}/choose", {"token": choice, "face": "2"})
    assert picked.status_code == 303, picked.text[:500]
    faces = store.list_faces("club", "bob")
    assert len(faces) == 1
    assert list(faces[0].box) == pytest.approx([second[k] for k in ("left", "top", "width", "height")], abs=0.5)
    assert picked.headers["location"] == f"{enroll_url}?enrolled={faces[0].face_id}"
    assert not waiting[0].exists()  # deleted after the choice
    shown = client.get(picked.headers["location"])
    assert 'id="enroll-done"' in shown.text and f'id="face-row-{faces[0].face_id}"' in shown.text
    assert 'id="enroll-choices"' not in shown.text
    entry = store.audit_entries(collection="club", action="enroll")[-1]
    assert entry.actor == f"key:{key[0]}" and entry.details["face_ids"] == [faces[0].face_id]
    twice = _post(client, enroll_url, f"{enroll_url}/choose", {"token": choice, "face": "1"})
    assert twice.status_code == 410 and len(store.list_faces("club", "bob")) == 1


def test_revoking_consent_and_forgetting_say_what_they_erase_and_erase_it(service: Service, store: Store, temp: Path) -> None:
    _new_collection(store, "team")
    _person_with_consent(store, "team", "carol")
    _person_with_consent(store, "team", "dave")
    key = service.key("enroll", collections=["team"])
    client = sign_in(service, key)
    token = _csrf(client.get("/console/collections/team").text)
    with open(ALICE, "rb") as photo:
        client.post("/console/collections/team/persons/carol/enroll", data={"csrf": token}, files={"photos": ("a.jpg", photo)})
    before = _pending_files(temp)
    with open(TWO_PEOPLE, "rb") as photo:  # a photo of dave's waits for its face to be picked
        client.post("/console/collections/team/persons/dave/enroll", data={"csrf": token}, files={"photos": ("b.jpg", photo)})
    assert len(store.list_faces("team", "carol")) == 1
    waiting = [p for p in _pending_files(temp) if p not in before]
    assert len(waiting) == 1
    page = client.get("/console/collections/team").text
    confirm = re.search(r'id="revoke-form-carol" data-confirm="([^"]+)"', page)
    assert confirm and "carol" in confirm.group(1) and "(1)" in confirm.group(1)
    assert 'id="revoke-erases-carol"' in page and 'id="forget-form-carol"' in page
    no_reason = _post(client, "/console/collections/team", "/console/collections/team/persons/carol/revoke", {"reason": " "})
    assert no_reason.status_code == 400 and len(store.list_faces("team", "carol")) == 1
    revoked = _post(
        client, "/console/collections/team", "/console/collections/team/persons/carol/revoke", {"reason": "asked by carol"}
    )
    assert revoked.status_code == 303 and "faces=1" in revoked.headers["location"]
    assert store.list_faces("team", "carol") == [] and store.get_person("team", "carol").consent is None
    entry = store.audit_entries(collection="team", action="consent_revoke")[-1]
    assert entry.actor == f"key:{key[0]}" and entry.details == {"person_id": "carol", "reason": "asked by carol", "faces_erased": 1}
    assert 'data-consent="none"' in client.get(revoked.headers["location"]).text

    forgot = _post(client, "/console/collections/team", "/console/collections/team/persons/dave/forget", {"reason": "left"})
    assert forgot.status_code == 303
    assert "dave" not in [p.id for p in store.list_persons("team")]
    assert store.audit_entries(collection="team", action="forget")[-1].actor == f"key:{key[0]}"
    assert not waiting[0].exists()  # the photo of dave waiting for a choice went with him


def test_a_key_scoped_to_another_collection_sees_and_touches_nothing_of_it(service: Service, store: Store) -> None:
    _new_collection(store, "secret")
    _new_collection(store, "elsewhere")
    _person_with_consent(store, "secret", "erin")
    client = sign_in(service, service.key("enroll", collections=["elsewhere"]))
    listing = client.get("/console/collections")
    assert listing.status_code == 200 and "secret" not in listing.text and 'id="collection-elsewhere"' in listing.text
    for url in ("/console/collections/secret", "/console/collections/secret/persons/erin/enroll"):
        assert client.get(url).status_code == 404, url
    token = _csrf(listing.text)
    for action, data in [
        ("/console/collections/secret/persons", {"person_id": "mallory"}),
        ("/console/collections/secret/persons/erin/consent", {"basis": "consent"}),
        ("/console/collections/secret/persons/erin/revoke", {"reason": "x"}),
        ("/console/collections/secret/persons/erin/forget", {"reason": "x"}),
        ("/console/collections/secret/persons/erin/enroll", {}),
        ("/console/collections/secret/threshold", {"threshold": "80", "reason": "x"}),
    ]:
        assert client.post(action, data={"csrf": token, **data}).status_code in (403, 404), action
    with open(ALICE, "rb") as photo:
        sent = client.post("/console/collections/secret/persons/erin/enroll", data={"csrf": token}, files={"photos": photo})
    assert sent.status_code == 404
    assert [p.id for p in store.list_persons("secret")] == ["erin"] and store.list_faces("secret") == []
    assert store.get_person("secret", "erin").consent is not None
    # A key without the enroll role does not get the section at all.
    searcher = sign_in(service, service.key("search"))
    assert searcher.get("/console/collections").status_code == 403


def test_every_form_needs_its_csrf_token(service: Service, store: Store) -> None:
    _new_collection(store, "guarded")
    _person_with_consent(store, "guarded", "frank")
    client = sign_in(service, service.key("admin"))
    for action, data in [
        ("/console/collections", {"id": "forged", "purpose": "x"}),
        ("/console/collections/guarded/threshold", {"threshold": "80", "reason": "x"}),
        ("/console/collections/guarded/persons", {"person_id": "mallory"}),
        ("/console/collections/guarded/persons/frank/consent", {"basis": "contract"}),
        ("/console/collections/guarded/persons/frank/revoke", {"reason": "x"}),
        ("/console/collections/guarded/persons/frank/forget", {"reason": "x"}),
        ("/console/collections/guarded/persons/frank/enroll/choose", {"token": "x" * 32, "face": "1"}),
    ]:
        for csrf in ({}, {"csrf": "forged"}):
            assert client.post(action, data={**data, **csrf}).status_code == 403, action
    with open(ALICE, "rb") as photo:
        assert client.post("/console/collections/guarded/persons/frank/enroll", files={"photos": photo}).status_code == 403
    assert "forged" not in [c.id for c in store.list_collections()]
    assert [p.id for p in store.list_persons("guarded")] == ["frank"] and store.list_faces("guarded") == []
    frank = store.get_person("guarded", "frank")
    assert frank.consent is not None and frank.consent.basis.value == "consent"
    assert store.get_collection("guarded").threshold is None


def test_the_pages_speak_french(service: Service, store: Store) -> None:
    _new_collection(store, "asso")
    client = sign_in(service, service.key("admin"))
    page = client.get("/console/collections/asso", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert page.status_code == 200 and "Ajouter une personne" in page.text
    assert "des recherches de personnes non inscrites renvoient un candidat" in page.text


def test_waiting_photos_go_after_their_time_and_with_their_person(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    pending = Pending(minutes=0.5 / 60)  # half a second
    faces = [{"number": 1, "box": {"left": 0, "top": 0, "width": 1, "height": 1}, "usable": True, "reasons": []}]
    token = pending.put("K1", "c", "p", "a.jpg", b"photo", faces)
    assert pending.get(token, "K2", "c", "p") is None  # another key's
    assert pending.get(token, "K1", "c", "other") is None
    assert pending.get("../../etc/passwd", "K1", "c", "p") is None
    found = pending.get(token, "K1", "c", "p")
    assert found is not None and found[1] == b"photo" and [m["token"] for m in pending.waiting("K1", "c", "p")] == [token]
    folder = next(tmp_path.glob("regard-console-enroll-*"))
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in folder.iterdir())
    time.sleep(0.7)
    assert pending.get(token, "K1", "c", "p") is None and list(folder.iterdir()) == []
    second = pending.put("K1", "c", "p", "b.jpg", b"photo", faces)
    pending.drop("c", "p")
    assert pending.get(second, "K1", "c", "p") is None and list(folder.iterdir()) == []
