"""Photo redaction on real photos: every annotated face covered, the dog photo untouched, metadata
gone, bad input refused without leaving files, consenting people kept visible (and audited)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import regard
from regard.cli import main
from regard.errors import ImageError, InvalidArgumentError
from regard.image import load_image
from regard.redact import Mode, head_region, redact_image, region_mask
from regard.redact.faces import find_faces

from .conftest import FIXTURES, lfw

REDACT = FIXTURES / "redact"
Box = tuple[float, float, float, float]


def annotated() -> dict[Path, list[Box]]:
    """dlib's hand-drawn face boxes, for the photos copied into tests/fixtures."""
    out: dict[Path, list[Box]] = {}
    for xml in ("training.xml", "testing.xml"):
        for image in ET.parse(REDACT / xml).getroot().iter("image"):
            name = image.get("file", "")
            path = REDACT / name if (REDACT / name).exists() else FIXTURES / name
            out[path] = [
                (float(b.get("left")), float(b.get("top")),  # type: ignore[arg-type]
                 float(b.get("left")) + float(b.get("width")), float(b.get("top")) + float(b.get("height")))  # type: ignore[arg-type]
                for b in image.iter("box")
            ]
    return out


def covered(mask: np.ndarray, box: Box) -> float:
    """The share of a ground-truth box's pixels that are redacted."""
    l, t, r, b = (int(round(v)) for v in box)
    return float(mask[max(t, 0) : b, max(l, 0) : r].mean())


def test_every_annotated_face_is_covered_in_the_written_pixels(tmp_path: Path) -> None:
    truth = annotated()
    assert sum(len(v) for v in truth.values()) == 43
    for photo, boxes in truth.items():
        out = tmp_path / f"{photo.stem}.png"
        result = redact_image(str(photo), out, mode="mask")
        written = np.asarray(Image.open(out).convert("L")) > 127
        for box in boxes:
            assert covered(written, box) >= 0.9, (photo.name, box, result.to_dict())


def test_blurred_faces_are_beyond_the_detector_and_the_rest_is_untouched(tmp_path: Path) -> None:
    photo = FIXTURES / "2008_002470.jpg"
    original = load_image(photo)
    result = redact_image(str(photo), tmp_path / "out.png")
    assert result.redacted == 6
    redacted = load_image(tmp_path / "out.png")
    mask = region_mask([f.region for f in result.faces], original.shape, Mode.BLUR)
    assert np.array_equal(redacted[~mask], original[~mask])  # nothing outside the regions changes
    # No face can be recognised any more: each redacted face, cut out at the original face's
    # landmarks, no longer matches the original at the default threshold (FMR 1e-3).
    from regard import align, models
    from regard.match import compare_embeddings

    for face in regard.detect(original, min_face=20):
        chip = align.align(redacted, face.landmarks)
        blurred = models.get_embedder().embed_chips(chip[None], flip=True)[0]
        assert face.embedding is not None
        assert not compare_embeddings(face.embedding, blurred).match


def test_filters_keep_no_more_than_eight_samples_across_a_face() -> None:
    rgb = load_image(FIXTURES / "2008_002506.jpg")
    face = find_faces(rgb)[0]
    region = head_region(face.box)
    out = redact_image(rgb, mode="pixelate").image
    x0, x1 = int(region.left + region.width * 0.3), int(region.right - region.width * 0.3)
    row = out[int((region.top + region.bottom) / 2), x0:x1].astype(int)
    changes = np.flatnonzero(np.any(np.diff(row, axis=0) != 0, axis=1))
    interior_runs = np.diff(changes)  # whole blocks between the first and the last change
    assert interior_runs.size >= 3
    # (a neighbour's overlapping region may cut one block short)
    assert np.median(interior_runs) >= region.face_width / 8  # blocks at least 1/8 of the face wide


def test_dog_photo_is_untouched(tmp_path: Path) -> None:
    result = redact_image(str(FIXTURES / "dogs.jpg"), tmp_path / "dogs.png")
    assert result.faces == []
    assert np.array_equal(load_image(tmp_path / "dogs.png"), load_image(FIXTURES / "dogs.jpg"))


def _photo_with_exif(path: Path) -> None:
    image = Image.open(FIXTURES / "2008_002506.jpg")
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Acme", "Acme One", 6  # make, model, orientation
    exif[0xA431] = "SERIAL-0042"  # BodySerialNumber (stored in the EXIF sub-IFD by Pillow)
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}  # GPS
    image.save(path, "JPEG", exif=exif.tobytes(), quality=95)


def test_exif_gps_and_serial_are_stripped_and_pixels_stored_upright(tmp_path: Path) -> None:
    source = tmp_path / "with_exif.jpg"
    _photo_with_exif(source)
    assert b"SERIAL-0042" in source.read_bytes() and Image.open(source).getexif().get_ifd(0x8825)
    out = tmp_path / "out.jpg"
    redact_image(str(source), out)
    data = out.read_bytes()
    assert not Image.open(out).getexif()
    assert b"Exif" not in data and b"SERIAL-0042" not in data and b"Acme" not in data
    upright = load_image(source)
    assert Image.open(out).size == (upright.shape[1], upright.shape[0])  # orientation 6 applied
    kept = tmp_path / "kept.jpg"
    redact_image(str(source), kept, keep_metadata=True)
    exif = Image.open(kept).getexif()
    assert exif[0x010F] == "Acme" and exif[0x0112] == 1


def test_corrupt_input_raises_and_leaves_no_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((FIXTURES / "2008_002470.jpg").read_bytes()[:5000])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        redact_image(str(broken), tmp_path / "broken.redacted.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.jpg"]


def test_cli_names_outputs_recurses_folders_and_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "photos" / "inner"
    folder.mkdir(parents=True)
    (folder / "group.jpg").write_bytes((FIXTURES / "2008_002470.jpg").read_bytes())
    (tmp_path / "photos" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    assert main(["redact", str(tmp_path / "photos")]) == 2
    captured = capsys.readouterr()
    assert "broken.png" in captured.err
    assert "6 faces redacted" in captured.out
    assert (folder / "group.redacted.jpg").is_file()
    assert not (tmp_path / "photos" / "broken.redacted.png").exists()
    before = (folder / "group.jpg").read_bytes()
    assert main(["redact", str(tmp_path / "photos")]) == 2  # outputs are not redacted again
    assert not (folder / "group.redacted.redacted.jpg").exists()
    assert (folder / "group.jpg").read_bytes() == before  # never overwritten without --in-place
    with pytest.raises(InvalidArgumentError):
        redact_image(str(folder / "group.jpg"), folder / "group.jpg")
    preview = tmp_path / "preview.png"
    assert main(["redact", str(folder / "group.jpg"), "--in-place", "--preview", str(preview), "--json"]) == 0
    assert (folder / "group.jpg").read_bytes() != before and Image.open(preview).width > 900


def test_large_photo_is_tiled_and_small_faces_are_found() -> None:
    truth = annotated()
    photos = [FIXTURES / "2008_002470.jpg", FIXTURES / "2008_007676.jpg", REDACT / "2008_004176.jpg"]
    photos += [REDACT / "2007_007763.jpg", REDACT / "2008_002079.jpg"]
    canvas = np.full((480, 2600, 3), 255, np.uint8)  # past the 2048 px tile: tiles and a coarser level
    boxes: list[Box] = []
    x = 0
    for photo in photos:
        rgb = load_image(photo)
        canvas[: rgb.shape[0], x : x + rgb.shape[1]] = rgb
        boxes += [(l + x, t, r + x, b) for l, t, r, b in truth[photo]]
        x += rgb.shape[1] + 20
    assert x <= 2620 and len(boxes) == 33
    result = redact_image(canvas, mode="mask")
    mask = result.image[:, :, 0] > 127
    assert all(covered(mask, box) >= 0.9 for box in boxes)


def test_keep_collection_leaves_only_consenting_people_visible_and_is_audited(tmp_path: Path) -> None:
    from regard.gallery import enroll
    from regard.redact import KEEP_PURPOSE, KeepConsenting
    from regard.store import ConsentBasis, open_store

    store = open_store(f"sqlite:///{tmp_path / 'regard.db'}")
    store.create_collection("staff", purpose="keep staff visible in event photos", actor="tester")
    store.add_person("staff", "angela", actor="tester")
    store.record_consent("staff", "angela", basis=ConsentBasis.CONSENT, actor="tester", reference="release-1")
    assert enroll(store, "staff", lfw("Angela_Bassett", 1), person_id="angela", actor="tester").enrolled
    pair = np.concatenate([load_image(lfw("Angela_Bassett", 2)), load_image(lfw("Anthony_Fauci", 1))], axis=1)
    buffer = io.BytesIO()
    Image.fromarray(pair).save(buffer, "PNG")
    photo = tmp_path / "pair.png"
    photo.write_bytes(buffer.getvalue())

    keep = KeepConsenting(store, "staff", actor="editor")
    result = redact_image(str(photo), tmp_path / "pair.redacted.png", keep=keep)
    main_faces = sorted((f for f in result.faces if f.region.width > 80), key=lambda f: f.box.left)
    assert [f.kept for f in main_faces] == [True, False]
    entries = store.audit_entries(collection="staff", action="search")
    assert entries[-1].purpose == KEEP_PURPOSE and entries[-1].actor == "editor"
    assert entries[-1].details["request"]["operation"] == "redact"
    out = load_image(tmp_path / "pair.redacted.png")
    left, right = (slice(60, 190), slice(70, 180)), (slice(60, 190), slice(320, 430))
    assert np.array_equal(out[left], pair[left]) and not np.array_equal(out[right], pair[right])


def test_an_animated_gif_is_refused_rather_than_flattened(tmp_path, fixtures):
    from PIL import Image

    from regard.errors import ImageError
    from regard.redact import redact_image

    frame = Image.open(fixtures / "2008_002470.jpg").convert("RGB")
    path = tmp_path / "moving.gif"
    frame.save(path, save_all=True, append_images=[frame.transpose(Image.Transpose.FLIP_LEFT_RIGHT)] * 2, duration=100)
    with pytest.raises(ImageError, match=r"has [23] frames"):  # GIF merges identical neighbours
        redact_image(path, tmp_path / "out.gif")
    assert not (tmp_path / "out.gif").exists()
    still = tmp_path / "still.gif"
    frame.save(still)
    assert redact_image(still, tmp_path / "still.redacted.gif").redacted >= 1
