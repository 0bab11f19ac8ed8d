"""The Rekognition-compatible API: `POST /` with `X-Amz-Target: RekognitionService.<Operation>`,
AWS JSON 1.1 bodies shaped as in botocore's `rekognition` service model, signed with AWS SigV4
using a Regard key. Unmodified boto3 works:

    boto3.client("rekognition", endpoint_url="http://localhost:8080", region_name="us-east-1",
                 aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)

Where Regard's safeguards need something Rekognition has no field for, it comes from a header
(add it with a botocore `before-sign` event hook) or from the key:
  X-Regard-Purpose          why a search is made / what a new collection is for (else the key's default purpose)
  X-Regard-User-Id          IndexFaces: the consenting person (user) the face belongs to
  X-Regard-Face-Box         IndexFaces of a photo of several people: the person's face, as
                            "Left,Top,Width,Height" in ratios of the image (DetectFaces' BoundingBox)
  X-Regard-Face-Index       ... or by its position (from 0) in DetectFaces' FaceDetails
                            (else ExternalImageId, when it names a user of the collection)
  X-Regard-Consent-Basis    CreateUser: record consent in the same call (consent, contract, ...);
  X-Regard-Consent-Reference, X-Regard-Consent-Expires   with its reference and expiry (ISO 8601)
  X-Regard-Reason           why faces, users or a collection are deleted (else a default naming the operation)
Every response to a comparison or search carries `X-Regard-Threshold` (the score threshold used)
and `X-Regard-Threshold-FMR` (its estimated false-match rate).

Deliberate differences (docs/SERVICE.md has the full list): no attribute is ever inferred (AgeRange,
Gender, Emotions, Smile, ... are absent even with Attributes=["ALL"]); a face always belongs to a
consenting user, so IndexFaces needs one, IndexFaces indexes one face per photo (the largest that
passes the quality gate), DisassociateFaces and DeleteUser erase the faces, and DeleteFaces works on
associated faces too; thresholds default to Regard's calibrated ones, not 80; no S3.

The package, by job:
  call.py         Call (one call: its caller, parameters and response headers), AwsError, NextToken paging
  similarity.py   the Similarity scale and Regard's score (SIMILARITY_ANCHORS)
  shapes.py       the response shapes: FaceDetail (face_detail), Face, boxes, landmarks, reasons
  detect.py       DetectFaces, CompareFaces
  collections.py  CreateCollection, DeleteCollection, DescribeCollection, ListCollections
  faces.py        IndexFaces, ListFaces, DeleteFaces, SearchFaces, SearchFacesByImage
  users.py        CreateUser, DeleteUser, ListUsers, AssociateFaces, DisassociateFaces, SearchUsers,
                  SearchUsersByImage
  endpoint.py     POST / (router): signature, operation (OPERATIONS), body, pixel budget, response
The modules import one another directly, never this package, which only re-exports.
"""

from __future__ import annotations

from regard.service.rekognition.call import AwsError, Call
from regard.service.rekognition.endpoint import OPERATIONS, TARGET_PREFIX, router
from regard.service.rekognition.shapes import face_detail
from regard.service.rekognition.similarity import (
    SIMILARITY_ANCHORS,
    score_of_similarity,
    similarity_of_score,
)

__all__ = [
    "OPERATIONS",
    "SIMILARITY_ANCHORS",
    "TARGET_PREFIX",
    "AwsError",
    "Call",
    "face_detail",
    "router",
    "score_of_similarity",
    "similarity_of_score",
]
