"""The public API end to end on real photos: detect, embed, compare."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image

import regard
from regard.face import LANDMARK_NAMES
from tests.conftest import lfw


def test_detect_returns_typed_faces_with_embeddings(fixtures):
    faces = regard.detect(fixtures / "2008_002470.jpg")
    assert len(faces) == 6
    confidences = [f.confidence for f in faces]
    assert confidences == sorted(confidences, reverse=True)
    for face in faces:
        assert isinstance(face, regard.Face)
        assert face.landmarks.shape == (5, 2)
        assert face.embedding is not None and face.embedding.shape == (128,)
        assert face.embedding.dtype == np.float32 and np.isfinite(face.embedding).all()
        d = face.to_dict()
        assert set(d["landmarks"]) == set(LANDMARK_NAMES) and "embedding" not in d
        assert len(face.to_dict(include_embedding=True)["embedding"]) == 128
    # Six different people, all small (14-21 px between the eyes) and rated LOW: such faces are
    # what enrollment must refuse, since tiny faces look alike to the embedder.
    assert all(f.quality.level is regard.QualityLevel.LOW for f in faces)


def test_faces_of_usable_quality_in_a_group_photo_do_not_match_each_other(fixtures):
    faces = regard.detect(fixtures / "2008_007676.jpg")
    usable = [f for f in faces if f.quality.level is not regard.QualityLevel.LOW]
    assert len(usable) >= 2
    for i, j in itertools.combinations(range(len(usable)), 2):
        assert not regard.compare(usable[i], usable[j]).match


def test_bald_guys_cluster_into_the_four_people_they_are(fixtures):
    # dlib's clustering example photo: 24 faces, six photos each of four men, and one blurred
    # bystander behind one of them (LOW quality, about 43 px wide).
    found = regard.detect(fixtures / "bald_guys.jpg")
    faces = [f for f in found if f.quality.level is not regard.QualityLevel.LOW]
    assert len(faces) == 24 and len(found) == 25
    parent = list(range(len(faces)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in itertools.combinations(range(len(faces)), 2):
        if regard.compare(faces[i], faces[j]).match:
            parent[root(i)] = root(j)
    sizes = sorted(
        sum(1 for i in range(len(faces)) if root(i) == r) for r in {root(i) for i in range(len(faces))}
    )
    assert sizes == [6, 6, 6, 6]


def test_zero_faces_is_an_empty_list_and_embed_raises(fixtures):
    assert regard.detect(fixtures / "dogs.jpg") == []
    with pytest.raises(regard.NoFaceError):
        regard.embed(fixtures / "dogs.jpg")


def test_same_person_matches_and_different_people_do_not():
    same = regard.compare(lfw("Akhmed_Zakayev", 1), lfw("Akhmed_Zakayev", 3))
    assert same.match, same
    also_same = regard.compare(lfw("Amber_Tamblyn", 1), lfw("Amber_Tamblyn", 2))
    assert also_same.match, also_same
    other = regard.compare(lfw("Abel_Pacheco", 1), lfw("Amber_Tamblyn", 1))
    assert not other.match, other
    assert other.fmr_at_threshold <= 1e-3
    # A harder pair (the head turned in one photo) still scores far above two different people.
    turned = regard.compare(lfw("Abel_Pacheco", 1), lfw("Abel_Pacheco", 4))
    assert turned.score > other.score + 20


def test_compare_accepts_bytes_arrays_faces_and_embeddings():
    path = lfw("Akhmed_Zakayev", 1)
    data = path.read_bytes()
    rgb = np.asarray(Image.open(path).convert("RGB"))
    vector = regard.embed(path)
    face = regard.detect(path)[0]
    for other in (data, rgb, vector, face, str(path)):
        assert regard.compare(path, other).score > 99.5


def test_exif_rotated_photo_gives_the_same_face(fixtures, tmp_path):
    path = lfw("Akhmed_Zakayev", 3)
    upright = regard.embed(path)
    image = Image.open(path)
    # Store the pixels turned 90 degrees, with the EXIF tag that says how to turn them back.
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    rotated = tmp_path / "rotated.jpg"
    image.transpose(Image.Transpose.ROTATE_90).save(rotated, exif=exif.tobytes(), quality=95)
    turned = regard.embed(rotated)
    assert regard.compare(upright, turned).score > 90


def test_flip_averaging_changes_the_embedding_a_little():
    path = lfw("Amber_Tamblyn", 2)
    with_flip = regard.embed(path, flip=True)
    without = regard.embed(path, flip=False)
    assert 0 < np.linalg.norm(with_flip - without) < 0.2


def test_primary_face_prefers_a_large_central_face(fixtures):
    faces = regard.detect(fixtures / "2008_002470.jpg", embed=False)
    main = regard.primary_face(faces, 500, 332)
    assert main is not None
    widest = max(f.box.width for f in faces)
    assert main.box.width >= widest / 2
    assert regard.primary_face([], 10, 10) is None


def test_bad_input_raises_image_error(tmp_path):
    with pytest.raises(regard.ImageError):
        regard.detect(b"not an image")
    with pytest.raises(regard.ImageError):
        regard.compare(tmp_path / "missing.jpg", lfw("Abel_Pacheco", 1))
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 3000)).save(buffer, "PNG")
    with pytest.raises(regard.ImageError, match="pixel"):
        regard.detect(buffer.getvalue(), max_pixels=1_000_000)
