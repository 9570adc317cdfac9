"""The move protocol: relocate one object from ``src`` to ``dst`` without ever losing or clobbering bytes.

One protocol serves both directions (``Direction``): apply runs it on the planned moves, rollback on their
inverses (``dst`` -> ``src``). It is idempotent: every step first establishes the state it needs, so running it
again after a crash, a lost response or a retry finishes the job instead of repeating it.

The three steps of docs/safety.md, in two phases that a worker runs over a batch (the executor journals
between them: the ``copied`` record is durable before any delete of that batch is sent)::

    copy phase    1. copy    CopyObject (or a multipart copy) on the planned source ETag, never over an
                             existing destination: conditions the store enforces are sent, the others are
                             checked first with HEAD                                       (``_copy_attempt``)
                  2. prove   the destination holds the planned bytes: same ETag, or the store enforced the
                             source condition on one CopyObject, or a HEAD shows the source still is the
                             planned version; a copy of another version is taken back            (``_prove``)
                  -> COPIED | IDENTICAL_OURS | IDENTICAL_THEIRS                  (the source still needs deleting)
                   | ALREADY_DONE | DONE_ELSEWHERE | NOT_MOVED
                   | SOURCE_CHANGED | DEST_DIFFERS | MISSING | ARCHIVED | ERROR                          (final)
    delete phase  3. delete  the sources of proven copies, conditioned on the planned ETag (or checked with
                             HEAD first where the store ignores that)                      (``delete_sources``)
                  -> DELETED | SOURCE_CHANGED | ERROR                                                     (final)

Invariant: the source is deleted only after the destination is proven to hold the planned bytes, and only
if the source still is the planned version. A destination that exists with other bytes is never written.
Conditions are enforced by the store where the probe showed it enforces them (race-free), and checked with
HEAD otherwise (a short time-of-check window, documented in docs/safety.md).

A refused condition (412) or a missing object (404) is never taken at face value: it may answer our own
earlier request whose response was lost. ``classify`` looks at both ends instead, and ``Attempt`` and
``Task.resumed`` say whether an identical destination may be our own copy.

Each ``Kind`` is journaled as a ``Status`` of the run's direction (``final_status``, the tables below ``Kind``).

Must not: write the journal, or catch botocore errors (``storage`` translates them). Depends on the
``s3seg.store.Storage`` protocol, not on the boto3 implementation.
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
from s3seg.journal import Status
from s3seg.objects import CopyConditions, ObjectInfo
from s3seg.probe import Capabilities
from s3seg.s3errors import ARCHIVED_CODES, NOT_FOUND_CODES, PRECONDITION_CODES
from s3seg.storage import is_xml_safe
from s3seg.store import Storage

T = TypeVar("T")
X = TypeVar("X")
Y = TypeVar("Y")


class Mapper(Protocol):
    """``[fn(x) for x in items]``, run on a thread pool (the worker's); results in input order."""

    def __call__(self, fn: Callable[[X], Y], items: list[X], /) -> list[Y]: ...


class Direction(enum.StrEnum):
    """Which way a run moves objects: apply the manifest, or roll it back (the inverse moves)."""

    APPLY = "apply"
    ROLLBACK = "rollback"


class Kind(enum.StrEnum):
    """Direction-neutral result of a protocol step; ``final_status`` maps it to a journal ``Status``."""

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


# Copy-phase kinds whose source still needs deleting: the destination is proven to hold the planned bytes.
NEEDS_DELETE = frozenset({Kind.COPIED, Kind.IDENTICAL_OURS, Kind.IDENTICAL_THEIRS})

# The journal status of each final kind, per direction (DELETED, the one kind that depends on the copy phase's
# kind, is settled in ``final_status``). Rollback runs the inverse move, so its "source" is the moved object at
# the destination key and its "destination" the original key.
APPLY_STATUS = {
    Kind.ALREADY_DONE: Status.ALREADY_DONE,
    Kind.DONE_ELSEWHERE: Status.DONE_ELSEWHERE,
    Kind.NOT_MOVED: Status.FAILED_MISSING,  # apply never sends a task whose source is optional
    Kind.SOURCE_CHANGED: Status.CONFLICT_SOURCE_CHANGED,
    Kind.DEST_DIFFERS: Status.CONFLICT_DEST_DIFFERS,
    Kind.MISSING: Status.FAILED_MISSING,
    Kind.ARCHIVED: Status.SKIPPED_ARCHIVED,
    Kind.ERROR: Status.FAILED,
}
ROLLBACK_STATUS = {
    Kind.ALREADY_DONE: Status.ROLLED_BACK,
    Kind.DONE_ELSEWHERE: Status.ROLLED_BACK,
    Kind.NOT_MOVED: Status.R_NOT_MOVED,  # the moved object is not at its destination and was never moved
    Kind.SOURCE_CHANGED: Status.R_CONFLICT_DEST_MODIFIED,  # the moved object changed since the move
    Kind.DEST_DIFFERS: Status.R_CONFLICT_SOURCE_RECREATED,  # a new object sits at the original key
    Kind.MISSING: Status.R_FAILED_MISSING,
    Kind.ARCHIVED: Status.R_FAILED,
    Kind.ERROR: Status.R_FAILED,
}


def final_status(direction: Direction, kind: Kind, copied: Kind | None = None) -> Status:
    """The journal status for a task's last protocol result (``copied``: its copy-phase kind, if any).

    A deleted source after a copy phase that found someone else's identical object is a dedup (rollback must
    leave that object); any other deleted source is a move done (or, in rollback, undone).
    """
    if kind is Kind.DELETED:
        if direction == Direction.ROLLBACK:
            return Status.ROLLED_BACK
        return Status.DEDUPED if copied is Kind.IDENTICAL_THEIRS else Status.DONE
    return (ROLLBACK_STATUS if direction == Direction.ROLLBACK else APPLY_STATUS)[kind]


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
        # The fields spelled out (a generator over __slots__ cost ~8 us a task in the parent, which sends them all);
        # a round-trip test fails if a field is added and not named here.
        values = (self.id, self.src_bucket, self.src_key, self.dst_bucket, self.dst_key, self.etag, self.size,
                  self.storage_class, self.same_etags, self.keep_source, self.resumed, self.src_required)  # fmt: skip
        return (Task, values)

    def is_planned_version(self, info: ObjectInfo | None) -> bool:
        """``info`` (a HEAD of the source) is the version this task may move."""
        return info is not None and info.etag == self.etag

    def holds_planned_bytes(self, info: ObjectInfo) -> bool:
        """``info`` (a HEAD of the destination) proves the planned bytes: the size, and the planned ETag or one
        the journal recorded for our own copy (``same_etags``)."""
        return info.size == self.size and (info.etag == self.etag or info.etag in self.same_etags)


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
    delete_chunk: int = 250  # keys per DeleteObjects (at most 1,000; chunks of a batch are sent in parallel)
    backoff_base: float = 0.2
    backoff_cap: float = 20.0


# -- the predicates the protocol rests on -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a task's copy step in this run (``number`` 0: the first; item-level retries count up)."""

    number: int = 0

    @property
    def may_follow_one_of_ours(self) -> bool:
        """An earlier try of ours in this run may have been applied with its answer lost (a transport error)."""
        return self.number > 0

    def answered_by(self, err: StorageError) -> Attempt:
        """The try a refused condition answers. After a botocore retry (``err.retried``) one more request of
        ours was sent, and the refusal may answer a repeat of our own first send, applied but unanswered."""
        return Attempt(self.number + 1) if err.retried else self


def dst_may_be_ours(task: Task, attempt: Attempt) -> bool:
    """Whether an identical destination may be our own copy rather than someone else's object.

    Ours if an earlier run of this manifest may have copied (the journal says so: ``Task.resumed``), or an
    earlier try of this run may have (``Attempt.may_follow_one_of_ours``). Otherwise the object was there
    before we came: a dedup, which rollback must leave in place.
    """
    return task.resumed or attempt.may_follow_one_of_ours


def is_multipart(task: Task, opts: Options) -> bool:
    """Copied part by part (UploadPartCopy) rather than with one CopyObject."""
    return task.size > opts.multipart_threshold


def head_source_first(task: Task, opts: Options) -> bool:
    """Whether the copy step HEADs the source before copying.

    Needed where the store would copy whatever version is there now (CopySourceIfMatch ignored), or a changed
    source gets copied ("nothing touched" broken); and where the copy needs the source's headers anyway (a
    multipart copy re-sends them, ``preserve_encryption`` sends its SSE settings).
    """
    return is_multipart(task, opts) or opts.preserve_encryption or not opts.caps.copy_if_match


def copy_proves_version(task: Task, opts: Options) -> bool:
    """The store enforced CopySourceIfMatch on the copy request itself, so it copied the planned version.

    Only for a single CopyObject: the probe tests CopyObject, not UploadPartCopy.
    """
    return opts.caps.copy_if_match and not is_multipart(task, opts)


# -- item-level retries -------------------------------------------------------------------------------------------
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


# -- looking at both ends -----------------------------------------------------------------------------------------
def classify(st: Storage, task: Task, ours: bool, dst: ObjectInfo | None = None) -> Result:
    """Look at both ends and say where this task stands. Used whenever a condition was refused or is unknown.

    ``ours``: an identical destination may be our own copy (``dst_may_be_ours``). ``dst``: the destination's
    HEAD if the caller just took it (it exists); otherwise it is looked up here.

    A 412 or 404 seen after a retry may be our own earlier success whose response was lost; looking at the
    actual state, rather than at the error, is what makes that safe.
    """
    src = st.head(task.src_bucket, task.src_key)
    if dst is None:
        dst = st.head(task.dst_bucket, task.dst_key)
    if src is None:
        return _source_gone(task, ours, dst)
    if not task.is_planned_version(src):
        return Result(task.id, Kind.SOURCE_CHANGED, detail=f"source ETag {src.etag} != planned {task.etag}")
    if dst is None:
        raise _Retry("destination vanished between checks")
    if task.holds_planned_bytes(dst) or (ours and _same_bytes_by_content(st, task, dst)):
        return Result(task.id, Kind.IDENTICAL_OURS if ours else Kind.IDENTICAL_THEIRS, dst.etag)
    return Result(task.id, Kind.DEST_DIFFERS, detail=f"destination exists with ETag {dst.etag}, size {dst.size}")


def _source_gone(task: Task, ours: bool, dst: ObjectInfo | None) -> Result:
    if dst is not None and task.holds_planned_bytes(dst):
        return Result(task.id, Kind.ALREADY_DONE if ours else Kind.DONE_ELSEWHERE, dst.etag)
    detail = "source and destination both absent" if dst is None else "source absent; destination differs"
    if not task.src_required:
        return Result(task.id, Kind.NOT_MOVED, detail=f"nothing to undo: {detail}")
    return Result(task.id, Kind.MISSING, detail=detail)


def _same_bytes_by_content(st: Storage, task: Task, dst: ObjectInfo) -> bool:
    """A multipart ETag (ours from a multipart copy whose ``copied`` record a crash prevented, or a source
    uploaded in parts) cannot be compared with a plain one. Only then, and only for a destination that may be
    ours, compare the bytes themselves: proof by content, never by guess."""
    comparable = "-" not in dst.etag and "-" not in task.etag
    if comparable or dst.size != task.size:
        return False
    return st.same_content(task.src_bucket, task.src_key, task.dst_bucket, task.dst_key, task.size)


# -- the copy phase: steps 1 and 2 --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SentCopy:
    """What the store answered to a task's first copy request, sent by someone else (``copyloop``): the copy
    was made (``etag``, as answered) or it failed (``error``: the store's refusal, or a transport failure, which
    is retryable and may have been applied). ``copy_phase`` goes on from there as if it had sent it itself."""

    etag: str = ""
    error: StorageError | None = None


def copy_first(task: Task, opts: Options) -> bool:
    """The task's copy step starts with its CopyObject (no HEAD first): the request ``copyloop`` may send."""
    return opts.caps.copy_if_none_match and not head_source_first(task, opts)


def copy_args(task: Task, opts: Options) -> CopyConditions:
    """The conditions of a task's CopyObject: what ``_copy`` sends, and ``copyloop`` for ``copy_first`` tasks."""
    return CopyConditions(
        if_match=task.etag, if_none_match=opts.caps.copy_if_none_match, storage_class=task.storage_class
    )


def proven_copy(task: Task, opts: Options, etag: str) -> Result | None:
    """COPIED if a copy answered with ``etag`` is proven by that answer alone (``_prove`` sends nothing)."""
    if etag == task.etag or copy_proves_version(task, opts):
        # Same ETag: same bytes. Or the store enforced CopySourceIfMatch: it copied the planned version.
        return Result(task.id, Kind.COPIED, etag)
    return None


def copy_phase(st: Storage, task: Task, opts: Options, sent: SentCopy | None = None) -> Result:
    """Make the destination hold the source's planned bytes, or say why not. Never deletes a source.

    ``sent``: the first copy request was already sent (``copy_first`` tasks only); go on from its answer."""

    def attempt(n: int) -> Result:
        if n == 0 and sent is not None:
            return _sent_attempt(st, task, opts, sent)
        return _copy_attempt(st, task, opts, Attempt(n))

    try:
        return with_item_retries(opts, attempt)
    except (StorageError, _Retry) as exc:
        code = exc.code if isinstance(exc, StorageError) else "Retry"
        return Result(task.id, Kind.ERROR, code=code, detail=str(exc))


def _sent_attempt(st: Storage, task: Task, opts: Options, sent: SentCopy) -> Result:
    """``_copy_attempt`` from the answer to its copy request on (a ``copy_first`` task sends nothing before)."""
    if not copy_first(task, opts):
        raise ValueError(f"move {task.id}: its copy step does not start with the copy request")
    if sent.error is not None:
        return _copy_refused(st, task, Attempt(0), sent.error)
    return _prove(st, task, opts, sent.etag)


def _copy_attempt(st: Storage, task: Task, opts: Options, attempt: Attempt) -> Result:
    """One try: check what the store will not enforce, copy (step 1), prove (step 2)."""
    ours = dst_may_be_ours(task, attempt)
    if not opts.caps.copy_if_none_match:
        # The store would silently overwrite: check for an existing destination ourselves first.
        dst = st.head(task.dst_bucket, task.dst_key)
        if dst is not None:
            return classify(st, task, ours, dst)
    source: ObjectInfo | None = None
    if head_source_first(task, opts):
        source = st.head(task.src_bucket, task.src_key, full=is_multipart(task, opts))
        if not task.is_planned_version(source):
            return classify(st, task, ours)
    try:
        etag = _copy(st, task, opts, source)
    except StorageError as err:
        return _copy_refused(st, task, attempt, err)
    crash_point("after-copy-request")  # the copy exists; the worker dies before anyone hears of it
    return _prove(st, task, opts, etag)


def _copy(st: Storage, task: Task, opts: Options, source: ObjectInfo | None) -> str:
    """Step 1: the copy request, with every condition the store enforces. Returns the destination's ETag."""
    caps = opts.caps
    sse = _sse_args(source) if opts.preserve_encryption and source is not None else None
    if is_multipart(task, opts):
        assert source is not None  # head_source_first: a multipart copy always HEADs (full) first
        return st.multipart_copy(
            task.src_bucket, task.src_key, task.dst_bucket, task.dst_key,
            source=source, if_match=task.etag, if_none_match=caps.copy_if_none_match,
            part_size=opts.multipart_chunksize, sse=sse,
        )  # fmt: skip
    return st.copy(task.src_bucket, task.src_key, task.dst_bucket, task.dst_key, **copy_args(task, opts), sse=sse)


def _copy_refused(st: Storage, task: Task, attempt: Attempt, err: StorageError) -> Result:
    """The copy request failed: archived, a refused condition or a missing source (look), or raise."""
    if err.code in ARCHIVED_CODES:
        return Result(task.id, Kind.ARCHIVED, code=err.code, detail="archived storage class: restore it first")
    if err.code in PRECONDITION_CODES or err.code in NOT_FOUND_CODES:
        # After a botocore retry, an identical destination is our own first copy (its answer was lost), not
        # one that existed before: counting it "theirs" would make rollback keep it (a duplicate).
        return classify(st, task, dst_may_be_ours(task, attempt.answered_by(err)))
    raise err


def _prove(st: Storage, task: Task, opts: Options, etag: str) -> Result:
    """Step 2: prove the copy holds the planned version; if it holds another one, take it back."""
    proven = proven_copy(task, opts, etag)
    if proven is not None:
        return proven
    # Multipart/KMS ETags differ by nature, or the store ignores CopySourceIfMatch: the copy read the source
    # after our HEAD said it was the planned version; if it still is now, the copy read that version too.
    if task.is_planned_version(st.head(task.src_bucket, task.src_key)):
        return Result(task.id, Kind.COPIED, etag)
    if opts.caps.delete_if_match:
        # We copied some other version of the source. Take back exactly our own copy (by its ETag); where the
        # store ignores IfMatch, a delete could remove a writer's newer object, so the copy stays (a duplicate).
        with contextlib.suppress(StorageError):
            st.delete(task.dst_bucket, task.dst_key, if_match=etag)
    return Result(task.id, Kind.SOURCE_CHANGED, detail="source changed during the copy")


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


# -- the delete phase: step 3 -------------------------------------------------------------------------------------
def delete_sources(
    st: Storage,
    items: list[tuple[Task, Result]],
    opts: Options,
    run: Mapper,
) -> list[Result]:
    """Delete the sources of proven copies (their copy-phase results); ``run`` maps a function over a list on
    the thread pool.

    A ``keep_source`` task is reported DELETED without a request. A source whose bytes would then live only in
    someone else's identical object (IDENTICAL_THEIRS, a dedup) is deleted only after one more look at that
    object. The rest go the cheapest race-free way the store offers (``_delete_proven``).
    """
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
    # Someone else's identical object is all that will hold these bytes once the source is gone, and it is not
    # ours to keep: look again right before deleting (it may have been removed since the copy phase).
    if theirs:
        for task, kept in zip(theirs, run(lambda t: _recheck_theirs(st, t, opts), theirs), strict=True):
            if kept is None:
                todo.append(task)
            else:
                results.append(kept)
    if todo:
        results.extend(_delete_proven(st, todo, opts, run))
    return results


def _delete_proven(st: Storage, todo: list[Task], opts: Options, run: Mapper) -> list[Result]:
    """DeleteObjects with per-key ETags (``opts.delete_chunk`` keys a request), else one DeleteObject with
    IfMatch each, else (client-checked) a HEAD of each source, then DeleteObjects of those unchanged."""
    caps = opts.caps
    if caps.batch_delete_etag:
        return _delete_batched(st, todo, opts, run, with_etag=True)
    if caps.delete_if_match:
        return run(lambda t: _delete_single(st, t, opts, checked=False), todo)
    checked = run(lambda t: _check_source_unchanged(st, t, opts), todo)
    by_id = {t.id: t for t in todo}
    still = [by_id[r.id] for r in checked if r.kind is Kind.DELETED]
    results = [r for r in checked if r.kind is not Kind.DELETED]
    results.extend(_delete_batched(st, still, opts, run, with_etag=False))
    return results


def _recheck_theirs(st: Storage, task: Task, opts: Options) -> Result | None:
    """None if the destination still holds the planned bytes; else a result that keeps the source."""
    try:
        dst = with_item_retries(opts, lambda _a: st.head(task.dst_bucket, task.dst_key))
    except StorageError as err:
        return Result(task.id, Kind.ERROR, code=err.code, detail=f"source kept: {err}")
    if dst is not None and task.holds_planned_bytes(dst):
        return None
    return Result(
        task.id,
        Kind.ERROR,
        code="DestinationChanged",
        detail="the identical object found at the destination changed or vanished before the source delete: "
        "source kept; re-run to move it",
    )


def _check_source_unchanged(st: Storage, task: Task, opts: Options) -> Result:
    """The client-side check before an unconditioned delete: DELETED means "may delete" (absent counts as
    already deleted); a changed source is kept."""
    try:
        src = with_item_retries(opts, lambda _a: st.head(task.src_bucket, task.src_key))
    except StorageError as err:
        return Result(task.id, Kind.ERROR, code=err.code, detail=str(err))
    if src is not None and not task.is_planned_version(src):
        return _changed_after_copy(task)
    return Result(task.id, Kind.DELETED)


def _changed_after_copy(task: Task) -> Result:
    return Result(
        task.id,
        Kind.SOURCE_CHANGED,
        detail="source overwritten after the copy: destination holds the planned version, source the new one",
    )


def _delete_single(st: Storage, task: Task, opts: Options, *, checked: bool) -> Result:
    """One DeleteObject, with IfMatch where the store enforces it. ``checked``: the source was HEAD-checked
    already (client-checked mode); otherwise, on a store that ignores IfMatch, it is checked here first."""
    if_match = task.etag if opts.caps.delete_if_match else None
    if if_match is None and not checked:
        may = _check_source_unchanged(st, task, opts)
        if may.kind is not Kind.DELETED:
            return may

    def attempt(_a: int) -> Result:
        try:
            st.delete(task.src_bucket, task.src_key, if_match=if_match)
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
    """DeleteObjects in chunks of ``opts.delete_chunk`` keys (at most 1,000), the chunks in parallel on the
    thread pool; ``with_etag``: each key conditioned on its planned ETag (else the sources were HEAD-checked).

    Parallel because a store deletes the keys of one DeleteObjects one after another (SeaweedFS: ~0.3 ms per
    key): a 500-key request holds its worker for a good fraction of a second, during which that process
    copies nothing. Keys XML cannot carry, and keys the batch could not settle, are deleted one by one.
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
        results.extend(run(lambda t: _delete_single(st, t, opts, checked=not with_etag), singles))
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
