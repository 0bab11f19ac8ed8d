"""What the native API's routes depend on: the caller (a bearer key) and the request's body with its
photos (multipart file fields or base64 in JSON), holding the photos' pixels in the process's budget
until the request ends. Routes take them with `Depends(bearer)` and `Depends(upload)`."""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any, AsyncIterator

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from regard.errors import ImageTooLargeError, InvalidArgumentError
from regard.service import jsonbody
from regard.service.auth import Caller, authenticate_bearer
from regard.service.state import declared_pixels, state_of


def bearer(request: Request) -> Caller:
    return authenticate_bearer(state_of(request), request)


@dataclass
class Upload:
    """A request's photos (raw bytes) and its other fields."""

    photos: dict[str, bytes]
    fields: dict[str, Any]

    def photo(self, name: str, required: bool = True) -> bytes | None:
        if name in self.photos:
            return self.photos[name]
        if required:
            raise InvalidArgumentError(
                f"the request needs a photo {name!r}: a multipart file field, or base64 in a JSON field"
            )
        return None

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.fields.get(name, default)
        if value is not None and not isinstance(value, str):
            raise InvalidArgumentError(f"{name!r} must be a string")
        return value

    def number(self, name: str, kind: type, default: Any = None) -> Any:
        value = self.fields.get(name, default)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise InvalidArgumentError(f"{name!r} must be a number, not true/false")
        try:
            number = kind(value)
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgumentError(f"{name!r} must be a {kind.__name__}, not {str(value)[:40]!r}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise InvalidArgumentError(f"{name!r} must be a finite number, not {value!r}")
        return number

    def flag(self, name: str) -> bool:
        value = self.fields.get(name, False)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "false", "0", "no", ""}:
            return value.lower() in {"true", "1", "yes"}
        raise InvalidArgumentError(f"{name!r} must be true or false")


async def upload(request: Request) -> AsyncIterator[Upload]:
    """Photos and fields from multipart/form-data or a JSON object (photos as base64). The photos'
    declared pixels are held in the process's pixel budget until the request is done."""
    parsed = await _parse_upload(request)
    budget = state_of(request).pixels
    held = await run_in_threadpool(budget.acquire, declared_pixels(list(parsed.photos.values())))
    try:
        yield parsed
    finally:
        budget.release(held)


async def _parse_upload(request: Request) -> Upload:
    limit = state_of(request).config.max_image_bytes
    content_type = request.headers.get("content-type", "")
    photos: dict[str, bytes] = {}
    fields: dict[str, Any] = {}
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                photos[name] = await value.read()
            else:
                fields[name] = value
    elif content_type.startswith("application/json"):
        body = jsonbody.parse(await request.body() or b"null")
        if not isinstance(body, dict):
            raise InvalidArgumentError("the JSON body must be an object")
        for name, value in body.items():
            if name in PHOTO_FIELDS and isinstance(value, str):
                try:
                    # Line breaks allowed, as the base64 command prints them (76 characters a line).
                    photos[name] = base64.b64decode("".join(value.split()), validate=True)
                except (binascii.Error, ValueError):
                    raise InvalidArgumentError(f"{name!r} is not valid base64") from None
            else:
                fields[name] = value
    else:
        raise InvalidArgumentError("send multipart/form-data (file fields) or application/json (base64 photos)")
    for name, data in photos.items():
        if len(data) > limit:
            raise ImageTooLargeError(f"photo {name!r} is {len(data):,} bytes, over the limit of {limit:,} bytes")
    return Upload(photos, fields)


PHOTO_FIELDS = {"image", "source", "target"}
