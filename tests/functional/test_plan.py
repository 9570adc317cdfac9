"""`s3seg plan` end to end on in-process moto: the exact manifest, every rejection, the n_loops cap,
--recursive, idempotence, the summary, and proof that planning never writes to S3."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import cdr_key, snapshot, write_config

from s3seg import __version__, cli, commands, leanpath
from s3seg import config as config_mod
from s3seg.config import S3Location, Settings
from s3seg.errors import ExitCode, PlanError, UsageError
from s3seg.manifest import Manifest
from s3seg.objects import Listed
from s3seg.planner import PlanReport, plan
from s3seg.storage import ClientSpec, Storage, make_client

NOW = datetime(2023, 1, 2, 3, 4, 5)
BUCKET = "plan-bkt"
FIELDS = (
    "id",
    "src_bucket",
    "src_key",
    "dst_bucket",
    "dst_key",
    "size",
    "etag",
    "storage_class",
    "last_modified",
    "reason",
)


@pytest.fixture(autouse=True)
def _plan_bucket(s3: Any) -> None:
    """BUCKET, made in the in-process moto of tests/functional/conftest.py's ``s3`` (fresh for each test)."""
    s3.create_bucket(Bucket=BUCKET)


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every S3 API call the code under test makes through ``commands.make_client`` (name, params)."""
    calls: list[tuple[str, dict[str, Any]]] = []
    real = commands.make_client

    def make(spec: ClientSpec) -> Any:
        client = real(spec)
        client.meta.events.register(
            "before-parameter-build.s3",
            # (not the lean path's route probe: answered by moto's mock here, never sent to AWS: see applykit)
            lambda model, params, **_: (
                None if params.get("Key") == leanpath._PROBE_KEY else calls.append((model.name, dict(params)))
            ),
        )
        return client

    monkeypatch.setattr(commands, "make_client", make)
    return calls


def put(s3: Any, key: str, body: bytes = b"data", **kw: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body, **kw)


def load(tmp_path: Path, **extra: Any) -> Settings:
    return config_mod.load(str(write_config(tmp_path / "config.xml", bucket=BUCKET, **extra)))


def run_plan(settings: Settings, out: Path, **kw: Any) -> PlanReport:
    return commands.plan(settings, str(out), now=NOW, **kw)


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in path.read_bytes().splitlines()[1:-1]]


def listing(s3: Any, prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = obj
    return out


def md5(body: bytes) -> str:
    return '"' + hashlib.md5(body).hexdigest() + '"'


def move_by_hand(s3: Any, manifest: Path) -> None:
    """Do what a complete apply does, without s3seg: copy each entry to its destination, delete the source."""
    for e in entries(manifest):
        s3.copy_object(
            Bucket=e["dst_bucket"], Key=e["dst_key"], CopySource={"Bucket": e["src_bucket"], "Key": e["src_key"]}
        )
        s3.delete_object(Bucket=e["src_bucket"], Key=e["src_key"])


# --- the exact manifest ---------------------------------------------------------------------------------------

ODD_NAME = "CHARGINGCDR_é 日本+%2B\x01\r-20230101-00.ccn"  # unicode, space, '+', '%2B', control characters


def seed_example(s3: Any) -> dict[str, bytes]:
    bodies = {
        cdr_key(1, "20221231", 10): b"one",
        cdr_key(2, "20221231", 10): b"two!",
        cdr_key(3, "20230101", 0): b"three",
        "incoming/" + ODD_NAME: b"odd",
        "incoming/README.txt": b"no date here",
        "incoming/CHARGINGCDR_x-20221332-10.ccn": b"month 13",
        "incoming/": b"",  # folder marker of s3_dir itself
        "incoming/sub/" + cdr_key(4, prefix=""): b"deeper",  # not a direct child
        "incoming/sub/": b"",
        "elsewhere/" + cdr_key(5, prefix=""): b"outside s3_dir",
    }
    for key, body in bodies.items():
        put(s3, key, body, **({"StorageClass": "STANDARD_IA"} if body == b"two!" else {}))
    return bodies


def test_plan_writes_the_exact_manifest(s3: Any, tmp_path: Path) -> None:
    bodies = seed_example(s3)
    listed = listing(s3)
    settings = load(tmp_path)
    out = tmp_path / "plan.jsonl"
    before = datetime.now(UTC).replace(microsecond=0)
    report = run_plan(settings, out)
    after = datetime.now(UTC)

    raw = out.read_bytes().splitlines(keepends=True)
    header = json.loads(raw[0])
    created = datetime.fromisoformat(header.pop("created"))
    assert before <= created <= after
    assert header == {
        "type": "header",
        "format": 1,
        "tool": "s3seg",
        "version": __version__,
        "now": "2023-01-02T03:04:05",
        "datetime": None,
        "fallback_date": "2023-01-01T03:04:05",
        "endpoint": None,
        "source": f"s3://{BUCKET}/incoming/",
        "unlimited": False,
        "listing": "ListObjectsV2",
        "config": json.loads(json.dumps(settings.to_dict())),
    }
    assert header["config"]["match_pattern"] == r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*"

    # The no-match and bad-date files carry their reason (and the bad date's detail).
    expected_moves = [
        (cdr_key(1), f"segregated/2022/12/31/10/{cdr_key(1, prefix='')}", "matched", ""),
        (cdr_key(2), f"segregated/2022/12/31/10/{cdr_key(2, prefix='')}", "matched", ""),
        (cdr_key(3, "20230101", 0), f"segregated/2023/01/01/00/{cdr_key(3, '20230101', 0, prefix='')}", "matched", ""),
        ("incoming/" + ODD_NAME, "segregated/2023/01/01/00/" + ODD_NAME, "matched", ""),
        (
            "incoming/CHARGINGCDR_x-20221332-10.ccn",
            "error/CHARGINGCDR_x-20221332-10.ccn",
            "bad-date",
            "'2022133210' does not parse with '%Y%m%d%H'",
        ),
        ("incoming/README.txt", "error/README.txt", "no-match", ""),
    ]
    expected_moves.sort(key=lambda m: m[0].encode())  # S3 lists in UTF-8 byte order
    expected_lines = []
    for i, (src, dst, reason, detail) in enumerate(expected_moves, start=1):
        entry: dict[str, Any] = {
            "id": i,
            "src_bucket": BUCKET,
            "src_key": src,
            "dst_bucket": BUCKET,
            "dst_key": dst,
            "size": len(bodies[src]),
            "etag": md5(bodies[src]),
            "storage_class": "STANDARD_IA" if bodies[src] == b"two!" else "STANDARD",
            "last_modified": listed[src]["LastModified"].isoformat(),
            "reason": reason,
        }
        if detail:
            entry["detail"] = detail
        expected_lines.append(json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    assert raw[1:-1] == expected_lines

    assert json.loads(raw[-1]) == {
        "type": "trailer",
        "entries": 6,
        "sha256": hashlib.sha256(b"".join(expected_lines)).hexdigest(),
        "header_sha256": hashlib.sha256(raw[0]).hexdigest(),
    }
    assert len(raw) == 8

    assert report.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert (report.listed, report.planned, report.to_error, report.pages, report.cap_hit) == (7, 6, 2, 1, False)
    assert report.skipped == {"folder-marker": 1}
    assert report.reasons == {"matched": 4, "no-match": 1, "bad-date": 1}
    assert report.folders == {
        f"s3://{BUCKET}/segregated/2022/12/31/10/": 2,
        f"s3://{BUCKET}/segregated/2023/01/01/00/": 2,
        f"s3://{BUCKET}/error/": 2,
    }
    info = Manifest(str(out)).verify()
    assert (info.entries, info.sha256) == (6, report.sha256)
    assert [m.src_key for m in Manifest(str(out)).moves()] == [src for src, *_ in expected_moves]
    assert sorted(os.listdir(tmp_path)) == ["config.xml", "plan.jsonl"]  # no temporary file left


def test_plan_is_read_only_on_s3(s3: Any, tmp_path: Path, requests: list[tuple[str, dict[str, Any]]]) -> None:
    seed_example(s3)
    before = snapshot(s3, BUCKET)
    report = run_plan(load(tmp_path), tmp_path / "plan.jsonl")
    assert report.planned == 6
    assert {name for name, _ in requests} == {"ListObjectsV2"}
    assert snapshot(s3, BUCKET) == before


def test_plan_lists_in_pages_of_n_keys(s3: Any, tmp_path: Path, requests: list[tuple[str, dict[str, Any]]]) -> None:
    for n in range(23):
        put(s3, cdr_key(n))
    report = run_plan(load(tmp_path, n_keys=5, list_workers=1), tmp_path / "plan.jsonl")  # one serial listing
    assert report.planned == 23
    assert report.pages == 5
    # the preflight (one key, commands.preflight), then the listing proper
    assert [name for name, _ in requests] == ["ListObjectsV2"] * 6
    assert [p["MaxKeys"] for _, p in requests] == [1] + [5] * 5
    assert {p["Prefix"] for _, p in requests} == {"incoming/"}
    assert {p.get("Delimiter") for _, p in requests[1:]} == {"/"}


def test_parallel_listing_plans_exactly_what_the_serial_listing_plans(s3: Any, tmp_path: Path) -> None:
    for n in range(40):
        put(s3, cdr_key(n, "20221231", n % 24))
    put(s3, "incoming/README.txt")
    serial, parallel = tmp_path / "serial.jsonl", tmp_path / "parallel.jsonl"
    a = run_plan(load(tmp_path, n_keys=7), serial)
    b = run_plan(load(tmp_path, n_keys=7, list_workers=4), parallel)
    assert entries(serial) == entries(parallel)
    assert (a.planned, a.pages) == (b.planned, b.pages) == (41, 6)


def test_plan_records_the_endpoint_it_planned_against(s3: Any, tmp_path: Path) -> None:
    put(s3, cdr_key(1))
    out = tmp_path / "plan.jsonl"
    endpoint = "https://s3.us-east-1.amazonaws.com"  # one that mock_aws intercepts
    # botocore only: an explicit endpoint's lean requests go to the network, around the in-process mock
    run_plan(load(tmp_path, endpoint_url=endpoint), out, target=commands.Target(lean_http=False))
    assert Manifest(str(out)).verify().header["endpoint"] == endpoint


# --- dates without match_pattern --------------------------------------------------------------------------------


def test_without_pattern_files_are_dated_now_minus_time_delay(s3: Any, tmp_path: Path) -> None:
    put(s3, "incoming/a.bin")
    put(s3, "incoming/" + cdr_key(1, prefix=""))
    out = tmp_path / "plan.jsonl"
    report = run_plan(load(tmp_path, match_pattern=None, time_delay=7200), out)
    assert [(e["dst_key"], e["reason"]) for e in entries(out)] == [
        ("segregated/2023/01/02/01/" + cdr_key(1, prefix=""), "fallback-date"),
        ("segregated/2023/01/02/01/a.bin", "fallback-date"),
    ]
    assert report.reasons == {"fallback-date": 2}
    header = Manifest(str(out)).verify().header
    assert (header["fallback_date"], header["datetime"]) == ("2023-01-02T01:04:05", None)


def test_without_pattern_the_datetime_option_sets_the_date(s3: Any, tmp_path: Path) -> None:
    put(s3, "incoming/a.bin")
    out = tmp_path / "plan.jsonl"
    override = datetime(2021, 6, 15, 8, 30)
    run_plan(load(tmp_path, match_pattern=None), out, override=override)
    assert [e["dst_key"] for e in entries(out)] == ["segregated/2021/06/15/08/a.bin"]
    header = Manifest(str(out)).verify().header
    assert header["datetime"] == header["fallback_date"] == "2021-06-15T08:30:00"


# --- rejections: nothing is written ------------------------------------------------------------------------------


def assert_no_manifest(tmp_path: Path) -> None:
    assert [p for p in os.listdir(tmp_path) if p.startswith("plan.jsonl")] == []


def test_destination_key_over_1024_bytes_is_rejected(s3: Any, tmp_path: Path) -> None:
    put(s3, cdr_key(1))
    name = cdr_key(2, prefix="")
    name = name[:-4] + "x" * (1024 - len("incoming/") - len(name)) + ".ccn"
    put(s3, "incoming/" + name)  # a legal 1,024-byte source key; moto has no key limit anyway
    assert len(("incoming/" + name).encode()) == 1024
    with pytest.raises(PlanError) as info:
        run_plan(load(tmp_path), tmp_path / "plan.jsonl")
    assert "1024" in str(info.value)
    assert "1040 bytes" in str(info.value)  # segregated/2022/12/31/10/ is 16 bytes longer than incoming/
    assert info.value.exit_code == ExitCode.USAGE
    assert_no_manifest(tmp_path)


def test_key_length_is_counted_in_utf8_bytes(s3: Any, tmp_path: Path) -> None:
    name = "CHARGINGCDR_x-20221231-10" + "é" * 495 + ".ccn"  # 519 characters, 1,019 bytes
    put(s3, "incoming/" + name)
    with pytest.raises(PlanError, match="bytes"):
        run_plan(load(tmp_path), tmp_path / "plan.jsonl")
    assert_no_manifest(tmp_path)


def test_destination_of_exactly_1024_bytes_is_accepted(s3: Any, tmp_path: Path) -> None:
    name = "README" + "x" * (1024 - len("error/") - len("README"))
    put(s3, "incoming/" + name)
    out = tmp_path / "plan.jsonl"
    run_plan(load(tmp_path), out)
    assert len(entries(out)[0]["dst_key"].encode()) == 1024


def test_destination_equal_to_its_source_is_rejected(s3: Any, tmp_path: Path) -> None:
    # The config refuses s3_error_dir == s3_dir; a Settings built in Python can still ask for it, and the
    # planner is the last line of defence: a copy onto itself followed by a delete would lose the object.
    put(s3, "README.txt")
    root = S3Location(bucket=BUCKET, prefix="")
    settings = dataclasses.replace(load(tmp_path), source=root, error=root)
    with pytest.raises(PlanError, match="onto itself") as info:
        run_plan(settings, tmp_path / "plan.jsonl")
    assert f"s3://{BUCKET}/README.txt" in str(info.value)
    assert_no_manifest(tmp_path)


def test_manifest_path_that_is_a_directory_is_refused_and_leaves_nothing(s3: Any, tmp_path: Path) -> None:
    put(s3, cdr_key(1))
    target = tmp_path / "plans"
    target.mkdir()
    with pytest.raises(UsageError, match="cannot write the manifest") as info:
        run_plan(load(tmp_path), target)
    assert info.value.exit_code == ExitCode.USAGE
    assert sorted(os.listdir(tmp_path)) == ["config.xml", "plans"]
    assert os.listdir(target) == []


def test_plan_never_replaces_a_manifest_that_has_a_journal(s3: Any, tmp_path: Path) -> None:
    put(s3, cdr_key(1))
    out = tmp_path / "plan.jsonl"
    run_plan(load(tmp_path), out)
    run_plan(load(tmp_path), out)  # no journal yet: re-planning to the same file is fine
    commands.apply(str(out), commands.ExecOptions(processes=0))
    applied = out.read_bytes()
    put(s3, cdr_key(2))
    with pytest.raises(UsageError, match="has a journal"):
        run_plan(load(tmp_path), out)
    assert out.read_bytes() == applied  # rollback still has the manifest its journal belongs to
    assert not list(tmp_path.glob("*.tmp"))  # no temporary manifest left behind


class RelistingStorage(Storage):
    """A store whose listing repeats its first page at the end (as a buggy paginator might)."""

    def list_pages(self, *args: Any, **kwargs: Any) -> Iterator[list[Listed]]:
        pages = list(super().list_pages(*args, **kwargs))
        yield from pages
        yield pages[0]


def test_two_sources_onto_one_destination_are_rejected(s3: Any, tmp_path: Path) -> None:
    # Destination = folder + path relative to s3_dir, and the folder depends only on the file name, so distinct
    # listed keys cannot collide; a store that lists a key twice can. The error folder is a parent of the date
    # folders here, so the planner cannot rule collisions out by the folders alone and runs its exact check.
    put(s3, cdr_key(1))
    put(s3, "incoming/README.txt")
    settings = load(tmp_path, s3_error_dir=f"s3://{BUCKET}/out/", s3_segregated_dir=f"s3://{BUCKET}/out/%Y/")
    storage = RelistingStorage(make_client(ClientSpec()))
    with pytest.raises(PlanError, match="two sources map to one destination") as info:
        plan(settings, storage, str(tmp_path / "plan.jsonl"), now=NOW)
    assert f"s3://{BUCKET}/out/2022/{cdr_key(1, prefix='')}" in str(info.value)
    assert "entries 1 and 3" in str(info.value)
    assert_no_manifest(tmp_path)


def test_nested_destination_folders_without_a_collision_are_planned(
    s3: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # out/ (errors) contains out/2022/ (dates): the exact check runs and finds every destination distinct,
    # even where an error path looks like a date path (out/2022/README.txt vs out/2022/<cdr>).
    keys = [cdr_key(1), "incoming/2022/README.txt", "incoming/2022/" + cdr_key(1, prefix=""), "incoming/README.txt"]
    for key in keys:
        put(s3, key)
    settings = load(
        tmp_path, s3_error_dir=f"s3://{BUCKET}/out/", s3_segregated_dir=f"s3://{BUCKET}/out/%Y/", recursive="true"
    )
    out = tmp_path / "plan.jsonl"
    with caplog.at_level(logging.INFO, logger="s3seg"):
        report = run_plan(settings, out)
    assert "exact collision check" in caplog.text
    assert report.planned == 4
    dsts = sorted(e["dst_key"] for e in entries(out))
    assert dsts == sorted(
        [
            "out/2022/" + cdr_key(1, prefix=""),
            "out/2022/README.txt",
            "out/2022/2022/" + cdr_key(1, prefix=""),
            "out/README.txt",
        ]
    )


# --- the n_loops cap ---------------------------------------------------------------------------------------------


def seed_n(s3: Any, n: int) -> list[str]:
    keys = [cdr_key(i, hour=i % 3) for i in range(n)]
    for key in keys:
        put(s3, key)
    return sorted(keys)


def test_n_loops_caps_the_pages_planned_per_run(s3: Any, tmp_path: Path) -> None:
    keys = seed_n(s3, 12)
    out = tmp_path / "plan.jsonl"
    report = run_plan(load(tmp_path, n_keys=5, n_loops=2), out)
    assert (report.pages, report.planned, report.cap_hit) == (2, 10, True)
    assert [e["src_key"] for e in entries(out)] == keys[:10]
    assert Manifest(str(out)).verify().header["unlimited"] is False
    summary = io.StringIO()
    cli.print_plan(report, summary)
    assert "n_loops cap reached" in summary.getvalue()
    assert cli.plan_summary(report)["cap_hit"] is True


def test_all_lifts_the_n_loops_cap(s3: Any, tmp_path: Path) -> None:
    keys = seed_n(s3, 12)
    out = tmp_path / "plan.jsonl"
    report = run_plan(load(tmp_path, n_keys=5, n_loops=2), out, unlimited=True)
    assert (report.pages, report.planned, report.cap_hit) == (3, 12, False)
    assert [e["src_key"] for e in entries(out)] == keys
    assert Manifest(str(out)).verify().header["unlimited"] is True
    summary = io.StringIO()
    cli.print_plan(report, summary)
    assert "n_loops cap" not in summary.getvalue()


def test_listing_that_ends_on_the_cap_is_not_reported_as_capped(s3: Any, tmp_path: Path) -> None:
    seed_n(s3, 10)
    report = run_plan(load(tmp_path, n_keys=5, n_loops=2), tmp_path / "plan.jsonl")
    assert (report.pages, report.planned, report.cap_hit) == (2, 10, False)


def test_n_loops_zero_means_no_cap(s3: Any, tmp_path: Path) -> None:
    seed_n(s3, 12)
    report = run_plan(load(tmp_path, n_keys=5, n_loops=0), tmp_path / "plan.jsonl")
    assert (report.pages, report.planned, report.cap_hit) == (3, 12, False)


def test_capped_plans_cover_everything_over_successive_runs(s3: Any, tmp_path: Path) -> None:
    keys = seed_n(s3, 12)
    settings = load(tmp_path, n_keys=5, n_loops=2)
    seen: list[str] = []
    for run in range(3):
        out = tmp_path / f"plan{run}.jsonl"
        run_plan(settings, out)
        seen += [e["src_key"] for e in entries(out)]
        move_by_hand(s3, out)
    assert sorted(seen) == keys
    assert not [k for k in listing(s3, "incoming/") if k != "incoming/"]


def test_capped_recursive_plans_progress_past_already_segregated_keys(s3: Any, tmp_path: Path) -> None:
    # Date folders inside s3_dir sort before the new files ('2' < 'C'); pages holding only already segregated
    # keys plan nothing, so they must not use up the cap, or every run would plan nothing forever.
    for n in range(12):
        put(s3, f"incoming/2022/12/31/10/{cdr_key(n, prefix='')}")
    new = seed_n(s3, 3)
    settings = dataclasses.replace(inside(tmp_path, n_keys=5, n_loops=1), recursive=True)
    out = tmp_path / "plan.jsonl"
    report = run_plan(settings, out)
    assert [e["src_key"] for e in entries(out)] == new
    assert report.skipped == {"already-segregated": 12}


# --- recursive ---------------------------------------------------------------------------------------------------

NESTED = [
    cdr_key(1),
    "incoming/a/" + cdr_key(2, prefix=""),
    "incoming/a/b/" + cdr_key(3, "20230101", 0, prefix=""),
    "incoming/a/README.txt",
]


def test_by_default_only_direct_children_are_planned(s3: Any, tmp_path: Path) -> None:
    for key in NESTED:
        put(s3, key)
    put(s3, "incoming/a/")  # folder marker
    out = tmp_path / "plan.jsonl"
    report = run_plan(load(tmp_path), out)
    assert [e["src_key"] for e in entries(out)] == [cdr_key(1)]
    assert report.listed == 1  # sub-folders are not even listed


def test_recursive_plans_deeper_keys_and_keeps_their_relative_path(s3: Any, tmp_path: Path) -> None:
    for key in NESTED:
        put(s3, key)
    put(s3, "incoming/a/")
    put(s3, "incoming/a/b/")
    settings = dataclasses.replace(load(tmp_path), recursive=True)  # what --recursive does
    out = tmp_path / "plan.jsonl"
    report = run_plan(settings, out)
    assert {e["src_key"]: e["dst_key"] for e in entries(out)} == {
        cdr_key(1): "segregated/2022/12/31/10/" + cdr_key(1, prefix=""),
        "incoming/a/" + cdr_key(2, prefix=""): "segregated/2022/12/31/10/a/" + cdr_key(2, prefix=""),
        "incoming/a/b/" + cdr_key(3, "20230101", 0, prefix=""): "segregated/2023/01/01/00/a/b/"
        + cdr_key(3, "20230101", 0, prefix=""),
        "incoming/a/README.txt": "error/a/README.txt",
    }
    assert report.skipped == {"folder-marker": 2}
    assert report.listed == 6


def test_recursive_from_the_config_file(s3: Any, tmp_path: Path) -> None:
    for key in NESTED:
        put(s3, key)
    assert run_plan(load(tmp_path, recursive="true"), tmp_path / "plan.jsonl").planned == 4


# --- idempotence ---------------------------------------------------------------------------------------------------


def inside(tmp_path: Path, **extra: Any) -> Settings:
    """Destination and error folders inside s3_dir."""
    return load(
        tmp_path,
        s3_segregated_dir=f"s3://{BUCKET}/incoming/%Y/%m/%d/%H/",
        s3_error_dir=f"s3://{BUCKET}/incoming/error/",
        **extra,
    )


def test_already_segregated_objects_inside_s3_dir_are_never_planned_again(s3: Any, tmp_path: Path) -> None:
    for key in [*NESTED, "incoming/README.txt"]:
        put(s3, key)
    settings = dataclasses.replace(inside(tmp_path), recursive=True)
    first = tmp_path / "plan1.jsonl"
    assert run_plan(settings, first).planned == 5
    move_by_hand(s3, first)
    moved = sorted(listing(s3, "incoming/"))
    assert moved == sorted(e["dst_key"] for e in entries(first))

    again = run_plan(settings, tmp_path / "plan2.jsonl")
    assert (again.listed, again.planned) == (5, 0)
    assert again.skipped == {"already-segregated": 5}
    assert entries(tmp_path / "plan2.jsonl") == []
    non_recursive = run_plan(inside(tmp_path), tmp_path / "plan3.jsonl")
    assert (non_recursive.listed, non_recursive.planned) == (0, 0)

    put(s3, cdr_key(9, "20240229", 23))  # a new arrival is the only thing planned
    newest = tmp_path / "plan4.jsonl"
    run_plan(settings, newest)
    assert [(e["src_key"], e["dst_key"]) for e in entries(newest)] == [
        (cdr_key(9, "20240229", 23), "incoming/2024/02/29/23/" + cdr_key(9, "20240229", 23, prefix=""))
    ]


def test_planning_right_after_a_full_apply_plans_nothing(s3: Any, tmp_path: Path) -> None:
    for key in [*NESTED, "incoming/README.txt", "incoming/CHARGINGCDR_x-20221332-10.ccn"]:
        put(s3, key, key.encode())
    settings = dataclasses.replace(inside(tmp_path), recursive=True)
    first = tmp_path / "plan1.jsonl"
    assert run_plan(settings, first).planned == 6
    result = commands.apply(str(first), commands.ExecOptions(processes=0))
    assert result.report.finished == 6
    after_apply = snapshot(s3, BUCKET, full=False)
    assert after_apply == {e["dst_key"]: e["src_key"].encode() for e in entries(first)}

    again = tmp_path / "plan2.jsonl"
    report = run_plan(settings, again)
    assert (report.planned, entries(again)) == (0, [])
    assert Manifest(str(again)).verify().entries == 0
    assert snapshot(s3, BUCKET, full=False) == after_apply


def test_planning_after_a_full_apply_to_outside_s3_dir_plans_nothing(s3: Any, tmp_path: Path) -> None:
    for key in NESTED:
        put(s3, key)
    settings = load(tmp_path)
    first = tmp_path / "plan1.jsonl"
    run_plan(settings, first)
    commands.apply(str(first), commands.ExecOptions(processes=0))
    report = run_plan(settings, tmp_path / "plan2.jsonl")
    assert report.planned == 0


# --- the summary -----------------------------------------------------------------------------------------------


def test_summary_shows_counts_and_a_per_folder_histogram(s3: Any, tmp_path: Path) -> None:
    seed_example(s3)
    for n in range(10, 13):
        put(s3, cdr_key(n, "20221230", 23))
    report = run_plan(load(tmp_path), tmp_path / "plan.jsonl")
    buf = io.StringIO()
    cli.print_plan(report, buf)
    lines = buf.getvalue().splitlines()
    assert lines[0] == f"manifest: {tmp_path / 'plan.jsonl'}"
    assert lines[1].startswith("listed 10 objects in 1 pages")
    assert lines[2] == "planned 9 moves, 2 of them to the error dir"
    assert lines[3] == "skipped: folder-marker 1"
    assert lines[4] == "destination folders: 4 (top 4):"
    assert lines[5:10] == [
        f"  3  s3://{BUCKET}/segregated/2022/12/30/23/",
        f"  2  s3://{BUCKET}/segregated/2022/12/31/10/",
        f"  2  s3://{BUCKET}/segregated/2023/01/01/00/",
        f"  2  s3://{BUCKET}/error/",
        "  9  total",
    ]
    assert lines[10] == f"review it, then: s3seg apply {tmp_path / 'plan.jsonl'}"
    summary = cli.plan_summary(report)
    assert {k: summary[k] for k in ("listed", "planned", "to_error_dir", "skipped", "folders", "cap_hit")} == {
        "listed": 10,
        "planned": 9,
        "to_error_dir": 2,
        "skipped": {"folder-marker": 1},
        "folders": 4,
        "cap_hit": False,
    }
    assert summary["reasons"] == {"matched": 7, "no-match": 1, "bad-date": 1}
    json.dumps(summary)  # the --json form serialises


def test_summary_of_an_empty_plan(s3: Any, tmp_path: Path) -> None:
    report = run_plan(load(tmp_path), tmp_path / "plan.jsonl")
    buf = io.StringIO()
    cli.print_plan(report, buf)
    assert "planned 0 moves" in buf.getvalue()
    assert "apply" not in buf.getvalue()


def test_plan_through_the_cli_in_process(s3: Any, tmp_path: Path) -> None:
    seed_example(s3)
    config = write_config(tmp_path / "config.xml", bucket=BUCKET, match_pattern=None)
    out = tmp_path / "plan.jsonl"
    buf = io.StringIO()
    logger = logging.getLogger("s3seg")
    saved = (logger.handlers[:], logger.propagate, logger.level, signal.getsignal(signal.SIGTERM))
    try:
        code = cli.run_cli(["plan", "-c", str(config), "-o", str(out), "-d", "2021-06-15T08:00", "--json"], buf)
    finally:  # the CLI owns logging and SIGTERM in its process: give them back to pytest
        for handler in logger.handlers:
            handler.close()
        logger.handlers[:], logger.propagate, logger.level = saved[:3]
        signal.signal(signal.SIGTERM, saved[3])
    assert code == 0
    summary = json.loads(buf.getvalue())
    assert (summary["planned"], summary["to_error_dir"]) == (6, 0)
    assert summary["top_folders"] == {f"s3://{BUCKET}/segregated/2021/06/15/08/": 6}
    assert {e["dst_key"].split("/", 5)[-1] == e["src_key"].split("/", 1)[1] for e in entries(out)} == {True}
    now = datetime.fromisoformat(Manifest(str(out)).verify().header["now"])
    assert abs(now - datetime.now()) < timedelta(minutes=5)
