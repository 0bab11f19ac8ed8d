"""The collection operations: CreateCollection, DeleteCollection, DescribeCollection and
ListCollections (a collection's ARN names a fixed placeholder account)."""

from __future__ import annotations

from typing import Any

from regard.errors import AlreadyExistsError
from regard.service.rekognition.call import AwsError, Call, _page
from regard.store.base import Role

ACCOUNT = "000000000000"


def _arn(call: Call, collection_id: str) -> str:
    return f"arn:aws:rekognition:{call.state.config.region}:{ACCOUNT}:collection/{collection_id}"


def create_collection(call: Call) -> dict[str, Any]:
    collection_id = call.ident("CollectionId")
    call.caller.require(Role.ADMIN, collection_id)
    try:
        collection = call.store.create_collection(collection_id, purpose=call.purpose(), actor=call.caller.actor)
    except AlreadyExistsError:
        raise AwsError("ResourceAlreadyExistsException", f"The collection id: {collection_id} already exists") from None
    return {"StatusCode": 200, "CollectionArn": _arn(call, collection_id), "FaceModelVersion": collection.model}


def delete_collection(call: Call) -> dict[str, Any]:
    collection_id = call.collection(Role.ADMIN)
    call.store.delete_collection(collection_id, actor=call.caller.actor, reason=call.reason("DeleteCollection"))
    return {"StatusCode": 200}


def describe_collection(call: Call) -> dict[str, Any]:
    collection = call.store.get_collection(call.collection(None))
    return {
        "FaceCount": collection.face_count,
        "UserCount": collection.person_count,
        "FaceModelVersion": collection.model,
        "CollectionARN": _arn(call, collection.id),
        "CreationTimestamp": collection.created_at.timestamp(),
    }


def list_collections(call: Call) -> dict[str, Any]:
    max_results = call.number("MaxResults", 0, 4096, 1000)
    visible = [c for c in call.store.list_collections() if call.caller.may_see(c.id)]
    page, token = _page(call, visible, max_results)
    out: dict[str, Any] = {"CollectionIds": [c.id for c in page], "FaceModelVersions": [c.model for c in page]}
    if token:
        out["NextToken"] = token
    return out
