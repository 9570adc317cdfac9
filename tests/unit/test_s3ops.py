"""The one S3 operation classifier of the lab's proxies (``s3seg_lab.s3ops``): a table of requests."""

from __future__ import annotations

import pytest

from s3seg_lab.s3ops import MUTATING, operation

COPY = {"x-amz-copy-source": "/b/src"}

# (method, request target, headers, operation, mutating)
TABLE = [
    ("GET", "/", {}, "ListBuckets", False),
    ("HEAD", "/b", {}, "HeadBucket", False),
    ("HEAD", "/b/", {}, "HeadBucket", False),
    ("HEAD", "/b/k", {}, "HeadObject", False),
    ("HEAD", "/b/dir/k", {}, "HeadObject", False),
    ("GET", "/b?list-type=2&prefix=incoming%2F&delimiter=%2F", {}, "ListObjectsV2", False),
    ("GET", "/b/?list-type=2", {}, "ListObjectsV2", False),
    ("GET", "/b", {}, "ListObjects", False),
    ("GET", "/b?prefix=p&marker=m&max-keys=5", {}, "ListObjects", False),
    ("GET", "/b?versions&prefix=p", {}, "ListObjectVersions", False),
    ("GET", "/b?uploads", {}, "ListMultipartUploads", False),
    ("GET", "/b?location", {}, "GetBucketConfig", False),
    ("GET", "/b?versioning", {}, "GetBucketConfig", False),
    ("GET", "/b/k", {}, "GetObject", False),
    ("GET", "/b/k?versionId=v1", {}, "GetObject", False),
    ("GET", "/b/k?tagging", {}, "GetObjectTagging", False),
    ("GET", "/b/k?uploadId=u", {}, "ListParts", False),
    ("PUT", "/b", {}, "CreateBucket", True),
    ("PUT", "/b/", {}, "CreateBucket", True),
    ("PUT", "/b?versioning", {}, "PutBucketConfig", True),
    ("PUT", "/b/k", {}, "PutObject", True),
    ("PUT", "/b/k", {"If-None-Match": "*"}, "PutObject", True),
    ("PUT", "/b/k", COPY, "CopyObject", True),
    ("PUT", "/b/k", {"X-Amz-Copy-Source": "/b/src"}, "CopyObject", True),  # header names in any case
    ("PUT", "/b/k?partNumber=1&uploadId=u", COPY, "UploadPartCopy", True),
    ("PUT", "/b/k?partNumber=1&uploadId=u", {}, "UploadPart", True),
    ("PUT", "/b/k?tagging", {}, "PutObjectTagging", True),
    ("POST", "/b?delete", {}, "DeleteObjects", True),
    ("POST", "/b/?delete=", {}, "DeleteObjects", True),
    ("POST", "/b", {}, "PostObject", True),
    ("POST", "/b/k?uploads", {}, "CreateMultipartUpload", True),
    ("POST", "/b/k?uploadId=u", {}, "CompleteMultipartUpload", True),
    ("DELETE", "/b", {}, "DeleteBucket", True),
    ("DELETE", "/b?tagging", {}, "DeleteBucketConfig", True),
    ("DELETE", "/b/k", {}, "DeleteObject", True),
    ("DELETE", "/b/k?versionId=v1", {}, "DeleteObject", True),
    ("DELETE", "/b/k?uploadId=u", {}, "AbortMultipartUpload", True),
    ("DELETE", "/b/k?tagging", {}, "DeleteObjectTagging", True),
    ("OPTIONS", "/b/k", {}, "OPTIONS", False),
]


@pytest.mark.parametrize(("method", "target", "headers", "op", "mutating"), TABLE)
def test_operation_of_a_path_style_request(
    method: str, target: str, headers: dict[str, str], op: str, mutating: bool
) -> None:
    assert operation(method, target, headers) == op
    assert (op in MUTATING) is mutating


def test_a_key_that_looks_like_a_query_or_a_bucket_is_still_an_object() -> None:
    assert operation("GET", "/b/list-type%3D2", {}) == "GetObject"
    assert operation("PUT", "/b/%3Fdelete", {}) == "PutObject"
    assert operation("DELETE", "/b/b/", {}) == "DeleteObject"


def test_header_names_are_read_from_a_message_as_from_a_dict() -> None:
    """``http.server`` hands the fault proxy an ``email.message.Message``; the counting proxy a plain dict."""
    from email.message import Message

    message = Message()
    message["X-Amz-Copy-Source"] = "/b/src"
    assert operation("PUT", "/b/k", message) == "CopyObject"
