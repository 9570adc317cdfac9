"""The seam between the move protocol and S3: the few calls ``moves`` and ``worker`` make, as a ``Protocol``.

``s3seg.storage.Storage`` (boto3 and the lean path) is the real implementation; ``tests/unit/memstore.py`` is
an in-memory one that enforces the same conditions, so the protocol can be tested without a server.

What every implementation must do, because ``moves`` relies on it (docs/safety.md, S3-FACTS):

- report a failed request as ``StorageError`` with the S3 error code (``PreconditionFailed`` for a refused
  condition, ``NoSuchKey`` for a missing object), ``retryable`` when trying again later may succeed, and
  ``retried`` when the request was sent more than once (the refusal may answer our own applied first send);
- honour a condition only as the store really does: a store that ignores ``if_match`` or ``if_none_match``
  must ignore it here too (``Capabilities`` says which ones ``moves`` may trust);
- delete without a version id, never by one.

Must not: decide what a result means for a move (``moves`` does that).
"""

from __future__ import annotations

from typing import Protocol, Unpack

from s3seg.errors import StorageError
from s3seg.objects import CopyArgs, MultipartCopyArgs, ObjectInfo


class Storage(Protocol):
    """The calls of one move (HEAD, copy, multipart copy, delete, batch delete, content comparison)."""

    def head(self, bucket: str, key: str, *, full: bool = False) -> ObjectInfo | None:
        """The object's size, ETag and headers; None if it does not exist. ``full``: every header (``raw``),
        as a multipart copy needs to re-send them."""
        ...

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, **args: Unpack[CopyArgs]) -> str:
        """CopyObject keeping metadata, Content-Type and tags; ``if_match``: CopySourceIfMatch; ``if_none_match``:
        IfNoneMatch="*" on the destination. Returns the new object's ETag."""
        ...

    def multipart_copy(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, **args: Unpack[MultipartCopyArgs]
    ) -> str:
        """A copy part by part, each part conditioned on ``if_match``, the completion on ``if_none_match``;
        headers from ``source`` (a full HEAD). Leaves no destination on failure. Returns the new ETag."""
        ...

    def delete(self, bucket: str, key: str, *, if_match: str | None = None) -> None:
        """DeleteObject, conditioned on the ETag where given."""
        ...

    def delete_batch(self, bucket: str, items: list[tuple[str, str | None]]) -> dict[str, StorageError]:
        """DeleteObjects of up to 1,000 (key, ETag-or-None) in one bucket; the per-key errors (empty: all gone)."""
        ...

    def same_content(
        self, a_bucket: str, a_key: str, b_bucket: str, b_key: str, size: int, chunk: int = 16 * 1024 * 1024
    ) -> bool:
        """Whether both objects hold the same ``size`` bytes (False if either is absent)."""
        ...
