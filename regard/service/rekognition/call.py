"""The plumbing of one Rekognition call, shared by every operation: `Call` (who calls, the JSON
body, the headers to add to the answer, and the parameter checks: types, identifiers, numbers,
QualityFilter, Image, purpose, reason, thresholds), `AwsError` (an error with a Rekognition
exception name), the UserId and FaceId patterns, the FaceIds list, and NextToken paging."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from regard import gallery
from regard.errors import ImageTooLargeError, InvalidArgumentError, RegardError
from regard.face import QualityLevel
from regard.match import ThresholdTable
from regard.service import jsonbody
from regard.service.auth import Caller
from regard.service.rekognition.similarity import (
    score_of_similarity,
    similarity_of_score,
)
from regard.service.state import ServiceState
from regard.store.base import Role
from regard.store.core import Store


class AwsError(RegardError):
    """An error with a specific Rekognition exception name."""

    def __init__(self, aws_type: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.aws_type = aws_type
        self.status = status


@dataclass
class Call:
    """One Rekognition call: who, what, and the headers to add to the answer."""

    state: ServiceState
    caller: Caller
    headers: Mapping[str, str]
    body: dict[str, Any]
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return self.state.store

    # Parameters, checked on the server too (not every client validates like botocore).
    def get(self, name: str, kind: type | tuple[type, ...], required: bool = False, default: Any = None) -> Any:
        value = self.body.get(name)
        if value is None:
            if required:
                raise InvalidArgumentError(f"{name} is required")
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise InvalidArgumentError(f"{name} has the wrong type")
        return value

    def strings(self, name: str, required: bool = False, default: Any = None) -> Any:
        """A list of strings (FaceIds, UserIds, Attributes, ...)."""
        value = self.get(name, list, required, default)
        if value is not None and not all(isinstance(v, str) for v in value):
            raise InvalidArgumentError(f"{name} is a list of strings")
        return value

    def ident(self, name: str, pattern: str = r"[a-zA-Z0-9_.\-]+", max_len: int = 255, required: bool = True) -> Any:
        value = self.get(name, str, required)
        if value is not None and (len(value) > max_len or not re.fullmatch(pattern, value)):
            raise InvalidArgumentError(f"{name} {value!r} must match {pattern} and be at most {max_len} characters")
        return value

    def collection(self, role: Role | None, *, check: bool = True) -> str:
        """The call's CollectionId, if the caller's key may use it in `role`; with `check`, read to
        be sure it exists (a search leaves that to the store, which reads it in its transaction)."""
        collection_id = self.ident("CollectionId")
        if not self.caller.may_see(collection_id):
            raise AwsError("ResourceNotFoundException", f"The collection id: {collection_id} does not exist")
        if role is not None:
            self.caller.require(role, collection_id)
        if check:
            self.store.get_collection(collection_id)  # ResourceNotFoundException when unknown
        return collection_id

    def number(self, name: str, low: float, high: float, default: Any) -> Any:
        kind = float if isinstance(default, float) or default is None and name.endswith("Threshold") else int
        value = self.get(name, kind, default=default)
        if value is not None and not low <= value <= high:
            raise InvalidArgumentError(f"{name} must be between {low:g} and {high:g}")
        return value

    def quality_filter(self, default: str) -> QualityLevel | None:
        value = self.get("QualityFilter", str, default=default)
        if value not in {"NONE", "AUTO", "LOW", "MEDIUM", "HIGH"}:
            raise InvalidArgumentError("QualityFilter is one of NONE, AUTO, LOW, MEDIUM, HIGH")
        if value == "NONE":
            return None
        return QualityLevel.MEDIUM if value == "AUTO" else QualityLevel(value)

    def image(self, name: str = "Image") -> tuple[np.ndarray, str]:
        """The decoded photo of an Image parameter and its sha256."""
        image = self.get(name, dict, required=True)
        if "S3Object" in image:
            raise AwsError(
                "InvalidS3ObjectException",
                "Regard has no S3: send the photo itself as Image.Bytes (boto3 accepts the file's bytes)",
            )
        data = image.get("Bytes")
        if not isinstance(data, str) or not data:
            raise InvalidArgumentError(f"{name}.Bytes is required")
        try:
            raw = base64.b64decode("".join(data.split()), validate=True)  # line breaks allowed
        except (binascii.Error, ValueError):
            raise InvalidArgumentError(f"{name}.Bytes is not valid base64") from None
        limit = self.state.config.max_image_bytes
        if len(raw) > limit:
            raise ImageTooLargeError(f"{name} is {len(raw):,} bytes, over the limit of {limit:,} bytes")
        return gallery.decode_photo(raw, self.state.config.max_pixels)

    def purpose(self) -> str:
        purpose = self.headers.get("x-regard-purpose") or self.caller.key.default_purpose
        if not purpose or not purpose.strip():
            raise InvalidArgumentError(
                "Regard needs a purpose for this call: send the X-Regard-Purpose header, or give the key a "
                "default purpose (regard keys create --purpose ...)"
            )
        return purpose.strip()

    def reason(self, operation: str) -> str:
        return (self.headers.get("x-regard-reason") or "").strip() or f"{operation} via the Rekognition API"

    def threshold(self, name: str, default: float | None = None, table: ThresholdTable | None = None) -> float | None:
        """The Regard score threshold of a call: the caller's `name` (a Rekognition Similarity,
        mapped to a score by `score_of_similarity`), else `default` (a score; for a search None,
        and the store decides: `report_threshold` then says what it used)."""
        value = self.number(name, 0.0, 100.0, None)
        table = table or self.store.table
        threshold = default if value is None else score_of_similarity(table, float(value))
        if threshold is not None:
            self.report_threshold(threshold, table)
        return threshold

    def table_of(self, collection_id: str) -> ThresholdTable:
        """The threshold table of the collection's model (the built-in model's unless the collection
        was created with another); ModelError for a model not calibrated."""
        return self.store.table_for(self.store.model_of(collection_id))

    def report_threshold(self, threshold: float, table: ThresholdTable | None = None) -> None:
        """Say in the response's headers which threshold the call used, on both scales, and its FMR."""
        table = table or self.store.table
        self.response_headers["X-Regard-Threshold"] = f"{threshold:.2f}"
        self.response_headers["X-Regard-Similarity-Threshold"] = f"{similarity_of_score(table, threshold):.2f}"
        self.response_headers["X-Regard-Threshold-FMR"] = f"{table.fmr_estimate(threshold):.3g}"


def _page(call: Call, items: list[Any], max_results: int) -> tuple[list[Any], str | None]:
    """One page of `items` and the token for the next, if any."""
    token = call.get("NextToken", str)
    start = 0
    if token:
        try:
            start = jsonbody.parse(base64.urlsafe_b64decode(token.encode()))["offset"]
            if not isinstance(start, int) or isinstance(start, bool) or start < 0:
                raise ValueError(start)
        except (ValueError, KeyError, TypeError, binascii.Error):  # BadJson is a ValueError too
            raise AwsError("InvalidPaginationTokenException", "NextToken is not a token this service issued") from None
    end = start + max_results
    next_token = base64.urlsafe_b64encode(json.dumps({"offset": end}).encode()).decode() if end < len(items) else None
    return items[start:end], next_token


_USER_ID = r"[a-zA-Z0-9_.\-:]+"


_FACE_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _face_ids(call: Call, name: str = "FaceIds", most: int = 4096) -> list[str]:
    ids = call.strings(name, required=True)
    if not 1 <= len(ids) <= most or not all(isinstance(i, str) and re.fullmatch(_FACE_ID, i) for i in ids):
        raise InvalidArgumentError(f"{name} is a list of 1 to {most} face ids (UUIDs)")
    return ids
