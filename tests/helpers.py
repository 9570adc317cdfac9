"""Test helpers shared by every test package: CDR-like keys, configs, bucket snapshots, the CLI as a subprocess.

A plain module (not conftest) so test files import it by name without clashing with other conftest files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3seg.journal import expand_ids

CDR = "CHARGINGCDR_4008-BRCCNH-CCNCDR44-01-Blk0Blk-{n:04d}-{date}-{hour:02d}0511-78.ccn"
CDR_PATTERN = r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*"


def cdr_key(n: int, date: str = "20221231", hour: int = 10, prefix: str = "incoming/") -> str:
    return prefix + CDR.format(n=n, date=date, hour=hour)


def write_config(path: Path, *, bucket: str, endpoint: str | None = None, **extra: Any) -> Path:
    """A config file for ``bucket`` with the original's example rule; ``extra`` adds/overrides elements."""
    values: dict[str, Any] = {
        "log_file": str(path.parent / "s3seg.log"),
        "match_pattern": CDR_PATTERN,
        "datetime_format": "%Y%m%d%H",
        "s3_dir": f"s3://{bucket}/incoming/",
        "s3_segregated_dir": f"s3://{bucket}/segregated/%Y/%m/%d/%H/",
        "s3_error_dir": f"s3://{bucket}/error/",
        "n_loops": 0,
        "processes": 2,
        "n_workers": 8,
        "state_dir": str(path.parent),
    }
    if endpoint:
        values["endpoint_url"] = endpoint
    values.update(extra)
    body = "".join(f"  <{k}>{_xml_escape(str(v))}</{k}>\n" for k, v in values.items() if v is not None)
    path.write_text(f"<config>\n{body}</config>\n", encoding="utf-8")
    return path


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
