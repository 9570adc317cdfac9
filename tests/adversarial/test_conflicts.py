"""Someone else writes to the bucket before, during or after a run: every such object is kept and reported.

Each test changes the bucket behind s3seg's back (straight to the store, or from a botocore hook at an exact
protocol step of an in-process run), then checks the exit code (1: conflicts, nothing lost), the status the
journal and summary give the move, every other move's normal result, and the bytes of every object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from advlab import Lab

import s3seg.copyloop
import s3seg.storage

pytestmark = pytest.mark.integration

NEW = b"someone else's newer bytes"


def _setup(lab: Lab, n: int = 8) -> list[tuple[int, str, str]]:
    lab.seed(n, errors=1)
    lab.plan()
    return lab.moves()


def _expected(lab: Lab, *, keep: dict[str, bytes | None]) -> dict[str, bytes]:
    """The applied state, with ``keep`` overriding keys (None: absent)."""
    expected = lab.expected_applied()
    for key, body in keep.items():
        if body is None:
            expected.pop(key, None)
        else:
            expected[key] = body
    return expected


def _failure(run_summary: dict[str, Any], move_id: int) -> str:
    for f in run_summary["failures"]:
        if f["id"] == move_id:
            return str(f["status"])
    raise AssertionError(f"move {move_id} not reported: {run_summary['failures']}")


def _assert_state(lab: Lab, expected: dict[str, bytes]) -> None:
    from advlab import assert_same

    assert_same(lab.state(), expected)


# -- between plan and apply --------------------------------------------------------------------------------------
def test_source_overwritten_between_plan_and_apply_is_left_alone_and_reported(lab: Lab) -> None:
    (mid, src, dst), *_ = _setup(lab)
    lab.s3.put_object(Bucket=lab.bucket, Key=src, Body=NEW)
    run = lab.run("apply")
    assert run.code == 1, run
    assert _failure(run.summary, mid) == "conflict-source-changed"
    _assert_state(lab, _expected(lab, keep={src: NEW, dst: None}))


def test_source_deleted_between_plan_and_apply_is_reported_missing(lab: Lab) -> None:
    (mid, src, dst), *_ = _setup(lab)
    lab.s3.delete_object(Bucket=lab.bucket, Key=src)
    run = lab.run("apply")
    assert run.code == 1, run
    assert _failure(run.summary, mid) == "failed-missing"
    _assert_state(lab, _expected(lab, keep={src: None, dst: None}))


def test_destination_created_by_someone_else_is_never_overwritten(lab: Lab) -> None:
    (mid, src, dst), *_ = _setup(lab)
    lab.s3.put_object(Bucket=lab.bucket, Key=dst, Body=NEW)
    run = lab.run("apply")
    assert run.code == 1, run
    assert _failure(run.summary, mid) == "conflict-dest-differs"
    _assert_state(lab, _expected(lab, keep={src: lab.seeded[src], dst: NEW}))


def test_destination_already_holding_identical_bytes_is_deduplicated(lab: Lab) -> None:
    (mid, src, dst), *_ = _setup(lab)
    lab.s3.put_object(Bucket=lab.bucket, Key=dst, Body=lab.seeded[src])
    run = lab.run("apply")
    assert run.code == 0, run
    lab.assert_applied()
    assert lab.journal().status_of(mid).label == "deduped"
    assert lab.inline("rollback") == 0  # rollback restores the source and keeps the destination it found
    _assert_state(lab, {**lab.seeded, dst: lab.seeded[src]})


# -- during apply: at exact protocol steps, around the storage layer's CopyObject in an in-process run ----------
@contextmanager
def _on_copy(when: str, dst: str, action: Callable[[], None]) -> Iterator[None]:
    """Run ``action`` once, just ``before`` or ``after`` the CopyObject onto ``dst`` (in-process runs).

    Hooked at ``Storage.copy``, below which both request paths (lean HTTP and botocore) sit, and where the copy
    loop sends a copy itself (``copyloop._Run._send``) and reads its answer (``_Run._answered``).
    """
    real = s3seg.storage.Storage.copy
    real_send, real_answered = s3seg.copyloop._Run._send, s3seg.copyloop._Run._answered
    fired: list[bool] = []

    def send(run: Any, item: Any) -> None:
        if when == "before" and item.task.dst_key == dst and not fired:
            fired.append(True)
            action()
        real_send(run, item)

    def answered(run: Any, item: Any, response: Any) -> None:
        real_answered(run, item, response)
        if when == "after" and item.task.dst_key == dst and not fired:
            fired.append(True)
            action()

    def copy(st: Any, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, **kw: Any) -> str:
        if when == "before" and dst_key == dst and not fired:
            fired.append(True)
            action()
        etag = real(st, src_bucket, src_key, dst_bucket, dst_key, **kw)
        if when == "after" and dst_key == dst and not fired:
            fired.append(True)
            action()
        return etag

    s3seg.storage.Storage.copy = copy  # type: ignore[method-assign]
    s3seg.copyloop._Run._send, s3seg.copyloop._Run._answered = send, answered  # type: ignore[method-assign]
    try:
        yield
    finally:
        s3seg.storage.Storage.copy = real  # type: ignore[method-assign]
        s3seg.copyloop._Run._send, s3seg.copyloop._Run._answered = real_send, real_answered  # type: ignore[method-assign]
    assert fired, "the hook never fired"


def _inline(lab: Lab, mode: str) -> int:
    return lab.run("apply", "--conditional-writes", mode).code


@pytest.mark.parametrize("mode", ["auto", "client"])
def test_source_overwritten_between_copy_and_delete_keeps_both_versions(lab: Lab, mode: str) -> None:
    """The copy took the planned version; then a writer replaced the source: the delete must not happen."""
    (mid, src, dst), *_ = _setup(lab)
    with _on_copy("after", dst, lambda: lab.s3.put_object(Bucket=lab.bucket, Key=src, Body=NEW)):
        code = _inline(lab, mode)
    assert code == 1, lab.last_result
    assert lab.journal().status_of(mid).label == "conflict-source-changed"
    _assert_state(lab, _expected(lab, keep={src: NEW, dst: lab.seeded[src]}))


@pytest.mark.parametrize("mode", ["auto", "client"])
def test_source_overwritten_just_before_the_copy_is_not_moved(lab: Lab, mode: str) -> None:
    """The writer lands after every check and before CopyObject: the copy takes the new version (moto) or is
    refused (a store enforcing CopySourceIfMatch); either way the source stays and no stray copy is left."""
    (mid, src, dst), *_ = _setup(lab)
    with _on_copy("before", dst, lambda: lab.s3.put_object(Bucket=lab.bucket, Key=src, Body=NEW)):
        code = _inline(lab, mode)
    assert code == 1, lab.last_result
    assert lab.journal().status_of(mid).label == "conflict-source-changed"
    # moto copies the new version (it ignores CopySourceIfMatch). With the delete condition enforced (auto on
    # moto) s3seg takes its copy back by ETag; with every check client-side it cannot do so race-free, and
    # leaves the copy: a duplicate of the new source, never a loss (documented in docs/safety.md, "Known limits").
    stray = NEW if lab.store.name == "moto" and mode == "client" else None
    _assert_state(lab, _expected(lab, keep={src: NEW, dst: stray}))


def test_destination_created_just_before_the_copy_is_never_overwritten(
    lab: Lab, request: pytest.FixtureRequest
) -> None:
    """Only a store that enforces ``If-None-Match: *`` on CopyObject closes this window (SeaweedFS, AWS).

    On moto the client-side HEAD check runs before the copy, and a writer landing in between is overwritten:
    the documented limit of stores that ignore the condition (see docs/safety.md, "Known limits"). There the
    body still runs, under a strict xfail: it must fail, so the day moto enforces the condition it XPASSes and
    this marker has to go.
    """
    if lab.store.name == "moto":
        request.applymarker(
            pytest.mark.xfail(
                strict=True, reason="moto ignores IfNoneMatch on CopyObject: the HEAD-then-copy window is client-side"
            )
        )
    (mid, src, dst), *_ = _setup(lab)
    with _on_copy("before", dst, lambda: lab.s3.put_object(Bucket=lab.bucket, Key=dst, Body=NEW)):
        code = _inline(lab, "auto")
    assert code == 1, lab.last_result
    assert lab.journal().status_of(mid).label == "conflict-dest-differs"
    _assert_state(lab, _expected(lab, keep={src: lab.seeded[src], dst: NEW}))


# -- before rollback -----------------------------------------------------------------------------------------------
def test_destination_modified_before_rollback_is_kept_and_reported(lab: Lab) -> None:
    (mid, src, dst), *_ = _setup(lab)
    assert lab.inline("apply") == 0
    lab.s3.put_object(Bucket=lab.bucket, Key=dst, Body=NEW)
    run = lab.run("rollback")
    assert run.code == 1, run
    assert _failure(run.summary, mid) == "r-conflict-dest-modified"
    _assert_state(lab, {**{k: v for k, v in lab.seeded.items() if k != src}, dst: NEW})


def test_destination_deleted_before_rollback_is_reported_missing(lab: Lab) -> None:
    (mid, src, dst), *_ = _setup(lab)
    assert lab.inline("apply") == 0
    lab.s3.delete_object(Bucket=lab.bucket, Key=dst)
    run = lab.run("rollback")
    assert run.code == 1, run
    assert _failure(run.summary, mid) == "r-failed-missing"
    _assert_state(lab, {k: v for k, v in lab.seeded.items() if k != src})


def test_source_key_recreated_before_rollback_is_never_overwritten(lab: Lab) -> None:
    (mid, src, dst), *_ = _setup(lab)
    assert lab.inline("apply") == 0
    lab.s3.put_object(Bucket=lab.bucket, Key=src, Body=NEW)
    run = lab.run("rollback")
    assert run.code == 1, run
    assert _failure(run.summary, mid) == "r-conflict-source-recreated"
    _assert_state(lab, {**lab.seeded, src: NEW, dst: lab.seeded[src]})
    assert lab.run("rollback").code == 1  # still a conflict on a re-run: never "resolved" by overwriting


def test_source_key_recreated_with_the_original_bytes_lets_rollback_finish(lab: Lab) -> None:
    (_mid, src, _dst), *_ = _setup(lab)
    assert lab.inline("apply") == 0
    lab.s3.put_object(Bucket=lab.bucket, Key=src, Body=lab.seeded[src])
    run = lab.run("rollback")
    assert run.code == 0, run
    lab.assert_rolled_back()


def test_conflicts_do_not_stop_the_other_moves_and_a_rerun_keeps_reporting_them(lab: Lab) -> None:
    moves = _setup(lab, n=12)
    (_m1, s1, d1), (_m2, s2, d2), (_m3, s3, d3) = moves[:3]
    lab.s3.put_object(Bucket=lab.bucket, Key=s1, Body=NEW)
    lab.s3.put_object(Bucket=lab.bucket, Key=d2, Body=NEW)
    lab.s3.delete_object(Bucket=lab.bucket, Key=s3)
    first = lab.run("apply")
    second = lab.run("apply")
    assert first.code == second.code == 1, (first, second)
    expected = _expected(lab, keep={s1: NEW, d1: None, s2: lab.seeded[s2], d2: NEW, s3: None, d3: None})
    _assert_state(lab, expected)
    assert first.summary["this_run"]["done"] == len(moves) - 3


def test_apply_rollback_cycles_keep_a_destination_that_existed_before(lab: Lab) -> None:
    """A destination already identical before apply is deduplicated, and every rollback leaves it in place."""
    (mid, src, dst), *_ = _setup(lab)
    lab.s3.put_object(Bucket=lab.bucket, Key=dst, Body=lab.seeded[src])
    for _ in range(2):
        assert lab.run("apply").code == 0, lab.last_result
        assert lab.journal().status_of(mid).label == "deduped"
        assert lab.run("rollback").code == 0, lab.last_result
        _assert_state(lab, {**lab.seeded, dst: lab.seeded[src]})
