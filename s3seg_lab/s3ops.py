"""The S3 operation of one HTTP request: the one classifier of the lab's proxies (fault and counting).

``operation(method, target, headers)`` names the S3 API operation a path-style request (``/bucket/key?query``,
what s3seg, boto3 with ``addressing_style=path``, s5cmd and the tests send to a local store) is. It is exact for
every request s3seg sends and for what the tests and the benchmark contenders send around it; anything else
gets a coarse but stable name (``GetBucketConfig``, ``PostObject``, or the bare method). ``MUTATING`` is the
set of those names that can change a bucket: what "zero S3 mutations" is counted against.

Virtual-hosted requests (``bucket.host/key``) are not recognised: the proxies sit in front of path-style
clients only. No I/O here; ``tests/unit/test_s3ops.py`` holds the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

MUTATING = frozenset(
    {
        "CopyObject",
        "PutObject",
        "DeleteObject",
        "DeleteObjects",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
        "PutObjectTagging",
        "DeleteObjectTagging",
        "CreateBucket",
        "DeleteBucket",
        "PutBucketConfig",
        "DeleteBucketConfig",
        "PostObject",
    }
)

# Query parameters of a plain ListObjects (V1) request; any other one on a bucket GET is a sub-resource.
_LIST_V1_PARAMS = frozenset({"prefix", "marker", "delimiter", "max-keys", "encoding-type"})


def _has_header(headers: Mapping[str, str] | Iterable[str], name: str) -> bool:
    """Case-insensitive: ``http.server`` hands over a ``Message``, the asyncio proxy a dict of lower-cased names."""
    return any(key.lower() == name for key in headers)


def operation(method: str, target: str, headers: Mapping[str, str] | Iterable[str]) -> str:
    """The S3 operation of a path-style request, from its method, request target and header names."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    bucket, _, key = parts.path.lstrip("/").partition("/")
    if not bucket:
        return "ListBuckets" if method == "GET" else method
    if key:
        return _object_op(method, query, _has_header(headers, "x-amz-copy-source"))
    return _bucket_op(method, query)


def _bucket_op(method: str, query: dict[str, list[str]]) -> str:
    if method == "HEAD":
        return "HeadBucket"
    if method == "GET":
        if "versions" in query:
            return "ListObjectVersions"
        if query.get("list-type") == ["2"]:
            return "ListObjectsV2"
        if "uploads" in query:
            return "ListMultipartUploads"
        return "ListObjects" if query.keys() <= _LIST_V1_PARAMS else "GetBucketConfig"
    if method == "PUT":
        return "PutBucketConfig" if query else "CreateBucket"
    if method == "POST":
        return "DeleteObjects" if "delete" in query else "PostObject"
    if method == "DELETE":
        return "DeleteBucketConfig" if query else "DeleteBucket"
    return method


def _object_op(method: str, query: dict[str, list[str]], copy: bool) -> str:
    if method == "HEAD":
        return "HeadObject"
    if method == "GET":
        if "tagging" in query:
            return "GetObjectTagging"
        return "ListParts" if "uploadId" in query else "GetObject"
    if method == "PUT":
        if copy:
            return "UploadPartCopy" if "partNumber" in query else "CopyObject"
        if "tagging" in query:
            return "PutObjectTagging"
        return "UploadPart" if "partNumber" in query else "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        return "CompleteMultipartUpload" if "uploadId" in query else "PostObject"
    if method == "DELETE":
        if "tagging" in query:
            return "DeleteObjectTagging"
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    return method
