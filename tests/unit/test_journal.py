"""s3seg.journal: append-only events per move id, replay, crash tolerance, binding and the single-writer lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from s3seg.errors import ExitCode, JournalError, LockedError
from s3seg.journal import (
    FORMAT,
    Journal,
    JournalState,
    Status,
    journal_path_for,
    replay,
)

SHA = "a" * 64
OTHER_SHA = "b" * 64
ENTRIES = 10


def open_journal(path: Path, *, sha: str = SHA, entries: int = ENTRIES) -> Journal:
    return Journal(str(path), manifest_sha256=sha, manifest_name="plan.jsonl", entries=entries)


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(raw) for raw in path.read_bytes().splitlines()]


def replayed(path: Path, *, entries: int = ENTRIES) -> JournalState:
    state, _ = replay(str(path), manifest_sha256=SHA, entries=entries)
    return state


@pytest.fixture
def jpath(tmp_path: Path) -> Path:
    return tmp_path / "plan.jsonl.journal"


def fill(path: Path) -> None:
    """A typical apply history: 1-3 done, 4 copied, 5 in flight, 6 failed, 7-10 pending."""
    with open_journal(path) as j:
        j.intent("apply", [1, 2, 3, 4, 5, 6])
        j.copied("apply", [1, 2, 3, 4], etags={2: '"mp-etag-2"'}, dedup=[3])
        j.outcome("apply", Status.DONE, [1, 2])
        j.outcome("apply", Status.DEDUPED, [3])
        j.outcome("apply", Status.FAILED, [6], code="AccessDenied", msg="no")


# --- creating and replaying ------------------------------------------------------------------------------


def test_journal_path_is_next_to_the_manifest() -> None:
    assert journal_path_for("/x/plan.jsonl") == "/x/plan.jsonl.journal"


def test_new_journal_starts_with_a_header_bound_to_the_manifest(jpath: Path) -> None:
    with open_journal(jpath) as j:
        assert j.state.counts() == {Status.PENDING: ENTRIES}
    (header,) = read_lines(jpath)
    assert header["type"] == "header"
    assert header["format"] == FORMAT
    assert header["manifest_sha256"] == SHA
    assert header["manifest"] == "plan.jsonl"
    assert isinstance(header["created"], str)


def test_empty_file_is_treated_as_new(jpath: Path) -> None:
    jpath.write_bytes(b"")
    with open_journal(jpath):
        pass
    assert read_lines(jpath)[0]["type"] == "header"


def test_records_are_appended_and_replayed_to_the_latest_status(jpath: Path) -> None:
    fill(jpath)
    assert [r.get("ev") for r in read_lines(jpath)] == [None, "intent", "copied", "outcome", "outcome", "outcome"]
    with open_journal(jpath) as j:
        state = j.state
    assert [state.status_of(i) for i in range(1, 11)] == [
        Status.DONE,
        Status.DONE,
        Status.DEDUPED,
        Status.COPIED,
        Status.INTENT,
        Status.FAILED,
        *[Status.PENDING] * 4,
    ]


def test_status_counts_include_pending(jpath: Path) -> None:
    fill(jpath)
    assert replayed(jpath).counts() == {
        Status.DONE: 2,
        Status.DEDUPED: 1,
        Status.COPIED: 1,
        Status.INTENT: 1,
        Status.FAILED: 1,
        Status.PENDING: 4,
    }


def test_copy_etags_and_dedup_survive_replay(jpath: Path) -> None:
    fill(jpath)
    state = replayed(jpath)
    assert state.copy_etags == {2: '"mp-etag-2"'}
    assert state.dedup == {3}


def test_errors_are_kept_per_id(jpath: Path) -> None:
    fill(jpath)
    assert replayed(jpath).last_error == {6: "AccessDenied: no"}


def test_long_error_messages_are_cut(jpath: Path) -> None:
    with open_journal(jpath) as j:
        j.outcome("apply", Status.FAILED, [1], code="X", msg="m" * 5000)
    assert len(replayed(jpath).last_error[1]) < 600


def test_rollback_records_use_the_rollback_statuses(jpath: Path) -> None:
    fill(jpath)
    with open_journal(jpath) as j:
        j.intent("rollback", [1, 2])
        j.copied("rollback", [1], etags={1: '"ignored"'}, dedup=[])
        j.outcome("rollback", Status.ROLLED_BACK, [1])
    state = replayed(jpath)
    assert state.status_of(1) == Status.ROLLED_BACK
    assert state.status_of(2) == Status.R_INTENT
    assert state.copy_etags == {2: '"mp-etag-2"'}  # rollback copies never replace apply's etags


def test_reopening_appends_after_the_existing_records(jpath: Path) -> None:
    fill(jpath)
    with open_journal(jpath) as j:
        j.outcome("apply", Status.DONE, [4])
    assert len(read_lines(jpath)) == 7
    assert replayed(jpath).status_of(4) == Status.DONE


def test_outcomes_are_on_disk_after_close(jpath: Path) -> None:
    j = open_journal(jpath)
    j.outcome("apply", Status.DONE, [1])
    j.close()
    assert replayed(jpath).status_of(1) == Status.DONE


def test_status_labels_round_trip() -> None:
    for status in Status:
        state = JournalState(1)
        state.apply({"ev": "outcome", "dir": "apply", "status": status.label, "ids": [1]})
        assert state.status_of(1) == status


# --- crashes: torn tail tolerated, corruption refused -----------------------------------------------------


def test_torn_last_line_is_truncated_on_open_and_its_ids_keep_their_state(jpath: Path) -> None:
    fill(jpath)
    good = jpath.read_bytes()
    with open(jpath, "ab") as f:
        f.write(b'{"ev":"outcome","dir":"apply","status":"done","ids":[4,')
    with open_journal(jpath) as j:
        assert j.state.status_of(4) == Status.COPIED
        assert jpath.read_bytes() == good
        j.outcome("apply", Status.DONE, [4])
    state = replayed(jpath)
    assert state.status_of(4) == Status.DONE


def test_complete_json_without_newline_is_a_torn_line(jpath: Path) -> None:
    fill(jpath)
    good = jpath.read_bytes()
    with open(jpath, "ab") as f:
        f.write(b'{"ev":"outcome","dir":"apply","status":"done","ids":[4]}')
    with open_journal(jpath) as j:
        assert j.state.status_of(4) == Status.COPIED
    assert jpath.read_bytes() == good


def test_replay_tolerates_a_torn_tail_without_changing_the_file(jpath: Path) -> None:
    fill(jpath)
    good = jpath.read_bytes()
    jpath.write_bytes(good + b'{"ev":"int')
    state, offset = replay(str(jpath), manifest_sha256=SHA, entries=ENTRIES)
    assert offset == len(good)
    assert state.status_of(1) == Status.DONE
    assert jpath.read_bytes() == good + b'{"ev":"int'


def test_torn_header_is_replaced_by_a_fresh_header(jpath: Path) -> None:
    # A crash while the journal was being created: nothing was recorded yet, so it starts afresh.
    jpath.write_bytes(b'{"type":"header","format":1,"manif')
    with open_journal(jpath) as j:
        assert j.state.counts() == {Status.PENDING: ENTRIES}
        j.intent("apply", [1])
    lines = read_lines(jpath)
    assert lines[0]["type"] == "header"
    assert lines[0]["manifest_sha256"] == SHA
    assert replayed(jpath).status_of(1) == Status.INTENT


def test_corrupt_middle_line_is_refused_with_its_line_number(jpath: Path) -> None:
    fill(jpath)
    raw = jpath.read_bytes().splitlines(keepends=True)
    raw[2] = b'{"ev":"copied","dir":"ap\n'
    jpath.write_bytes(b"".join(raw))
    before = jpath.read_bytes()
    with pytest.raises(JournalError) as info:
        open_journal(jpath)
    assert info.value.line == 3
    assert f"{jpath}:3:" in str(info.value)
    assert info.value.exit_code == ExitCode.REFUSED
    assert jpath.read_bytes() == before  # nothing truncated
    with pytest.raises(JournalError):
        replay(str(jpath), manifest_sha256=SHA, entries=ENTRIES)


def test_blank_middle_line_is_corruption(jpath: Path) -> None:
    fill(jpath)
    raw = jpath.read_bytes().splitlines(keepends=True)
    raw.insert(2, b"\n")
    jpath.write_bytes(b"".join(raw))
    with pytest.raises(JournalError) as info:
        replay(str(jpath), manifest_sha256=SHA, entries=ENTRIES)
    assert info.value.line == 3


@pytest.mark.parametrize(
    "record",
    [
        {"ev": "intent", "dir": "apply", "ids": [11]},  # not in the manifest
        {"ev": "intent", "dir": "apply", "ids": [0]},
        {"ev": "intent", "dir": "apply", "ids": ["1"]},
        {"ev": "teleport", "dir": "apply", "ids": [1]},
        {"ev": "intent", "dir": "sideways", "ids": [1]},
        {"ev": "outcome", "dir": "apply", "status": "vanished", "ids": [1]},
        {"ev": "intent", "dir": "apply"},
        {"dir": "apply", "ids": [1]},
    ],
)
def test_well_formed_json_that_is_not_a_valid_record_is_refused_with_its_line(
    jpath: Path, record: dict[str, object]
) -> None:
    fill(jpath)
    with open(jpath, "ab") as f:
        f.write(json.dumps(record).encode() + b"\n")
    with pytest.raises(JournalError) as info:
        open_journal(jpath)
    assert info.value.line == 7
    assert "malformed" in str(info.value)


def test_journal_of_another_manifest_is_refused(jpath: Path) -> None:
    fill(jpath)
    with pytest.raises(JournalError) as info:
        open_journal(jpath, sha=OTHER_SHA)
    assert info.value.line == 1
    assert "another manifest" in str(info.value)
    with pytest.raises(JournalError):
        replay(str(jpath), manifest_sha256=OTHER_SHA, entries=ENTRIES)


def test_file_that_is_not_a_journal_is_refused(jpath: Path) -> None:
    jpath.write_bytes(b'{"type":"header","format":1,"tool":"s3seg"}\n{"id":1}\n')  # a manifest, say
    with pytest.raises(JournalError) as info:
        open_journal(jpath)
    assert info.value.line is not None


def test_refused_journal_releases_its_lock(jpath: Path) -> None:
    fill(jpath)
    with pytest.raises(JournalError):
        open_journal(jpath, sha=OTHER_SHA)
    with open_journal(jpath):
        pass


# --- one writer -------------------------------------------------------------------------------------------


def test_second_writer_on_the_same_journal_is_locked_out(jpath: Path) -> None:
    with open_journal(jpath):
        with pytest.raises(LockedError) as info:
            open_journal(jpath)
        assert isinstance(info.value, JournalError)
        assert info.value.exit_code == ExitCode.REFUSED
        assert "another s3seg process" in str(info.value)
    with open_journal(jpath):  # released on close
        pass


def test_replay_takes_no_lock(jpath: Path) -> None:
    with open_journal(jpath) as j:
        j.intent("apply", [1])
        assert replayed(jpath).status_of(1) == Status.INTENT


def test_lock_held_by_another_process_is_released_when_it_is_killed(jpath: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys, time
        from s3seg.journal import Journal
        j = Journal({str(jpath)!r}, manifest_sha256={SHA!r}, manifest_name="plan.jsonl", entries=10)
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError):
            open_journal(jpath)
        child.kill()  # SIGKILL: no clean-up code runs in the child
        child.wait(timeout=10)
        deadline = time.monotonic() + 5
        while True:
            try:
                with open_journal(jpath):
                    break
            except LockedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert os.path.exists(str(jpath) + ".lock")


# --- compact ids (format 2) --------------------------------------------------------------------------------------


def test_a_batch_is_written_as_one_run(jpath: Path) -> None:
    with open_journal(jpath, entries=1000) as j:
        j.intent("apply", list(range(1, 501)))
        j.outcome("apply", Status.DONE, [*range(498, 0, -1), 500])  # out of order, 499 missing
    lines = read_lines(jpath)
    assert lines[0]["format"] == 2
    assert lines[1]["ids"] == [[1, 500]]
    assert lines[2]["ids"] == [[1, 498], 500]
    state = replayed(jpath, entries=1000)
    assert state.status_of(499) is Status.INTENT and state.status_of(500) is Status.DONE
    assert state.status_of(1) is Status.DONE


def test_bytes_per_object_of_a_typical_apply(jpath: Path) -> None:
    n = 100_000
    with open_journal(jpath, entries=n) as j:
        for lo in range(1, n + 1, 500):
            batch = list(range(lo, lo + 500))
            j.intent("apply", batch)
            j.copied("apply", batch, {}, [])
            j.outcome("apply", Status.DONE, batch)
    assert jpath.stat().st_size / n <= 1.0


def test_a_format_1_journal_is_read_and_appended_to_in_format_1(jpath: Path) -> None:
    header = {"type": "header", "format": 1, "manifest_sha256": SHA, "manifest": "p", "created": "x"}
    jpath.write_text(json.dumps(header) + "\n" + json.dumps({"ev": "intent", "dir": "apply", "ids": [1, 2, 3]}) + "\n")
    with open_journal(jpath) as j:
        assert j.state.status_of(3) is Status.INTENT
        j.outcome("apply", Status.DONE, [1, 2, 3])
    assert read_lines(jpath)[-1]["ids"] == [1, 2, 3]
    assert replayed(jpath).status_of(2) is Status.DONE


@pytest.mark.parametrize(
    "ids",
    [[[1, 11]], [[0, 3]], [[5, 4]], [[1, True]], [[1, 2, 3]], [[1]], [["1", 3]], [[1.0, 3]], [{"a": 1}], [[[1, 2]]]],
)
def test_bad_runs_are_refused(jpath: Path, ids: list[object]) -> None:
    with open_journal(jpath):
        pass
    with jpath.open("a") as f:
        f.write(json.dumps({"ev": "intent", "dir": "apply", "ids": ids}) + "\n")
        f.write(json.dumps({"ev": "intent", "dir": "apply", "ids": [1]}) + "\n")
    with pytest.raises(JournalError, match="malformed record"):
        replayed(jpath)


def test_a_huge_run_is_refused_before_it_is_expanded(jpath: Path) -> None:
    with open_journal(jpath):
        pass
    with jpath.open("a") as f:
        f.write(json.dumps({"ev": "intent", "dir": "apply", "ids": [[1, 10**15]]}) + "\n\n")
    with pytest.raises(JournalError, match="not a range of ids"):
        replayed(jpath)
