"""What the lean-path store tests share: keys every store accepts, the operations the lean path sends, and an
object's comparable state (test_leanpath_stores, test_leanpath_aws_moto; a kit module, not a test module).
"""

from __future__ import annotations

from typing import Any

from s3seg.objects import ObjectInfo

# Keys every store accepts (SeaweedFS rewrites "//" and "\", rclone refuses "//": FINDINGS.md), chosen for
# what broke S3 clients before. "plus+sign" and "plus%2Bsign" both exist: one encoding too many or too few
# copies the other object.
KEYS = [
    "plain.txt",
    "sp ace/a b.csv",
    "plus+sign",
    "plus%2Bsign",
    "q?versionId=x",
    "amp&lt;<>\"'",
    "tilde~/semi;colon=eq#hash",
    "unicode/é日本😀",
    "trailing.",
    " lead space",
    "a*star(paren)!,$@",
    "tab\there",
]
LEAN_OPS = {"CopyObject", "HeadObject", "DeleteObject", "DeleteObjects"}


def _comparable(info: ObjectInfo | None, fold_metadata: bool) -> Any:
    if info is None:
        return None
    metadata = info.metadata or {}
    if fold_metadata:  # rclone sends "X-Amz-Meta-Color": botocore keeps the case, the lean path lower-cases
        metadata = {k.lower(): v for k, v in metadata.items()}
    return (info.etag, info.size, info.storage_class, info.content_type, metadata, info.sse)
