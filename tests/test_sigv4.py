"""SigV4 verification against requests signed by botocore itself (and boto3's real Rekognition
client), and against the AWS documentation's published example."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials
from starlette.datastructures import Headers

from regard.errors import AuthError
from regard.service.sigv4 import verify_sigv4
from tests.conftest import lfw

KEY_ID, SECRET = "RGKTESTKEY0000000001", "Zm9vYmFyYmF6cXV4LXRoaXMtaXMtYS10ZXN0LWs"
REGION = "eu-west-1"
URL = "http://127.0.0.1:8080/"


def secrets_of(table: dict[str, str]):
    def secret_for(key_id: str) -> str:
        if key_id not in table:
            raise AuthError("unknown key")
        return table[key_id]

    return secret_for


class Signed:
    """A request signed by botocore's SigV4Auth, as the server would receive it."""

    def __init__(
        self,
        body: bytes = b'{"Image": {"Bytes": "aGVsbG8="}}',
        *,
        url: str = URL,
        secret: str = SECRET,
        region: str = REGION,
        service: str = "rekognition",
        headers: dict[str, str] | None = None,
    ) -> None:
        request = AWSRequest(
            method="POST",
            url=url,
            data=body,
            headers=headers
            or {"X-Amz-Target": "RekognitionService.DetectFaces", "Content-Type": "application/x-amz-json-1.1"},
        )
        SigV4Auth(Credentials(KEY_ID, secret), service, region).add_auth(request)
        parts = urlsplit(url)
        self.path, self.query, self.body = parts.path, parts.query, body
        # The HTTP client adds Host on the wire; botocore signed the same value.
        self.headers: dict[str, str] = {"Host": parts.netloc, **dict(request.headers.items())}
        self.signed_at = datetime.strptime(self.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)

    def verify(self, **overrides: Any) -> str:
        arguments: dict[str, Any] = dict(
            method="POST",
            path=self.path,
            query=self.query,
            headers=self.headers,
            body=self.body,
            secret_for=secrets_of({KEY_ID: SECRET}),
            region=REGION,
            now=self.signed_at + timedelta(seconds=1),
        )
        arguments.update(overrides)
        return verify_sigv4(**arguments)


def reason_of(call: Any) -> str:
    with pytest.raises(AuthError) as caught:
        call()
    return caught.value.reason


def test_a_request_botocore_signed_verifies() -> None:
    request = Signed()
    assert request.verify() == KEY_ID
    assert request.verify(now=None) == KEY_ID  # signed just now, checked against the clock


def test_the_aws_documentation_example_verifies() -> None:
    # "get-vanilla" from the AWS SigV4 test suite: a known answer independent of botocore's code.
    headers = {
        "Host": "example.amazonaws.com",
        "X-Amz-Date": "20150830T123600Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    }
    key = verify_sigv4(
        method="GET",
        path="/",
        query="",
        headers=headers,
        body=b"",
        secret_for=secrets_of({"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}),
        region="us-east-1",
        service="service",
        now=datetime(2015, 8, 30, 12, 37, tzinfo=timezone.utc),
    )
    assert key == "AKIDEXAMPLE"
    headers["Authorization"] = headers["Authorization"][:-1] + "0"
    assert reason_of(
        lambda: verify_sigv4(
            method="GET",
            path="/",
            query="",
            headers=headers,
            body=b"",
            secret_for=secrets_of({"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}),
            region="us-east-1",
            service="service",
            now=datetime(2015, 8, 30, 12, 37, tzinfo=timezone.utc),
        )
    ) == "bad signature"


def test_boto3s_own_rekognition_request_with_a_real_photo_verifies() -> None:
    """The unmodified boto3 client serializes and signs DetectFaces; we catch the request before
    it is sent and verify it as the server would."""
    captured: list[Any] = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        captured.append(request)
        return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(b'{"FaceDetails": []}'))

    client = boto3.client(
        "rekognition",
        endpoint_url="http://127.0.0.1:8080",
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    client.meta.events.register("before-send.rekognition.DetectFaces", capture)
    photo = lfw("Akhmed_Zakayev", 1).read_bytes()
    assert client.detect_faces(Image={"Bytes": photo}) == {"FaceDetails": [], "ResponseMetadata": mock.ANY}

    sent = captured[0]
    parts = urlsplit(sent.url)
    headers = {"Host": parts.netloc, **{k: (v.decode() if isinstance(v, bytes) else v) for k, v in sent.headers.items()}}
    body = sent.body if isinstance(sent.body, bytes) else sent.body.encode()
    assert len(body) > len(photo)  # the photo travels base64-encoded in the JSON body
    arguments: dict[str, Any] = dict(
        method=sent.method,
        path=parts.path,
        query=parts.query,
        headers=headers,
        body=body,
        secret_for=secrets_of({KEY_ID: SECRET}),
        region=REGION,
    )
    assert verify_sigv4(**arguments) == KEY_ID
    tampered = json.loads(body)
    tampered["Attributes"] = ["ALL"]
    arguments["body"] = json.dumps(tampered).encode()
    assert reason_of(lambda: verify_sigv4(**arguments)) == "bad signature"


class _Raw:
    """Just enough of a urllib3 response body for AWSResponse.content."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, *_: Any, **__: Any):
        yield self.data


def test_a_tampered_body_or_header_fails() -> None:
    request = Signed()
    assert reason_of(lambda: request.verify(body=request.body + b" ")) == "bad signature"
    switched = {**request.headers, "X-Amz-Target": "RekognitionService.DeleteCollection"}
    assert reason_of(lambda: request.verify(headers=switched)) == "bad signature"
    assert reason_of(lambda: request.verify(method="PUT")) == "bad signature"
    assert reason_of(lambda: request.verify(path="/other")) == "bad signature"


def test_header_values_are_compared_in_canonical_form() -> None:
    request = Signed()
    spaced = {k.upper(): f"  {v}  " for k, v in request.headers.items() if k != "Authorization"}
    spaced["Authorization"] = request.headers["Authorization"]
    spaced["CONTENT-TYPE"] = "application/x-amz-json-1.1   "
    assert request.verify(headers=spaced) == KEY_ID
    # An unsigned header that is not x-amz-* may be added (proxies add some).
    assert request.verify(headers={**request.headers, "X-Forwarded-For": "10.0.0.1"}) == KEY_ID


def test_repeated_headers_and_odd_paths_and_queries_verify() -> None:
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:8080/v1/a%20b/./c//d/../e?z=1&a=%2Fx&a=0&empty=",
        data=b"{}",
        headers={"X-Amz-Target": "RekognitionService.ListCollections"},
    )
    request.headers["X-Multi"] = "one"
    request.headers["X-Multi"] = "two  words"  # a second value, not a replacement
    SigV4Auth(Credentials(KEY_ID, SECRET), "rekognition", REGION).add_auth(request)
    parts = urlsplit(request.url)
    raw = [(b"host", parts.netloc.encode())] + [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
    headers = Headers(raw=raw)  # what Starlette hands the service
    assert headers.getlist("x-multi") == ["one", "two  words"]
    verify = dict(
        method="POST", query=parts.query, headers=headers, body=b"{}", secret_for=secrets_of({KEY_ID: SECRET}), region=REGION
    )
    assert verify_sigv4(path=parts.path, **verify) == KEY_ID
    assert reason_of(lambda: verify_sigv4(path=parts.path, **{**verify, "query": "z=1&a=0"})) == "bad signature"
    one_value = Headers(raw=[(k, v) for k, v in raw if v != b"two  words"])
    assert reason_of(lambda: verify_sigv4(path=parts.path, **{**verify, "headers": one_value})) == "bad signature"


def test_a_wrong_secret_fails() -> None:
    assert reason_of(lambda: Signed(secret="not-the-secret").verify()) == "bad signature"


def test_an_unknown_key_is_refused_by_the_key_lookup() -> None:
    assert reason_of(lambda: Signed().verify(secret_for=secrets_of({}))) == "unknown key"


def test_wrong_region_or_service_fails() -> None:
    assert reason_of(lambda: Signed(region="us-east-1").verify()) == "wrong region"
    assert reason_of(lambda: Signed(service="s3").verify()) == "wrong service"
    assert Signed(service="regard").verify(service="regard") == KEY_ID


def test_requests_more_than_five_minutes_off_fail() -> None:
    request = Signed()
    assert request.verify(now=request.signed_at + timedelta(minutes=4, seconds=59)) == KEY_ID
    assert request.verify(now=request.signed_at - timedelta(minutes=4, seconds=59)) == KEY_ID
    assert reason_of(lambda: request.verify(now=request.signed_at + timedelta(minutes=6))) == "request too old"
    assert reason_of(lambda: request.verify(now=request.signed_at - timedelta(minutes=6))) == "request too far in the future"
    # and the window is the caller's to choose
    assert reason_of(lambda: request.verify(now=request.signed_at + timedelta(minutes=2), max_skew=timedelta(minutes=1))) == "request too old"


def test_a_credential_date_other_than_x_amz_date_fails() -> None:
    request = Signed()
    day = request.signed_at.strftime("%Y%m%d")
    other = (request.signed_at - timedelta(days=1)).strftime("%Y%m%d")
    headers = {**request.headers, "Authorization": request.headers["Authorization"].replace(f"/{day}/", f"/{other}/")}
    assert reason_of(lambda: request.verify(headers=headers)) == "scope date mismatch"


def _with_signed_headers(request: Signed, signed: str) -> dict[str, str]:
    auth = request.headers["Authorization"]
    start = auth.index("SignedHeaders=") + len("SignedHeaders=")
    end = auth.index(",", start)
    return {**request.headers, "Authorization": auth[:start] + signed + auth[end:]}


def test_host_and_every_amz_header_must_be_signed() -> None:
    request = Signed()
    signed = request.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert signed == "content-type;host;x-amz-date;x-amz-target"
    no_host = _with_signed_headers(request, "content-type;x-amz-date;x-amz-target")
    assert reason_of(lambda: request.verify(headers=no_host)) == "unsigned header"
    no_target = _with_signed_headers(request, "content-type;host;x-amz-date")
    assert reason_of(lambda: request.verify(headers=no_target)) == "unsigned header"
    token_added = {**request.headers, "X-Amz-Security-Token": "added-after-signing"}
    assert reason_of(lambda: request.verify(headers=token_added)) == "unsigned header"
    dropped = {k: v for k, v in request.headers.items() if k != "Content-Type"}
    assert reason_of(lambda: request.verify(headers=dropped)) == "missing signed header"


def test_accountability_headers_added_after_signing_are_refused() -> None:
    request = Signed()
    for name in ("X-Regard-Purpose", "X-Regard-User-Id", "x-regard-reason"):
        forged = {**request.headers, name: "FORGED after signing"}
        with pytest.raises(AuthError) as caught:
            request.verify(headers=forged)
        assert caught.value.reason == "unsigned header" and name.lower() in str(caught.value)


def test_a_signed_security_token_and_content_hash_verify_and_the_hash_is_checked() -> None:
    import hashlib

    body = b'{"MaxResults": 5}'
    request = Signed(
        body,
        headers={
            "X-Amz-Target": "RekognitionService.ListCollections",
            "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest(),
            "X-Amz-Security-Token": "session-token",
        },
    )
    assert request.verify() == KEY_ID
    assert reason_of(lambda: request.verify(body=b'{"MaxResults": 6}')) == "bad payload hash"
    unsigned = Signed(body, headers={"X-Amz-Target": "RekognitionService.ListCollections", "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert reason_of(unsigned.verify) == "unsigned payload"


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer RGKX.secret",
        "AWS4-HMAC-SHA1 Credential=RGKTESTKEY0000000001/20250101/eu-west-1/rekognition/aws4_request, SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=RGKTESTKEY0000000001/20250101/eu-west-1/rekognition, SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=RGKTESTKEY0000000001/20250101/eu-west-1/rekognition/aws4_request, SignedHeaders=host",
        "AWS4-HMAC-SHA256 Credential=RGKTESTKEY0000000001/20250101/eu-west-1/rekognition/aws4_request, SignedHeaders=host, Signature=xyz",
        "AWS4-HMAC-SHA256 Credential=RGKTESTKEY0000000001/20250101/eu-west-1/rekognition/aws4_request, SignedHeaders=x-amz-date;host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=RGKTESTKEY0000000001/20250101/eu-west-1/rekognition/aws4_request, SignedHeaders=Host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=a/b/c, Credential=d, SignedHeaders=host, Signature=" + "0" * 64,
    ],
)
def test_malformed_authorization_headers_fail(authorization: str) -> None:
    request = Signed()
    headers = {**request.headers, "Authorization": authorization}
    assert reason_of(lambda: request.verify(headers=headers)) == "malformed authorization"


def test_missing_authorization_or_date_fails() -> None:
    request = Signed()
    unsigned = {k: v for k, v in request.headers.items() if k != "Authorization"}
    assert reason_of(lambda: request.verify(headers=unsigned)) == "missing authorization"
    undated = {k: v for k, v in request.headers.items() if k != "X-Amz-Date"}
    assert reason_of(lambda: request.verify(headers=undated)) == "missing date"
    bad_date = {**request.headers, "X-Amz-Date": "20251399T000000Z"}
    assert reason_of(lambda: request.verify(headers=bad_date)) == "missing date"
