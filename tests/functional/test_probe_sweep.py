"""The capability probe removes scratch objects that killed probes left behind, and only old ones."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from s3seg import probe
from s3seg.storage import Storage


@pytest.fixture(autouse=True)
def _sweep_bucket(s3: Any) -> None:
    """probe-sweep, made in the in-process moto of tests/functional/conftest.py's ``s3`` (fresh for each test)."""
    s3.create_bucket(Bucket="probe-sweep")


def keys(s3: Any) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket="probe-sweep").get("Contents", [])}


def test_probe_leaves_no_scratch_objects_and_keeps_fresh_leftovers(s3: Any) -> None:
    s3.put_object(Bucket="probe-sweep", Key=".s3seg-probe/running/a", Body=b"a probe running right now")
    s3.put_object(Bucket="probe-sweep", Key="data/file", Body=b"user data")
    probe.probe(Storage(s3), "probe-sweep")
    # A leftover younger than an hour may belong to a probe in progress: kept. The probe's own objects: gone.
    assert keys(s3) == {".s3seg-probe/running/a", "data/file"}


def test_stale_scratch_objects_are_swept_and_nothing_outside_the_prefix(s3: Any) -> None:
    for key in (".s3seg-probe/dead/a", ".s3seg-probe/dead/b", ".s3seg-probe/dead/c", "data/.s3seg-probe/x"):
        s3.put_object(Bucket="probe-sweep", Key=key, Body=b"x")
    # A negative age makes every object "old".
    probe._sweep_stale_probes(Storage(s3), "probe-sweep", ".s3seg-probe/", max_age=timedelta(seconds=-60))
    assert keys(s3) == {"data/.s3seg-probe/x"}
