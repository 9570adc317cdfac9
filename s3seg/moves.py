"""The move protocol: relocate one object from ``src`` to ``dst`` without ever losing or clobbering bytes.

One protocol serves both directions: apply runs it on the planned moves, rollback on their inverses
(``dst`` -> ``src``). It is idempotent: every step first establishes the state it needs, so running it again
after a crash, a lost response or a retry finishes the job instead of repeating it.

The two phases, run by a worker over a batch (the executor journals between them)::

    copy phase    -> COPIED | IDENTICAL_OURS | IDENTICAL_THEIRS     (the source still needs deleting)
                   | ALREADY_DONE | DONE_ELSEWHERE | NOT_MOVED
                   | SOURCE_CHANGED | DEST_DIFFERS | MISSING | ARCHIVED | ERROR                   (final)
    delete phase  -> DELETED | SOURCE_CHANGED | ERROR                                               (final)

Invariant: the source is deleted only after the destination is proven to hold the planned bytes, and only
if the source still is the planned version. A destination that exists with other bytes is never written.
Conditions are enforced by the store where the probe showed it enforces them (race-free), and checked with
HEAD otherwise (a short time-of-check window, documented in docs/safety.md).

Must not: touch the journal, or catch botocore errors (``storage`` translates them).
"""

from __future__ import annotations

import contextlib
import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from s3seg.crashpoints import crash_point
from s3seg.errors import StorageError
from s3seg.objects import ObjectInfo
from s3seg.probe import Capabilities
from s3seg.s3errors import ARCHIVED_CODES, NOT_FOUND_CODES, PRECONDITION_CODES
from s3seg.storage import Storage, is_xml_safe

T = TypeVar("T")
X = TypeVar("X")
Y = TypeVar("Y")


class Mapper(Protocol):
    """``[fn(x) for x in items]``, run on a thread pool (the worker's); results in input order."""

    def __call__(self, fn: Callable[[X], Y], items: list[X], /) -> list[Y]: ...


class Kind(enum.StrEnum):
    """Direction-neutral result of a protocol step; the executor maps it to a journal ``Status``."""

    COPIED = "copied"  # we copied; destination proven to hold the planned bytes
    IDENTICAL_OURS = "identical-ours"  # destination already identical, from an earlier attempt of ours
    IDENTICAL_THEIRS = "identical-theirs"  # destination was already identical before we came
    ALREADY_DONE = "already-done"  # source gone, destination holds the planned bytes: our own earlier move
    DONE_ELSEWHERE = "done-elsewhere"  # source gone, destination holds the planned bytes: not our doing
    NOT_MOVED = "not-moved"  # source gone, and it was never ours to require (see ``Task.src_required``)
    SOURCE_CHANGED = "source-changed"  # source is not the planned version: nothing touched
    DEST_DIFFERS = "dest-differs"  # destination holds other bytes: neither touched
    MISSING = "missing"  # source gone and destination absent (or different)
    ARCHIVED = "archived"  # archived storage class: restore first
    ERROR = "error"  # an S3 error that retries did not cure
    DELETED = "deleted"  # delete phase: source deleted (or kept, for keep_source)


NEEDS_DELETE = frozenset({Kind.COPIED, Kind.IDENTICAL_OURS, Kind.IDENTICAL_THEIRS})


@dataclass(frozen=True, slots=True)
class Task:
    """One object relocation, in either direction. Small and picklable: this is what crosses processes."""

    id: int
    src_bucket: str
    src_key: str
    dst_bucket: str
    dst_key: str
    etag: str  # the version of the source we are allowed to move
    size: int
    storage_class: str = "STANDARD"
    same_etags: tuple[str, ...] = ()  # other destination ETags that prove identical bytes
    keep_source: bool = False  # do not delete the source (rollback of a deduplicated move)
    resumed: bool = False  # an earlier run of this manifest may have copied: an identical destination is ours
    src_required: bool = True  # False: a missing source means "nothing to undo" (rollback of a move never made)

    def __reduce__(self) -> tuple[type[Task], tuple[Any, ...]]:
        # Pickled by value as a plain tuple: batches cross process boundaries, and the default protocol for
        # slotted dataclasses (a Python-level __setstate__ walking fields()) cost ~10% of a worker's CPU.
        return (Task, tuple(getattr(self, name) for name in self.__slots__))


@dataclass(frozen=True, slots=True)
class Result:
    id: int
    kind: Kind
    dst_etag: str = ""  # the destination's ETag after a copy (when known)
    code: str = ""  # S3 error code for ERROR / conflicts found by a refused condition
    detail: str = ""

    def __reduce__(self) -> tuple[type[Result], tuple[Any, ...]]:
        return (Result, (self.id, self.kind, self.dst_etag, self.code, self.detail))


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """How the protocol runs in this store, the same for every task of a run."""

    caps: Capabilities
    multipart_threshold: int = 5 * 1024**3
    multipart_chunksize: int = 512 * 1024**2
    preserve_encryption: bool = False
    item_retries: int = 5
    delete_chunk: int = 250  # keys per DeleteObjects (chunks of a batch are sent in parallel)
    backoff_base: float = 0.2
    backoff_cap: float = 20.0


# Checks that end item-level retries early (a worker whose parent abandoned the run); ``worker`` registers one.
retry_vetoes: list[Callable[[], bool]] = []


class _Retry(Exception):
    """State changed under us in a way a fresh attempt resolves (e.g. a racing writer came and went)."""


def with_item_retries(opts: Options, fn: Callable[[int], T]) -> T:
    """Run ``fn(attempt)``, retrying retryable storage errors with capped exponential backoff and full jitter.

    This sits above botocore's own retries: it outlasts a throttling storm that drains botocore's retry quota.
    ``fn`` must be idempotent; the protocol's steps are.
    """
    attempt = 0
    while True:
        try:
            return fn(attempt)
        except (StorageError, _Retry) as exc:
            retryable = isinstance(exc, _Retry) or exc.retryable
            if not retryable or attempt >= opts.item_retries or any(veto() for veto in retry_vetoes):
                raise
        time.sleep(random.uniform(0, min(opts.backoff_cap, opts.backoff_base * 2**attempt)))
        attempt += 1


def dst_may_be_ours(task: Task, attempt: int) -> bool:
    """Whether an identical destination may be our own copy rather than someone else's object.

    Ours if an earlier run of this manifest may have copied (the journal says so: ``Task.resumed``), or an
    earlier attempt of this run may have (``attempt`` > 0: its answer may have been lost). Otherwise the object
    was there before we came: a dedup, which rollback must leave in place.
    """
    return task.resumed or attempt > 0


def attempt_seen(err: StorageError, attempt: int) -> int:
    """The attempt number a refused condition answers: after a botocore retry, one more of ours was sent."""
    return attempt + 1 if err.retried else attempt


def _identical(task: Task, info: ObjectInfo) -> bool:
    return info.size == task.size and (info.etag == task.etag or info.etag in task.same_etags)


def _sse_args(info: ObjectInfo) -> dict[str, Any]:
    if info.sse == "aws:kms" or info.sse == "aws:kms:dsse":
        args: dict[str, Any] = {"ServerSideEncryption": info.sse}
        if info.sse_kms_key_id:
            args["SSEKMSKeyId"] = info.sse_kms_key_id
        if info.bucket_key_enabled is not None:
            args["BucketKeyEnabled"] = info.bucket_key_enabled
        return args
    if info.sse:
        return {"ServerSideEncryption": info.sse}
    return {}


def classify(st: Storage, task: Task, attempt: int, dst: ObjectInfo | None = None, *, have_dst: bool = False) -> Result:
    """Look at both ends and say where this task stands. Used whenever a condition was refused or is unknown.

    A 412 or 404 seen after a retry may be our own earlier success whose response was lost; looking at the
    actual state, rather than at the error, is what makes that safe.
    """
    src = st.head(task.src_bucket, task.src_key)
    if not have_dst:
        dst = st.head(task.dst_bucket, task.dst_key)
    ours = dst_may_be_ours(task, attempt)
    if src is None:
        if dst is not None and _identical(task, dst):
            return Result(task.id, Kind.ALREADY_DONE if ours else Kind.DONE_ELSEWHERE, dst.etag)
        detail = "source and destination both absent" if dst is None else "source absent; destination differs"
        if not task.src_required:
            return Result(task.id, Kind.NOT_MOVED, detail=f"nothing to undo: {detail}")
        return Result(task.id, Kind.MISSING, detail=detail)
    if src.etag != task.etag:
        return Result(task.id, Kind.SOURCE_CHANGED, detail=f"source ETag {src.etag} != planned {task.etag}")
    if dst is None:
        raise _Retry("destination vanished between checks")
    if _identical(task, dst):
        return Result(task.id, Kind.IDENTICAL_OURS if ours else Kind.IDENTICAL_THEIRS, dst.etag)
    # A multipart ETag (ours from a multipart copy whose `copied` record a crash prevented, or a source uploaded
    # in parts) cannot be compared with a plain one. Only in this rare resumed case, compare the bytes
    # themselves: proof by content, never by guess.
    comparable = "-" not in dst.etag and "-" not in task.etag
    if (
        ours
        and dst.size == task.size
        and not comparable
        and st.same_content(task.src_bucket, task.src_key, task.dst_bucket, task.dst_key, task.size)
    ):
        return Result(task.id, Kind.IDENTICAL_OURS, dst.etag)
    return Result(task.id, Kind.DEST_DIFFERS, detail=f"destination exists with ETag {dst.etag}, size {dst.size}")


def copy_phase(st: Storage, task: Task, opts: Options) -> Result:
    """Make the destination hold the source's planned bytes, or say why not. Never deletes a source."""
    try:
        return with_item_retries(opts, lambda attempt: _copy_attempt(st, task, opts, attempt))
    except (StorageError, _Retry) as exc:
        code = exc.code if isinstance(exc, StorageError) else "Retry"
        return Result(task.id, Kind.ERROR, code=code, detail=str(exc))


def _copy_attempt(st: Storage, task: Task, opts: Options, attempt: int) -> Result:
    caps = opts.caps
    if not caps.copy_if_none_match:
        # The store would silently overwrite: check for an existing destination ourselves first.
        dst = st.head(task.dst_bucket, task.dst_key)
        if dst is not None:
            return classify(st, task, attempt, dst, have_dst=True)
    multipart = task.size > opts.multipart_threshold
    sse: dict[str, Any] | None = None
    source: ObjectInfo | None = None
    if multipart or opts.preserve_encryption or not caps.copy_if_match:
        # The store would copy whatever version is there now (CopySourceIfMatch ignored): check the source is
        # still the planned version first, or a changed source gets copied ("nothing touched" broken).
        source = st.head(task.src_bucket, task.src_key, full=multipart)  # a multipart copy re-sends its headers
        if source is None or source.etag != task.etag:
            return classify(st, task, attempt)
        sse = _sse_args(source) if opts.preserve_encryption else None
    try:
        if multipart:
            assert source is not None
            etag = st.multipart_copy(
                task.src_bucket, task.src_key, task.dst_bucket, task.dst_key,
                source=source, if_match=task.etag, if_none_match=caps.copy_if_none_match,
                part_size=opts.multipart_chunksize, sse=sse,
            )  # fmt: skip
        else:
            etag = st.copy(
                task.src_bucket, task.src_key, task.dst_bucket, task.dst_key,
                if_match=task.etag, if_none_match=caps.copy_if_none_match,
                storage_class=task.storage_class, sse=sse,
            )  # fmt: skip
    except StorageError as err:
        if err.code in ARCHIVED_CODES:
            return Result(task.id, Kind.ARCHIVED, code=err.code, detail="archived storage class: restore it first")
        if err.code in PRECONDITION_CODES or err.code in NOT_FOUND_CODES:
            # After a botocore retry, an identical destination is our own first copy (its answer was lost),
            # not one that existed before: counting it "theirs" would make rollback keep it (a duplicate).
            return classify(st, task, attempt_seen(err, attempt))
        raise
    crash_point("after-copy-request")  # the copy exists; the worker dies before anyone hears of it
    if etag == task.etag or (caps.copy_if_match and not multipart):
        # Same ETag: same bytes. Or the store enforced CopySourceIfMatch: it copied the planned version.
        return Result(task.id, Kind.COPIED, etag)
    # Multipart/KMS ETags differ by nature, or the store ignores CopySourceIfMatch: prove the source is still
    # the planned version (the copy read it between our checks).
    now = st.head(task.src_bucket, task.src_key)
    if now is not None and now.etag == task.etag:
        return Result(task.id, Kind.COPIED, etag)
    if caps.delete_if_match:
        # We copied some other version of the source. Take back exactly our own copy (by its ETag).
        with contextlib.suppress(StorageError):
            st.delete(task.dst_bucket, task.dst_key, if_match=etag)
    return Result(task.id, Kind.SOURCE_CHANGED, detail="source changed during the copy")


def delete_sources(
    st: Storage,
    items: list[tuple[Task, Result]],
    opts: Options,
    run: Mapper,
) -> list[Result]:
    """Delete the sources of proven copies; ``run`` maps a function over a list on the thread pool.

    Uses the cheapest race-free way the store offers: DeleteObjects with per-key ETags (one request per
    ``opts.delete_chunk`` keys), else single DeleteObject with IfMatch, else HEAD-then-DeleteObjects
    (client-checked). A source whose bytes would then live only in someone else's identical object (a dedup)
    is deleted only after one more look at that object.
    """
    caps = opts.caps
    results: list[Result] = []
    todo: list[Task] = []
    theirs: list[Task] = []
    for task, res in items:
        if task.keep_source:
            results.append(Result(task.id, Kind.DELETED, res.dst_etag, detail="source kept"))
        elif res.kind is Kind.IDENTICAL_THEIRS:
            theirs.append(task)
        else:
            todo.append(task)
    if theirs:
        # Someone else's identical object is all that will hold these bytes once the source is gone, and it is
        # not ours to keep: look again right before deleting (it may have been removed since the copy phase).
        for task, kept in zip(theirs, run(lambda t: _recheck_theirs(st, t, opts), theirs), strict=True):
            if kept is None:
                todo.append(task)
            else:
                results.append(kept)
    if not todo:
        return results
    if caps.batch_delete_etag:
        results.extend(_delete_batched(st, todo, opts, run, with_etag=True))
    elif caps.delete_if_match:
        results.extend(run(lambda t: _delete_single(st, t, opts), todo))
    else:
        checked = run(lambda t: _check_source_unchanged(st, t, opts), todo)
        by_id = {t.id: t for t in todo}
        still = [by_id[r.id] for r in checked if r.kind is Kind.DELETED]
        results.extend(r for r in checked if r.kind is not Kind.DELETED)
        results.extend(_delete_batched(st, still, opts, run, with_etag=False))
    return results


def _recheck_theirs(st: Storage, task: Task, opts: Options) -> Result | None:
    """None if the destination still holds the planned bytes; else a result that keeps the source."""
    try:
        dst = with_item_retries(opts, lambda _a: st.head(task.dst_bucket, task.dst_key))
    except StorageError as err:
        return Result(task.id, Kind.ERROR, code=err.code, detail=f"source kept: {err}")
    if dst is not None and _identical(task, dst):
        return None
    return Result(
        task.id,
        Kind.ERROR,
        code="DestinationChanged",
        detail="the identical object found at the destination changed or vanished before the source delete: "
        "source kept; re-run to move it",
    )


def _check_source_unchanged(st: Storage, task: Task, opts: Options) -> Result:
    try:
        src = with_item_retries(opts, lambda _a: st.head(task.src_bucket, task.src_key))
    except StorageError as err:
        return Result(task.id, Kind.ERROR, code=err.code, detail=str(err))
    if src is not None and src.etag != task.etag:
        return _changed_after_copy(task)
    return Result(task.id, Kind.DELETED)  # "may delete"; absent counts as already deleted


def _changed_after_copy(task: Task) -> Result:
    return Result(
        task.id,
        Kind.SOURCE_CHANGED,
        detail="source overwritten after the copy: destination holds the planned version, source the new one",
    )


def _delete_single(st: Storage, task: Task, opts: Options) -> Result:
    def attempt(_a: int) -> Result:
        try:
            st.delete(task.src_bucket, task.src_key, if_match=task.etag if opts.caps.delete_if_match else None)
        except StorageError as err:
            if err.code in NOT_FOUND_CODES:
                return Result(task.id, Kind.DELETED)  # gone already (our earlier attempt, or IfMatch on absent)
            if err.code in PRECONDITION_CODES:
                src = st.head(task.src_bucket, task.src_key)
                return Result(task.id, Kind.DELETED) if src is None else _changed_after_copy(task)
            raise
        crash_point("after-delete-request")
        return Result(task.id, Kind.DELETED)

    try:
        return with_item_retries(opts, attempt)
    except StorageError as err:
        return Result(task.id, Kind.ERROR, code=err.code, detail=str(err))


def _delete_batched(st: Storage, tasks: list[Task], opts: Options, run: Mapper, *, with_etag: bool) -> list[Result]:
    """DeleteObjects in chunks of ``opts.delete_chunk`` keys, the chunks in parallel on the thread pool.

    Parallel because a store deletes the keys of one DeleteObjects one after another (SeaweedFS: ~0.3 ms per
    key): a 500-key request holds its worker for a good fraction of a second, during which that process
    copies nothing. Keys the batch could not settle are retried one by one.
    """
    singles: list[Task] = []
    chunks: list[list[Task]] = []
    by_bucket: dict[str, list[Task]] = {}
    for t in tasks:
        if is_xml_safe(t.src_key):
            by_bucket.setdefault(t.src_bucket, []).append(t)
        else:
            singles.append(t)  # control characters can break the XML body of DeleteObjects
    size = max(1, min(opts.delete_chunk, 1000))
    for group in by_bucket.values():
        chunks.extend(group[start : start + size] for start in range(0, len(group), size))
    results: list[Result] = []
    for settled, again in run(lambda chunk: _delete_chunk(st, chunk, with_etag), chunks):
        results.extend(settled)
        singles.extend(again)
    if singles:
        results.extend(run(lambda t: _delete_single(st, t, opts), singles))
    return results


def _delete_chunk(st: Storage, chunk: list[Task], with_etag: bool) -> tuple[list[Result], list[Task]]:
    """One DeleteObjects: (settled results, tasks to retry alone). Same bucket for every task."""
    errors = st.delete_batch(chunk[0].src_bucket, [(t.src_key, t.etag if with_etag else None) for t in chunk])
    crash_point("after-delete-request")
    results: list[Result] = []
    again: list[Task] = []
    for t in chunk:
        err = errors.get(t.src_key)
        if err is None or err.code in NOT_FOUND_CODES:
            # NoSuchKey: already gone (our own earlier delete whose answer was lost, then retried: SeaweedFS
            # reports an ETag-conditioned delete of an absent key this way).
            results.append(Result(t.id, Kind.DELETED))
        elif err.code in PRECONDITION_CODES:
            try:
                src = st.head(t.src_bucket, t.src_key)
            except StorageError:
                again.append(t)  # cannot tell now: the single delete re-checks with its own retries
                continue
            results.append(Result(t.id, Kind.DELETED) if src is None else _changed_after_copy(t))
        elif err.retryable:
            again.append(t)  # retry alone, with the item-level backoff
        else:
            results.append(Result(t.id, Kind.ERROR, code=err.code, detail=str(err)))
    return results, again
