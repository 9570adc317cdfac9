"""Progress per object with the real process pool: within one batch (``batch_size`` above the number of moves),
against a slow store (``s3seg_lab/fakes3.py`` answering each request after 20 ms), the progress callback is
called more than once before the batch's results arrive, and its total is exactly the number of moves.

Plan through the CLI (a subprocess); apply through the Python API with a recording ``on_progress``, and through
the CLI on a pseudo-terminal (the bar is drawn only on a terminal), reading the bar's positions. No timing
assertions beyond "more than one update".
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
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


def planned(store: FakeS3, tmp_path: Path, env: dict[str, str]) -> str:
    store.seed("bkt", [cdr_key(i, hour=i % 24) for i in range(N)], 1024)
    cfg = write_config(tmp_path / "c.xml", bucket="bkt", endpoint=store.endpoint)
    manifest = str(tmp_path / "plan.jsonl")
    r = run_cli("plan", "-c", str(cfg), "-o", manifest, env=env)
    assert r.returncode == 0, r.stderr
    return manifest


def test_progress_moves_per_object_within_one_batch_and_ends_at_the_number_of_moves(
    store: FakeS3, tmp_path: Path, env: dict[str, str]
) -> None:
    manifest = planned(store, tmp_path, env)
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


def test_the_cli_bar_on_a_terminal_shows_positions_within_the_batch(
    store: FakeS3, tmp_path: Path, env: dict[str, str]
) -> None:
    manifest = planned(store, tmp_path, env)
    leader, follower = pty.openpty()  # stderr a terminal: the CLI draws its tqdm bar there
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # 0 columns: an empty bar
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "s3seg", "apply", manifest, "--json", "--processes", "1", "--threads", "2",
             "--concurrency", "fixed", "--batch-size", "500"],
            stdout=subprocess.PIPE, stderr=follower, env=env, text=True,
        )  # fmt: skip
        os.close(follower)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        out, _ = proc.communicate(timeout=120)
    finally:
        os.close(leader)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    assert json.loads(out)["this_run"] == {"done": N}
    positions = [int(m) for m in re.findall(rb"\b(\d+)/%d\b" % N, b"".join(chunks))]
    assert positions and positions[-1] == N, b"".join(chunks)[-2000:]
    assert positions == sorted(positions)  # never backwards
    assert {p for p in positions if 0 < p < N}, positions  # positions within the one batch were drawn
