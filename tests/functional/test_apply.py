"""apply, in process: in-process ``moto.mock_aws`` with the inline backend (``processes=0``).

Every test asserts the exact final bucket (keys and bytes, attributes where they matter), the journal and the
exit code. moto ignores ``CopySourceIfMatch`` and ``IfNoneMatch`` on CopyObject, so the server-enforced
("server") mode is run against an emulation of AWS's conditions, injected two ways: a botocore ``before-send``
hook that answers 412 itself (the request is never sent), and a patched ``Storage.copy`` that raises the
translated ``PreconditionFailed``. The "client" mode runs on plain moto and relies on s3seg's HEAD checks.
The helpers and the emulation (``Enforcer``) are in ``applykit.py``, the ``enforce`` fixture in ``conftest.py``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from applykit import (
    MIB,
    MODES,
    Crash,
    Enforcer,
    cli_run,
    contents,
    count_api_calls,
    crash_at,
    deny_delete,
    dst_of,
    journal_records,
    make_plan,
    manifest_ids,
    moved,
    opts,
    outcomes,
    put,
    seed,
    writes,
)
from helpers import ObjectState, cdr_key, record_ids, snapshot

import s3seg.executor
import s3seg.storage
import s3seg.worker
from s3seg import commands
from s3seg.journal import Journal


# -- the plain path -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["client", "server-call", "auto"])
def test_apply_moves_every_object_exactly_once(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    objects = seed(s3, bucket, 12)
    objects["incoming/README.txt"] = b"not a CDR: goes to the error folder"
    put(s3, bucket, "incoming/README.txt", objects["incoming/README.txt"])
    put(s3, bucket, "elsewhere/untouched", b"outside s3_dir")
    manifest = make_plan(s3, tmp_path, bucket)
    enforce(mode)

    res = commands.apply(manifest, opts(mode, batch_size=5))

    # auto mode probes with scratch objects: none may be left behind.
    assert contents(s3, bucket) == {**moved(objects), "elsewhere/untouched": b"outside s3_dir"}
    assert {s.label: n for s, n in res.report.counts.items()} == {"done": 13}
    assert set(outcomes(manifest).values()) == {"done"}
    assert res.mode  # the log and summary say which checks ran where


class PipelinedInline(s3seg.executor.InlineBackend):
    """The in-process backend, but with the process pool's pipelining: ``step_batch`` runs a batch's delete
    phase beside the next batch's copy phase (two threads of this process)."""

    pipelined = True


@pytest.mark.parametrize("pipelined", [False, True], ids=["phase-by-phase", "pipelined"])
def test_journal_records_each_intent_before_its_copy_and_each_copied_record_before_its_delete(
    s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipelined: bool
) -> None:
    """Watch every CopyObject and DeleteObjects as it is sent and read the journal file at that instant."""
    objects = seed(s3, bucket, 12)
    manifest = make_plan(s3, tmp_path, bucket)
    ids = {dst_of(k): i for k, i in manifest_ids(manifest).items()}
    src_ids = manifest_ids(manifest)
    seen: list[tuple[str, int, bool]] = []  # (op, id, journal already had the record)
    local = threading.local()

    def ids_in(ev: str) -> set[int]:
        with open(manifest + ".journal", encoding="utf-8") as f:  # what is on disk now, not in a buffer
            return {i for line in f for r in [json.loads(line)] if r.get("ev") == ev for i in record_ids(r)}

    def stash(params: dict[str, Any], **_: Any) -> None:
        local.params = params.copy()
        if "Delete" in params:
            local.params["Delete"] = {"Objects": [dict(o) for o in params["Delete"]["Objects"]]}

    def check_copy(**_: Any) -> None:
        i = ids[local.params["Key"]]
        seen.append(("copy", i, i in ids_in("intent")))

    def check_delete(**_: Any) -> None:
        recorded = ids_in("copied")
        for o in local.params["Delete"]["Objects"]:
            seen.append(("delete", src_ids[o["Key"]], src_ids[o["Key"]] in recorded))

    real = s3seg.worker.make_client

    def make(spec: Any) -> Any:
        c = real(spec)
        c.meta.events.register_first("before-parameter-build.s3", stash)
        c.meta.events.register("before-send.s3.CopyObject", check_copy)
        c.meta.events.register("before-send.s3.DeleteObjects", check_delete)
        return c

    monkeypatch.setattr(s3seg.worker, "make_client", make)
    backend = PipelinedInline() if pipelined else None
    commands.apply(manifest, opts("client", batch_size=5), backend=backend)

    assert contents(s3, bucket) == moved(objects)
    assert sorted(i for op, i, _ in seen if op == "copy") == list(range(1, 13))
    assert sorted(i for op, i, _ in seen if op == "delete") == list(range(1, 13))
    assert all(ok for _, _, ok in seen), [s for s in seen if not s[2]]
    # And the file itself: header bound to the manifest, then per id intent < copied < outcome.
    records = journal_records(manifest)
    assert records[0]["type"] == "header" and records[0]["manifest"] == "plan.jsonl"
    first: dict[tuple[str, int], int] = {}
    for n, r in enumerate(records[1:], start=1):
        for i in record_ids(r):
            first.setdefault((r["ev"], i), n)
    for i in range(1, 13):
        assert first[("intent", i)] < first[("copied", i)] < first[("outcome", i)]
    assert [len(record_ids(r)) for r in records if r.get("ev") == "intent"] == [5, 5, 2]
    # Pipelined, the second batch's intent is written before the first batch's deletes are finished.
    assert (first[("intent", 6)] < first[("outcome", 1)]) is pipelined


# -- every outcome ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["client", "server-call"])
def test_resumed_item_whose_source_is_gone_and_destination_matches_is_already_done(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    objects = seed(s3, bucket, 3)
    manifest = make_plan(s3, tmp_path, bucket)
    gone = cdr_key(2)  # an earlier run of this manifest announced it, moved it and died before journaling more
    info = commands.Manifest(manifest).verify()
    with Journal(manifest + ".journal", manifest_sha256=info.sha256, manifest_name="m", entries=info.entries) as j:
        j.intent("apply", [2])
    s3.copy_object(Bucket=bucket, Key=dst_of(gone), CopySource={"Bucket": bucket, "Key": gone})
    s3.delete_object(Bucket=bucket, Key=gone)
    enforce(mode)

    commands.apply(manifest, opts(mode))

    assert contents(s3, bucket) == moved(objects)
    assert outcomes(manifest) == {1: "done", 2: "already-done", 3: "done"}


@pytest.mark.parametrize("mode", ["client", "server-call"])
def test_item_moved_by_someone_else_before_apply_is_done_elsewhere_and_not_ours_to_roll_back(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    objects = seed(s3, bucket, 3)
    manifest = make_plan(s3, tmp_path, bucket)
    gone = cdr_key(2)  # moved by another tool or another manifest: this manifest's journal has no word of it
    s3.copy_object(Bucket=bucket, Key=dst_of(gone), CopySource={"Bucket": bucket, "Key": gone})
    s3.delete_object(Bucket=bucket, Key=gone)
    enforce(mode)

    commands.apply(manifest, opts(mode))
    assert contents(s3, bucket) == moved(objects)
    assert outcomes(manifest) == {1: "done", 2: "done-elsewhere", 3: "done"}

    commands.rollback(manifest, opts(mode))  # undoes this manifest's moves only
    expected = dict(objects)
    expected[dst_of(gone)] = expected.pop(gone)
    assert contents(s3, bucket) == expected


@pytest.mark.parametrize("mode", MODES)
def test_source_overwritten_after_plan_is_a_conflict_and_nothing_is_touched(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    objects = seed(s3, bucket, 3)
    manifest = make_plan(s3, tmp_path, bucket)
    changed = cdr_key(2)
    put(s3, bucket, changed, b"a newer version written after the plan")
    e = enforce(mode)

    code, _ = cli_run("apply", manifest, "--processes", "0", "--conditional-writes", writes(mode))

    expected = moved({k: v for k, v in objects.items() if k != changed})
    expected[changed] = b"a newer version written after the plan"
    assert contents(s3, bucket) == expected  # the destination was never written
    assert outcomes(manifest) == {1: "done", 2: "conflict-source-changed", 3: "done"}
    assert code == 1
    if mode != "client":
        assert e.refused >= 1  # the store's refusal is what stopped it


@pytest.mark.parametrize("mode", MODES)
def test_destination_with_other_bytes_is_a_conflict_and_neither_object_is_touched(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    objects = seed(s3, bucket, 3)
    victim = cdr_key(3)
    put(s3, bucket, dst_of(victim), b"someone else's file, already at the destination")
    manifest = make_plan(s3, tmp_path, bucket)
    e = enforce(mode)

    code, _ = cli_run("apply", manifest, "--processes", "0", "--conditional-writes", writes(mode))

    expected = moved({k: v for k, v in objects.items() if k != victim})
    expected[victim] = objects[victim]
    expected[dst_of(victim)] = b"someone else's file, already at the destination"
    assert contents(s3, bucket) == expected
    assert outcomes(manifest) == {1: "done", 2: "done", 3: "conflict-dest-differs"}
    assert code == 1
    if mode != "client":
        assert e.refused == 1


@pytest.mark.parametrize("mode", MODES)
def test_identical_destination_deletes_the_source_and_is_recorded_deduped(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    objects = seed(s3, bucket, 3)
    twin = cdr_key(1)
    put(s3, bucket, dst_of(twin), objects[twin])
    manifest = make_plan(s3, tmp_path, bucket)
    e = enforce(mode)

    code, _ = cli_run("apply", manifest, "--processes", "0", "--conditional-writes", writes(mode))

    assert contents(s3, bucket) == moved(objects)
    assert outcomes(manifest) == {1: "deduped", 2: "done", 3: "done"}
    copied = [r for r in journal_records(manifest) if r.get("ev") == "copied"]
    assert [r.get("dedup") for r in copied] == [[1]]  # rollback must keep that destination
    assert code == 0
    if mode != "client":
        assert e.refused == 1


@pytest.mark.parametrize("mode", ["client", "server-call"])
def test_source_deleted_after_plan_with_no_destination_fails_missing(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    objects = seed(s3, bucket, 3)
    manifest = make_plan(s3, tmp_path, bucket)
    s3.delete_object(Bucket=bucket, Key=cdr_key(2))
    enforce(mode)

    code, out = cli_run("apply", manifest, "--processes", "0", "--conditional-writes", writes(mode), "--json")

    assert contents(s3, bucket) == moved({k: v for k, v in objects.items() if k != cdr_key(2)})
    assert outcomes(manifest) == {1: "done", 2: "failed-missing", 3: "done"}
    assert code == 1
    assert json.loads(out)["this_run"] == {"done": 2, "failed-missing": 1}


@pytest.mark.parametrize("mode", ["client", "server-call"])
@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
def test_archived_object_is_skipped_until_restored_and_left_in_place(
    s3: Any, bucket: str, tmp_path: Path, mode: str, storage_class: str, enforce: Callable[[str], Enforcer]
) -> None:
    objects = seed(s3, bucket, 2)
    cold = cdr_key(9)
    etag = put(s3, bucket, cold, b"frozen", StorageClass=storage_class)
    manifest = make_plan(s3, tmp_path, bucket)
    enforce(mode)

    code, _ = cli_run("apply", manifest, "--processes", "0", "--conditional-writes", writes(mode))

    assert contents(s3, bucket) == {**moved(objects), cold: ("archived", storage_class, etag)}
    assert outcomes(manifest) == {1: "done", 2: "done", 3: "skipped-archived"}
    assert code == 1
    failed = [r for r in journal_records(manifest) if r.get("status") == "skipped-archived"]
    assert failed[0]["code"] == "ObjectNotInActiveTierError"


@pytest.mark.parametrize("mode", ["client", "server-call", "auto"])
def test_denied_source_delete_fails_with_its_code_and_keeps_both_copies(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    """A bucket-policy Deny on some source keys: DeleteObjects answers 200 with per-key AccessDenied errors
    (client and server modes batch the deletes); auto mode on moto deletes one by one (DeleteObject IfMatch
    is enforced there) and gets 403. Either way the other keys of the batch are moved and both copies of a
    denied key stay."""
    objects = seed(s3, bucket, 6)
    denied = [cdr_key(2), cdr_key(5)]
    manifest = make_plan(s3, tmp_path, bucket)
    deny_delete(s3, bucket, denied)
    enforce(mode)

    code, out = cli_run("apply", manifest, "--processes", "0", "--conditional-writes", writes(mode), "--json")

    expected = moved(objects)
    for k in denied:
        expected[k] = objects[k]
    assert contents(s3, bucket) == expected
    assert outcomes(manifest) == {1: "done", 2: "failed", 3: "done", 4: "done", 5: "failed", 6: "done"}
    codes = {r["code"] for r in journal_records(manifest) if r.get("status") == "failed"}
    assert codes <= {"AccessDenied", "403"} and codes
    assert code == 1
    summary = json.loads(out)
    assert summary["this_run"] == {"done": 4, "failed": 2}
    assert {f["id"] for f in summary["failures"]} == {2, 5}


def test_denied_deletes_are_retried_by_a_later_run_once_the_policy_allows_them(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    objects = seed(s3, bucket, 4)
    manifest = make_plan(s3, tmp_path, bucket)
    deny_delete(s3, bucket, [cdr_key(3)])
    assert cli_run("apply", manifest, "--processes", "0", "--conditional-writes", "client")[0] == 1
    s3.delete_bucket_policy(Bucket=bucket)

    code, _ = cli_run("apply", manifest, "--processes", "0", "--conditional-writes", "client")

    assert code == 0
    assert contents(s3, bucket) == moved(objects)
    assert outcomes(manifest)[3] in {"done", "already-done"}


# -- keys and attributes ------------------------------------------------------------------------------------
AWKWARD = [
    "CHARGINGCDR_a b-20221231-10.ccn",
    "CHARGINGCDR_a+b-20221231-10.ccn",
    "CHARGINGCDR_a%2Bb-20221231-10.ccn",
    "CHARGINGCDR_ünï cødé ☃ 日本-20221231-10.ccn",
    "CHARGINGCDR_x?versionId=abc-20221231-10.ccn",
    "CHARGINGCDR_y?versionId=null&z=1#frag-20221231-10.ccn",
    "plain a+b.txt",
    "plain a%2Bb.txt",
    "plain a b.txt",
]


@pytest.mark.parametrize("mode", ["client", "server-call"])
def test_awkward_keys_each_move_to_their_own_destination(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    objects = {"incoming/" + name: f"body of {name}".encode() for name in AWKWARD}
    for key, body in objects.items():
        put(s3, bucket, key, body)
    manifest = make_plan(s3, tmp_path, bucket)
    enforce(mode)

    res = commands.apply(manifest, opts(mode))

    assert contents(s3, bucket) == moved(objects)
    assert {s.label: n for s, n in res.report.counts.items()} == {"done": len(AWKWARD)}


@pytest.mark.parametrize("mode", ["client", "server-call"])
def test_storage_class_metadata_content_type_and_tags_are_preserved(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    a, b = cdr_key(1), cdr_key(2)
    put(s3, bucket, a, b"ia", StorageClass="STANDARD_IA", Metadata={"origin": "switch-7", "x-y": "1"},
        ContentType="application/x-cdr", Tagging="team=billing&ttl=30")  # fmt: skip
    put(s3, bucket, b, b"std", ContentType="text/plain; charset=utf-8", Tagging="only=one")
    before = snapshot(s3, bucket)
    manifest = make_plan(s3, tmp_path, bucket)
    enforce(mode)

    commands.apply(manifest, opts(mode))

    after = snapshot(s3, bucket)
    assert after == {dst_of(k): v for k, v in before.items()}
    state = after[dst_of(a)]
    assert isinstance(state, ObjectState)
    assert state.storage_class == "STANDARD_IA" and state.tags == {"team": "billing", "ttl": "30"}


@pytest.mark.parametrize("mode", ["client", "server-call"])
def test_object_over_the_multipart_threshold_is_copied_in_parts_with_metadata_and_tags(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    big, small = cdr_key(1), cdr_key(2)
    body = bytes(range(256)) * (12 * MIB // 256) + b"tail"
    put(s3, bucket, big, body, Metadata={"origin": "switch-7"}, ContentType="application/x-cdr",
        Tagging="team=billing", StorageClass="STANDARD_IA")  # fmt: skip
    put(s3, bucket, small, b"small", Tagging="k=v")
    before = snapshot(s3, bucket)
    manifest = make_plan(s3, tmp_path, bucket, multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    enforce(mode)

    commands.apply(manifest, opts(mode))

    assert snapshot(s3, bucket) == {dst_of(k): v for k, v in before.items()}
    etag = s3.head_object(Bucket=bucket, Key=dst_of(big))["ETag"]
    assert etag.endswith('-3"')  # three 5 MiB parts: the multipart path ran
    copied = [r for r in journal_records(manifest) if r.get("ev") == "copied"]
    assert copied[0]["etags"] == {"1": etag}  # rollback needs the new ETag
    assert outcomes(manifest) == {1: "done", 2: "done"}


# -- journal, manifest and CLI ------------------------------------------------------------------------------
def test_second_apply_is_a_no_op(s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = seed(s3, bucket, 5)
    manifest = make_plan(s3, tmp_path, bucket)
    assert cli_run("apply", manifest, "--processes", "0")[0] == 0
    size = Path(manifest + ".journal").stat().st_size
    calls = count_api_calls(monkeypatch)

    code, out = cli_run("apply", manifest, "--processes", "0")

    assert code == 0
    assert "nothing to do" in out
    assert calls == []
    assert Path(manifest + ".journal").stat().st_size == size
    assert contents(s3, bucket) == moved(objects)


def test_journal_of_another_manifest_is_refused_with_exit_3(s3: Any, bucket: str, tmp_path: Path) -> None:
    seed(s3, bucket, 3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_plan(s3, tmp_path / "a", bucket)
    put(s3, bucket, cdr_key(4), b"new")
    second = make_plan(s3, tmp_path / "b", bucket)
    assert cli_run("apply", first, "--processes", "0", "--dry-run")[0] == 0
    assert cli_run("apply", first, "--processes", "0")[0] == 0
    before = contents(s3, bucket)

    code, _ = cli_run("apply", second, "--processes", "0", "--journal", first + ".journal")

    assert code == 3
    assert contents(s3, bucket) == before


@pytest.mark.parametrize("damage", ["edited", "truncated", "line-removed", "reordered"])
def test_damaged_manifest_is_refused_with_exit_3_and_no_s3_request(
    s3: Any, bucket: str, tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = seed(s3, bucket, 4)
    manifest = make_plan(s3, tmp_path, bucket)
    lines = Path(manifest).read_bytes().splitlines(keepends=True)
    if damage == "edited":
        lines[2] = lines[2].replace(b"segregated/", b"segregatEd/")
    elif damage == "truncated":
        lines = [*lines[:-1], lines[-1][:-20]]
    elif damage == "line-removed":
        del lines[-1]
    else:
        lines[1], lines[2] = lines[2], lines[1]
    Path(manifest).write_bytes(b"".join(lines))
    calls = count_api_calls(monkeypatch)

    code, _ = cli_run("apply", manifest, "--processes", "0")

    assert code == 3
    assert calls == []
    monkeypatch.undo()
    assert contents(s3, bucket) == objects


def test_second_apply_while_one_holds_the_journal_lock_is_refused_with_exit_3(
    s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = seed(s3, bucket, 3)
    manifest = make_plan(s3, tmp_path, bucket)
    info = commands.Manifest(manifest).verify()
    with Journal(manifest + ".journal", manifest_sha256=info.sha256, manifest_name="plan.jsonl", entries=3):
        calls = count_api_calls(monkeypatch)
        code, _ = cli_run("apply", manifest, "--processes", "0")
        assert code == 3
        assert calls == []
    monkeypatch.undo()
    assert contents(s3, bucket) == objects
    # The lock is released with its holder: now it runs.
    assert cli_run("apply", manifest, "--processes", "0")[0] == 0
    assert contents(s3, bucket) == moved(objects)


def test_status_counts_outcomes_and_what_remains(s3: Any, bucket: str, tmp_path: Path) -> None:
    seed(s3, bucket, 5)
    manifest = make_plan(s3, tmp_path, bucket)
    code, out = cli_run("status", manifest, "--json")
    assert code == 0
    assert json.loads(out)["counts"] == {"pending": 5} and json.loads(out)["remaining"] == 5
    put(s3, bucket, dst_of(cdr_key(4)), b"in the way")
    s3.delete_object(Bucket=bucket, Key=cdr_key(5))
    cli_run("apply", manifest, "--processes", "0", "--conditional-writes", "client")

    code, out = cli_run("status", manifest, "--json")

    status = json.loads(out)
    assert code == 1  # a conflict and a failure remain (issue 14: status exits non-zero while they do)
    assert status["counts"] == {"done": 3, "conflict-dest-differs": 1, "failed-missing": 1}
    assert status["remaining"] == 2
    assert {e["id"] for e in status["recent_errors"]} == {4, 5}
    code, text = cli_run("status", manifest)
    assert code == 1 and "still to move (apply): 2" in text and "conflict: another file at the destination" in text


def test_dry_run_lists_the_moves_and_sends_no_request(
    s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = seed(s3, bucket, 4)
    manifest = make_plan(s3, tmp_path, bucket)
    calls = count_api_calls(monkeypatch)

    code, out = cli_run("apply", manifest, "--dry-run")

    assert code == 0
    assert calls == []
    assert not Path(manifest + ".journal").exists()
    lines = [line for line in out.splitlines() if line.startswith("would move")]
    assert lines == [f"would move s3://{bucket}/{k} -> s3://{bucket}/{dst_of(k)}" for k in sorted(objects)]
    monkeypatch.undo()
    assert contents(s3, bucket) == objects


def test_json_summary_parses_and_counts_this_run(s3: Any, bucket: str, tmp_path: Path) -> None:
    seed(s3, bucket, 4)
    put(s3, bucket, dst_of(cdr_key(2)), b"in the way")
    manifest = make_plan(s3, tmp_path, bucket)

    code, out = cli_run("apply", manifest, "--processes", "0", "--conditional-writes", "client", "--json")

    summary = json.loads(out)
    assert code == 1
    assert summary["command"] == "apply"
    assert summary["entries"] == 4 and summary["todo"] == 4 and summary["finished"] == 4
    assert summary["this_run"] == {"done": 3, "conflict-dest-differs": 1}
    assert summary["journal_totals"] == {"done": 3, "conflict-dest-differs": 1}
    assert summary["failures"][0]["id"] == 2
    assert "client-checked" in summary["conditional_checks"]


# -- interrupted runs (a simulated crash: the run dies at a named point, leaving the journal as it was) ---------


@pytest.mark.parametrize("point", ["after-intent", "before-copied-record", "after-copied-record", "after-outcome"])
@pytest.mark.parametrize("mode", ["client", "server-call"])
def test_apply_resumed_after_a_crash_at_any_point_moves_everything_exactly_once(
    s3: Any, bucket: str, tmp_path: Path, point: str, mode: str, enforce: Callable[[str], Enforcer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    objects = seed(s3, bucket, 10)
    manifest = make_plan(s3, tmp_path, bucket)
    enforce(mode)
    crash_at(monkeypatch, point, 2)
    with pytest.raises(Crash):
        commands.apply(manifest, opts(mode, batch_size=3))
    monkeypatch.setattr(s3seg.executor, "crash_point", lambda name: None)

    code, _ = cli_run("apply", manifest, "--processes", "0", "--conditional-writes", writes(mode), "--batch-size", "3")

    assert code == 0
    assert contents(s3, bucket) == moved(objects)
    assert set(outcomes(manifest).values()) <= {"done", "already-done"}
    assert len(outcomes(manifest)) == 10


def fingerprints(s3: Any, bucket: str) -> dict[str, tuple[int, str]]:
    """key -> (size, sha256) for every object: big bodies compared without multi-MiB assertion diffs."""
    return {k: (len(v), hashlib.sha256(v).hexdigest()) for k, v in contents(s3, bucket).items()}


@pytest.mark.parametrize("mode", ["client", "server-call"])
def test_multipart_copy_interrupted_before_its_copied_record_is_finished_by_the_next_run(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A multipart copy gets a new ETag ("...-3"), recorded only in the ``copied`` record. If the run dies
    after the copy and before that record, the next run finds a destination whose ETag is not the planned
    one: it must still recognise its own copy (same bytes) and finish the move, not report a conflict (which
    also leaves the copy behind for good: rollback does not touch conflicts)."""
    big = cdr_key(1)
    body = bytes(range(256)) * (12 * MIB // 256)
    put(s3, bucket, big, body, Metadata={"origin": "switch-7"})
    manifest = make_plan(s3, tmp_path, bucket, multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    enforce(mode)
    crash_at(monkeypatch, "before-copied-record")
    with pytest.raises(Crash):
        commands.apply(manifest, opts(mode))
    whole = (len(body), hashlib.sha256(body).hexdigest())
    assert fingerprints(s3, bucket) == {big: whole, dst_of(big): whole}  # copied, not yet journaled
    monkeypatch.setattr(s3seg.executor, "crash_point", lambda name: None)

    code, _ = cli_run("apply", manifest, "--processes", "0", "--conditional-writes", writes(mode))

    assert outcomes(manifest) == {1: "done"}
    assert fingerprints(s3, bucket) == {dst_of(big): whole}
    assert code == 0
