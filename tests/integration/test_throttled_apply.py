"""apply through the CLI (real process pool) against the fake S3 of ``s3seg_lab/fakes3.py`` answering 503 SlowDown
above a low request rate: every item ends done, the bucket holds exactly the planned destinations.

No timing assertions: only the outcome, the final bucket state, and that the store did throttle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from helpers import cdr_key, run_cli, write_config

from s3seg_lab.fakes3 import FakeS3

pytestmark = pytest.mark.integration

N = 400


@pytest.fixture
def store() -> Iterator[FakeS3]:
    fake = FakeS3(delay_ms=5, jitter_ms=2).start()
    yield fake
    fake.stop()


def client(store: FakeS3) -> Any:
    return boto3.client("s3", endpoint_url=store.endpoint, aws_access_key_id="x", aws_secret_access_key="y",
                        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))  # fmt: skip


@pytest.fixture
def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    e.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_DEFAULT_REGION="us-east-1")
    return e


def planned(store: FakeS3, tmp_path: Path, env: dict[str, str]) -> tuple[str, set[str]]:
    keys = [cdr_key(i, hour=i % 24) for i in range(N)]
    store.seed("bkt", keys, 1024)
    cfg = write_config(tmp_path / "c.xml", bucket="bkt", endpoint=store.endpoint)
    manifest = str(tmp_path / "plan.jsonl")
    r = run_cli("plan", "-c", str(cfg), "-o", manifest, env=env)
    assert r.returncode == 0, r.stderr
    expected = {f"segregated/2022/12/31/{i % 24:02d}/{k.removeprefix('incoming/')}" for i, k in enumerate(keys)}
    return manifest, expected


def bucket_keys(store: FakeS3) -> set[str]:
    s3 = client(store)
    return {o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket="bkt") for o in p.get("Contents", [])}


def test_apply_against_a_throttling_store_ends_with_every_item_done(
    store: FakeS3, tmp_path: Path, env: dict[str, str]
) -> None:
    manifest, expected = planned(store, tmp_path, env)
    store.configure(rate=150)  # far below what 2 processes x 16 requests in flight at 5 ms would send
    store.reset()
    r = run_cli("apply", manifest, "--json", "--no-progress", "--threads", "64", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["this_run"] == {"done": N}
    assert store.throttled > 0  # the store did answer SlowDown: the test exercised throttling
    store.configure(rate=0)
    assert bucket_keys(store) == expected


def test_apply_with_a_rate_cap_ends_with_every_item_done(store: FakeS3, tmp_path: Path, env: dict[str, str]) -> None:
    manifest, expected = planned(store, tmp_path, env)
    r = run_cli("apply", manifest, "--json", "--no-progress", "--max-requests-per-second", "400", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["this_run"] == {"done": N}
    assert bucket_keys(store) == expected


def test_fixed_concurrency_against_a_throttling_store_ends_with_every_item_done(
    store: FakeS3, tmp_path: Path, env: dict[str, str]
) -> None:
    manifest, expected = planned(store, tmp_path, env)
    store.configure(rate=300)
    r = run_cli("apply", manifest, "--json", "--no-progress", "--concurrency", "fixed", "--threads", "8", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["this_run"] == {"done": N}
    store.configure(rate=0)
    assert bucket_keys(store) == expected


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_non_positive_rate_cap_is_refused_before_any_request(
    store: FakeS3, tmp_path: Path, env: dict[str, str], value: str
) -> None:
    manifest, _ = planned(store, tmp_path, env)
    before = bucket_keys(store)
    store.reset()
    r = run_cli("apply", manifest, "--max-requests-per-second", value, env=env)
    assert r.returncode == 2
    assert "--max-requests-per-second must be above 0" in r.stderr
    assert store.requests == {}
    assert bucket_keys(store) == before
    assert not os.path.exists(manifest + ".journal")
