"""The run record and the Prometheus textfile (s3seg.monitoring), and the log line per finished move."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from s3seg import monitoring
from s3seg.commands import _LoggedJournal
from s3seg.journal import Status
from s3seg.moves import Task

MOVES = {"this_run": {"done": 7, "failed": 1}, "todo": 8, "objects_per_s": 12.5}
PLAN = {"listed": 9, "planned": 8, "to_error_dir": 1, "warnings": ["x"], "outcome": "planned"}


def test_the_record_says_what_the_run_did() -> None:
    r = monitoring.run_record("run", 1, started=1000.0, ended=1002.5, plan=PLAN, moves=MOVES, error="")
    assert r["s3seg_run"] == 1 and r["command"] == "run" and (r["exit_code"], r["ok"]) == (1, False)
    assert (r["started"], r["ended"], r["duration_s"]) == (
        "1970-01-01T00:16:40+00:00",
        "1970-01-01T00:16:42+00:00",
        2.5,
    )
    assert r["error"] is None and r["plan"] == PLAN and r["moves"] == MOVES


def test_the_textfile_has_one_help_and_type_per_metric_and_a_sample_per_outcome() -> None:
    r = monitoring.run_record("apply", 0, started=1000.0, ended=1010.0, moves=MOVES)
    text = monitoring.prometheus_text(r)
    lines = text.splitlines()
    assert 's3seg_last_run_moves{command="apply",outcome="done"} 7' in lines
    assert 's3seg_last_run_moves{command="apply",outcome="failed"} 1' in lines
    assert 's3seg_last_run_objects_per_second{command="apply"} 12.5' in lines
    assert 's3seg_last_success_timestamp_seconds{command="apply"} 1010' in lines
    assert sum(line == "# TYPE s3seg_last_run_moves gauge" for line in lines) == 1
    assert "s3seg_last_plan" not in text  # apply has no plan part
    names = {line.split("{")[0] for line in lines if not line.startswith("#")}
    assert names == {line.split()[2] for line in lines if line.startswith("# TYPE")}


def test_a_failed_run_keeps_the_previous_success_time(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    ok = monitoring.run_record("run", 0, started=1000.0, ended=2000.0, plan=PLAN)
    monitoring.write_textfile(str(path), monitoring.prometheus_text(ok))
    assert monitoring.last_success(str(path), "run") == 2000.0
    assert monitoring.last_success(str(path), "apply") is None
    bad = monitoring.run_record("run", 4, started=3000.0, ended=3001.0, error="refused")
    text = monitoring.prometheus_text(bad, last_success=monitoring.last_success(str(path), "run"))
    assert 's3seg_last_success_timestamp_seconds{command="run"} 2000' in text.splitlines()
    assert 's3seg_last_run_success{command="run"} 0' in text.splitlines()
    never = monitoring.prometheus_text(bad)
    assert 's3seg_last_success_timestamp_seconds{command="run"} 0' in never.splitlines()


def test_the_textfile_is_replaced_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    path.write_text("old\n")
    monitoring.write_textfile(str(path), "new\n")
    assert path.read_text() == "new\n" and os.listdir(tmp_path) == ["m.prom"]
    with pytest.raises(OSError):
        monitoring.write_textfile(str(tmp_path / "missing" / "m.prom"), "x\n")
    assert os.listdir(tmp_path) == ["m.prom"]


def test_label_values_are_escaped() -> None:
    r = monitoring.run_record("run", 0, started=0.0, ended=1.0, plan={**PLAN, "outcome": 'a"b\\c'})
    assert 'outcome="a\\"b\\\\c"' in monitoring.prometheus_text(r)


def test_each_finished_move_is_logged_at_its_level(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tasks = [
        Task(id=i, src_bucket="src", src_key=f"in/{i}", dst_bucket="dst", dst_key=f"out/{i}", etag=f'"{i}"', size=1)
        for i in (1, 2, 3, 4)
    ]
    with _LoggedJournal(str(tmp_path / "j"), manifest_sha256="0" * 64, manifest_name="m", entries=4) as journal:
        taken = list(journal.watch(iter(tasks)))
        assert taken == tasks
        with caplog.at_level(logging.DEBUG, logger="s3seg"):
            journal.outcome("apply", Status.DONE, [1])
            journal.outcome("apply", Status.CONFLICT_DEST_DIFFERS, [2], "PreconditionFailed", "another object")
            journal.outcome("apply", Status.FAILED, [3], "AccessDenied", "CopyObject")
            journal.outcome("apply", Status.SKIPPED_ARCHIVED, [4], "-", "GLACIER")
    levels = {r.getMessage().split()[2]: r.levelno for r in caplog.records}
    assert levels == {"1": logging.DEBUG, "2": logging.WARNING, "3": logging.ERROR, "4": logging.WARNING}
    archived = next(r.getMessage() for r in caplog.records if "move 4" in r.getMessage())
    assert archived.endswith(": skipped-archived: GLACIER")
    failed = next(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert failed == "apply move 3 s3://src/in/3 -> s3://dst/out/3: failed: AccessDenied CopyObject"
    assert all(getattr(r, "s3seg_per_object", False) for r in caplog.records)
    assert not journal._in_flight  # only the moves in flight are remembered


def test_progress_says_what_happens_before_the_first_batch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from s3seg.cli import Progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    progress = Progress(True, "run")
    progress.phase("checking the store")  # no bar yet: a line of its own
    progress.start(10)
    progress.phase("probing conditional-write support in bucket b")  # on the bar
    assert progress.bar is not None and "probing" in str(progress.bar)
    progress.advance(4)
    assert "probing" not in str(progress.bar) and progress.bar.n == 4
    progress.close()
    assert "s3seg: checking the store ..." in capsys.readouterr().err
