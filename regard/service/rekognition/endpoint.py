"""The endpoint: `POST /` (`router`), which checks the SigV4 signature with the key's secret,
admits the caller (rate limit), finds the operation of `X-Amz-Target` in `OPERATIONS`, parses the
JSON body, holds the pixel budget of its photos, and answers AWS JSON with the call's headers."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Callable, Mapping

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from regard.service import jsonbody
from regard.service.auth import Caller, Unauthorized, public_reason
from regard.service.keys import AuthError
from regard.service.rekognition.call import AwsError, Call
from regard.service.rekognition.collections import (
    create_collection,
    delete_collection,
    describe_collection,
    list_collections,
)
from regard.service.rekognition.detect import compare_faces, detect_faces
from regard.service.rekognition.faces import (
    delete_faces,
    index_faces,
    list_faces,
    search_faces,
    search_faces_by_image,
)
from regard.service.rekognition.users import (
    associate_faces,
    create_user,
    delete_user,
    disassociate_faces,
    list_users,
    search_users,
    search_users_by_image,
)
from regard.service.sigv4 import verify_sigv4
from regard.service.state import AWS_JSON, ServiceState, declared_pixels, state_of
from regard.store.base import ApiKey

router = APIRouter()


TARGET_PREFIX = "RekognitionService."


OPERATIONS: dict[str, Callable[[Call], dict[str, Any]]] = {
    "DetectFaces": detect_faces,
    "CompareFaces": compare_faces,
    "CreateCollection": create_collection,
    "DeleteCollection": delete_collection,
    "DescribeCollection": describe_collection,
    "ListCollections": list_collections,
    "IndexFaces": index_faces,
    "ListFaces": list_faces,
    "DeleteFaces": delete_faces,
    "SearchFaces": search_faces,
    "SearchFacesByImage": search_faces_by_image,
    "CreateUser": create_user,
    "DeleteUser": delete_user,
    "ListUsers": list_users,
    "AssociateFaces": associate_faces,
    "DisassociateFaces": disassociate_faces,
    "SearchUsers": search_users,
    "SearchUsersByImage": search_users_by_image,
}


def _photos_of(payload: dict[str, Any]) -> list[bytes]:
    """The photos a request carries (Image, SourceImage, TargetImage), for the pixel budget."""
    photos = []
    for name in ("Image", "SourceImage", "TargetImage"):
        image = payload.get(name)
        data = image.get("Bytes") if isinstance(image, dict) else None
        if isinstance(data, str):
            try:
                photos.append(base64.b64decode(data))
            except (binascii.Error, ValueError):
                pass  # Call.image says what is wrong with it
    return photos


def _handle(state: ServiceState, scope: dict[str, Any], headers: Mapping[str, str], body: bytes) -> JSONResponse:
    raw_path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"").decode("latin-1")
    keys: dict[str, ApiKey] = {}

    def secret_for(key_id: str) -> str:  # the key is read once, for its secret and for the caller
        keys[key_id], secret = state.keys.signing_key(key_id)
        return secret

    try:
        key_id = verify_sigv4(
            method=scope["method"],
            path=raw_path.decode("latin-1"),
            query=query,
            headers=headers,
            body=body,
            secret_for=secret_for,
            region=state.config.region,
        )
    except AuthError as exc:
        # Which headers were left unsigned is the client's own information: name them.
        detail = str(exc) if exc.reason == "unsigned header" else public_reason(exc)
        raise Unauthorized(f"the request signature was refused: {detail}") from None
    caller = Caller(keys[key_id])
    state.admit(caller)
    target = headers.get("x-amz-target", "")
    operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else None
    handler = OPERATIONS.get(operation or "")
    if handler is None:
        raise AwsError("UnknownOperationException", f"Regard does not provide the operation {target!r}")
    try:
        payload = jsonbody.parse(body or b"{}")
    except jsonbody.BadJson as exc:
        raise AwsError("SerializationException", "the request body is not valid JSON" if exc.syntax else str(exc)) from None
    if not isinstance(payload, dict):
        raise AwsError("SerializationException", "the request body must be a JSON object")
    call = Call(state, caller, headers, payload)
    with state.pixels.hold(declared_pixels(_photos_of(payload))):
        result = handler(call)
    return JSONResponse(result, media_type=AWS_JSON, headers=call.response_headers)


@router.post("/", include_in_schema=False)
async def rekognition(request: Request) -> JSONResponse:
    body = await request.body()
    return await run_in_threadpool(_handle, state_of(request), request.scope, request.headers, body)
