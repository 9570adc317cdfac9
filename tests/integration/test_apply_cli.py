"""apply / rollback / status through the real CLI (a subprocess) and the real process pool, on the moto server.

Exact final bucket state (keys, bytes and attributes), journal content and exit codes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import cdr_key, record_ids, run_cli, snapshot, write_config

from s3seg.journal import Journal
from s3seg.manifest import Manifest

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def dst_of(key: str) -> str:
    """Where the example rule sends ``incoming/<name>`` (derived independently of s3seg)."""
    import re

    name = key.removeprefix("incoming/")
    m = re.match(r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*", name)
    if m is None:
        return "error/" + name
    d, h = m.group(1), m.group(2)
    return f"segregated/{d[:4]}/{d[4:6]}/{d[6:]}/{h}/{name}"


def contents(s3: Any, bucket: str) -> dict[str, bytes]:
    return snapshot(s3, bucket, full=False)  # type: ignore[return-value]


def seed(s3: Any, bucket: str) -> dict[str, bytes]:
    """60 objects over 3 days and 5 hours, a few for the error folder, and awkward names."""
    objects: dict[str, bytes] = {}
    for i in range(48):
        key = cdr_key(i, date=f"2022123{i % 2}" if i % 3 else "20221229", hour=i % 5)
        objects[key] = f"cdr {i}\n".encode() * (i + 1)
    for name in ("README.txt", "CHARGINGCDR_bad-2022XX31-10.ccn", "notes a+b.txt", "notes a%2Bb.txt"):
        objects["incoming/" + name] = f"error-folder {name}".encode()
    for name in (
        "CHARGINGCDR_a b-20221231-10.ccn",
        "CHARGINGCDR_a+b-20221231-10.ccn",
        "CHARGINGCDR_a%2Bb-20221231-10.ccn",
        "CHARGINGCDR_ünï ☃ 日本-20221231-10.ccn",
        "CHARGINGCDR_x?versionId=abc-20221231-10.ccn",
    ):
        objects["incoming/" + name] = f"awkward {name}".encode()
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return objects


def journal(manifest: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(str(manifest) + ".journal").read_text(encoding="utf-8").splitlines()]


def latest(records: list[dict[str, Any]], direction: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for r in records[1:]:
        if r["ev"] == "outcome" and r["dir"] == direction:
            out.update(dict.fromkeys(record_ids(r), r["status"]))
    return out


def test_plan_apply_status_rollback_through_the_cli_with_the_process_pool(
    s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    objects = seed(s3, bucket)
    s3.put_object(Bucket=bucket, Key="incoming/deeper/not-planned.ccn", Body=b"stays")
    s3.put_object(Bucket=bucket, Key="archive/bystander", Body=b"stays too")
    s3.put_object(Bucket=bucket, Key=cdr_key(7, prefix="incoming/"), Body=b"x", Metadata={"a": "1"}, Tagging="t=1",
                  ContentType="application/x-cdr", StorageClass="STANDARD_IA")  # fmt: skip
    objects[cdr_key(7)] = b"x"
    before = snapshot(s3, bucket)
    n = len(objects)
    cfg = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=moto_endpoint, processes=2, n_workers=4)
    manifest = tmp_path / "plan.jsonl"

    plan = run_cli("plan", "-c", str(cfg), "-o", str(manifest), "--json")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["planned"] == len(objects)

    apply = run_cli("apply", str(manifest), "--processes", "2", "--batch-size", "8", "--json")

    assert apply.returncode == 0, apply.stderr
    expected = {dst_of(k): v for k, v in objects.items()}
    expected["incoming/deeper/not-planned.ccn"] = b"stays"
    expected["archive/bystander"] = b"stays too"
    assert contents(s3, bucket) == expected
    after = snapshot(s3, bucket)
    assert after[dst_of(cdr_key(7))] == before[cdr_key(7)]  # metadata, tags, type and class kept
    summary = json.loads(apply.stdout)
    assert summary["this_run"] == {"done": len(objects)} and summary["finished"] == len(objects)
    records = journal(manifest)
    assert records[0]["type"] == "header"
    assert sorted(i for r in records if r.get("ev") == "intent" for i in record_ids(r)) == list(range(1, n + 1))
    assert sorted(i for r in records if r.get("ev") == "copied" for i in record_ids(r)) == list(range(1, n + 1))
    assert latest(records, "apply") == dict.fromkeys(range(1, n + 1), "done")
    assert len([r for r in records if r.get("ev") == "intent"]) == 8  # ceil(58 / 8) batches

    status = run_cli("status", str(manifest), "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout)["counts"] == {"done": n}
    assert json.loads(status.stdout)["remaining"] == 0
    again = run_cli("apply", str(manifest), "--processes", "2")
    assert again.returncode == 0 and "nothing to do" in again.stdout

    rollback = run_cli("rollback", str(manifest), "--processes", "2", "--batch-size", "8", "--json")

    assert rollback.returncode == 0, rollback.stderr
    assert snapshot(s3, bucket) == before
    assert json.loads(rollback.stdout)["this_run"] == {"rolled-back": n}
    twice = run_cli("rollback", str(manifest), "--processes", "2")
    assert twice.returncode == 0 and "nothing to do" in twice.stdout
    assert snapshot(s3, bucket) == before


def test_failed_and_conflicting_items_exit_1_and_a_rerun_after_the_fix_exits_0(
    s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    objects = {cdr_key(i): f"cdr {i}".encode() for i in range(1, 21)}
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    blocker = dst_of(cdr_key(4))
    s3.put_object(Bucket=bucket, Key=blocker, Body=b"someone else's")
    denied = cdr_key(9)
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:DeleteObject",
        "Resource": f"arn:aws:s3:::{bucket}/{denied}",
    }
    policy = {"Version": "2012-10-17", "Statement": [deny]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    cfg = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=moto_endpoint, processes=2)
    manifest = tmp_path / "plan.jsonl"
    assert run_cli("plan", "-c", str(cfg), "-o", str(manifest)).returncode == 0

    first = run_cli("apply", str(manifest), "--batch-size", "6", "--json")

    assert first.returncode == 1, first.stderr
    expected = {dst_of(k): v for k, v in objects.items()}
    expected[cdr_key(4)] = objects[cdr_key(4)]
    expected[blocker] = b"someone else's"
    expected[denied] = objects[denied]  # both copies kept
    assert contents(s3, bucket) == expected
    summary = json.loads(first.stdout)
    assert summary["this_run"] == {"done": 18, "conflict-dest-differs": 1, "failed": 1}
    assert latest(journal(manifest), "apply")[4] == "conflict-dest-differs"
    assert latest(journal(manifest), "apply")[9] == "failed"

    s3.delete_object(Bucket=bucket, Key=blocker)
    s3.delete_bucket_policy(Bucket=bucket)
    second = run_cli("apply", str(manifest), "--json")

    assert second.returncode == 0, second.stderr
    assert contents(s3, bucket) == {dst_of(k): v for k, v in objects.items()}
    assert json.loads(second.stdout)["todo"] == 2
    status = json.loads(run_cli("status", str(manifest), "--json").stdout)
    assert status["remaining"] == 0 and sum(status["counts"].values()) == 20


def test_multipart_move_and_rollback_through_the_process_pool(
    s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    big = bytes(range(256)) * (12 * MIB // 256) + b"end"
    s3.put_object(Bucket=bucket, Key=cdr_key(1), Body=big, Metadata={"origin": "switch-7"}, Tagging="team=billing",
                  ContentType="application/x-cdr", StorageClass="STANDARD_IA")  # fmt: skip
    s3.put_object(Bucket=bucket, Key=cdr_key(2), Body=b"small", Tagging="k=v")
    before = snapshot(s3, bucket)
    cfg = write_config(
        tmp_path / "config.xml", bucket=bucket, endpoint=moto_endpoint, processes=2,
        multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB,
    )  # fmt: skip
    manifest = tmp_path / "plan.jsonl"
    assert run_cli("plan", "-c", str(cfg), "-o", str(manifest)).returncode == 0

    apply = run_cli("apply", str(manifest), "--batch-size", "1")

    assert apply.returncode == 0, apply.stderr
    after = snapshot(s3, bucket)
    assert after == {dst_of(k): v for k, v in before.items()}
    assert s3.head_object(Bucket=bucket, Key=dst_of(cdr_key(1)))["ETag"].endswith('-3"')

    rollback = run_cli("rollback", str(manifest), "--batch-size", "1")

    assert rollback.returncode == 0, rollback.stderr
    assert snapshot(s3, bucket) == before


def test_apply_and_rollback_are_refused_with_exit_3_while_another_run_holds_the_journal(
    s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    objects = {cdr_key(i): f"cdr {i}".encode() for i in range(1, 4)}
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    cfg = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=moto_endpoint, processes=2)
    manifest = tmp_path / "plan.jsonl"
    assert run_cli("plan", "-c", str(cfg), "-o", str(manifest)).returncode == 0
    info = Manifest(str(manifest)).verify()

    with Journal(str(manifest) + ".journal", manifest_sha256=info.sha256, manifest_name="plan.jsonl", entries=3):
        apply = run_cli("apply", str(manifest))
        rollback = run_cli("rollback", str(manifest))

    assert apply.returncode == 3 and "another s3seg process" in apply.stderr
    assert rollback.returncode == 3
    assert contents(s3, bucket) == objects
    assert run_cli("apply", str(manifest)).returncode == 0  # the lock died with its holder
    assert contents(s3, bucket) == {dst_of(k): v for k, v in objects.items()}


def test_the_process_ends_with_everything_written_and_nothing_to_warn_about(
    s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    """``main`` ends the process without the interpreter's teardown (``cli._exit``): the log file still ends with
    the run record, a large piped summary arrives whole, the exit code is the command's, and multiprocessing's
    resource tracker finds no semaphore left behind (it would say so on stderr)."""
    objects = seed(s3, bucket)
    cfg = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=moto_endpoint, processes=2, n_workers=4)
    manifest, log = tmp_path / "plan.jsonl", tmp_path / "run.log"

    plan = run_cli("plan", "-c", str(cfg), "-o", str(manifest), "--json", "--log-file", str(log))
    apply = run_cli("apply", str(manifest), "--json", "--log-file", str(log), "-v")
    refused = run_cli("apply", str(tmp_path / "missing.jsonl"), "--log-file", str(log))

    assert plan.returncode == 0 and apply.returncode == 0, (plan.stderr, apply.stderr)
    assert json.loads(apply.stdout)["this_run"] == {"done": len(objects)}  # the whole summary, parsed
    assert contents(s3, bucket) == {dst_of(k): v for k, v in objects.items()}
    assert refused.returncode == 2 and "missing.jsonl" in refused.stderr
    for run in (plan, apply, refused):
        assert "leaked" not in run.stderr and "resource_tracker" not in run.stderr, run.stderr
    text = log.read_text(encoding="utf-8")
    records = [json.loads(line.split("run record: ", 1)[1]) for line in text.splitlines() if "run record: " in line]
    assert [(r["command"], r["exit_code"]) for r in records][:2] == [("plan", 0), ("apply", 0)], records
    assert records[1]["moves"]["this_run"] == {"done": len(objects)}
    assert text.endswith("\n") and text.rstrip("\n").splitlines()[-1].count("run record: ") == 1  # flushed whole
