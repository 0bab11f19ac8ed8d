"""Bulk enrollment (`regard enroll COLLECTION FOLDER --people-from-folders`) on both backends, with
real photos: consent from a CSV file, a process pool, batched writes, rejections with reasons, resume."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from regard.bulk import NO_CONSENT, NO_FACE, UNREADABLE, bulk_enroll, read_consent_csv
from regard.cli import main
from regard.errors import InvalidArgumentError
from regard.store import open_store
from tests.conftest import FIXTURES, TWO_PEOPLE, side_by_side

CONSENTED = {"amber": "Amber_Tamblyn", "akhmed": "Akhmed_Zakayev", "abel": "Abel_Pacheco", "tony": "Anthony_Fauci"}
GOOD_PHOTOS = 10  # 2 + 3 + 3 + 2 single-face portraits, each enrolled by tests/test_store.py too


def _people_folder(root: Path) -> Path:
    """FOLDER/<person id>/photos: four consenting people, one without consent, and photos that
    cannot be enrolled (no face, only small faces, not an image)."""
    folder = root / "people"
    for person, name in {**CONSENTED, "alanis": "Alanis_Morissette"}.items():
        shutil.copytree(FIXTURES / "lfw" / name, folder / person)
    shutil.copy(FIXTURES / "dogs.jpg", folder / "amber" / "dogs.jpg")
    shutil.copy(FIXTURES / "2008_002470.jpg", folder / "akhmed" / "group.jpg")
    (folder / "tony" / "notes.jpg").write_text("not a photo")
    (folder / "tony" / "moved.jpg").symlink_to(root / "no-longer-here.jpg")  # a broken link: reported, not skipped
    return folder


def _consent_csv(root: Path) -> Path:
    path = root / "consent.csv"
    lines = ["person_id,basis,reference,expires_at,display_name"]
    lines += [f"{p},consent,release-{i},,{n.replace('_', ' ')}" for i, (p, n) in enumerate(CONSENTED.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_folder_of_people_with_consent_file_enrolls_in_batches_and_resumes(store_url, tmp_path, capsys):
    folder, consent = _people_folder(tmp_path), _consent_csv(tmp_path)
    store = open_store(store_url)
    store.create_collection("volunteers", purpose="event photo credits", actor="ops")
    store.close()
    args = ["enroll", "volunteers", str(folder), "--people-from-folders", "--consent-from", str(consent),
            "--store", store_url, "--actor", "ops", "--workers", "2", "--batch", "2", "--json"]  # fmt: skip
    assert main(args) == 1  # some photos were not enrolled
    report = json.loads(capsys.readouterr().out)
    alanis = len(list((folder / "alanis").iterdir()))
    assert report["photos"] == GOOD_PHOTOS + 4 + alanis
    assert report["enrolled"] == GOOD_PHOTOS and report["skipped_already_enrolled"] == 0
    assert report["persons_without_consent"] == ["alanis"] and report["consents_recorded"] == 4
    by_photo = {Path(r["photo"]).name: r["reasons"] for r in report["rejected_photos"]}
    assert by_photo["dogs.jpg"] == [NO_FACE] and by_photo["notes.jpg"] == [UNREADABLE]
    assert by_photo["moved.jpg"] == [UNREADABLE]
    assert "TOO_SMALL" in by_photo["group.jpg"]
    assert report["rejected_by_reason"][NO_CONSENT] == alanis

    store = open_store(store_url)
    try:
        faces = store.list_faces("volunteers")
        assert len(faces) == GOOD_PHOTOS and {f.person_id for f in faces} == set(CONSENTED)
        assert [p.id for p in store.list_persons("volunteers")] == sorted(CONSENTED)  # alanis never added
        assert store.get_person("volunteers", "tony").consent.reference == "release-3"
        enrolls = store.audit_entries(action="enroll")
        # Batched: one transaction and one audit entry per batch of (at most 2) faces of one person.
        assert len(enrolls) == report["database_batches"] == 6
        assert all(len(e.details["face_ids"]) <= 2 and e.actor == "ops" for e in enrolls)
        assert store.verify_audit().ok
    finally:
        store.close()

    # Running it again skips every photo enrolled before (resume) and enrolls nothing twice.
    assert main(args) == 1
    again = json.loads(capsys.readouterr().out)
    assert again["enrolled"] == 0 and again["skipped_already_enrolled"] == GOOD_PHOTOS
    assert again["consents_recorded"] == 0


def test_interrupted_bulk_enrollment_resumes_where_it_stopped(store_url, tmp_path):
    folder, consent = _people_folder(tmp_path), _consent_csv(tmp_path)
    store = open_store(store_url)
    try:
        store.create_collection("volunteers", purpose="event photo credits", actor="ops")
        handled = []

        def stop_after_a_few(n: int) -> None:
            handled.append(n)
            if len(store.list_faces("volunteers")) >= 3:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            bulk_enroll(store, "volunteers", folder, actor="ops", workers=1, batch_size=1,
                        consents=read_consent_csv(consent), progress=stop_after_a_few)  # fmt: skip
        first = len(store.list_faces("volunteers"))
        assert 3 <= first < GOOD_PHOTOS
        report = bulk_enroll(store, "volunteers", folder, actor="ops", workers=2, batch_size=8)
        assert report.skipped == first and report.enrolled == GOOD_PHOTOS - first
        assert len(store.list_faces("volunteers")) == GOOD_PHOTOS
        assert store.verify_audit().ok
    finally:
        store.close()


def test_bad_consent_file_and_bad_folder_are_refused(tmp_path, store_url):
    bad = tmp_path / "consent.csv"
    bad.write_text("person_id,basis\namber,because-i-said-so\n")
    with pytest.raises(InvalidArgumentError, match="line 2"):
        read_consent_csv(bad)
    bad.write_text("person,reference\namber,x\n")
    with pytest.raises(InvalidArgumentError, match="person_id and basis"):
        read_consent_csv(bad)
    photo = FIXTURES / "dogs.jpg"
    assert main(["enroll", "c", str(photo), "--people-from-folders", "--store", store_url]) == 2
    assert main(["enroll", "c", str(photo), "--store", store_url]) == 2  # neither --person nor folders


def test_bulk_enrollment_never_guesses_whose_face_a_photo_of_several_people_shows(store_url, tmp_path):
    folder = tmp_path / "people"
    (folder / "amber").mkdir(parents=True)
    (folder / "tony").mkdir()
    shutil.copy(FIXTURES / "lfw" / "Amber_Tamblyn" / "Amber_Tamblyn_0001.jpg", folder / "amber" / "a.jpg")
    # Alanis (no consent here) beside Amber: only Amber's face matches Amber's other photo.
    lfw = FIXTURES / "lfw"
    (folder / "amber" / "b_with_alanis.jpg").write_bytes(
        side_by_side(lfw / "Alanis_Morissette" / "Alanis_Morissette_0001.jpg", lfw / "Amber_Tamblyn" / "Amber_Tamblyn_0002.jpg")
    )
    shutil.copy(TWO_PEOPLE, folder / "tony" / "two_people.jpg")  # neither is Tony; he has no other photo
    store = open_store(store_url)
    try:
        store.create_collection("volunteers", purpose="event photo credits", actor="ops")
        for person in ("amber", "tony"):
            store.add_person("volunteers", person, actor="ops")
            store.record_consent("volunteers", person, basis="consent", actor="ops")
        report = bulk_enroll(store, "volunteers", folder, actor="ops", workers=1)
        assert report.enrolled == 2
        [rejected] = report.rejected
        assert Path(rejected["photo"]).name == "two_people.jpg" and rejected["reasons"] == ["MULTIPLE_FACES"]
        assert len(rejected["faces"]) == 2 and all(f["width"] > 50 for f in rejected["faces"])
        assert store.list_faces("volunteers", "tony") == []
        amber = {f.external_image_id: f for f in store.list_faces("volunteers", "amber")}
        pair = "sha256:" + hashlib.sha256((folder / "amber" / "b_with_alanis.jpg").read_bytes()).hexdigest()
        assert len(amber) == 2 and amber[pair].box[0] >= 250  # the right-hand portrait: Amber's, not Alanis's
    finally:
        store.close()
