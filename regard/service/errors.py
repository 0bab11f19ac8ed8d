"""Errors in the service's two dialects: the one table of what each Regard error answers (native
JSON type and status, Rekognition exception), and the responses in each shape."""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from fastapi.responses import JSONResponse

from regard.errors import (
    AlreadyExistsError,
    AuthError,
    ConsentError,
    ImageError,
    ImageTooLargeError,
    InvalidArgumentError,
    NoFaceError,
    NotFoundError,
    RegardError,
)
from regard.service.auth import Forbidden, Unauthorized
from regard.service.state import AWS_JSON, REKOGNITION_PATH

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]



# (native type, HTTP status, Rekognition exception) for each error Regard raises on purpose.
_ERRORS: list[tuple[type[Exception], str, int, str]] = [
    (ImageTooLargeError, "image_too_large", 413, "ImageTooLargeException"),
    (ImageError, "invalid_image", 400, "InvalidImageFormatException"),
    (NoFaceError, "no_face", 422, "InvalidParameterException"),
    (NotFoundError, "not_found", 404, "ResourceNotFoundException"),
    (AlreadyExistsError, "already_exists", 409, "ResourceAlreadyExistsException"),
    (ConsentError, "consent_required", 409, "InvalidParameterException"),
    (InvalidArgumentError, "invalid_argument", 400, "InvalidParameterException"),
    (Unauthorized, "unauthorized", 401, "AccessDeniedException"),
    (AuthError, "unauthorized", 401, "AccessDeniedException"),
    (Forbidden, "forbidden", 403, "AccessDeniedException"),
    (RegardError, "invalid_argument", 400, "InvalidParameterException"),
]


def classify(error: Exception) -> tuple[str, int, str]:
    """(native type, status, Rekognition exception name) for an error."""
    for kind, native, status, aws in _ERRORS:
        if isinstance(error, kind):
            return native, status, aws
    return "internal", 500, "InternalServerError"


def native_error(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, **extra}}, status_code=status)


def aws_error(status: int, aws_type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"__type": aws_type, "message": message},
        status_code=status,
        media_type=AWS_JSON,
        headers={"x-amzn-ErrorType": aws_type, **(headers or {})},
    )


async def send_error(scope: Scope, send: Send, status: int, native: str, aws: str, message: str) -> None:
    """An error answered by a middleware, before the app: in the dialect the path speaks."""
    if scope.get("path") == REKOGNITION_PATH and scope.get("method") == "POST":
        body = json.dumps({"__type": aws, "message": message}).encode()
        content_type = AWS_JSON.encode()
    else:
        body = json.dumps({"error": {"type": native, "message": message}}).encode()
        content_type = b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
