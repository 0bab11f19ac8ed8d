"""The Rekognition-compatible API through unmodified boto3, against a real `regard serve`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import boto3
import botocore
import pytest
from botocore.config import Config

from regard.store import open_store
from tests.conftest import side_by_side
from tests.service_harness import Service, running_service

FIXTURES = Path(__file__).parent / "fixtures"
LFW = FIXTURES / "lfw"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NEVER_INFERRED = {"AgeRange", "Gender", "Emotions", "Smile", "Beard", "Mustache", "Eyeglasses", "Sunglasses",
                  "EyesOpen", "MouthOpen", "FaceOccluded", "EyeDirection"}


def photo(name: str) -> bytes:
    path = FIXTURES / name if (FIXTURES / name).exists() else LFW / name.rsplit("_", 1)[0] / name
    return path.read_bytes()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("rekognition"), "--max-image-bytes", "400000") as svc:
        yield svc


def client(service: Service, key_id: str, secret: str, **headers: str) -> Any:
    rek = boto3.client(
        "rekognition",
        endpoint_url=service.url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )
    if headers:

        def add(request: Any, **_: Any) -> None:
            for name, value in headers.items():
                request.headers[name] = value

        rek.meta.events.register("before-sign.rekognition.*", add)
    return rek


@pytest.fixture(scope="module")
def admin(service: Service) -> Any:
    return client(service, *service.key("admin", purpose="service tests"))


def _code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response["Error"]["Code"])


def test_detect_faces_gives_geometry_and_never_attributes(service: Service, admin: Any) -> None:
    response = admin.detect_faces(Image={"Bytes": photo("2008_002470.jpg")}, Attributes=["ALL"])
    faces = response["FaceDetails"]
    assert len(faces) >= 3
    for face in faces:
        assert not NEVER_INFERRED & face.keys()
        box = face["BoundingBox"]
        assert 0 <= box["Left"] <= 1 and 0 <= box["Top"] <= 1 and 0 < box["Width"] < 1 and 0 < box["Height"] < 1
        assert {l["Type"] for l in face["Landmarks"]} == {"eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight"}
        eyes = {l["Type"]: l["X"] for l in face["Landmarks"]}
        assert eyes["eyeLeft"] < eyes["eyeRight"]  # as Rekognition: eyeLeft is on the image's left
        assert 50 <= face["Confidence"] <= 100 and set(face["Pose"]) == {"Roll", "Yaw", "Pitch"}
    assert admin.detect_faces(Image={"Bytes": photo("dogs.jpg")})["FaceDetails"] == []


def test_compare_faces_uses_the_calibrated_threshold(admin: Any) -> None:
    same = admin.compare_faces(
        SourceImage={"Bytes": photo("Amber_Tamblyn_0001.jpg")}, TargetImage={"Bytes": photo("Amber_Tamblyn_0002.jpg")}
    )
    assert len(same["FaceMatches"]) == 1 and same["UnmatchedFaces"] == []
    threshold = float(same["ResponseMetadata"]["HTTPHeaders"]["x-regard-threshold"])
    assert same["FaceMatches"][0]["Similarity"] >= threshold > 50
    assert float(same["ResponseMetadata"]["HTTPHeaders"]["x-regard-threshold-fmr"]) <= 1e-3
    other = admin.compare_faces(
        SourceImage={"Bytes": photo("Amber_Tamblyn_0001.jpg")}, TargetImage={"Bytes": photo("Alanis_Morissette_0001.jpg")}
    )
    assert other["FaceMatches"] == [] and len(other["UnmatchedFaces"]) == 1
    with pytest.raises(admin.exceptions.InvalidParameterException):
        admin.compare_faces(SourceImage={"Bytes": photo("dogs.jpg")}, TargetImage={"Bytes": photo("Amber_Tamblyn_0001.jpg")})


def test_aws_style_thresholds_of_80_mean_what_aws_users_expect(admin: Any, people: dict[str, Any]) -> None:
    # 80 is what AWS's own examples pass (and Rekognition's default): Regard's 1:1 default, FMR 1e-3.
    same = admin.compare_faces(
        SourceImage={"Bytes": photo("Akhmed_Zakayev_0001.jpg")}, TargetImage={"Bytes": photo("Akhmed_Zakayev_0003.jpg")},
        SimilarityThreshold=80,
    )  # fmt: skip
    headers = same["ResponseMetadata"]["HTTPHeaders"]
    assert len(same["FaceMatches"]) == 1 and 80 <= same["FaceMatches"][0]["Similarity"] <= 100
    assert float(headers["x-regard-similarity-threshold"]) == pytest.approx(80)
    assert float(headers["x-regard-threshold-fmr"]) <= 1e-3  # the score threshold 80 stands for
    other = admin.compare_faces(
        SourceImage={"Bytes": photo("Akhmed_Zakayev_0001.jpg")}, TargetImage={"Bytes": photo("Abel_Pacheco_0002.jpg")},
        SimilarityThreshold=80,
    )  # fmt: skip
    assert other["FaceMatches"] == []
    found = admin.search_faces_by_image(
        CollectionId="staff", Image={"Bytes": photo("Akhmed_Zakayev_0003.jpg")}, FaceMatchThreshold=80
    )
    assert [m["Face"]["UserId"] for m in found["FaceMatches"]] == ["akhmed"]
    assert found["FaceMatches"][0]["Similarity"] >= 80
    stranger = admin.search_faces_by_image(
        CollectionId="staff", Image={"Bytes": photo("Angela_Bassett_0001.jpg")}, FaceMatchThreshold=80
    )
    assert stranger["FaceMatches"] == []
    strict = admin.search_faces_by_image(
        CollectionId="staff", Image={"Bytes": photo("Akhmed_Zakayev_0003.jpg")}, FaceMatchThreshold=99
    )
    assert float(strict["ResponseMetadata"]["HTTPHeaders"]["x-regard-threshold-fmr"]) <= 1e-6


def test_collections_lifecycle_and_pagination(admin: Any) -> None:
    for name in ("c-one", "c-two", "c-three"):
        created = admin.create_collection(CollectionId=name)
        assert created["StatusCode"] == 200 and created["CollectionArn"].endswith(f"collection/{name}")
    with pytest.raises(admin.exceptions.ResourceAlreadyExistsException):
        admin.create_collection(CollectionId="c-one")
    described = admin.describe_collection(CollectionId="c-one")
    assert described["FaceCount"] == 0 and described["UserCount"] == 0 and described["FaceModelVersion"]
    seen, token = [], None
    while True:
        page = admin.list_collections(MaxResults=1, **({"NextToken": token} if token else {}))
        assert len(page["CollectionIds"]) <= 1
        seen += page["CollectionIds"]
        token = page.get("NextToken")
        if not token:
            break
    assert {"c-one", "c-two", "c-three"} <= set(seen) and len(seen) == len(set(seen))
    paginated = [c for p in admin.get_paginator("list_collections").paginate(PaginationConfig={"PageSize": 2}) for c in p["CollectionIds"]]
    assert paginated == seen
    for name in ("c-one", "c-two", "c-three"):
        assert admin.delete_collection(CollectionId=name)["StatusCode"] == 200
    with pytest.raises(admin.exceptions.ResourceNotFoundException):
        admin.describe_collection(CollectionId="c-one")
    with pytest.raises(admin.exceptions.InvalidPaginationTokenException):
        admin.list_collections(NextToken="not-a-token")


@pytest.fixture(scope="module")
def people(service: Service, admin: Any) -> dict[str, Any]:
    """Collection "staff" with three consenting users, one face each, enrolled through boto3."""
    admin.create_collection(CollectionId="staff")
    consenting = client(service, *service.key("admin", purpose="service tests"), **{"X-Regard-Consent-Basis": "consent"})
    faces = {}
    for user, image in (("amber", "Amber_Tamblyn_0001.jpg"), ("akhmed", "Akhmed_Zakayev_0001.jpg"), ("abel", "Abel_Pacheco_0001.jpg")):
        consenting.create_user(CollectionId="staff", UserId=user)
        indexed = admin.index_faces(CollectionId="staff", Image={"Bytes": photo(image)}, ExternalImageId=user)
        assert len(indexed["FaceRecords"]) == 1
        faces[user] = indexed["FaceRecords"][0]["Face"]["FaceId"]
    return faces


def test_index_faces_needs_a_consenting_user(service: Service, admin: Any, people: dict[str, Any]) -> None:
    face_id = people["amber"]
    assert UUID.fullmatch(face_id)
    with pytest.raises(admin.exceptions.InvalidParameterException, match="consent"):
        admin.index_faces(CollectionId="staff", Image={"Bytes": photo("Alonzo_Mourning_0001.jpg")}, ExternalImageId="nobody")
    admin.create_user(CollectionId="staff", UserId="alonzo")  # no consent header: no consent
    with pytest.raises(admin.exceptions.InvalidParameterException, match="consent"):
        admin.index_faces(CollectionId="staff", Image={"Bytes": photo("Alonzo_Mourning_0001.jpg")}, ExternalImageId="alonzo")
    with pytest.raises(admin.exceptions.ConflictException):
        admin.create_user(CollectionId="staff", UserId="alonzo")
    assert admin.describe_collection(CollectionId="staff")["FaceCount"] == 3


def test_index_faces_of_a_group_photo_enrolls_only_the_face_named(service: Service, people: dict[str, Any]) -> None:
    rek = client(service, *service.key("enroll", collections=["staff"]), **{"X-Regard-User-Id": "abel"})
    group = photo("2008_002506.jpg")  # three people, none of them Abel
    response = rek.index_faces(CollectionId="staff", Image={"Bytes": group}, MaxFaces=5)
    assert response["FaceRecords"] == []  # no guess: Abel's consent covers none of these faces
    unindexed = response["UnindexedFaces"]
    assert len(unindexed) == 3 and all(u["Reasons"] == ["MULTIPLE_FACES"] for u in unindexed)
    box = unindexed[1]["FaceDetail"]["BoundingBox"]
    named = client(
        service, *service.key("enroll", collections=["staff"]),
        **{"X-Regard-User-Id": "abel", "X-Regard-Face-Box": ",".join(str(box[k]) for k in ("Left", "Top", "Width", "Height"))},
    )  # fmt: skip
    response = named.index_faces(CollectionId="staff", Image={"Bytes": group}, MaxFaces=5)
    assert len(response["FaceRecords"]) == 1
    record = response["FaceRecords"][0]
    assert record["Face"]["UserId"] == "abel"
    assert record["Face"]["BoundingBox"]["Left"] == pytest.approx(box["Left"], abs=1e-3)
    assert [u["Reasons"] for u in response["UnindexedFaces"]] == [["EXCEEDS_MAX_FACES"]] * 2
    assert not NEVER_INFERRED & record["FaceDetail"].keys()
    rek.delete_faces(CollectionId="staff", FaceIds=[record["Face"]["FaceId"]])
    by_index = client(service, *service.key("enroll", collections=["staff"]), **{"X-Regard-User-Id": "abel", "X-Regard-Face-Index": "7"})
    with pytest.raises(rek.exceptions.InvalidParameterException, match="3 faces"):
        by_index.index_faces(CollectionId="staff", Image={"Bytes": group})


def test_index_faces_picks_the_users_face_by_their_enrolled_faces(service: Service, people: dict[str, Any]) -> None:
    # Akhmed (enrolled from his first photo) beside Abel: only Akhmed's face matches Akhmed's face.
    both = side_by_side(LFW / "Abel_Pacheco" / "Abel_Pacheco_0002.jpg", LFW / "Akhmed_Zakayev" / "Akhmed_Zakayev_0003.jpg")
    rek = client(service, *service.key("enroll", collections=["staff"]), **{"X-Regard-User-Id": "akhmed"})
    response = rek.index_faces(CollectionId="staff", Image={"Bytes": both})
    assert len(response["FaceRecords"]) == 1
    assert response["FaceRecords"][0]["Face"]["BoundingBox"]["Left"] > 0.5  # the right-hand portrait
    assert [u["Reasons"] for u in response["UnindexedFaces"]] == [["EXCEEDS_MAX_FACES"]]
    rek.delete_faces(CollectionId="staff", FaceIds=[response["FaceRecords"][0]["Face"]["FaceId"]])


def test_list_faces_filters_and_pages(admin: Any, people: dict[str, Any]) -> None:
    everyone = admin.list_faces(CollectionId="staff")["Faces"]
    assert {f["FaceId"] for f in everyone} == set(people.values())
    assert {f["UserId"] for f in everyone} == set(people)
    only = admin.list_faces(CollectionId="staff", UserId="akhmed")["Faces"]
    assert [f["FaceId"] for f in only] == [people["akhmed"]] and only[0]["ExternalImageId"] == "akhmed"
    pages = list(admin.get_paginator("list_faces").paginate(CollectionId="staff", PaginationConfig={"PageSize": 2}))
    assert len(pages) == 2 and sum(len(p["Faces"]) for p in pages) == 3
    picked = admin.list_faces(CollectionId="staff", FaceIds=[people["abel"]])["Faces"]
    assert [f["FaceId"] for f in picked] == [people["abel"]]


def test_search_by_image_finds_the_person_and_is_audited(service: Service, people: dict[str, Any]) -> None:
    key_id, secret = service.key("search", collections=["staff"])
    rek = client(service, key_id, secret, **{"X-Regard-Purpose": "find the owner of a lost badge"})
    found = rek.search_faces_by_image(CollectionId="staff", Image={"Bytes": photo("Amber_Tamblyn_0002.jpg")})
    assert [m["Face"]["FaceId"] for m in found["FaceMatches"]] == [people["amber"]]
    assert found["FaceMatches"][0]["Face"]["UserId"] == "amber"
    assert 0 < found["SearchedFaceBoundingBox"]["Width"] <= 1 and found["SearchedFaceConfidence"] > 50
    nobody = rek.search_faces_by_image(CollectionId="staff", Image={"Bytes": photo("Angela_Bassett_0001.jpg")})
    assert nobody["FaceMatches"] == []
    with pytest.raises(rek.exceptions.InvalidParameterException):
        rek.search_faces_by_image(CollectionId="staff", Image={"Bytes": photo("dogs.jpg")})
    store = open_store(service.store_url)
    try:
        entries = store.audit_entries(action="search", actor=f"key:{key_id}")
    finally:
        store.close()
    assert len(entries) == 2  # the face-free photo fails before the search
    assert all(e.purpose == "find the owner of a lost badge" for e in entries)
    assert entries[0].details["results"][0][0]["face_id"] == people["amber"]


def test_search_needs_a_purpose(service: Service, people: dict[str, Any]) -> None:
    rek = client(service, *service.key("search"))  # no default purpose, no header
    with pytest.raises(rek.exceptions.InvalidParameterException, match="purpose"):
        rek.search_faces_by_image(CollectionId="staff", Image={"Bytes": photo("Amber_Tamblyn_0002.jpg")})


def test_search_faces_and_users(admin: Any, people: dict[str, Any]) -> None:
    by_face = admin.search_faces(CollectionId="staff", FaceId=people["amber"], FaceMatchThreshold=0)
    assert by_face["SearchedFaceId"] == people["amber"]
    assert people["amber"] not in {m["Face"]["FaceId"] for m in by_face["FaceMatches"]}
    assert {m["Face"]["FaceId"] for m in by_face["FaceMatches"]} == {people["akhmed"], people["abel"]}
    users = admin.search_users(CollectionId="staff", UserId="amber", UserMatchThreshold=0)
    assert users["SearchedUser"] == {"UserId": "amber"}
    assert {m["User"]["UserId"] for m in users["UserMatches"]} == {"akhmed", "abel"}
    by_face_id = admin.search_users(CollectionId="staff", FaceId=people["akhmed"])
    assert by_face_id["SearchedFace"] == {"FaceId": people["akhmed"]} and by_face_id["UserMatches"] == []
    by_image = admin.search_users_by_image(CollectionId="staff", Image={"Bytes": photo("Akhmed_Zakayev_0003.jpg")})
    assert [m["User"]["UserId"] for m in by_image["UserMatches"]] == ["akhmed"]
    assert "BoundingBox" in by_image["SearchedFace"]["FaceDetail"]
    with pytest.raises(admin.exceptions.InvalidParameterException):
        admin.search_users(CollectionId="staff")


def test_users_associate_disassociate_and_delete(service: Service, admin: Any, people: dict[str, Any]) -> None:
    consenting = client(service, *service.key("admin", purpose="tests"), **{"X-Regard-Consent-Basis": "contract"})
    consenting.create_user(CollectionId="staff", UserId="temp")
    temp_face = consenting.index_faces(
        CollectionId="staff", Image={"Bytes": photo("Abel_Pacheco_0004.jpg")}, ExternalImageId="temp"
    )["FaceRecords"][0]["Face"]["FaceId"]
    missing = "00000000-0000-4000-8000-000000000000"
    result = admin.associate_faces(CollectionId="staff", UserId="temp", FaceIds=[temp_face, people["amber"], missing])
    assert result["AssociatedFaces"] == [{"FaceId": temp_face}]
    reasons = {u["FaceId"]: u["Reasons"] for u in result["UnsuccessfulFaceAssociations"]}
    assert reasons == {people["amber"]: ["ASSOCIATED_TO_A_DIFFERENT_USER"], missing: ["FACE_NOT_FOUND"]}
    users = {u["UserId"]: u["UserStatus"] for u in admin.list_users(CollectionId="staff")["Users"]}
    assert users["temp"] == "ACTIVE"
    gone = admin.disassociate_faces(CollectionId="staff", UserId="temp", FaceIds=[temp_face])
    assert gone["DisassociatedFaces"] == [{"FaceId": temp_face}] and gone["UserStatus"] == "CREATED"
    assert temp_face not in {f["FaceId"] for f in admin.list_faces(CollectionId="staff")["Faces"]}
    deleted = admin.delete_faces(CollectionId="staff", FaceIds=[missing])
    assert deleted["DeletedFaces"] == [] and deleted["UnsuccessfulFaceDeletions"][0]["Reasons"] == ["FACE_NOT_FOUND"]
    admin.delete_user(CollectionId="staff", UserId="temp")
    with pytest.raises(admin.exceptions.ResourceNotFoundException):
        admin.delete_user(CollectionId="staff", UserId="temp")


def test_errors_have_rekognition_names(service: Service, admin: Any) -> None:
    with pytest.raises(admin.exceptions.ResourceNotFoundException):
        admin.index_faces(CollectionId="no-such", Image={"Bytes": photo("Amber_Tamblyn_0001.jpg")})
    with pytest.raises(admin.exceptions.InvalidS3ObjectException):
        admin.detect_faces(Image={"S3Object": {"Bucket": "bucket", "Name": "n.jpg"}})
    with pytest.raises(admin.exceptions.ImageTooLargeException):
        admin.detect_faces(Image={"Bytes": photo("bald_guys.jpg")})  # 648 kB, over this server's 400 kB limit
    with pytest.raises(admin.exceptions.InvalidImageFormatException):
        admin.detect_faces(Image={"Bytes": photo("Amber_Tamblyn_0001.jpg")[:2000]})
    with pytest.raises(admin.exceptions.InvalidImageFormatException):
        admin.detect_faces(Image={"Bytes": b"this is not a photo"})


def test_signatures_roles_and_scopes_are_enforced(service: Service, people: dict[str, Any]) -> None:
    key_id, secret = service.key("detect")
    wrong_secret = client(service, key_id, "x" * 40)
    with pytest.raises(wrong_secret.exceptions.AccessDeniedException):
        wrong_secret.detect_faces(Image={"Bytes": photo("Amber_Tamblyn_0001.jpg")})
    unknown = client(service, "RGKAAAAAAAAAAAAAAAAA", secret)
    with pytest.raises(unknown.exceptions.AccessDeniedException):
        unknown.list_collections()
    wrong_region = boto3.client(
        "rekognition", endpoint_url=service.url, region_name="eu-west-1", aws_access_key_id=key_id,
        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(wrong_region.exceptions.AccessDeniedException):
        wrong_region.list_collections()
    detector = client(service, key_id, secret, **{"X-Regard-Purpose": "p"})
    detector.detect_faces(Image={"Bytes": photo("Amber_Tamblyn_0001.jpg")})
    with pytest.raises(detector.exceptions.AccessDeniedException):
        detector.search_faces_by_image(CollectionId="staff", Image={"Bytes": photo("Amber_Tamblyn_0002.jpg")})
    with pytest.raises(detector.exceptions.AccessDeniedException):
        detector.create_collection(CollectionId="mine")
    searcher = client(service, *service.key("search", collections=["other"]), **{"X-Regard-Purpose": "p"})
    with pytest.raises(searcher.exceptions.ResourceNotFoundException):
        searcher.search_faces(CollectionId="staff", FaceId=people["amber"])
    assert searcher.list_collections()["CollectionIds"] == []
    enroller = client(service, *service.key("enroll", collections=["staff"]), **{"X-Regard-Purpose": "p"})
    with pytest.raises(enroller.exceptions.AccessDeniedException):
        enroller.search_faces(CollectionId="staff", FaceId=people["amber"])
    with pytest.raises(enroller.exceptions.AccessDeniedException):
        enroller.delete_collection(CollectionId="staff")


def test_revoked_and_rate_limited_keys_are_refused(service: Service) -> None:
    key_id, secret = service.key("detect", rate_per_minute=2)
    rek = client(service, key_id, secret)
    rek.list_collections()
    rek.list_collections()
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        rek.list_collections()
    assert _code(caught.value) == "ThrottlingException"
    other_id, other_secret = service.key("detect")
    revocable = client(service, other_id, other_secret)
    revocable.list_collections()
    store = open_store(service.store_url)
    try:
        store.revoke_api_key(other_id, actor="test-admin", reason="test")
    finally:
        store.close()
    with pytest.raises(revocable.exceptions.AccessDeniedException):
        revocable.list_collections()


def _signed(service: Service, key_id: str, secret: str, target: str, body: bytes) -> Any:
    import httpx
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"}
    request = AWSRequest(method="POST", url=service.url + "/", data=body, headers=headers)
    SigV4Auth(Credentials(key_id, secret), "rekognition", "us-east-1").add_auth(request)
    return httpx.post(service.url + "/", content=body, headers=dict(request.headers.items()))


def test_accountability_headers_must_be_signed(service: Service, people: dict[str, Any]) -> None:
    key_id, secret = service.key("search", collections=["staff"], purpose="badge checks")
    rek = client(service, key_id, secret)

    def forge(request: Any, **_: Any) -> None:  # a proxy on the path, after the client signed
        request.headers["X-Regard-Purpose"] = "FORGED purpose added after signing"

    rek.meta.events.register("before-send.rekognition.*", forge)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        rek.search_faces_by_image(CollectionId="staff", Image={"Bytes": photo("Amber_Tamblyn_0002.jpg")})
    assert _code(refused.value) == "AccessDeniedException" and "x-regard-purpose" in str(refused.value)
    signed = client(service, key_id, secret, **{"X-Regard-Purpose": "signed purpose"})  # added before signing
    assert signed.search_faces_by_image(CollectionId="staff", Image={"Bytes": photo("Amber_Tamblyn_0002.jpg")})["FaceMatches"]
    store = open_store(service.store_url)
    try:
        purposes = [e.purpose for e in store.audit_entries(action="search", actor=f"key:{key_id}")]
    finally:
        store.close()
    assert purposes == ["signed purpose"]


def test_unsigned_unknown_and_malformed_calls_are_refused(service: Service) -> None:
    import httpx

    unsigned = httpx.post(service.url + "/", content=b"{}", headers={"X-Amz-Target": "RekognitionService.ListCollections"})
    assert unsigned.status_code == 403 and unsigned.json()["__type"] == "AccessDeniedException"
    key_id, secret = service.key("admin")
    unknown = _signed(service, key_id, secret, "RekognitionService.DetectLabels", b"{}")
    assert unknown.status_code == 400 and unknown.json()["__type"] == "UnknownOperationException"
    broken = _signed(service, key_id, secret, "RekognitionService.ListCollections", b"{not json")
    assert broken.status_code == 400 and broken.json()["__type"] == "SerializationException"
    wrong_type = _signed(service, key_id, secret, "RekognitionService.ListCollections", b'{"MaxResults": "ten"}')
    assert wrong_type.json()["__type"] == "InvalidParameterException"
    missing = _signed(service, key_id, secret, "RekognitionService.DescribeCollection", b"{}")
    assert missing.json()["__type"] == "InvalidParameterException" and "CollectionId" in missing.json()["message"]
