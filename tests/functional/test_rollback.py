"""rollback, in process: in-process ``moto.mock_aws`` (or the moto server) with the inline backend.

Rollback runs the inverse moves through the same protocol, so the same emulations of AWS's copy conditions
are used (``applykit.Enforcer``). Every test asserts the exact bucket afterwards, usually the full state the
bucket began with (keys, bytes, metadata, Content-Type, tags, storage class).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from applykit import (
    MIB,
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
    moved,
    opts,
    outcomes,
    put,
    seed,
    writes,
)
from helpers import cdr_key, record_ids, snapshot

import s3seg.executor
from s3seg import commands


def rich_bucket(s3: Any, bucket: str) -> None:
    """Objects with every attribute a move must keep, awkward names, and bystanders outside the plan."""
    put(s3, bucket, cdr_key(1), b"ia", StorageClass="STANDARD_IA", Metadata={"origin": "switch-7", "x-y": "1"},
        ContentType="application/x-cdr", Tagging="team=billing&ttl=30")  # fmt: skip
    put(s3, bucket, cdr_key(2), b"plain", ContentType="text/plain; charset=utf-8", Tagging="only=one")
    for i in range(3, 9):
        put(s3, bucket, cdr_key(i), f"cdr {i}".encode() * i, Metadata={"n": str(i)})
    put(s3, bucket, "incoming/CHARGINGCDR_a+b ü%2B?versionId=1-20221231-10.ccn", b"awkward")
    put(s3, bucket, "incoming/CHARGINGCDR_a%2Bb ü+?versionId=1-20221231-10.ccn", b"awkward twin")
    put(s3, bucket, "incoming/notes +.txt", b"to the error folder and back")
    put(s3, bucket, "incoming/sub/nested.ccn", b"not planned (not recursive)")
    put(s3, bucket, "segregated/2022/12/31/10/already-there", b"bystander")


# -- the round trip ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["client", "server-call", "auto"])
def test_rollback_puts_the_bucket_back_exactly_as_it_began(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    rich_bucket(s3, bucket)
    before = snapshot(s3, bucket)
    manifest = make_plan(s3, tmp_path, bucket)
    enforce(mode)
    assert cli_run("apply", manifest, "--processes", "0", "--conditional-writes", writes(mode))[0] == 0
    assert snapshot(s3, bucket) != before

    code, out = cli_run("rollback", manifest, "--processes", "0", "--conditional-writes", writes(mode), "--json")

    assert code == 0
    assert snapshot(s3, bucket) == before
    summary = json.loads(out)
    assert summary["command"] == "rollback" and summary["this_run"] == {"rolled-back": 11}
    assert set(outcomes(manifest, "rollback").values()) == {"rolled-back"}
    code, out = cli_run("status", manifest, "--json")
    assert json.loads(out)["counts"] == {"rolled-back": 11}
    assert json.loads(out)["remaining"] == 11  # rolled back: apply would move them again


def test_rollback_of_a_multipart_move_restores_bytes_metadata_and_tags(s3: Any, bucket: str, tmp_path: Path) -> None:
    body = bytes(range(256)) * (12 * MIB // 256) + b"tail"
    put(s3, bucket, cdr_key(1), body, Metadata={"origin": "switch-7"}, ContentType="application/x-cdr",
        Tagging="team=billing", StorageClass="STANDARD_IA")  # fmt: skip
    put(s3, bucket, cdr_key(2), b"small")
    before = snapshot(s3, bucket)
    manifest = make_plan(s3, tmp_path, bucket, multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    commands.apply(manifest, opts("client"))

    code, _ = cli_run("rollback", manifest, "--processes", "0", "--conditional-writes", "client")

    assert code == 0
    assert snapshot(s3, bucket) == before


def test_second_rollback_is_a_no_op_with_exit_0(
    s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = seed(s3, bucket, 5)
    manifest = make_plan(s3, tmp_path, bucket)
    assert cli_run("apply", manifest, "--processes", "0")[0] == 0
    assert cli_run("rollback", manifest, "--processes", "0")[0] == 0
    size = Path(manifest + ".journal").stat().st_size
    calls = count_api_calls(monkeypatch)

    code, out = cli_run("rollback", manifest, "--processes", "0")

    assert code == 0 and "nothing to do" in out
    assert calls == []
    assert Path(manifest + ".journal").stat().st_size == size
    monkeypatch.undo()
    assert contents(s3, bucket) == objects


def test_rollback_touches_only_what_the_journal_recorded(s3: Any, bucket: str, tmp_path: Path) -> None:
    """Items apply never moved (conflicts, a missing source, a never-attempted item) are left exactly as
    they are; so is everything else in the bucket."""
    objects = seed(s3, bucket, 5)
    put(s3, bucket, dst_of(cdr_key(2)), b"someone else's, in the way")
    manifest = make_plan(s3, tmp_path, bucket)
    s3.delete_object(Bucket=bucket, Key=cdr_key(4))
    assert cli_run("apply", manifest, "--processes", "0", "--conditional-writes", "client")[0] == 1
    put(s3, bucket, "incoming/arrived-later.ccn", b"new")
    expected = {k: v for k, v in objects.items() if k != cdr_key(4)}
    expected[dst_of(cdr_key(2))] = b"someone else's, in the way"
    expected["incoming/arrived-later.ccn"] = b"new"

    code, _ = cli_run("rollback", manifest, "--processes", "0", "--conditional-writes", "client")

    assert code == 0
    assert contents(s3, bucket) == expected
    assert outcomes(manifest, "rollback") == {1: "rolled-back", 3: "rolled-back", 5: "rolled-back"}


def test_rollback_of_a_move_whose_source_delete_was_denied_drops_only_the_extra_copy(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    objects = seed(s3, bucket, 4)
    manifest = make_plan(s3, tmp_path, bucket)
    deny_delete(s3, bucket, [cdr_key(2)])
    assert cli_run("apply", manifest, "--processes", "0", "--conditional-writes", "client")[0] == 1
    assert contents(s3, bucket)[dst_of(cdr_key(2))] == objects[cdr_key(2)]

    code, _ = cli_run("rollback", manifest, "--processes", "0", "--conditional-writes", "client")

    assert code == 0
    assert contents(s3, bucket) == objects


# -- conflicts ------------------------------------------------------------------------------------------------
MODES = ["client", "server-call", "server-send", "server-patch"]


@pytest.mark.parametrize("mode", MODES)
def test_destination_modified_after_the_move_is_kept_and_reported(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    objects = seed(s3, bucket, 3)
    manifest = make_plan(s3, tmp_path, bucket)
    commands.apply(manifest, opts("client"))
    edited = dst_of(cdr_key(2))
    put(s3, bucket, edited, b"edited after the move")
    e = enforce(mode)

    code, out = cli_run("rollback", manifest, "--processes", "0", "--conditional-writes", writes(mode), "--json")

    expected = {k: v for k, v in objects.items() if k != cdr_key(2)}
    expected[edited] = b"edited after the move"
    assert contents(s3, bucket) == expected  # kept, and nothing written at the original key
    assert outcomes(manifest, "rollback") == {1: "rolled-back", 2: "r-conflict-dest-modified", 3: "rolled-back"}
    assert code == 1
    assert json.loads(out)["this_run"] == {"rolled-back": 2, "r-conflict-dest-modified": 1}
    if mode != "client":
        assert e.refused == 1


@pytest.mark.parametrize("mode", MODES)
def test_source_key_recreated_after_the_move_is_never_overwritten(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    objects = seed(s3, bucket, 3)
    manifest = make_plan(s3, tmp_path, bucket)
    commands.apply(manifest, opts("client"))
    put(s3, bucket, cdr_key(3), b"a new file under the old name")
    e = enforce(mode)

    code, _ = cli_run("rollback", manifest, "--processes", "0", "--conditional-writes", writes(mode))

    expected = {k: v for k, v in objects.items() if k != cdr_key(3)}
    expected[cdr_key(3)] = b"a new file under the old name"
    expected[dst_of(cdr_key(3))] = objects[cdr_key(3)]  # the moved object stays where it is
    assert contents(s3, bucket) == expected
    assert outcomes(manifest, "rollback") == {1: "rolled-back", 2: "rolled-back", 3: "r-conflict-source-recreated"}
    assert code == 1
    if mode != "client":
        assert e.refused == 1
    # The conflict stays open: a second rollback reports it again and still overwrites nothing.
    assert cli_run("rollback", manifest, "--processes", "0", "--conditional-writes", writes(mode))[0] == 1
    assert contents(s3, bucket) == expected


@pytest.mark.parametrize("point", ["before-copied-record", "after-copied-record"])
@pytest.mark.parametrize("mode", ["client", "server-call"])
def test_item_copied_but_not_deleted_loses_only_its_identical_extra_copy(
    s3: Any, bucket: str, tmp_path: Path, point: str, mode: str, enforce: Callable[[str], Enforcer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    objects = seed(s3, bucket, 4)
    manifest = make_plan(s3, tmp_path, bucket)
    enforce(mode)
    crash_at(monkeypatch, point)
    with pytest.raises(Crash):
        commands.apply(manifest, opts(mode))
    assert contents(s3, bucket) == {**objects, **moved(objects)}  # every item at both places
    monkeypatch.setattr(s3seg.executor, "crash_point", lambda name: None)

    code, _ = cli_run("rollback", manifest, "--processes", "0", "--conditional-writes", writes(mode))

    assert code == 0
    assert contents(s3, bucket) == objects


@pytest.mark.parametrize("mode", ["client", "server-call"])
def test_extra_copy_that_differs_from_the_source_is_kept(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copied but not deleted, then one destination is edited and one source is overwritten: rollback may
    only drop an extra copy that is provably identical to its source; the other two are kept, as conflicts."""
    objects = seed(s3, bucket, 3)
    manifest = make_plan(s3, tmp_path, bucket)
    enforce(mode)
    crash_at(monkeypatch, "after-copied-record")
    with pytest.raises(Crash):
        commands.apply(manifest, opts(mode))
    monkeypatch.setattr(s3seg.executor, "crash_point", lambda name: None)
    put(s3, bucket, dst_of(cdr_key(1)), b"destination edited")
    put(s3, bucket, cdr_key(2), b"source overwritten")

    code, _ = cli_run("rollback", manifest, "--processes", "0", "--conditional-writes", writes(mode))

    assert code == 1
    assert contents(s3, bucket) == {
        cdr_key(1): objects[cdr_key(1)],
        dst_of(cdr_key(1)): b"destination edited",
        cdr_key(2): b"source overwritten",
        dst_of(cdr_key(2)): objects[cdr_key(2)],
        cdr_key(3): objects[cdr_key(3)],
    }
    assert outcomes(manifest, "rollback") == {
        1: "r-conflict-dest-modified",
        2: "r-conflict-source-recreated",
        3: "rolled-back",
    }


@pytest.mark.parametrize("mode", ["client", "server-call"])
def test_deduplicated_move_rollback_restores_the_source_and_keeps_the_destination(
    s3: Any, bucket: str, tmp_path: Path, mode: str, enforce: Callable[[str], Enforcer]
) -> None:
    objects = seed(s3, bucket, 3)
    twin = cdr_key(2)
    put(s3, bucket, dst_of(twin), objects[twin])  # was there, identical, before apply
    before = contents(s3, bucket)
    manifest = make_plan(s3, tmp_path, bucket)
    enforce(mode)
    commands.apply(manifest, opts(mode))
    assert outcomes(manifest)[2] == "deduped"

    code, _ = cli_run("rollback", manifest, "--processes", "0", "--conditional-writes", writes(mode))

    assert code == 0
    assert contents(s3, bucket) == before


# -- interrupted runs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("point", "nth"),
    [("after-intent", 2), ("before-copied-record", 2), ("after-copied-record", 2), ("after-outcome", 1)],
)
def test_rollback_after_an_interrupted_apply_undoes_exactly_what_was_done(
    s3: Any, bucket: str, tmp_path: Path, point: str, nth: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = seed(s3, bucket, 9)
    put(s3, bucket, "elsewhere/bystander", b"untouched")
    before = contents(s3, bucket)
    manifest = make_plan(s3, tmp_path, bucket)
    crash_at(monkeypatch, point, nth)
    with pytest.raises(Crash):
        commands.apply(manifest, opts("client", batch_size=3))
    assert contents(s3, bucket) != before
    monkeypatch.setattr(s3seg.executor, "crash_point", lambda name: None)

    code, _ = cli_run("rollback", manifest, "--processes", "0", "--conditional-writes", "client")

    assert code == 0
    assert contents(s3, bucket) == before
    assert len(objects) == 9


@pytest.mark.parametrize("point", ["after-intent", "before-copied-record", "after-copied-record", "after-outcome"])
def test_interrupted_rollback_resumes_to_the_original_state(
    s3: Any, bucket: str, tmp_path: Path, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rich_bucket(s3, bucket)
    before = snapshot(s3, bucket)
    manifest = make_plan(s3, tmp_path, bucket)
    commands.apply(manifest, opts("client"))
    crash_at(monkeypatch, point, 2)
    with pytest.raises(Crash):
        commands.rollback(manifest, opts("client", batch_size=4))
    monkeypatch.setattr(s3seg.executor, "crash_point", lambda name: None)

    code, _ = cli_run("rollback", manifest, "--processes", "0", "--conditional-writes", "client")

    assert code == 0
    assert snapshot(s3, bucket) == before
    assert cli_run("rollback", manifest, "--processes", "0")[1].startswith("rollback: nothing to do")


# -- versioned bucket -------------------------------------------------------------------------------------------
def test_versioned_bucket_rollback_restores_every_current_version(s3: Any, bucket: str, tmp_path: Path) -> None:
    """In a versioned bucket nothing is ever deleted for good: s3seg deletes without a VersionId, so S3
    adds delete markers.

    After apply then rollback, every source key's *current* version holds the original bytes and attributes
    (a new version, copied back from the destination). What remains besides, by design:

    * at each source key: the original version (now noncurrent) and the delete marker apply left (noncurrent);
    * at each destination key: the moved version (noncurrent) under a delete marker (current), so the
      destination folders look empty in a normal listing.

    Lifecycle rules for noncurrent versions and expired delete markers clean these up; s3seg never deletes by
    VersionId, since that destroys data for good.
    """
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    rich_bucket(s3, bucket)
    before = snapshot(s3, bucket)
    original_versions = {v["Key"]: v["VersionId"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]}
    manifest = make_plan(s3, tmp_path, bucket)
    assert cli_run("apply", manifest, "--processes", "0", "--conditional-writes", "client")[0] == 0

    code, _ = cli_run("rollback", manifest, "--processes", "0", "--conditional-writes", "client")

    assert code == 0
    assert snapshot(s3, bucket) == before  # current versions: exactly the original state
    listing = s3.list_object_versions(Bucket=bucket)
    versions: dict[str, list[dict[str, Any]]] = {}
    for v in listing["Versions"]:
        versions.setdefault(v["Key"], []).append(v)
    markers: dict[str, list[dict[str, Any]]] = {}
    for m in listing.get("DeleteMarkers", []):
        markers.setdefault(m["Key"], []).append(m)
    rows = [json.loads(line) for line in Path(manifest).read_text(encoding="utf-8").splitlines()]
    moved_keys = {r["src_key"]: r["dst_key"] for r in rows if "id" in r}
    assert len(moved_keys) == 11
    for src, dst in moved_keys.items():
        assert len(versions[src]) == 2 and len(markers[src]) == 1  # original + restored; apply's marker
        assert not markers[src][0]["IsLatest"]
        assert len(versions[dst]) == 1 and len(markers[dst]) == 1 and markers[dst][0]["IsLatest"]
        # The original version is still there, untouched.
        old = s3.get_object(Bucket=bucket, Key=src, VersionId=original_versions[src])["Body"].read()
        state = before[src]
        assert old == state.body  # type: ignore[union-attr]
    for key in set(before) - set(moved_keys):
        assert len(versions[key]) == 1 and key not in markers  # bystanders: untouched


# -- dry run and summaries --------------------------------------------------------------------------------------
def test_rollback_dry_run_lists_the_restores_and_sends_no_request(
    s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = seed(s3, bucket, 3)
    manifest = make_plan(s3, tmp_path, bucket)
    commands.apply(manifest, opts("client"))
    journal = Path(manifest + ".journal").read_bytes()
    calls = count_api_calls(monkeypatch)

    code, out = cli_run("rollback", manifest, "--dry-run")

    assert code == 0
    assert calls == []
    assert Path(manifest + ".journal").read_bytes() == journal
    assert out.splitlines()[:3] == [
        f"would restore s3://{bucket}/{dst_of(k)} -> s3://{bucket}/{k}" for k in sorted(objects)
    ]
    monkeypatch.undo()
    assert contents(s3, bucket) == moved(objects)


def test_rollback_journal_records_follow_the_same_protocol(s3: Any, bucket: str, tmp_path: Path) -> None:
    seed(s3, bucket, 4)
    manifest = make_plan(s3, tmp_path, bucket)
    commands.apply(manifest, opts("client"))
    commands.rollback(manifest, opts("client", batch_size=3))

    records = [r for r in journal_records(manifest)[1:] if r["dir"] == "rollback"]

    first: dict[tuple[str, int], int] = {}
    for n, r in enumerate(records):
        for i in record_ids(r):
            first.setdefault((r["ev"], i), n)
    for i in range(1, 5):
        assert first[("intent", i)] < first[("copied", i)] < first[("outcome", i)]
    assert [record_ids(r) for r in records if r["ev"] == "intent"] == [[1, 2, 3], [4]]
