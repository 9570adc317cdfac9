"""The journal under abuse: torn tails, corrupt middles, foreign or deleted journals, two runs at once.

A torn last line is what a crash leaves: tolerated, the re-run finishes. Anything else wrong with the journal
is refused with exit 3 before a single S3 request. A deleted journal is survivable: the protocol re-checks
every move against the bucket. A second run on the same manifest is refused while the first holds the lock.
"""

from __future__ import annotations

import io
import json
import os
import shutil

import pytest
from advlab import Lab, wait_for

from s3seg.cli import run_cli

pytestmark = pytest.mark.integration

OBJECTS = 20


def _partial_apply(lab: Lab, point: str = "after-copied-record:2") -> None:
    """An apply killed mid-way: some moves done, some copied, some untouched."""
    lab.seed(OBJECTS)
    lab.plan(batch_size=5)
    crashed = lab.apply("--processes", "0", crash_at=point)
    assert crashed.code == -9, crashed


def _journal_path(lab: Lab) -> str:
    return lab.manifest + ".journal"


TORN_TAILS = {
    "half-a-record": b'{"ev":"outcome","dir":"apply","status":"do',
    "a-record-without-its-newline": b'{"ev":"outcome","dir":"apply","status":"done","ids":[1]}',
    "binary-garbage": bytes(b for b in range(256) if b != 0x0A),  # a torn write holds no newline
}


@pytest.mark.parametrize("tail", TORN_TAILS, ids=list(TORN_TAILS))
def test_a_torn_journal_tail_is_tolerated_and_the_rerun_finishes(moto_lab: Lab, tail: str) -> None:
    lab = moto_lab
    _partial_apply(lab)
    with open(_journal_path(lab), "ab") as f:
        f.write(TORN_TAILS[tail])
    assert lab.inline("apply") == 0, lab.last_result
    lab.assert_applied()
    with open(_journal_path(lab), "rb") as f:
        assert all(line.endswith(b"\n") and json.loads(line) for line in f)  # the torn bytes were dropped


def _corrupt(lab: Lab, how: str) -> None:
    path = _journal_path(lab)
    with open(path, "rb") as f:
        lines = f.readlines()
    assert len(lines) >= 4
    middle = len(lines) // 2
    if how == "garbage-line":
        lines[middle] = b"\x00\xff not json at all\n"
    elif how == "unknown-event":
        lines[middle] = b'{"ev":"teleported","dir":"apply","ids":[1]}\n'
    elif how == "id-not-in-manifest":
        lines[middle] = b'{"ev":"outcome","dir":"apply","status":"done","ids":[99999]}\n'
    elif how == "unknown-status":
        lines[middle] = b'{"ev":"outcome","dir":"apply","status":"vanished","ids":[1]}\n'
    elif how == "header-of-another-manifest":
        header = json.loads(lines[0])
        header["manifest_sha256"] = "0" * 64
        lines[0] = json.dumps(header).encode() + b"\n"
    elif how == "record-truncated-in-the-middle":
        lines[middle] = lines[middle][: len(lines[middle]) // 2] + b"\n"
    with open(path, "wb") as f:
        f.writelines(lines)


CORRUPTIONS = [
    "garbage-line",
    "unknown-event",
    "id-not-in-manifest",
    "unknown-status",
    "header-of-another-manifest",
    "record-truncated-in-the-middle",
]


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_corrupt_journal_is_refused_with_exit_3_and_zero_s3_requests(moto_lab: Lab, how: str) -> None:
    lab = moto_lab
    _partial_apply(lab)
    _corrupt(lab, how)
    before = lab.state(bodies=False)
    with open(_journal_path(lab), "rb") as f:
        journal_before = f.read()
    lab.proxy.reset_counts()
    for verb in ("apply", "rollback"):
        run = lab.run(verb)
        assert run.code == 3, run
        assert _journal_path(lab) in run.err, run
    assert run_cli(["status", lab.manifest], out=io.StringIO()) == 3
    assert lab.proxy.requests() == 0, dict(lab.proxy.counts)
    assert lab.state(bodies=False) == before
    with open(_journal_path(lab), "rb") as f:
        assert f.read() == journal_before  # refused journals are not "repaired" behind the operator's back


def test_another_manifests_journal_passed_with_journal_flag_is_refused(moto_lab: Lab) -> None:
    lab = moto_lab
    _partial_apply(lab)
    first = lab.manifest
    other = lab.plan(name="other.jsonl")  # same bucket, a different manifest (its header differs)
    assert other != first
    lab.proxy.reset_counts()
    run = lab.run("apply", "--journal", first + ".journal")
    assert run.code == 3, run
    assert "another manifest" in run.err
    assert lab.proxy.requests() == 0


def test_a_deleted_journal_after_a_partial_apply_still_ends_exact(moto_lab: Lab) -> None:
    """Without its journal the re-run cannot know what it did: the protocol re-checks each move against S3."""
    lab = moto_lab
    _partial_apply(lab, "after-copied-record:3")
    os.unlink(_journal_path(lab))
    assert lab.inline("apply") == 0, lab.last_result
    lab.assert_applied()
    counts = lab.journal_counts()
    # Moves the lost journal had recorded were re-proven, not redone; without that journal nothing says they were
    # this manifest's doing, so they are done-elsewhere (a rollback leaves them: README, known limits).
    assert counts.get("done-elsewhere", 0) > 0


def test_a_journal_deleted_while_apply_runs_leaves_nothing_lost(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(OBJECTS)
    lab.plan(batch_size=5)
    lab.proxy.set(delay=0.03)
    proc = lab.spawn(*lab.exec_args("apply"))
    assert wait_for(lambda: lab.proxy.total("forwarded", ("CopyObject",)) > 6, timeout=60)
    os.unlink(_journal_path(lab))  # the running apply keeps writing to the unlinked file
    run = lab.finish(proc)
    assert run.code == 0, run
    lab.proxy.heal()
    lab.assert_applied()
    assert lab.inline("apply") == 0  # a new journal: every move re-checked and found done
    lab.assert_applied()


@pytest.mark.parametrize("second", ["apply", "rollback"])
def test_a_second_run_on_the_same_manifest_is_refused_while_the_first_runs(moto_lab: Lab, second: str) -> None:
    lab = moto_lab
    lab.seed(OBJECTS)
    lab.plan(batch_size=5)
    lab.proxy.set(delay=0.05)  # slow enough that the hold below lands mid-run
    first = lab.spawn(*lab.exec_args("apply"))
    assert wait_for(lambda: lab.proxy.total("forwarded", ("CopyObject",)) > 3, timeout=60)
    lab.proxy.hold()  # the first run is frozen mid-way, holding its lock
    requests = lab.proxy.requests()
    refused = lab.cli(*lab.exec_args(second))
    assert refused.code == 3, refused
    assert "another s3seg process" in refused.err
    assert first.poll() is None
    # No wait needed: the refused run has exited, and a request is counted when it arrives, before any answer
    # (which the hold would have withheld: the run could not have ended). So its count is final here.
    assert lab.proxy.requests() - requests <= 8, "the refused run sent requests"  # 8 = the first run's threads
    lab.proxy.release()
    run = lab.finish(first)
    assert run.code == 0, run
    lab.proxy.heal()
    lab.assert_applied()


def test_a_journal_copied_from_a_finished_run_onto_a_fresh_plan_is_refused(moto_lab: Lab, tmp_path: object) -> None:
    lab = moto_lab
    lab.seed(5)
    lab.plan(batch_size=5)
    assert lab.inline("apply") == 0
    done_journal = _journal_path(lab)
    lab.seed(5, seed=1)  # new objects, a new plan that differs from the first
    fresh = lab.plan(name="fresh.jsonl")
    shutil.copy(done_journal, fresh + ".journal")
    lab.proxy.reset_counts()
    run = lab.run("apply")
    assert run.code == 3, run
    assert lab.proxy.requests() == 0
