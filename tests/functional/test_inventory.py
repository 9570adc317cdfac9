"""Plan from an S3 Inventory report (``--inventory s3://BUCKET/PATH/manifest.json``), in process (``mock_aws``).

The inventory files are written here in the format AWS delivers (S3 User Guide, "Amazon S3 Inventory list"
and "What is an inventory manifest?"): ``manifest.json`` with ``sourceBucket``, ``destinationBucket`` as an
ARN, ``fileFormat`` "CSV", ``fileSchema`` and ``files[]`` (key, size, MD5checksum of each data file), a
``manifest.checksum`` beside it, and gzip CSV data files with no header row, every field quoted, keys
URL-encoded the way Java's URLEncoder does it (space as '+', '+' as '%2B', '/' as '%2F', UTF-8 as %XX), ETags
without quotes, LastModifiedDate like 2022-12-31T10:05:11.000Z.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import urllib.parse
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import cdr_key, write_config

from s3seg import cli, commands, config
from s3seg.errors import PlanError, UsageError
from s3seg.inventory import decode_key
from s3seg.manifest import Manifest

NOW = datetime(2023, 1, 2, 12, 0, 0)
SEG = "segregated/2022/12/31/10/"
SCHEMA = "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass"
ODD_NAMES = ["with space.txt", "plus+sign.txt", "percent%2B.txt", "tilde~star*.txt", "ünï cødé €.txt", "emoji 😀.txt"]


def aws_encode(key: str) -> str:
    """A key as S3 Inventory writes it into CSV: Java URLEncoder (unreserved: letters, digits, . - * _)."""
    return urllib.parse.quote_plus(key, safe="*").replace("~", "%7E")


def inventory_rows(s3: Any, bucket: str) -> list[dict[str, str]]:
    """What an inventory of ``bucket`` says, taken from a listing (ETags unquoted, times as AWS writes them)."""
    rows = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            rows.append(
                {
                    "Bucket": bucket,
                    "Key": obj["Key"],
                    "Size": str(obj["Size"]),
                    "LastModifiedDate": obj["LastModified"].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    "ETag": obj["ETag"].strip('"'),
                    "StorageClass": obj.get("StorageClass", "STANDARD"),
                    "VersionId": "",
                    "IsLatest": "true",
                    "IsDeleteMarker": "false",
                }
            )
    return rows


def write_inventory(
    s3: Any,
    *,
    source: str,
    destination: str,
    rows: list[dict[str, str]],
    schema: str = SCHEMA,
    files: int = 2,
    fmt: str = "CSV",
    tamper: Any = None,
) -> str:
    """Deliver an inventory of ``rows`` into ``destination``; returns the manifest's s3:// URL."""
    base = f"inventories/{source}/daily"
    columns = [c.strip() for c in schema.split(",")]
    entries = []
    for n in range(files):
        buf = io.StringIO()
        writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for row in rows[n::files]:
            writer.writerow([aws_encode(row[c]) if c == "Key" else row[c] for c in columns])
        body = gzip.compress(buf.getvalue().encode("utf-8"))
        key = f"{base}/data/{uuid.uuid4()}.csv.gz"
        md5 = hashlib.md5(body).hexdigest()
        if tamper is not None and n == 0:
            body = tamper(body)
        s3.put_object(Bucket=destination, Key=key, Body=body)
        entries.append({"key": key, "size": len(body), "MD5checksum": md5})
    manifest = {
        "sourceBucket": source,
        "destinationBucket": f"arn:aws:s3:::{destination}",
        "version": "2016-11-30",
        "creationTimestamp": "1672531200000",
        "fileFormat": fmt,
        "fileSchema": schema,
        "files": entries,
    }
    raw = json.dumps(manifest, indent=4).encode()
    s3.put_object(Bucket=destination, Key=f"{base}/2023-01-01T00-00Z/manifest.json", Body=raw)
    s3.put_object(
        Bucket=destination, Key=f"{base}/2023-01-01T00-00Z/manifest.checksum", Body=hashlib.md5(raw).hexdigest()
    )
    return f"s3://{destination}/{base}/2023-01-01T00-00Z/manifest.json"


def seed(s3: Any, bucket: str) -> dict[str, bytes]:
    objects = {cdr_key(n): f"cdr {n}\n".encode() * n for n in range(1, 31)}
    objects |= {f"incoming/{name}": name.encode() for name in ODD_NAMES}
    objects["incoming/sub/CHARGINGCDR_nested-20221231-10.ccn"] = b"nested"  # not a direct child
    objects["elsewhere/x.txt"] = b"outside s3_dir"
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return objects


def plan(tmp_path: Path, bucket: str, name: str, inventory: str | None = None, **cfg: Any) -> str:
    path = write_config(tmp_path / f"{name}.xml", bucket=bucket, **cfg)
    manifest = str(tmp_path / f"{name}.jsonl")
    commands.plan(config.load(path), manifest, now=NOW, inventory=inventory)
    return manifest


def moves(manifest: str) -> set[tuple[Any, ...]]:
    fields = ("src_key", "dst_key", "size", "etag", "storage_class", "last_modified", "reason")
    return {tuple(getattr(m, f) for f in fields) for m in Manifest(manifest).moves()}


def contents(s3: Any, bucket: str) -> dict[str, bytes]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def apply(manifest: str) -> commands.ExecResult:
    return commands.apply(manifest, commands.ExecOptions(processes=0, threads=4, conditional_writes="client"))


def expected_after_move(objects: dict[str, bytes]) -> dict[str, bytes]:
    out = {}
    for key, body in objects.items():
        name = key.removeprefix("incoming/")
        if not key.startswith("incoming/") or "/" in name:
            out[key] = body  # outside s3_dir, or below a sub-folder: not planned
        elif name.startswith("CHARGINGCDR_"):
            out[SEG + name] = body
        else:
            out["error/" + name] = body
    return out


# -- tests ----------------------------------------------------------------------------------------------------
def test_keys_are_url_decoded_as_inventory_encodes_them() -> None:
    for key in ["a b+c/d", "x%2By", "ünï cødé €", "😀~*", "a+b", "100% sure"]:
        assert decode_key(aws_encode(key)) == key
    assert decode_key("dir/a+b%2Bc") == "dir/a b+c"  # '/' may also appear unencoded


def test_plan_from_inventory_equals_plan_from_listing_and_applies_exactly(s3: Any, bucket: str, tmp_path: Path) -> None:
    objects = seed(s3, bucket)
    s3.copy_object(
        Bucket=bucket, Key=cdr_key(7), CopySource={"Bucket": bucket, "Key": cdr_key(7)}, StorageClass="STANDARD_IA"
    )
    inventory = write_inventory(s3, source=bucket, destination=bucket, rows=inventory_rows(s3, bucket), files=3)
    before = contents(s3, bucket)
    listed = plan(tmp_path, bucket, "listed")
    from_inventory = plan(tmp_path, bucket, "inventory", inventory)
    assert moves(from_inventory) == moves(listed)
    assert len(moves(listed)) == 30 + len(ODD_NAMES)
    assert {m.storage_class for m in Manifest(from_inventory).moves() if m.src_key == cdr_key(7)} == {"STANDARD_IA"}
    assert Manifest(from_inventory).info.header["listing"] == inventory

    result = apply(from_inventory)
    assert result.totals == {"done": 30 + len(ODD_NAMES)}
    inventory_files = {k: v for k, v in before.items() if k.startswith("inventories/")}
    assert contents(s3, bucket) == expected_after_move(objects) | inventory_files


def test_recursive_plan_from_inventory_includes_sub_folders(s3: Any, bucket: str, tmp_path: Path) -> None:
    seed(s3, bucket)
    inventory = write_inventory(s3, source=bucket, destination=bucket, rows=inventory_rows(s3, bucket))
    planned = {m.src_key for m in Manifest(plan(tmp_path, bucket, "r", inventory, recursive="true")).moves()}
    assert "incoming/sub/CHARGINGCDR_nested-20221231-10.ccn" in planned
    assert not any(k.startswith(("elsewhere/", "inventories/")) for k in planned)


def test_object_gone_since_the_inventory_fails_as_missing_and_the_rest_moves(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    objects = seed(s3, bucket)
    inventory = write_inventory(s3, source=bucket, destination=bucket, rows=inventory_rows(s3, bucket))
    s3.delete_object(Bucket=bucket, Key=cdr_key(3))  # deleted after the inventory was taken
    del objects[cdr_key(3)]
    before = contents(s3, bucket)
    manifest = plan(tmp_path, bucket, "p", inventory)
    assert cdr_key(3) in {m.src_key for m in Manifest(manifest).moves()}

    code, out = run(["apply", manifest, "--processes", "0", "--conditional-writes", "client"])
    assert code == 1  # items failed
    assert "failed-missing" in out
    totals = commands.status(manifest).counts
    assert totals == {"done": 29 + len(ODD_NAMES), "failed-missing": 1}
    inventory_files = {k: v for k, v in before.items() if k.startswith("inventories/")}
    assert contents(s3, bucket) == expected_after_move(objects) | inventory_files


def test_object_overwritten_since_the_inventory_is_a_conflict_not_a_move(s3: Any, bucket: str, tmp_path: Path) -> None:
    seed(s3, bucket)
    inventory = write_inventory(s3, source=bucket, destination=bucket, rows=inventory_rows(s3, bucket))
    s3.put_object(Bucket=bucket, Key=cdr_key(4), Body=b"rewritten after the inventory")
    manifest = plan(tmp_path, bucket, "p", inventory)
    apply(manifest)
    assert commands.status(manifest).counts["conflict-source-changed"] == 1
    got = contents(s3, bucket)
    assert got[cdr_key(4)] == b"rewritten after the inventory"
    assert SEG + cdr_key(4).removeprefix("incoming/") not in got


def test_inventory_in_another_bucket_with_all_versions_and_another_column_order(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    objects = seed(s3, bucket)
    s3.create_bucket(Bucket="inventory-dest")
    rows = inventory_rows(s3, bucket)
    old = dict(rows[0], IsLatest="false", VersionId="v1", ETag="0" * 32)  # a noncurrent version
    marker = dict(rows[1], Key="incoming/deleted-file", IsDeleteMarker="true", Size="", ETag="")
    schema = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass"
    inventory = write_inventory(
        s3, source=bucket, destination="inventory-dest", rows=[old, marker, *rows], schema=schema
    )
    manifest = plan(tmp_path, bucket, "p", inventory)
    assert moves(manifest) == moves(plan(tmp_path, bucket, "listed"))
    apply(manifest)
    assert contents(s3, bucket) == expected_after_move(objects)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tamper": lambda body: body[:-1] + bytes([body[-1] ^ 1])}, "MD5"),
        ({"fmt": "JSON"}, "not supported"),
        ({"schema": "Bucket, Key, Size, LastModifiedDate"}, "no ETag field"),
    ],
)
def test_an_inventory_that_fails_a_check_plans_nothing(
    s3: Any, bucket: str, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    seed(s3, bucket)
    inventory = write_inventory(s3, source=bucket, destination=bucket, rows=inventory_rows(s3, bucket), **change)
    with pytest.raises(PlanError, match=message):
        plan(tmp_path, bucket, "p", inventory)
    assert not (tmp_path / "p.jsonl").exists()


def test_a_manifest_that_does_not_match_its_checksum_is_refused(s3: Any, bucket: str, tmp_path: Path) -> None:
    seed(s3, bucket)
    inventory = write_inventory(s3, source=bucket, destination=bucket, rows=inventory_rows(s3, bucket))
    key = inventory.removeprefix(f"s3://{bucket}/").replace("manifest.json", "manifest.checksum")
    s3.put_object(Bucket=bucket, Key=key, Body=b"0" * 32)
    with pytest.raises(PlanError, match=r"manifest\.checksum"):
        plan(tmp_path, bucket, "p", inventory)


def test_an_inventory_of_another_bucket_is_refused(s3: Any, bucket: str, tmp_path: Path) -> None:
    seed(s3, bucket)
    inventory = write_inventory(s3, source="some-other-bucket", destination=bucket, rows=inventory_rows(s3, bucket))
    with pytest.raises(PlanError, match="not of"):
        plan(tmp_path, bucket, "p", inventory)


def test_a_malformed_inventory_url_is_a_usage_error(s3: Any, bucket: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"manifest\.json"):
        plan(tmp_path, bucket, "p", "https://example.invalid/manifest.json")


def test_cli_plan_and_run_take_an_inventory(s3: Any, bucket: str, tmp_path: Path) -> None:
    objects = seed(s3, bucket)
    inventory = write_inventory(s3, source=bucket, destination=bucket, rows=inventory_rows(s3, bucket))
    before = contents(s3, bucket)
    cfg = str(write_config(tmp_path / "c.xml", bucket=bucket))
    code, out = run(["plan", "-c", cfg, "--inventory", inventory, "-o", str(tmp_path / "p.jsonl"), "--json"])
    assert code == 0, out
    assert json.loads(out)["planned"] == 30 + len(ODD_NAMES)
    code, out = run(["run", "-c", cfg, "--inventory", inventory, "--processes", "0", "--conditional-writes", "client"])
    assert code == 0, out
    inventory_files = {k: v for k, v in before.items() if k.startswith("inventories/")}
    assert contents(s3, bucket) == expected_after_move(objects) | inventory_files


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return cli.run_cli(argv, out), out.getvalue()
