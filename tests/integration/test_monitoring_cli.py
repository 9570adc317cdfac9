"""What an operator's monitoring sees, through the real CLI (a subprocess) against the moto server: the run
record (one JSON line per run in the log), the Prometheus textfile, a log line per move at the right level,
progress phases before the first batch, and a relative log_file resolved once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import cdr_key, run_cli, write_config

pytestmark = pytest.mark.integration


def run_records(log: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line.split("run record: ", 1)[1]) for line in log.read_text().splitlines() if "run record: " in line
    ]


def metrics(path: Path) -> dict[str, float]:
    """``name{labels}`` -> value, from a Prometheus textfile (comments dropped)."""
    found: dict[str, float] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def seed(s3: Any, bucket: str, n: int) -> list[str]:
    keys = [cdr_key(i) for i in range(n)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return keys


def test_a_run_logs_one_record_writes_metrics_and_a_debug_line_per_move(
    s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    keys = seed(s3, bucket, 12)
    prom_dir = tmp_path / "textfile"
    prom_dir.mkdir()
    prom = prom_dir / "s3seg.prom"
    cfg = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=moto_endpoint, metrics_file=str(prom))

    done = run_cli("run", "-c", str(cfg), "-v", "--no-progress", "--processes", "1", "--batch-size", "5")
    assert done.returncode == 0, done.stderr

    log = tmp_path / "s3seg.log"
    (record,) = run_records(log)
    assert (record["command"], record["exit_code"], record["ok"], record["error"]) == ("run", 0, True, None)
    assert record["plan"]["planned"] == 12 and record["plan"]["outcome"] == "planned"
    assert record["moves"]["this_run"] == {"done": 12} and record["duration_s"] >= 0
    # -v: one DEBUG line per move, naming both keys
    text = log.read_text()
    moved = re.findall(r"DEBUG .* apply move \d+ s3://\S+/(incoming/\S+) -> s3://\S+/(segregated/\S+): done", text)
    assert sorted(src for src, _ in moved) == sorted(keys)
    # what happens before the first batch is said, in the log and (with -v) on stderr
    for phase in ("checking the store", "taking the lease", "probing conditional-write support", "starting workers"):
        assert phase in text and phase in done.stderr, phase

    m = metrics(prom)
    assert m['s3seg_last_run_success{command="run"}'] == 1
    assert m['s3seg_last_run_exit_code{command="run"}'] == 0
    assert m['s3seg_last_run_moves{command="run",outcome="done"}'] == 12
    assert m['s3seg_last_plan_planned_moves{command="run"}'] == 12
    assert m['s3seg_last_plan_outcome{command="run",outcome="planned"}'] == 1
    assert (
        m['s3seg_last_success_timestamp_seconds{command="run"}'] == m['s3seg_last_run_timestamp_seconds{command="run"}']
    )
    assert m['s3seg_last_run_objects_per_second{command="run"}'] > 0
    assert os.listdir(prom_dir) == ["s3seg.prom"]  # written to a temporary file, then renamed
    first_success = m['s3seg_last_success_timestamp_seconds{command="run"}']

    # A failing run: another object sits at a destination key. The move is a WARNING line naming its keys (in
    # the log, not on stderr without -v), the record says exit 1, and the textfile keeps the last success time.
    s3.put_object(Bucket=bucket, Key=cdr_key(50), Body=b"new")
    s3.put_object(Bucket=bucket, Key="segregated/2022/12/31/10/" + cdr_key(50, prefix=""), Body=b"someone else's")
    failed = run_cli("run", "-c", str(cfg), "--no-progress", "--processes", "0")
    assert failed.returncode == 1, failed.stderr
    _, record = run_records(log)
    assert (record["exit_code"], record["ok"]) == (1, False)
    assert record["moves"]["this_run"] == {"conflict-dest-differs": 1}
    warning = [line for line in log.read_text().splitlines() if "WARNING" in line and "conflict-dest-differs" in line]
    assert len(warning) == 1 and cdr_key(50) in warning[0], log.read_text()[-2000:]
    assert "conflict-dest-differs" not in failed.stderr
    m = metrics(prom)
    assert m['s3seg_last_run_success{command="run"}'] == 0
    assert m['s3seg_last_run_exit_code{command="run"}'] == 1
    assert m['s3seg_last_success_timestamp_seconds{command="run"}'] == first_success
    assert m['s3seg_last_run_moves{command="run",outcome="conflict-dest-differs"}'] == 1


def test_a_relative_log_file_is_resolved_once_where_plan_ran(
    s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    """plan in one directory, apply from another: apply logs to plan's log file (the manifest records it
    absolute), and a refused command still leaves its run record there."""
    seed(s3, bucket, 3)
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    cfg = write_config(here / "config.xml", bucket=bucket, endpoint=moto_endpoint, log_file="s3seg.log")
    manifest = here / "plan.jsonl"

    def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "s3seg", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=120, env=dict(os.environ), check=False)  # fmt: skip

    plan = cli(here, "plan", "-c", "config.xml", "-o", str(manifest), "--metrics-file", "plan.prom")
    assert plan.returncode == 0, plan.stderr
    header = json.loads(manifest.read_text().splitlines()[0])
    assert header["config"]["log_file"] == str(here / "s3seg.log")
    assert metrics(here / "plan.prom")['s3seg_last_plan_planned_moves{command="plan"}'] == 3

    applied = cli(elsewhere, "apply", str(manifest), "--no-progress", "--processes", "0")
    assert applied.returncode == 0, applied.stderr
    assert not (elsewhere / "s3seg.log").exists()
    refused = cli(elsewhere, "apply", str(manifest), "--endpoint-url", "http://127.0.0.1:9", "--no-progress")
    assert refused.returncode == 3
    records = run_records(here / "s3seg.log")
    assert [(r["command"], r["exit_code"]) for r in records] == [("plan", 0), ("apply", 0), ("apply", 3)]
    assert records[1]["moves"]["this_run"] == {"done": 3}
    assert "planned against endpoint" in records[2]["error"]
    assert cfg.exists()
