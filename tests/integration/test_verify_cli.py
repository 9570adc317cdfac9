"""`s3seg verify` through the real CLI (a subprocess) against the moto server: categories and exit codes after
plan, apply and rollback, and after losses and duplicates made behind s3seg's back. Read-only on S3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import cdr_key, run_cli, snapshot, write_config

pytestmark = pytest.mark.integration


def dst_of(key: str) -> str:
    """Where the example rule sends ``incoming/<name>`` (derived independently of s3seg)."""
    import re

    name = key.removeprefix("incoming/")
    m = re.match(r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*", name)
    if m is None:
        return "error/" + name
    d, h = m.group(1), m.group(2)
    return f"segregated/{d[:4]}/{d[4:6]}/{d[6:]}/{h}/{name}"


def seed(s3: Any, bucket: str) -> dict[str, bytes]:
    objects = {cdr_key(i, date=f"2022123{i % 2}", hour=i % 4): f"cdr {i}\n".encode() * (i + 1) for i in range(24)}
    for name in ("README.txt", "CHARGINGCDR_bad-2022XX31-10.ccn", "<script>alert(1)<b>.txt"):
        objects["incoming/" + name] = f"error-folder {name}".encode()
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    s3.put_object(Bucket=bucket, Key="archive/bystander", Body=b"not in the plan")
    return objects


def plan(s3: Any, bucket: str, endpoint: str, tmp_path: Path) -> tuple[dict[str, bytes], Path]:
    objects = seed(s3, bucket)
    cfg = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=endpoint, processes=1, n_workers=4)
    manifest = tmp_path / "plan.jsonl"
    done = run_cli("plan", "-c", str(cfg), "-o", str(manifest))
    assert done.returncode == 0, done.stderr
    return objects, manifest


def ids_by_key(manifest: Path) -> dict[str, int]:
    lines = manifest.read_text(encoding="utf-8").splitlines()[1:-1]
    return {e["src_key"]: e["id"] for e in map(json.loads, lines)}


def verify(manifest: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    done = run_cli("verify", str(manifest), "--json", *extra)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {c: n for c, n in counts.items() if n}


def test_verify_after_plan_apply_and_rollback_accounts_for_every_object(
    s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    objects, manifest = plan(s3, bucket, moto_endpoint, tmp_path)
    n = len(objects)
    before = snapshot(s3, bucket, full=False)

    code, after_plan = verify(manifest)

    assert code == 0
    assert nonzero(after_plan["counts"]) == {"at-source": n}
    assert after_plan["ok"] is True and after_plan["discrepancies"] == [] and after_plan["discrepancies_complete"]
    assert after_plan["journal"] is None
    assert sorted(after_plan["listed_prefixes"]) == sorted(
        f"s3://{bucket}/{p}" for p in ("incoming/", "segregated/", "error/")
    )
    assert snapshot(s3, bucket, full=False) == before  # read-only

    applied = run_cli("apply", str(manifest), "--processes", "0")
    assert applied.returncode == 0, applied.stderr
    code, after_apply = verify(manifest)
    assert code == 0
    assert nonzero(after_apply["counts"]) == {"at-destination": n}
    assert after_apply["journal"] == str(manifest) + ".journal"

    human = run_cli("verify", str(manifest))
    assert human.returncode == 0
    assert f"OK: all {n} planned objects are accounted for" in human.stdout

    rolled = run_cli("rollback", str(manifest), "--processes", "0")
    assert rolled.returncode == 0, rolled.stderr
    code, after_rollback = verify(manifest)
    assert code == 0
    assert nonzero(after_rollback["counts"]) == {"at-source": n}
    assert snapshot(s3, bucket, full=False) == before


def test_verify_reports_duplicates_losses_and_foreign_objects_and_exits_1(
    s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    objects, manifest = plan(s3, bucket, moto_endpoint, tmp_path)
    ids = ids_by_key(manifest)
    assert run_cli("apply", str(manifest), "--processes", "0").returncode == 0
    dup, lost, foreign, recreated, half = (
        cdr_key(1, "20221231", 1),
        cdr_key(2, "20221230", 2),
        cdr_key(3, "20221231", 3),
        cdr_key(4, "20221230", 0),
        cdr_key(5, "20221231", 1),
    )
    s3.put_object(Bucket=bucket, Key=dup, Body=objects[dup])  # the object at both keys
    s3.delete_object(Bucket=bucket, Key=dst_of(lost))  # at neither
    s3.put_object(Bucket=bucket, Key=dst_of(foreign), Body=b"someone else's bytes")  # destination differs
    s3.put_object(Bucket=bucket, Key=recreated, Body=b"a new file with the old name")  # new object at the source
    s3.put_object(Bucket=bucket, Key=dst_of(half), Body=objects[half] + b"!")  # same key, other size
    s3.put_object(Bucket=bucket, Key=half, Body=b"other")  # and another at the source: planned object gone
    before = snapshot(s3, bucket, full=False)

    code, result = verify(manifest)

    assert code == 1
    assert result["ok"] is False
    assert nonzero(result["counts"]) == {
        "at-destination": len(objects) - 5,
        "both": 1,
        "neither": 1,
        "destination-differs": 1,
        "at-destination-source-taken": 1,
        "both-differ": 1,
    }
    by_id = {d["id"]: d for d in result["discrepancies"]}
    assert {i: d["category"] for i, d in by_id.items()} == {
        ids[dup]: "both",
        ids[lost]: "neither",
        ids[foreign]: "destination-differs",
        ids[recreated]: "at-destination-source-taken",
        ids[half]: "both-differ",
    }
    assert by_id[ids[lost]]["at_source"] is None and by_id[ids[lost]]["at_destination"] is None
    assert by_id[ids[foreign]]["at_destination"]["size"] == len(b"someone else's bytes")
    assert by_id[ids[dup]]["source"] == f"s3://{bucket}/{dup}"
    assert result["discrepancy_count"] == 5 and result["discrepancies_complete"] is True
    assert snapshot(s3, bucket, full=False) == before  # verify wrote nothing

    human = run_cli("verify", str(manifest), "--samples", "1")
    assert human.returncode == 1
    assert "DISCREPANCIES: 5 of" in human.stdout
    assert f"s3://{bucket}/{dst_of(lost)}" in human.stdout  # the sample names the keys

    cut = run_cli("verify", str(manifest), "--json", "--max-items", "2")
    assert cut.returncode == 1
    data = json.loads(cut.stdout)
    assert len(data["discrepancies"]) == 2 and data["discrepancies_complete"] is False
    assert data["discrepancy_count"] == 5


def test_verify_refuses_another_endpoint_and_a_damaged_manifest(
    s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    _, manifest = plan(s3, bucket, moto_endpoint, tmp_path)

    other = run_cli("verify", str(manifest), "--endpoint-url", "http://127.0.0.1:9")
    assert other.returncode == 3
    assert "planned against endpoint" in other.stderr

    manifest.write_text(manifest.read_text(encoding="utf-8").replace('"size":', '"size": ', 1), encoding="utf-8")
    damaged = run_cli("verify", str(manifest))
    assert damaged.returncode == 3 and "edited" in damaged.stderr

    missing = run_cli("verify", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 3 and "cannot read manifest" in missing.stderr
