"""An in-memory store behind the ``s3seg.store.Storage`` protocol, strict where S3 is strict.

It enforces each conditional header exactly when its ``Capabilities`` flag says the store does (and ignores it
otherwise, as moto and rclone do), so one fake plays AWS, SeaweedFS, moto and rclone:

- ``copy``: ``if_match`` (CopySourceIfMatch: 412 on another version, 404 on a missing source) under
  ``copy_if_match``; ``if_none_match`` (IfNoneMatch="*": 412 on an existing destination) under
  ``copy_if_none_match``; an archived source answers ``InvalidObjectState`` (S3-FACTS "Copy");
- ``multipart_copy``: every part conditioned like ``copy``, the completion like ``if_none_match``; the ETag is a
  multipart one (``"<md5>-<parts>"``), metadata comes from the ``source`` HEAD passed in;
- ``delete``: IfMatch under ``delete_if_match`` (412 mismatch, 404 absent, as AWS and moto do); a delete of a
  missing key without a condition succeeds;
- ``delete_batch``: at most 1,000 keys, one bucket; a key with XML control characters breaks the request
  (``MalformedXML``: the protocol must send those alone); per-key ETags under ``batch_delete_etag``; a missing
  key is reported as deleted (S3-FACTS "Delete"); ``deny_delete`` keys answer a per-key AccessDenied.

Faults, each one-shot and scripted per operation name (``copy``, ``multipart_copy``, ``delete``,
``delete_batch``, ``head``):

- ``fail_before(op)``: the request never arrived (a retryable transport error, nothing applied);
- ``lose_answer(op)``: applied, answer lost, botocore gave up (a retryable transport error);
- ``lose_answer(op, retried=True)``: applied, answer lost, botocore sent it again: the answer is that of the
  repeat, and an error from it carries ``retried`` (the refusal may answer our own applied first send);
- ``before(op, fn)`` / ``after(op, fn)``: run ``fn`` (another writer, say) right before or after the request.

``calls`` records every request as ``(op, bucket, key)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from s3seg.errors import StorageError
from s3seg.objects import ObjectInfo
from s3seg.probe import Capabilities
from s3seg.storage import is_xml_safe

ARCHIVED = frozenset({"GLACIER", "DEEP_ARCHIVE"})


def etag_of(body: bytes) -> str:
    return f'"{hashlib.md5(body).hexdigest()}"'


@dataclass
class Obj:
    body: bytes
    etag: str
    storage_class: str = "STANDARD"
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    kind: str  # "before" (not applied), "lost" (applied, answer lost), "hook-before", "hook-after"
    retried: bool = False
    fn: Callable[[], None] | None = None


class MemStore:
    def __init__(self, caps: Capabilities) -> None:
        self.caps = caps
        self.objects: dict[tuple[str, str], Obj] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.deny_delete: set[tuple[str, str]] = set()
        self._faults: dict[str, list[_Fault]] = {}

    # -- setting up ---------------------------------------------------------------------------------------------
    def put(self, bucket: str, key: str, body: bytes, *, storage_class: str = "STANDARD") -> str:
        obj = Obj(body, etag_of(body), storage_class, {"origin": "test"})
        self.objects[(bucket, key)] = obj
        return obj.etag

    def body(self, bucket: str, key: str) -> bytes | None:
        obj = self.objects.get((bucket, key))
        return None if obj is None else obj.body

    def snapshot(self) -> dict[tuple[str, str], bytes]:
        return {k: o.body for k, o in self.objects.items()}

    def ops(self) -> list[str]:
        return [op for op, _, _ in self.calls]

    def fail_before(self, op: str) -> None:
        self._faults.setdefault(op, []).append(_Fault("before"))

    def lose_answer(self, op: str, *, retried: bool = False) -> None:
        self._faults.setdefault(op, []).append(_Fault("lost", retried))

    def before(self, op: str, fn: Callable[[], None]) -> None:
        self._faults.setdefault(op, []).append(_Fault("hook-before", fn=fn))

    def after(self, op: str, fn: Callable[[], None]) -> None:
        self._faults.setdefault(op, []).append(_Fault("hook-after", fn=fn))

    # -- the request envelope: faults around one applied operation ---------------------------------------------
    def _send(self, op: str, bucket: str, key: str, apply: Callable[[], Any]) -> Any:
        self.calls.append((op, bucket, key))
        pending = self._faults.get(op) or []
        fault = pending.pop(0) if pending else None
        if fault is not None and fault.kind == "hook-before" and fault.fn is not None:
            fault.fn()
        if fault is not None and fault.kind == "before":
            raise StorageError(op, bucket, key, "ConnectionClosedError", "never arrived", retryable=True)
        if fault is None or fault.kind not in ("lost",):
            result = apply()
            if fault is not None and fault.kind == "hook-after" and fault.fn is not None:
                fault.fn()
            return result
        if not fault.retried:
            try:
                apply()
            except StorageError:
                raise  # refused: nothing applied, the answer (an error) arrives normally
            raise StorageError(op, bucket, key, "ConnectionClosedError", "answer lost", retryable=True)
        try:
            apply()  # the first send: applied, its answer lost
        except StorageError:
            raise  # botocore does not retry a refusal: this answer arrives
        try:
            return apply()  # botocore's repeat of the same request
        except StorageError as err:
            err.retried = True
            raise

    # -- the Storage protocol -----------------------------------------------------------------------------------
    def head(self, bucket: str, key: str, *, full: bool = False) -> ObjectInfo | None:
        def apply() -> ObjectInfo | None:
            obj = self.objects.get((bucket, key))
            if obj is None:
                return None
            raw = {"ContentLength": len(obj.body)} if full else None
            return ObjectInfo(
                etag=obj.etag, size=len(obj.body), storage_class=obj.storage_class, metadata=dict(obj.metadata), raw=raw
            )

        result: ObjectInfo | None = self._send("head", bucket, key, apply)
        return result

    def _source(self, op: str, bucket: str, key: str, if_match: str | None) -> Obj:
        obj = self.objects.get((bucket, key))
        if obj is None:
            raise StorageError(op, bucket, key, "NoSuchKey", status=404)
        if self.caps.copy_if_match and if_match is not None and obj.etag != if_match:
            raise StorageError(op, bucket, key, "PreconditionFailed", "CopySourceIfMatch", status=412)
        if obj.storage_class in ARCHIVED:
            raise StorageError(op, bucket, key, "InvalidObjectState", status=403)
        return obj

    def _no_overwrite(self, op: str, bucket: str, key: str, if_none_match: bool) -> None:
        if self.caps.copy_if_none_match and if_none_match and (bucket, key) in self.objects:
            raise StorageError(op, bucket, key, "PreconditionFailed", "IfNoneMatch", status=412)

    def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        if_match: str | None,
        if_none_match: bool,
        storage_class: str,
        sse: dict[str, Any] | None = None,
    ) -> str:
        def apply() -> str:
            src = self._source("CopyObject", src_bucket, src_key, if_match)
            self._no_overwrite("CopyObject", dst_bucket, dst_key, if_none_match)
            new = Obj(src.body, src.etag, storage_class or "STANDARD", dict(src.metadata))
            self.objects[(dst_bucket, dst_key)] = new
            return new.etag

        etag: str = self._send("copy", dst_bucket, dst_key, apply)
        return etag

    def multipart_copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        source: ObjectInfo,
        if_match: str | None,
        if_none_match: bool,
        part_size: int,
        sse: dict[str, Any] | None = None,
    ) -> str:
        assert source.raw is not None, "a multipart copy needs the source's full HEAD (its headers are re-sent)"

        def apply() -> str:
            src = self._source("UploadPartCopy", src_bucket, src_key, if_match)
            parts = max(1, -(-source.size // part_size))
            if len(src.body) != source.size:
                raise StorageError("UploadPartCopy", src_bucket, src_key, "InvalidRange", status=416)
            self._no_overwrite("CompleteMultipartUpload", dst_bucket, dst_key, if_none_match)
            digest = hashlib.md5(src.body).hexdigest()
            new = Obj(src.body, f'"{digest}-{parts}"', source.storage_class, dict(source.metadata or {}))
            self.objects[(dst_bucket, dst_key)] = new
            return new.etag

        etag: str = self._send("multipart_copy", dst_bucket, dst_key, apply)
        return etag

    def delete(self, bucket: str, key: str, *, if_match: str | None = None) -> None:
        def apply() -> None:
            obj = self.objects.get((bucket, key))
            if (bucket, key) in self.deny_delete:
                raise StorageError("DeleteObject", bucket, key, "AccessDenied", status=403)
            if self.caps.delete_if_match and if_match is not None:
                if obj is None:
                    raise StorageError("DeleteObject", bucket, key, "NoSuchKey", status=404)
                if obj.etag != if_match:
                    raise StorageError("DeleteObject", bucket, key, "PreconditionFailed", status=412)
            self.objects.pop((bucket, key), None)

        self._send("delete", bucket, key, apply)

    def delete_batch(self, bucket: str, items: list[tuple[str, str | None]]) -> dict[str, StorageError]:
        if not 0 < len(items) <= 1000:
            raise AssertionError(f"DeleteObjects takes 1 to 1,000 keys, not {len(items)}")

        def apply() -> dict[str, StorageError]:
            if not all(is_xml_safe(key) for key, _ in items):
                raise StorageError("DeleteObjects", bucket, items[0][0], "MalformedXML", status=400)
            errors: dict[str, StorageError] = {}
            for key, etag in items:
                obj = self.objects.get((bucket, key))
                if (bucket, key) in self.deny_delete:
                    errors[key] = StorageError("DeleteObjects", bucket, key, "AccessDenied")
                elif self.caps.batch_delete_etag and etag is not None and obj is not None and obj.etag != etag:
                    errors[key] = StorageError("DeleteObjects", bucket, key, "PreconditionFailed")
                else:
                    self.objects.pop((bucket, key), None)  # a missing key is reported as deleted
            return errors

        try:
            errors: dict[str, StorageError] = self._send("delete_batch", bucket, items[0][0], apply)
        except StorageError as err:
            return {key: err for key, _ in items}  # as storage.Storage: a failed request fails every key
        return errors

    def same_content(
        self, a_bucket: str, a_key: str, b_bucket: str, b_key: str, size: int, chunk: int = 16 * 1024 * 1024
    ) -> bool:
        self.calls.append(("same_content", b_bucket, b_key))
        a, b = self.objects.get((a_bucket, a_key)), self.objects.get((b_bucket, b_key))
        return a is not None and b is not None and a.body == b.body and len(a.body) == size
