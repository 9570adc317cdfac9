"""Property: plan -> apply -> rollback leaves the bucket exactly as it began.

Over generated sets of objects (names with unicode, spaces, '+', '%', '=', '&'; small sizes; user metadata;
Content-Types; tags; storage classes STANDARD and STANDARD_IA), on the moto server with the real process pool
(2 spawned workers, shared by all examples so each example does not pay the pool start). In between, the
applied state is exact too: every object at its destination with all its attributes, no source left.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from helpers import snapshot, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3seg import commands, config
from s3seg.executor import ProcessBackend

pytestmark = pytest.mark.integration

NOW = datetime(2023, 1, 2, 12, 0, 0)
PATTERN = re.compile(r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*")

NAME_CHARS = st.sampled_from([*"abcXYZ0189", " ", "+", "-", "_", ".", "=", "&", "%", "2B", "é", "ü", "☃", "日本", "😀"])
names = st.lists(NAME_CHARS, min_size=1, max_size=8).map("".join)
objects = st.lists(
    st.fixed_dictionaries(
        {
            "name": names,
            "dated": st.booleans(),  # a CDR name with a date (-> segregated/...) or not (-> error/)
            "day": st.sampled_from(["20221230", "20221231"]),
            "hour": st.sampled_from(["00", "10", "23"]),
            "body": st.binary(max_size=1500),
            "meta": st.dictionaries(
                st.sampled_from(["origin", "x-y", "n"]), st.text("abcXYZ019-_.", min_size=1, max_size=8), max_size=2
            ),
            "ctype": st.sampled_from([None, "text/plain", "application/x-cdr", "application/json; charset=utf-8"]),
            "tags": st.dictionaries(
                st.sampled_from(["team", "ttl", "k"]), st.text("abc019-", min_size=1, max_size=6), max_size=2
            ),
            "storage_class": st.sampled_from(["STANDARD", "STANDARD_IA"]),
        }
    ),
    min_size=1,
    max_size=10,
)


def key_of(obj: dict[str, Any]) -> str:
    if obj["dated"]:
        return f"incoming/CHARGINGCDR_{obj['name']}-{obj['day']}-{obj['hour']}0511.ccn"
    return f"incoming/{obj['name']}.txt"


def dst_of(key: str) -> str:
    name = key.removeprefix("incoming/")
    m = PATTERN.match(name)
    if m is None:
        return "error/" + name
    d, h = m.groups()
    return f"segregated/{d[:4]}/{d[4:6]}/{d[6:]}/{h}/{name}"


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessBackend]:
    backend = ProcessBackend(2)
    yield backend
    backend.shutdown(cancel=True)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(objs=objects, writes=st.sampled_from(["client", "auto"]), batch_size=st.sampled_from([1, 3, 500]))
def test_apply_then_rollback_restores_the_bucket_exactly(
    moto_endpoint: str, pool: ProcessBackend, objs: list[dict[str, Any]], writes: str, batch_size: int
) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = f"p-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=bucket)
    seen: set[str] = set()
    for obj in objs:
        key = key_of(obj)
        if key in seen:
            continue
        seen.add(key)
        extra: dict[str, Any] = {"Metadata": obj["meta"], "StorageClass": obj["storage_class"]}
        if obj["ctype"]:
            extra["ContentType"] = obj["ctype"]
        if obj["tags"]:
            extra["Tagging"] = "&".join(f"{k}={v}" for k, v in obj["tags"].items())
        s3.put_object(Bucket=bucket, Key=key, Body=obj["body"], **extra)
    s3.put_object(Bucket=bucket, Key="incoming/sub/not-planned", Body=b"bystander")
    before = snapshot(s3, bucket)
    opts = commands.ExecOptions(processes=2, threads=4, batch_size=batch_size, conditional_writes=writes)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(Path(tmp) / "config.xml", bucket=bucket, endpoint=moto_endpoint)
        manifest = str(Path(tmp) / "plan.jsonl")
        report = commands.plan(config.load(cfg), manifest, now=NOW)
        assert report.planned == len(seen)

        applied = commands.apply(manifest, opts, backend=pool)

        assert {s.label: n for s, n in applied.report.counts.items()} == {"done": len(seen)}
        expected = {dst_of(k) if k in seen else k: v for k, v in before.items()}
        assert snapshot(s3, bucket) == expected

        rolled = commands.rollback(manifest, opts, backend=pool)

        assert {s.label: n for s, n in rolled.report.counts.items()} == {"rolled-back": len(seen)}
        assert snapshot(s3, bucket) == before
