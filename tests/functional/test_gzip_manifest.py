"""plan -o plan.jsonl.gz, apply, status, resume, verify and rollback, in process on moto: a compressed manifest
is used transparently; its journal is plain JSONL bound to the digest of the uncompressed lines."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from applykit import NOW, cli_run, contents, endpoint_of, moved, outcomes, seed
from helpers import snapshot, write_config

from s3seg import commands, config
from s3seg.manifest import Manifest


def gz_plan(s3: Any, tmp_path: Path, bucket: str) -> str:
    path = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=endpoint_of(s3))
    manifest = str(tmp_path / "plan.jsonl.gz")
    commands.plan(config.load(path), manifest, now=NOW)
    return manifest


def test_gz_plan_apply_status_rollback(s3: Any, bucket: str, tmp_path: Path) -> None:
    objects = seed(s3, bucket, 40)
    before = snapshot(s3, bucket)
    manifest = gz_plan(s3, tmp_path, bucket)
    raw = Path(manifest).read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    lines = gzip.decompress(raw).splitlines()
    assert json.loads(lines[-1])["entries"] == 40

    assert cli_run("apply", manifest, "--processes", "0")[0] == 0
    assert contents(s3, bucket) == moved(objects)
    journal = Path(manifest + ".journal")
    header = json.loads(journal.read_bytes().splitlines()[0])  # plain JSONL
    assert header["manifest_sha256"] == Manifest(manifest).verify().sha256
    assert set(outcomes(manifest).values()) == {"done"}

    code, out = cli_run("status", manifest, "--json")
    assert code == 0 and json.loads(out)["counts"] == {"done": 40}
    assert cli_run("apply", manifest, "--processes", "0")[0] == 0  # resume: nothing left

    assert cli_run("rollback", manifest, "--processes", "0")[0] == 0
    assert snapshot(s3, bucket) == before


def test_a_gunzipped_plan_keeps_its_journal(s3: Any, bucket: str, tmp_path: Path) -> None:
    seed(s3, bucket, 12)
    manifest = gz_plan(s3, tmp_path, bucket)
    assert cli_run("apply", manifest, "--processes", "0")[0] == 0
    plain = str(tmp_path / "plan.jsonl")
    Path(plain).write_bytes(gzip.decompress(Path(manifest).read_bytes()))
    code, out = cli_run("status", plain, "--journal", manifest + ".journal", "--json")
    assert code == 0 and json.loads(out)["counts"] == {"done": 12}


def test_a_truncated_gz_plan_changes_nothing(s3: Any, bucket: str, tmp_path: Path) -> None:
    seed(s3, bucket, 5)
    before = snapshot(s3, bucket)
    manifest = gz_plan(s3, tmp_path, bucket)
    data = Path(manifest).read_bytes()
    Path(manifest).write_bytes(data[: len(data) - 12])
    code, _ = cli_run("apply", manifest, "--processes", "0")
    assert code != 0
    assert snapshot(s3, bucket) == before
    assert not Path(manifest + ".journal").exists()
