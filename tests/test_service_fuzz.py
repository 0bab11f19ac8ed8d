"""No request makes the service fail: every malformed body gets a 4xx naming the problem, never a
500 (and never a dropped connection). Regression cases found by fuzzing Regard from outside, then a
bounded property-based search (Hypothesis) over every operation of both APIs."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regard.service.rekognition import OPERATIONS
from tests.service_harness import Service, running_service

FIXTURES = Path(__file__).parent / "fixtures"
PORTRAIT = base64.b64encode((FIXTURES / "lfw" / "Amber_Tamblyn" / "Amber_Tamblyn_0001.jpg").read_bytes()).decode()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("fuzz"), "--max-image-bytes", "400000") as svc:
        yield svc


@pytest.fixture(scope="module")
def native(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, headers=service.bearer("admin", purpose="fuzzing"), timeout=60) as c:
        c.post("/v1/collections", json={"id": "fz", "purpose": "fuzzing"})
        c.post("/v1/collections/fz/persons", json={"id": "amber"})
        c.put("/v1/collections/fz/persons/amber/consent", json={"basis": "consent"})
        yield c


@pytest.fixture(scope="module")
def aws(service: Service) -> Any:
    key_id, secret = service.key("admin", purpose="fuzzing")
    client = httpx.Client(base_url=service.url, timeout=60)

    def call(operation: str, body: bytes | str, **headers: str) -> httpx.Response:
        data = body.encode() if isinstance(body, str) else body
        request = AWSRequest(
            method="POST",
            url=service.url + "/",
            data=data,
            headers={"X-Amz-Target": f"RekognitionService.{operation}", "Content-Type": "application/x-amz-json-1.1", **headers},
        )
        SigV4Auth(Credentials(key_id, secret), "rekognition", "us-east-1").add_auth(request)
        return client.post("/", content=data, headers=dict(request.headers.items()))

    call("CreateCollection", json.dumps({"CollectionId": "fz-aws"}))
    return call


NESTED = "[" * 100_000 + "]" * 100_000
HUGE_INT = "1" * 5000
SURROGATE = '"\\ud800"'


def test_native_bodies_that_used_to_give_500(native: httpx.Client) -> None:
    json_body = {"Content-Type": "application/json"}
    cases = [
        ("/v1/collections", NESTED),
        ("/v1/collections", '{"id": "x", "purpose": "p", "retention_days": %s}' % HUGE_INT),
        ("/v1/collections", '{"id": "x", "purpose": %s}' % SURROGATE),
        ("/v1/collections/fz/search", '{"purpose": "p", "face_id": "f", "k": 1e400}'),
        ("/v1/collections/fz/search", '{"purpose": "p", "face_id": "f", "k": Infinity}'),
        ("/v1/collections/fz/search", '{"purpose": %s, "image": "%s"}' % (SURROGATE, PORTRAIT)),
        ("/v1/collections/fz/persons/amber/faces", '{"image": "%s", "external_image_id": %s}' % (PORTRAIT, SURROGATE)),
        ("/v1/collections/fz/persons", '{"id": "zed", "display_name": %s}' % SURROGATE),
        ("/v1/compare", '{"source": "%s", "target": "%s", "fmr": NaN}' % (PORTRAIT, PORTRAIT)),
    ]
    for path, body in cases:
        response = native.post(path, content=body, headers=json_body)
        assert 400 <= response.status_code < 500, (path, body[:80], response.status_code, response.text[:300])
        assert response.json()["error"]["message"]
    consent = native.put("/v1/collections/fz/persons/amber/consent", content='{"basis": "consent", "reference": %s}' % SURROGATE, headers=json_body)
    assert consent.status_code == 400
    form = {"source": (FIXTURES / "lfw" / "Amber_Tamblyn" / "Amber_Tamblyn_0001.jpg").read_bytes(),
            "target": (FIXTURES / "lfw" / "Alanis_Morissette" / "Alanis_Morissette_0001.jpg").read_bytes()}  # fmt: skip
    for fmr in ("nan", "2", "inf", "-1", "0", "1"):  # an FMR outside (0, 1) used to set the threshold to 0: "match"
        response = native.post("/v1/compare", files=form, data={"fmr": fmr})
        message = response.json()["error"]["message"]
        assert response.status_code == 400 and ("false-match rate" in message or "finite" in message), fmr
    for k in ("1e400", "inf", "nan", HUGE_INT):
        response = native.post("/v1/collections/fz/search", data={"purpose": "p", "face_id": "f", "k": k})
        assert response.status_code == 400, k
    unknown = native.get("/v1/no-such-thing")
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found"
    wrong_method = native.delete("/v1/detect")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_rekognition_bodies_that_used_to_give_500(aws: Any) -> None:
    token = lambda text: base64.urlsafe_b64encode(text.encode()).decode()  # noqa: E731
    cases = [
        ("DetectFaces", NESTED),
        ("ListFaces", '{"CollectionId": "fz-aws", "MaxResults": %s}' % HUGE_INT),
        ("ListFaces", '{"CollectionId": "fz-aws", "MaxResults": 1e400}'),
        ("DetectFaces", '{"Image": {"Bytes": "%s"}, "Attributes": [{}]}' % PORTRAIT),
        ("ListFaces", '{"CollectionId": "fz-aws", "FaceIds": [[1]]}'),
        ("ListFaces", '{"CollectionId": "fz-aws", "NextToken": "%s"}' % token(NESTED)),
        ("ListFaces", '{"CollectionId": "fz-aws", "NextToken": "%s"}' % token('{"offset": 1e400}')),
        ("ListFaces", '{"CollectionId": "fz-aws", "NextToken": "%s"}' % token('{"offset": -5}')),
        ("ListFaces", '{"CollectionId": "fz-aws", "NextToken": "%s"}' % token('{"offset": %s}' % HUGE_INT)),
        ("DeleteFaces", '{"CollectionId": "fz-aws", "FaceIds": [%s]}' % SURROGATE),
        ("CreateCollection", '{"CollectionId": %s}' % SURROGATE),
    ]
    for operation, body in cases:
        response = aws(operation, body)
        assert 400 <= response.status_code < 500, (operation, body[:80], response.status_code, response.text[:300])
        assert response.json()["__type"] != "InternalServerError"


# ---------------------------------------------------------------- property-based: no 5xx, ever

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False),  # ONNX Runtime flushes subnormals in-process
    st.text(max_size=20), st.sampled_from(["fz", "fz-aws", "amber", "", "NONE", "AUTO", PORTRAIT[:64]]),
)  # fmt: skip
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
_AWS_FIELDS = ["CollectionId", "Image", "SourceImage", "TargetImage", "FaceId", "FaceIds", "UserId", "UserIds",
               "MaxFaces", "MaxResults", "MaxUsers", "NextToken", "FaceMatchThreshold", "SimilarityThreshold",
               "UserMatchThreshold", "QualityFilter", "Attributes", "ExternalImageId", "ClientRequestToken"]  # fmt: skip
_NATIVE = [
    ("post", "/v1/detect"), ("post", "/v1/compare"), ("post", "/v1/collections"), ("put", "/v1/collections/fz/threshold"),
    ("post", "/v1/collections/fz/persons"), ("put", "/v1/collections/fz/persons/amber/consent"),
    ("post", "/v1/collections/fz/persons/amber/faces"), ("post", "/v1/collections/fz/search"),
]  # fmt: skip
_NATIVE_FIELDS = ["id", "purpose", "image", "source", "target", "k", "threshold", "fmr", "face_id", "face_index",
                  "face_box", "largest", "basis", "reference", "expires_at", "display_name", "retention_days",
                  "min_quality", "reason", "external_image_id"]  # fmt: skip


def _bodies(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(fields) | st.text(max_size=6), _values, max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(operation=st.sampled_from(sorted(OPERATIONS)), body=_bodies(_AWS_FIELDS))
def test_no_rekognition_body_gets_a_5xx(aws: Any, operation: str, body: dict[str, Any]) -> None:
    response = aws(operation, json.dumps(body))
    assert response.status_code < 500, (operation, body, response.text[:300])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(route=st.sampled_from(_NATIVE), body=_bodies(_NATIVE_FIELDS))
def test_no_native_body_gets_a_5xx(native: httpx.Client, route: tuple[str, str], body: dict[str, Any]) -> None:
    method, path = route
    response = native.request(method.upper(), path, json=body)
    assert response.status_code < 500, (route, body, response.text[:300])


def test_create_user_with_a_bad_consent_leaves_no_user_behind(aws: Any) -> None:
    body = json.dumps({"CollectionId": "fz-aws", "UserId": "retry-me"})
    for expires in ("2027-01-01T00:00:00", "2001-01-01T00:00:00+00:00", "tomorrow"):  # no zone, past, not a time
        refused = aws("CreateUser", body, **{"X-Regard-Consent-Basis": "consent", "X-Regard-Consent-Expires": expires})
        assert refused.status_code == 400, expires
    assert aws("CreateUser", body, **{"X-Regard-Consent-Basis": "consent"}).status_code == 200  # the retry works


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_small_files_of_huge_images_are_refused_before_they_are_decoded(service: Service, native: httpx.Client, aws: Any) -> None:
    import io
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (7071, 7071), (120, 120, 120)).save(buffer, "WEBP", lossless=True)
    bomb = buffer.getvalue()
    assert len(bomb) < 10_000  # 50 MP in a few KB: over the service's 25 MP limit
    before = _peak_rss_mb(service.process.pid)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: native.post("/v1/detect", files={"image": bomb}).status_code, range(4)))
        aws_answers = list(pool.map(
            lambda _: aws("DetectFaces", json.dumps({"Image": {"Bytes": base64.b64encode(bomb).decode()}})).json()["__type"], range(4)
        ))  # fmt: skip
    assert answers == [413] * 4 and aws_answers == ["ImageTooLargeException"] * 4
    assert _peak_rss_mb(service.process.pid) - before < 200  # the pixels were never decoded


def test_the_pixel_budget_lets_photos_in_only_while_there_is_room() -> None:
    import threading
    import time

    from regard.service.state import PixelBudget, ServiceBusy

    budget = PixelBudget(capacity=100, wait_seconds=0.3)
    with budget.hold(60):
        started = time.monotonic()
        with pytest.raises(ServiceBusy):
            with budget.hold(60):
                pass
        assert time.monotonic() - started >= 0.25
        with budget.hold(40):  # what fits goes in at once
            assert budget.used == 100
    assert budget.used == 0
    first = budget.acquire(80)
    threading.Timer(0.1, budget.release, args=(first,)).start()
    with budget.hold(80):  # waits until the first is released
        assert budget.used == 80
    with budget.hold(10**9):  # a photo larger than the budget waits for all of it, never forever
        assert budget.used == 100


def test_base64_with_line_breaks_as_the_base64_command_prints_it(native: httpx.Client, aws: Any) -> None:
    wrapped = "\n".join(PORTRAIT[i : i + 76] for i in range(0, len(PORTRAIT), 76)) + "\n"
    found = native.post("/v1/detect", json={"image": wrapped})
    assert found.status_code == 200 and len(found.json()["faces"]) == 1
    detected = aws("DetectFaces", json.dumps({"Image": {"Bytes": wrapped}}))
    assert detected.status_code == 200 and len(detected.json()["FaceDetails"]) == 1
