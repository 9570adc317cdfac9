"""Test helpers shared by every test package: CDR-like keys and configs (from ``s3seg_lab.cdr``), bucket
snapshots, the CLI as a subprocess, waiting on a condition.

A plain module (not conftest) so test files import it by name without clashing with other conftest files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3seg.journal import expand_ids
from s3seg_lab import cdr
from s3seg_lab.cdr import CDR, CDR_PATTERN, cdr_key

__all__ = [
    "CDR",
    "CDR_PATTERN",
    "ObjectState",
    "cdr_key",
    "record_ids",
    "run_cli",
    "snapshot",
    "wait_for",
    "write_config",
]


def write_config(path: Path, *, bucket: str, endpoint: str | None = None, **extra: Any) -> Path:
    """A config file for ``bucket`` with the original's example rule (``s3seg_lab.cdr``), every page listed,
    two processes of eight threads, state next to it; ``extra`` adds/overrides elements (None removes one)."""
    defaults: dict[str, Any] = {"n_loops": 0, "processes": 2, "n_workers": 8, "state_dir": str(path.parent)}
    return cdr.write_config(path, bucket=bucket, endpoint=endpoint, **{**defaults, **extra})


@dataclass(frozen=True)
class ObjectState:
    body: bytes
    content_type: str
    metadata: dict[str, str]
    tags: dict[str, str]
    storage_class: str


def snapshot(s3: Any, bucket: str, *, full: bool = True) -> dict[str, ObjectState | bytes]:
    """Every object in ``bucket``: key -> bytes (``full=False``) or key -> ObjectState (``full=True``)."""
    out: dict[str, Any] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            got = s3.get_object(Bucket=bucket, Key=key)
            body = got["Body"].read()
            if not full:
                out[key] = body
                continue
            tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
            out[key] = ObjectState(
                body=body,
                content_type=got.get("ContentType", ""),
                metadata=got.get("Metadata", {}),
                tags={t["Key"]: t["Value"] for t in tags},
                storage_class=obj.get("StorageClass", "STANDARD"),
            )
    return out


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m s3seg ARGS`` as a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "s3seg", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def record_ids(record: dict[str, Any]) -> list[int]:
    """A journal record's ids as integers (format 2 writes runs of consecutive ids as [first, last])."""
    return expand_ids(record["ids"], sys.maxsize)


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds have passed (False): what a test waits
    on instead of sleeping a guessed time and then counting."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval)
