"""apply and rollback on a Dask cluster (``--executor dask``): ``distributed.LocalCluster`` worker processes
against the moto server. One cluster serves the module (it starts in a few seconds).

Every test asserts the exact final bucket. The journal stays with the driver; the workers build their own S3
clients from their own environment.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import cdr_key, run_cli, snapshot, wait_for, write_config

from s3seg import commands, config
from s3seg.dask_backend import run_copy_batch
from s3seg.journal import APPLY_DONE
from s3seg.moves import Kind, Options, Task
from s3seg.probe import Capabilities
from s3seg.storage import ClientSpec
from s3seg.worker import WorkerConfig

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

pytestmark = pytest.mark.integration

SEG = "segregated/2022/12/31/10/"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two worker processes of two threads each (the brief's shape for a small real cluster)."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    ) as c:
        yield c


def seed(s3: Any, bucket: str, n: int) -> dict[str, bytes]:
    objects = {cdr_key(i): f"cdr {i}\n".encode() * (i % 5 + 1) for i in range(1, n + 1)}
    objects["incoming/not-a-cdr.txt"] = b"goes to the error folder"
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return objects


def moved(objects: dict[str, bytes]) -> dict[str, bytes]:
    out = {}
    for key, body in objects.items():
        name = key.removeprefix("incoming/")
        out[(SEG if name.startswith("CHARGINGCDR_") else "error/") + name] = body
    return out


def make_plan(tmp_path: Path, bucket: str, endpoint: str) -> str:
    path = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=endpoint, batch_size=5, n_workers=4)
    manifest = str(tmp_path / "plan.jsonl")
    commands.plan(config.load(path), manifest, now=datetime(2023, 1, 2))
    return manifest


def dask_opts(cluster: Any, **kw: Any) -> commands.ExecOptions:
    return commands.ExecOptions(executor="dask", scheduler=cluster.scheduler_address, conditional_writes="client", **kw)


def test_apply_and_rollback_on_dask_end_exact(
    cluster: Any, s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    objects = seed(s3, bucket, 40)
    original = snapshot(s3, bucket)
    manifest = make_plan(tmp_path, bucket, moto_endpoint)

    result = commands.apply(manifest, dask_opts(cluster))
    assert not result.report.aborted
    assert result.totals == {"done": 41}
    assert snapshot(s3, bucket, full=False) == moved(objects)

    back = commands.rollback(manifest, dask_opts(cluster))
    assert not back.report.aborted
    assert back.totals == {"rolled-back": 41}
    assert snapshot(s3, bucket) == original  # keys, bytes, metadata, tags, storage class


def test_a_worker_killed_mid_run_has_its_batches_rerun_elsewhere(
    cluster: Any, s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    objects = seed(s3, bucket, 60)
    manifest = make_plan(tmp_path, bucket, moto_endpoint)
    with distributed.Client(cluster.scheduler_address) as client:
        pids = sorted(client.run(os.getpid).values())
    killed: list[int] = []

    def kill_one_worker(n: int) -> None:
        if not killed:  # right after the first batch is journaled: the others are still in flight
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    result = commands.apply(manifest, dask_opts(cluster), on_progress=kill_one_worker)
    assert killed
    assert not result.report.aborted  # Dask ran the lost worker's batches on the other worker
    # A re-run batch knows it ran before: what it finds copied is its own work ("done"), never "deduped".
    assert result.totals == {"done": 61}
    assert snapshot(s3, bucket, full=False) == moved(objects)
    with distributed.Client(cluster.scheduler_address) as client:
        client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker for the next tests


def test_a_copy_batch_started_twice_takes_what_it_finds_copied_for_its_own_work(
    cluster: Any, s3: Any, bucket: str, moto_endpoint: str
) -> None:
    """Why the kill test sees "done" and not "deduped": the scheduler remembers that a batch started."""
    etag = s3.put_object(Bucket=bucket, Key="incoming/a", Body=b"payload")["ETag"]
    s3.copy_object(Bucket=bucket, Key="dst/a", CopySource={"Bucket": bucket, "Key": "incoming/a"})  # a prior copy
    task = Task(1, bucket, "incoming/a", bucket, "dst/a", etag, 7)
    cfg = WorkerConfig(
        spec=ClientSpec(endpoint_url=moto_endpoint, region="us-east-1"),
        options=Options(caps=Capabilities.none()),
        threads=2,
    )
    with distributed.Client(cluster.scheduler_address) as client:
        first = client.submit(run_copy_batch, "run-1", "batch-1", cfg, [task], pure=False).result()
        again = client.submit(run_copy_batch, "run-1", "batch-1", cfg, [task], pure=False).result()
    assert [r.kind for r in first] == [Kind.IDENTICAL_THEIRS]  # first start: it was there before us
    assert [r.kind for r in again] == [Kind.IDENTICAL_OURS]  # second start of the same batch: ours


def test_a_killed_driver_is_resumed_by_running_the_same_command_again(
    cluster: Any, s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    objects = seed(s3, bucket, 30)
    manifest = make_plan(tmp_path, bucket, moto_endpoint)
    args = ["apply", manifest, "--executor", "dask", "--scheduler", cluster.scheduler_address, "--no-progress"]
    args += ["--conditional-writes", "client"]
    # A short lease ttl: the killed driver's lease must expire before the re-run may take it over.
    first = run_cli(*args, env={"S3SEG_CRASH_AT": "after-copied-record:2", "S3SEG_LEASE_TTL": "4"})
    assert first.returncode == -signal.SIGKILL, first.stderr
    # Stopped part-way. (Tasks already running on the workers may still finish after the driver died: the
    # bucket is not looked at until the re-run, which re-checks every move the journal left open.)
    assert commands.status(manifest).remaining > 0
    # The cluster's workers may still be finishing objects: the re-run waits for the ttl (the unit tests of the
    # lease check the refusal; here the machine's speed decides whether the ttl is already over).
    second = run_cli(*args, "--lock-wait", "60")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "took over the stale lease" in second.stderr
    assert snapshot(s3, bucket, full=False) == moved(objects)
    assert set(commands.status(manifest).counts) <= {s.label for s in APPLY_DONE}


DRIVER = """
import sys, time
from distributed import Client
from s3seg.dask_backend import run_guarded

def probe(path):
    import time
    import s3seg.worker
    with open(path, "a") as f:
        f.write("running\\n")
    started = time.monotonic()
    while time.monotonic() - started < 30:
        if s3seg.worker._orphaned():  # what every object's step checks first
            with open(path, "a") as f:
                f.write("stopped\\n")
            return
        time.sleep(0.02)

client = Client(sys.argv[1])
future = client.submit(run_guarded, probe, sys.argv[2], pure=False)
time.sleep(60)
"""


def test_a_running_batch_stops_when_its_driver_dies(cluster: Any, tmp_path: Path) -> None:
    """A task whose driver is gone sends no further request (a rollback may already own those moves)."""
    log_path = tmp_path / "probe.log"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, cluster.scheduler_address, str(log_path)])
    try:
        started = wait_for(lambda: "running" in (log_path.read_text() if log_path.exists() else ""), timeout=60)
        assert started, "the probe task never started"
    finally:
        driver.kill()
        driver.wait()
    assert wait_for(lambda: "stopped" in log_path.read_text(), timeout=5), "the task kept running after its driver died"


def test_when_dask_gives_up_on_a_batch_the_run_stops_and_a_rerun_finishes_it(
    cluster: Any, s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    """The worker of this second cluster dies at its second copy batch (S3SEG_CRASH_AT in the workers' env
    only), and this scheduler allows no failure: Dask gives up on that batch, the run stops like a broken local
    pool (nothing lost, the journal has every step), and the same apply on a healthy cluster ends exact."""
    objects = seed(s3, bucket, 20)
    manifest = make_plan(tmp_path, bucket, moto_endpoint)
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.CRITICAL,
            env={"S3SEG_CRASH_AT": "worker-copy:2"},
        ) as crashing,
    ):
        first = commands.apply(manifest, dask_opts(crashing))
    assert first.report.aborted
    assert snapshot(s3, bucket, full=False) != moved(objects)
    second = commands.apply(manifest, dask_opts(cluster))
    assert not second.report.aborted
    assert set(second.totals) <= {s.label for s in APPLY_DONE}
    assert snapshot(s3, bucket, full=False) == moved(objects)


def test_dask_without_a_scheduler_starts_a_local_cluster(
    s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    objects = seed(s3, bucket, 10)
    manifest = make_plan(tmp_path, bucket, moto_endpoint)
    result = commands.apply(manifest, commands.ExecOptions(executor="dask", processes=1, conditional_writes="client"))
    assert result.totals == {"done": 11}
    assert snapshot(s3, bucket, full=False) == moved(objects)


def test_the_pickled_worker_config_carries_no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret, key_id = "s3seg-Secret-Never-Pickled-7f3a9c", "AKIAS3SEGNEVERPICKLED"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SESSION_TOKEN", secret + "-token")
    settings = config.load(write_config(tmp_path / "c.xml", bucket="some-bucket", endpoint="http://127.0.0.1:9"))
    spec = commands.client_spec(settings.to_dict(), commands.Target(), threads=8)
    cfg = WorkerConfig(spec=spec, options=Options(caps=Capabilities.none()), threads=8)
    import cloudpickle  # what distributed uses for task arguments

    for blob in (pickle.dumps(cfg), cloudpickle.dumps(cfg)):
        assert secret.encode() not in blob
        assert key_id.encode() not in blob
