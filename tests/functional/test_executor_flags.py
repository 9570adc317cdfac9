"""``--executor`` / ``--scheduler`` are checked before any journal or S3 request; without the dask extra,
``--executor dask`` fails with how to install it (in process, ``mock_aws``)."""

from __future__ import annotations

import io
import os
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import cdr_key, write_config

from s3seg import cli, commands, config


@pytest.fixture
def setup(s3: Any, tmp_path: Path) -> tuple[str, str, str]:
    bucket = f"t-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=bucket)
    for n in (1, 2):
        s3.put_object(Bucket=bucket, Key=cdr_key(n), Body=b"x")
    cfg = str(write_config(tmp_path / "c.xml", bucket=bucket))
    manifest = str(tmp_path / "plan.jsonl")
    commands.plan(config.load(cfg), manifest, now=datetime(2023, 1, 2))
    return bucket, cfg, manifest


def keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_executor_dask_without_the_extra_says_how_to_install_it(
    s3: Any, setup: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket, cfg, manifest = setup
    before = keys(s3, bucket)
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    code = cli.run_cli(["apply", manifest, "--executor", "dask"], io.StringIO())
    assert code == 2
    assert "pip install 's3seg[dask]'" in capsys.readouterr().err
    assert not os.path.exists(manifest + ".journal")
    assert keys(s3, bucket) == before

    state = Path(cfg).parent
    manifests = set(state.glob("*.jsonl"))
    code = cli.run_cli(["run", "-c", cfg, "--executor", "dask"], io.StringIO())
    assert code == 2  # refused before planning: no new manifest
    assert set(state.glob("*.jsonl")) == manifests
    assert keys(s3, bucket) == before


def test_a_scheduler_without_executor_dask_is_a_usage_error(
    s3: Any, setup: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    bucket, _, manifest = setup
    before = keys(s3, bucket)
    code = cli.run_cli(["apply", manifest, "--scheduler", "tcp://127.0.0.1:1"], io.StringIO())
    assert code == 2
    assert "--scheduler is for --executor dask" in capsys.readouterr().err
    assert keys(s3, bucket) == before


def test_run_shuts_its_workers_down_before_it_releases_the_lease(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run`` starts its backend before the plan; no worker may still be moving once another run can take the
    lease, so the backend is shut down first, and the moves are all made."""
    from s3seg.executor import InlineBackend
    from s3seg.lease import Lease

    bucket = f"t-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=bucket)
    for n in (1, 2, 3):
        s3.put_object(Bucket=bucket, Key=cdr_key(n), Body=b"x")
    events: list[str] = []

    class Recording(InlineBackend):
        def shutdown(self, *, cancel: bool) -> None:
            events.append("backend shut down")

    started: list[int] = []

    def start(opts: Any, threads: int, processes: int, spec: Any, on_phase: Any) -> InlineBackend:
        started.append(processes)
        return Recording()

    real_release = Lease.release

    def release(self: Lease) -> None:
        events.append("lease released")
        real_release(self)

    monkeypatch.setattr(commands, "_start_backend", start)
    monkeypatch.setattr(Lease, "release", release)
    settings = config.load(str(write_config(tmp_path / "c.xml", bucket=bucket, processes=2)))
    report, result = commands.run(settings, now=datetime(2023, 1, 2), output=str(tmp_path / "plan.jsonl"))
    assert started == [2]  # one backend, started by run (before the plan), none by the apply
    assert report.planned == 3 and result.report is not None and result.report.counts
    assert events == ["backend shut down", "lease released"]
    assert not [k for k in keys(s3, bucket) if k.startswith("incoming/")] and len(keys(s3, bucket)) == 3
