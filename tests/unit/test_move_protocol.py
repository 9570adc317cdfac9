"""The move protocol (``s3seg.moves``) against an in-memory store (``memstore.MemStore``), table-driven.

Every combination of the four conditional headers (each server-enforced or client-checked) x source state
(present as planned / absent / changed) x destination state (absent / identical / different) x what an earlier
attempt of ours may have done (nothing, an earlier run: ``resumed``, a lost answer to the copy or the delete,
with and without botocore's retry) x object size (one CopyObject / multipart), each asserting the final bytes
in the store and the journal status. Then rollback (the inverse move), races at each step, and the delete
phase's batching. No server: the whole file runs in about a second.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import replace
from itertools import product
from typing import Any, TypeVar

import pytest
from memstore import MemStore, etag_of

from s3seg import moves
from s3seg.journal import Status
from s3seg.moves import NEEDS_DELETE, Direction, Kind, Options, Result, Task, copy_phase, delete_sources, final_status
from s3seg.probe import Capabilities

X = TypeVar("X")
Y = TypeVar("Y")

B = "bkt"
SRC, DST = "incoming/a.ccn", "segregated/2022/12/31/a.ccn"
PLANNED = b"the planned bytes, version 1"
BIG = b"B" * 40  # above the test threshold: a multipart copy (4 parts of 10 bytes)
OTHER = b"other bytes"  # a different object (other size)


def serial(fn: Callable[[X], Y], items: list[X]) -> list[Y]:
    return [fn(x) for x in items]


def caps_id(c: Capabilities) -> str:
    flags = (c.copy_if_match, c.copy_if_none_match, c.delete_if_match, c.batch_delete_etag)
    return "".join("S" if f else "c" for f in flags)  # S: server-enforced, c: client-checked


ALL_CAPS = [
    Capabilities(copy_if_match=a, copy_if_none_match=b, delete_if_match=c, batch_delete_etag=d)
    for a, b, c, d in product([True, False], repeat=4)
]


def options(caps: Capabilities, **kw: Any) -> Options:
    return Options(caps=caps, multipart_threshold=32, multipart_chunksize=10, backoff_base=0.0, **kw)


def run_move(st: MemStore, task: Task, opts: Options, direction: Direction = Direction.APPLY) -> tuple[Kind, Status]:
    """Both phases as a worker and the executor run them: (copy-phase kind, journal status)."""
    first = copy_phase(st, task, opts)
    last = first
    if first.kind in NEEDS_DELETE:
        (last,) = delete_sources(st, [(task, first)], opts, serial)
    return first.kind, final_status(direction, last.kind, first.kind)


class Src(enum.Enum):
    SAME = "src-as-planned"
    ABSENT = "src-absent"
    CHANGED = "src-changed"


class Dst(enum.Enum):
    ABSENT = "dst-absent"
    IDENTICAL = "dst-identical"
    DIFFERENT = "dst-different"


class Earlier(enum.Enum):
    NONE = "first-attempt"
    RESUMED = "resumed"  # an earlier run of this manifest may have copied (the journal says so)
    COPY_LOST = "copy-answer-lost"  # applied, answer lost, botocore gave up: the item-level retry
    COPY_LOST_RETRIED = "copy-answer-lost-botocore-retried"  # applied; botocore's repeat is answered
    DELETE_LOST = "delete-answer-lost"
    DELETE_LOST_RETRIED = "delete-answer-lost-botocore-retried"


def expected(src: Src, dst: Dst, earlier: Earlier) -> Status:
    """What the journal must say, from the initial state alone (the table of docs/safety.md)."""
    resumed = earlier is Earlier.RESUMED
    if src is Src.ABSENT:
        if dst is Dst.IDENTICAL:
            return Status.ALREADY_DONE if resumed else Status.DONE_ELSEWHERE
        return Status.FAILED_MISSING
    if src is Src.CHANGED:
        return Status.CONFLICT_SOURCE_CHANGED
    if dst is Dst.DIFFERENT:
        return Status.CONFLICT_DEST_DIFFERS
    if dst is Dst.IDENTICAL and not resumed:
        return Status.DEDUPED  # someone else's identical object: kept by rollback
    return Status.DONE


def seed(st: MemStore, body: bytes, src: Src, dst: Dst) -> None:
    if src is Src.SAME:
        st.put(B, SRC, body)
    elif src is Src.CHANGED:
        st.put(B, SRC, body + b" version 2")
    if dst is Dst.IDENTICAL:
        st.put(B, DST, body)
    elif dst is Dst.DIFFERENT:
        st.put(B, DST, OTHER)


def inject(st: MemStore, earlier: Earlier) -> None:
    copy_op = "copy"
    if earlier is Earlier.COPY_LOST:
        st.lose_answer(copy_op)
        st.lose_answer("multipart_copy")
    elif earlier is Earlier.COPY_LOST_RETRIED:
        st.lose_answer(copy_op, retried=True)
        st.lose_answer("multipart_copy", retried=True)
    elif earlier in (Earlier.DELETE_LOST, Earlier.DELETE_LOST_RETRIED):
        retried = earlier is Earlier.DELETE_LOST_RETRIED
        st.lose_answer("delete", retried=retried)
        st.lose_answer("delete_batch", retried=retried)


MATRIX = list(product(ALL_CAPS, Src, Dst, Earlier, [PLANNED, BIG]))


@pytest.mark.parametrize(
    ("caps", "src", "dst", "earlier", "body"),
    MATRIX,
    ids=[f"{caps_id(c)}-{s.value}-{d.value}-{e.value}-{'mpu' if b is BIG else 'one'}" for c, s, d, e, b in MATRIX],
)
def test_apply_ends_in_the_documented_state_and_never_loses_or_clobbers(
    caps: Capabilities, src: Src, dst: Dst, earlier: Earlier, body: bytes
) -> None:
    st = MemStore(caps)
    seed(st, body, src, dst)
    before = st.snapshot()
    inject(st, earlier)
    task = Task(1, B, SRC, B, DST, etag_of(body), len(body), resumed=earlier is Earlier.RESUMED)

    _, status = run_move(st, task, options(caps))

    assert status is expected(src, dst, earlier)
    after = st.snapshot()
    assert set(after) <= {(B, SRC), (B, DST)}, "nothing written anywhere else"
    if status in (Status.DONE, Status.DEDUPED, Status.ALREADY_DONE, Status.DONE_ELSEWHERE):
        assert after == {(B, DST): body}, "moved: the planned bytes at the destination only"
    else:
        assert after == before, "a conflict or a failure touches nothing"


@pytest.mark.parametrize("body", [PLANNED, BIG], ids=["one", "mpu"])
def test_a_store_that_enforces_every_condition_costs_one_copy_and_a_share_of_a_batch_delete(body: bytes) -> None:
    st = MemStore(Capabilities.trusted())
    st.put(B, SRC, body)
    task = Task(1, B, SRC, B, DST, etag_of(body), len(body))
    assert run_move(st, task, options(st.caps))[1] is Status.DONE
    # A multipart copy HEADs the source first (its headers are re-sent) and again to prove the version.
    assert st.ops() == (
        ["copy", "delete_batch"] if body is PLANNED else ["head", "multipart_copy", "head", "delete_batch"]
    )


# -- races: another writer at each step -----------------------------------------------------------------------
@pytest.mark.parametrize("caps", ALL_CAPS, ids=caps_id)
def test_a_source_overwritten_just_before_the_copy_is_not_moved(caps: Capabilities) -> None:
    st = MemStore(caps)
    st.put(B, SRC, PLANNED)
    st.before("copy", lambda: st.put(B, SRC, b"newer"))
    _, status = run_move(st, Task(1, B, SRC, B, DST, etag_of(PLANNED), len(PLANNED)), options(caps))
    assert status is Status.CONFLICT_SOURCE_CHANGED
    assert st.body(B, SRC) == b"newer"  # the writer's object is kept where it wrote it
    if caps.copy_if_match or caps.delete_if_match:
        assert st.body(B, DST) is None  # refused by the store, or our copy of the new version taken back
    else:
        assert st.body(B, DST) in (None, b"newer")  # at worst a duplicate of the new version, never a loss


@pytest.mark.parametrize("caps", ALL_CAPS, ids=caps_id)
def test_a_source_overwritten_between_copy_and_delete_keeps_both_versions(caps: Capabilities) -> None:
    st = MemStore(caps)
    st.put(B, SRC, PLANNED)
    st.after("copy", lambda: st.put(B, SRC, b"newer"))
    _, status = run_move(st, Task(1, B, SRC, B, DST, etag_of(PLANNED), len(PLANNED)), options(caps))
    assert status is Status.CONFLICT_SOURCE_CHANGED
    assert st.snapshot() == {(B, SRC): b"newer", (B, DST): PLANNED}


WINDOW = pytest.mark.xfail(
    strict=True, reason="known limit (docs/safety.md): a store that ignores IfNoneMatch overwrites in the window"
)


@pytest.mark.parametrize(
    "caps", [pytest.param(c, marks=() if c.copy_if_none_match else WINDOW, id=caps_id(c)) for c in ALL_CAPS]
)
def test_a_destination_created_just_before_the_copy_is_never_overwritten(caps: Capabilities) -> None:
    st = MemStore(caps)
    st.put(B, SRC, PLANNED)
    st.before("copy", lambda: st.put(B, DST, OTHER))
    _, status = run_move(st, Task(1, B, SRC, B, DST, etag_of(PLANNED), len(PLANNED)), options(caps))
    assert PLANNED in (st.body(B, SRC), st.body(B, DST)), "the planned bytes are never lost"
    assert status is Status.CONFLICT_DEST_DIFFERS
    assert st.snapshot() == {(B, SRC): PLANNED, (B, DST): OTHER}


@pytest.mark.parametrize("caps", ALL_CAPS, ids=caps_id)
def test_someone_elses_identical_object_removed_before_the_delete_keeps_the_source(caps: Capabilities) -> None:
    st = MemStore(caps)
    st.put(B, SRC, PLANNED)
    st.put(B, DST, PLANNED)
    task = Task(1, B, SRC, B, DST, etag_of(PLANNED), len(PLANNED))
    first = copy_phase(st, task, options(caps))
    assert first.kind is Kind.IDENTICAL_THEIRS
    del st.objects[(B, DST)]  # its owner removes it between the phases
    (last,) = delete_sources(st, [(task, first)], options(caps), serial)
    assert (last.kind, last.code) == (Kind.ERROR, "DestinationChanged")
    assert st.snapshot() == {(B, SRC): PLANNED}


def test_a_resumed_multipart_copy_without_its_copied_record_is_recognised_by_content() -> None:
    """Our earlier multipart copy (an ETag of another form) and no ``copied`` record: compared byte for byte."""
    for resumed, status in ((True, Status.DONE), (False, Status.CONFLICT_DEST_DIFFERS)):
        st = MemStore(Capabilities.none())
        st.put(B, SRC, BIG)
        st.objects[(B, DST)] = replace(st.objects[(B, SRC)], etag=f'"{"0" * 32}-4"')
        task = Task(1, B, SRC, B, DST, etag_of(BIG), len(BIG), resumed=resumed)
        assert run_move(st, task, options(st.caps))[1] is status
        assert st.body(B, DST) == BIG
        assert ("same_content", B, DST) in st.calls if resumed else ("same_content", B, DST) not in st.calls
    # Plain ETags that differ prove different bytes: no content read, even for a destination that may be ours.
    st = MemStore(Capabilities.none())
    st.put(B, SRC, PLANNED)
    st.put(B, DST, PLANNED.upper())
    task = Task(1, B, SRC, B, DST, etag_of(PLANNED), len(PLANNED), resumed=True)
    assert run_move(st, task, options(st.caps))[1] is Status.CONFLICT_DEST_DIFFERS
    assert "same_content" not in st.ops()


def test_an_archived_source_is_skipped_and_kept() -> None:
    st = MemStore(Capabilities.trusted())
    st.put(B, SRC, PLANNED, storage_class="GLACIER")
    task = Task(1, B, SRC, B, DST, etag_of(PLANNED), len(PLANNED), storage_class="GLACIER")
    assert run_move(st, task, options(st.caps))[1] is Status.SKIPPED_ARCHIVED
    assert st.snapshot() == {(B, SRC): PLANNED}


def test_a_request_that_never_arrived_is_retried_and_persistent_failures_keep_the_source() -> None:
    st = MemStore(Capabilities.trusted())
    st.put(B, SRC, PLANNED)
    st.fail_before("copy")
    task = Task(1, B, SRC, B, DST, etag_of(PLANNED), len(PLANNED))
    assert run_move(st, task, options(st.caps))[1] is Status.DONE
    st = MemStore(Capabilities.trusted())
    st.put(B, SRC, PLANNED)
    for _ in range(4):
        st.fail_before("copy")
    result = copy_phase(st, task, options(st.caps, item_retries=3))
    assert (result.kind, result.code) == (Kind.ERROR, "ConnectionClosedError")
    assert st.ops().count("copy") == 4 and st.snapshot() == {(B, SRC): PLANNED}


def test_a_retry_veto_ends_item_retries_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moves, "retry_vetoes", [lambda: True])
    st = MemStore(Capabilities.trusted())
    st.put(B, SRC, PLANNED)
    st.fail_before("copy")
    result = copy_phase(st, Task(1, B, SRC, B, DST, etag_of(PLANNED), len(PLANNED)), options(st.caps))
    assert result.kind is Kind.ERROR and st.ops() == ["copy"]


# -- the delete phase ----------------------------------------------------------------------------------------
def _copied(
    st: MemStore, n: int, key: Callable[[int], str] = lambda i: f"incoming/{i:04}"
) -> list[tuple[Task, Result]]:
    items = []
    for i in range(1, n + 1):
        body = f"object {i}".encode()
        st.put(B, key(i), body)
        st.put(B, f"out/{i:04}", body)
        items.append((Task(i, B, key(i), B, f"out/{i:04}", etag_of(body), len(body)), Result(i, Kind.COPIED)))
    return items


@pytest.mark.parametrize("caps", ALL_CAPS, ids=caps_id)
def test_deletes_go_in_chunks_of_250_keys_and_keys_xml_cannot_carry_go_alone(caps: Capabilities) -> None:
    st = MemStore(caps)
    items = _copied(st, 601, key=lambda i: f"incoming/{i:04}" + ("\x01" if i % 100 == 0 else ""))
    results = delete_sources(st, items, options(caps), serial)
    assert sorted(r.id for r in results if r.kind is Kind.DELETED) == list(range(1, 602))
    assert not [k for k in st.objects if k[1].startswith("incoming/")]
    batches = st.ops().count("delete_batch")
    singles = st.ops().count("delete")
    if caps.batch_delete_etag or not caps.delete_if_match:
        assert (batches, singles) == (3, 6)  # 595 XML-safe keys in 250 + 250 + 95; 6 with \x01 alone
    else:
        assert (batches, singles) == (0, 601)  # one conditioned DeleteObject each


@pytest.mark.parametrize("caps", ALL_CAPS, ids=caps_id)
def test_a_source_changed_after_the_copy_is_never_deleted_on_any_path_of_the_delete_phase(caps: Capabilities) -> None:
    """Batched, single, and the keys sent alone (control characters): each path keeps a changed source."""
    st = MemStore(caps)
    items = _copied(st, 4, key=lambda i: f"incoming/{i:04}" + ("\x01" if i % 2 else ""))
    for task, _ in items:
        st.put(B, task.src_key, b"overwritten after the copy")
    results = delete_sources(st, items, options(caps), serial)
    assert {r.kind for r in results} == {Kind.SOURCE_CHANGED}
    assert all(st.body(B, t.src_key) == b"overwritten after the copy" for t, _ in items)


@pytest.mark.parametrize("caps", ALL_CAPS, ids=caps_id)
def test_a_delete_refused_per_key_fails_that_move_with_both_copies_kept(caps: Capabilities) -> None:
    st = MemStore(caps)
    items = _copied(st, 3)
    st.deny_delete.add((B, items[1][0].src_key))
    results = {r.id: r for r in delete_sources(st, items, options(caps), serial)}
    assert (results[2].kind, results[2].code) == (Kind.ERROR, "AccessDenied")
    assert results[1].kind is results[3].kind is Kind.DELETED
    assert st.body(B, items[1][0].src_key) is not None and st.body(B, "out/0002") is not None


def test_keep_source_sends_no_delete() -> None:
    st = MemStore(Capabilities.trusted())
    ((task, res),) = _copied(st, 1)
    (result,) = delete_sources(st, [(replace(task, keep_source=True), res)], options(st.caps), serial)
    assert result.kind is Kind.DELETED and st.ops() == [] and st.body(B, task.src_key) is not None


# -- rollback: the inverse move ------------------------------------------------------------------------------
def inverse(task: Task, *, moved_etag: str = "", dedup: bool = False, src_may_be_deleted: bool = True) -> Task:
    """The rollback task, as ``commands._pending_rollback`` builds it from the journal."""
    return Task(
        task.id, task.dst_bucket, task.dst_key, task.src_bucket, task.src_key, moved_etag or task.etag, task.size,
        same_etags=(task.etag,), keep_source=dedup, resumed=True, src_required=src_may_be_deleted,
    )  # fmt: skip


class Before(enum.Enum):
    """The state rollback finds, as apply and others left it."""

    MOVED = "moved"
    DEDUPED = "deduped"  # the destination existed, identical, before apply
    COPIED_NOT_DELETED = "copied-not-deleted"  # apply died between its copy and its delete
    DEST_MODIFIED = "dest-modified"
    SOURCE_RECREATED = "source-key-recreated"
    BOTH_GONE = "both-gone"
    NEVER_MOVED = "never-moved"  # apply failed before copying
    NEVER_MOVED_SOURCE_CHANGED = "never-moved-source-changed-since"


ROLLBACK_CASES: dict[Before, tuple[Status, dict[tuple[str, str], bytes] | None]] = {
    # expected status, and the store after (None: unchanged)
    Before.MOVED: (Status.ROLLED_BACK, {(B, SRC): PLANNED}),
    Before.DEDUPED: (Status.ROLLED_BACK, {(B, SRC): PLANNED, (B, DST): PLANNED}),
    Before.COPIED_NOT_DELETED: (Status.ROLLED_BACK, {(B, SRC): PLANNED}),
    Before.DEST_MODIFIED: (Status.R_CONFLICT_DEST_MODIFIED, None),
    Before.SOURCE_RECREATED: (Status.R_CONFLICT_SOURCE_RECREATED, None),
    Before.BOTH_GONE: (Status.R_FAILED_MISSING, None),
    Before.NEVER_MOVED: (Status.ROLLED_BACK, None),
    Before.NEVER_MOVED_SOURCE_CHANGED: (Status.R_NOT_MOVED, None),
}


def _rollback_setup(st: MemStore, before: Before) -> Task:
    task = Task(1, B, SRC, B, DST, etag_of(PLANNED), len(PLANNED))
    if before is Before.DEDUPED:
        st.put(B, DST, PLANNED)
        return inverse(task, dedup=True)
    if before in (Before.NEVER_MOVED, Before.NEVER_MOVED_SOURCE_CHANGED):
        st.put(B, SRC, PLANNED if before is Before.NEVER_MOVED else b"changed since the plan")
        return inverse(task, src_may_be_deleted=False)
    if before is not Before.BOTH_GONE:
        st.put(B, DST, b"edited after the move" if before is Before.DEST_MODIFIED else PLANNED)
    if before is Before.SOURCE_RECREATED:
        st.put(B, SRC, b"a new object at the original key")
    if before is Before.COPIED_NOT_DELETED:
        st.put(B, SRC, PLANNED)
    return inverse(task)


ROLLBACK_MATRIX = list(product(ALL_CAPS, Before, [Earlier.NONE, Earlier.COPY_LOST, Earlier.DELETE_LOST_RETRIED]))


@pytest.mark.parametrize(
    ("caps", "before", "earlier"),
    ROLLBACK_MATRIX,
    ids=[f"{caps_id(c)}-{b.value}-{e.value}" for c, b, e in ROLLBACK_MATRIX],
)
def test_rollback_undoes_exactly_its_own_moves_and_keeps_everything_else(
    caps: Capabilities, before: Before, earlier: Earlier
) -> None:
    st = MemStore(caps)
    task = _rollback_setup(st, before)
    initial = st.snapshot()
    inject(st, earlier)
    _, status = run_move(st, task, options(caps), Direction.ROLLBACK)
    want_status, want_store = ROLLBACK_CASES[before]
    assert status is want_status
    assert st.snapshot() == (initial if want_store is None else want_store)


@pytest.mark.parametrize("caps", ALL_CAPS, ids=caps_id)
@pytest.mark.parametrize("body", [PLANNED, BIG], ids=["one", "mpu"])
def test_apply_then_rollback_restores_the_store_exactly(caps: Capabilities, body: bytes) -> None:
    st = MemStore(caps)
    st.put(B, SRC, body)
    initial = st.snapshot()
    task = Task(1, B, SRC, B, DST, etag_of(body), len(body))
    first = copy_phase(st, task, options(caps))
    (last,) = delete_sources(st, [(task, first)], options(caps), serial)
    assert final_status(Direction.APPLY, last.kind, first.kind) is Status.DONE
    # The journal's ``copied`` record keeps the destination's ETag where it differs (a multipart copy).
    back = inverse(task, moved_etag=first.dst_etag)
    assert run_move(st, back, options(caps), Direction.ROLLBACK)[1] is Status.ROLLED_BACK
    assert st.snapshot() == initial
    assert st.objects[(B, SRC)].metadata == {"origin": "test"}


def test_every_final_kind_has_a_status_in_both_directions() -> None:
    finals = set(Kind) - NEEDS_DELETE - {Kind.DELETED}
    assert set(moves.APPLY_STATUS) == set(moves.ROLLBACK_STATUS) == finals
    assert final_status(Direction.APPLY, Kind.DELETED, Kind.IDENTICAL_THEIRS) is Status.DEDUPED
    assert final_status(Direction.APPLY, Kind.DELETED, Kind.IDENTICAL_OURS) is Status.DONE
    assert final_status(Direction.ROLLBACK, Kind.DELETED, Kind.IDENTICAL_THEIRS) is Status.ROLLED_BACK
    assert Direction.APPLY == "apply" and Direction("rollback") is Direction.ROLLBACK


def test_tasks_and_results_cross_processes_whole() -> None:
    """Batches cross processes as pickles built by hand (``__reduce__``): every field, non-default, survives; a
    field added to Task or Result and forgotten there fails here."""
    import dataclasses
    import pickle

    task = Task(7, "sb", "incoming/ä b", "db", "2024/x", '"e1"', 12, "GLACIER", ('"e2"',), True, True, False)
    assert {f.name for f in dataclasses.fields(Task)} == set(Task.__slots__)
    for f in dataclasses.fields(Task):
        assert f.default is dataclasses.MISSING or getattr(task, f.name) != f.default, f.name
    assert pickle.loads(pickle.dumps(task)) == task
    result = Result(7, Kind.DEST_DIFFERS, dst_etag='"e3"', code="PreconditionFailed", detail="why")
    assert pickle.loads(pickle.dumps(result)) == result
