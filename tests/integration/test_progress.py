"""Progress per object with the real process pool: within one batch (``batch_size`` above the number of moves),
against a slow store (``s3seg_lab/fakes3.py`` answering each request after 20 ms), the progress callback is
called more than once before the batch's results arrive, and its total is exactly the number of moves.

Plan through the CLI (a subprocess); apply through the Python API with a recording ``on_progress`` (the CLI's
bar is the same callback, drawn only on a terminal). No timing assertions beyond "more than one update".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import cdr_key, run_cli, write_config

from s3seg import commands
from s3seg.journal import Journal
from s3seg.manifest import Manifest
from s3seg_lab.fakes3 import FakeS3

pytestmark = pytest.mark.integration

N = 80


@pytest.fixture
def store() -> Iterator[FakeS3]:
    fake = FakeS3(delay_ms=20).start()
    yield fake
    fake.stop()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    return dict(os.environ)


def test_progress_moves_per_object_within_one_batch_and_ends_at_the_number_of_moves(
    store: FakeS3, tmp_path: Path, env: dict[str, str]
) -> None:
    store.seed("bkt", [cdr_key(i, hour=i % 24) for i in range(N)], 1024)
    cfg = write_config(tmp_path / "c.xml", bucket="bkt", endpoint=store.endpoint)
    manifest = str(tmp_path / "plan.jsonl")
    r = run_cli("plan", "-c", str(cfg), "-o", manifest, env=env)
    assert r.returncode == 0, r.stderr

    # One batch of 500 for 80 moves: 1 process, 2 requests at a time, each answered in >= 20 ms, so the copy
    # phase lasts about a second and the pipeline polls the workers' counter several times meanwhile.
    updates: list[int] = []
    opts = commands.ExecOptions(processes=1, threads=2, concurrency="fixed", batch_size=500)
    result = commands.apply(manifest, opts, on_progress=updates.append)

    assert {s.label: n for s, n in result.report.counts.items()} == {"done": N} and not result.report.aborted
    assert sum(updates) == N  # the bar ends exactly at the number of moves
    assert all(step > 0 for step in updates)  # never backwards, never a no-op
    # Per batch, progress could only be reported twice: the moves the copy phase finished (none here: every
    # copy needs its delete) and those the delete phase finished. More updates are positions within the batch.
    assert len(updates) > 2, updates
    with Journal(manifest + ".journal", manifest_sha256=Manifest(manifest).verify().sha256,
                 manifest_name="plan.jsonl", entries=N) as j:  # fmt: skip
        assert {s.label: n for s, n in j.state.counts().items()} == {"done": N}
