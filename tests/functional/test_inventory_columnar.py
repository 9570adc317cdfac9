"""Plan from a Parquet or ORC S3 Inventory report, in process (``mock_aws``), with pyarrow writing the reports.

The reports are laid out as S3 delivers them (S3 User Guide, "Locating your inventory list" and "Amazon S3
Inventory list"): ``destination-prefix/source-bucket/config-ID/YYYY-MM-DDTHH-MMZ/manifest.json`` (with
``fileFormat`` "Parquet" or "ORC", ``fileSchema`` as AWS writes it -- ``message s3.inventory { required binary
bucket (UTF8); ... }`` for Parquet, ``struct<bucket:string,...>`` for ORC -- and ``files[]`` of key, size,
MD5checksum) and its ``manifest.checksum``; data files ``.../config-ID/data/<uuid>.parquet`` (Snappy) or
``.orc`` (ZLIB); lowercase snake-case columns; keys as they are (only CSV inventories URL-encode keys); ETags
without quotes; ``last_modified_date`` a millisecond timestamp.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import cdr_key, write_config

pa = pytest.importorskip("pyarrow")
orc = pytest.importorskip("pyarrow.orc")
pq = pytest.importorskip("pyarrow.parquet")

from s3seg import cli, columnar, commands, config  # noqa: E402
from s3seg import inventory as inv  # noqa: E402
from s3seg.errors import PlanError, UsageError  # noqa: E402
from s3seg.manifest import Manifest  # noqa: E402
from s3seg.storage import Storage  # noqa: E402

NOW = datetime(2023, 1, 2, 12, 0, 0)
SEG = "segregated/2022/12/31/10/"
ODD_NAMES = [
    "with space.txt",
    "two  spaces .txt",
    "plus+sign.txt",
    "a+b c.txt",
    "percent%2B.txt",
    "ünï cødé €.txt",
    "emoji 😀.txt",
    "tilde~star*.txt",
]
FORMATS = ["Parquet", "ORC"]
# (name, kind, required): the columns of a current-versions report with Size, LastModifiedDate, ETag and
# StorageClass selected, in the order AWS writes them.
CURRENT = [
    ("bucket", "string", True),
    ("key", "string", True),
    ("size", "int64", False),
    ("last_modified_date", "timestamp", False),
    ("e_tag", "string", False),
    ("storage_class", "string", False),
]
VERSIONS = [("version_id", "string", False), ("is_latest", "bool", False), ("is_delete_marker", "bool", False)]
ALL_VERSIONS = CURRENT[:2] + VERSIONS + CURRENT[2:]


# -- writing reports as S3 does --------------------------------------------------------------------------------
def file_schema(fmt: str, fields: list[tuple[str, str, bool]]) -> str:
    """The manifest's fileSchema, in the form of the AWS examples."""
    if fmt == "Parquet":
        parquet = {"string": "binary {} (UTF8)", "int64": "int64 {}", "bool": "boolean {}"}
        parquet["timestamp"] = "int64 {} (TIMESTAMP_MILLIS)"
        parts = [f"{'required' if req else 'optional'} {parquet[kind].format(name)};" for name, kind, req in fields]
        return "message s3.inventory { " + " ".join(parts) + " }"
    orc_types = {"string": "string", "int64": "bigint", "bool": "boolean", "timestamp": "timestamp"}
    return "struct<" + ",".join(f"{name}:{orc_types[kind]}" for name, kind, _ in fields) + ">"


def arrow_schema(fmt: str, fields: list[tuple[str, str, bool]]) -> Any:
    # Parquet: TIMESTAMP(MILLIS, isAdjustedToUTC); ORC: its plain (zone-less) timestamp.
    timestamp = pa.timestamp("ms", tz="UTC") if fmt == "Parquet" else pa.timestamp("ms")
    types = {"string": pa.string(), "int64": pa.int64(), "bool": pa.bool_(), "timestamp": timestamp}
    return pa.schema([pa.field(name, types[kind], nullable=not req) for name, kind, req in fields])


def data_file(fmt: str, rows: list[dict[str, Any]], fields: list[tuple[str, str, bool]], group: int) -> bytes:
    """One data file of ``rows``, in row groups of ``group`` rows (Parquet) or in several stripes (ORC)."""
    schema = arrow_schema(fmt, fields)
    if fmt == "ORC":
        rows = [dict(r, last_modified_date=_naive_utc(r.get("last_modified_date"))) for r in rows]
    table = pa.Table.from_pylist([{name: r.get(name) for name in schema.names} for r in rows], schema=schema)
    buf = io.BytesIO()
    if fmt == "Parquet":
        pq.write_table(table, buf, compression="snappy", row_group_size=group)
    else:
        # pyarrow's ORC writer cuts a stripe once its buffers pass stripe_size, checked every batch_size rows.
        orc.write_table(table, buf, compression="zlib", stripe_size=1, batch_size=group)
    return buf.getvalue()


def units(fmt: str, body: bytes) -> int:
    """Row groups (Parquet) or stripes (ORC) in a data file."""
    if fmt == "Parquet":
        return int(pq.ParquetFile(io.BytesIO(body)).num_row_groups)
    return int(orc.ORCFile(io.BytesIO(body)).nstripes)


def _naive_utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None


def write_inventory(
    s3: Any,
    fmt: str,
    *,
    source: str,
    destination: str,
    rows: list[dict[str, Any]],
    fields: list[tuple[str, str, bool]] = CURRENT,
    schema_fields: list[tuple[str, str, bool]] | None = None,
    files: int = 3,
    group: int = 7,
    tamper: Callable[[bytes], bytes] | None = None,
) -> tuple[str, list[int]]:
    """Deliver a report of ``rows`` into ``destination``: (the manifest's s3:// URL, row groups/stripes per file)."""
    base = f"inventory-reports/{source}/daily-{fmt.lower()}"
    entries, counts = [], []
    for n in range(files):
        body = data_file(fmt, rows[n::files], fields, group)
        counts.append(units(fmt, body))
        key = f"{base}/data/{uuid.uuid4()}.{fmt.lower()}"
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
        "fileSchema": file_schema(fmt, schema_fields or fields),
        "files": entries,
    }
    raw = json.dumps(manifest, indent=4).encode()
    where = f"{base}/2023-01-01T00-00Z"
    s3.put_object(Bucket=destination, Key=f"{where}/manifest.json", Body=raw)
    s3.put_object(Bucket=destination, Key=f"{where}/manifest.checksum", Body=hashlib.md5(raw).hexdigest())
    return f"s3://{destination}/{where}/manifest.json", counts


def listed_rows(s3: Any, bucket: str) -> list[dict[str, Any]]:
    """What a report of ``bucket`` says, taken from a listing (ETags unquoted, keys as they are)."""
    rows = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            rows.append(
                {
                    "bucket": bucket,
                    "key": obj["Key"],
                    "size": obj["Size"],
                    "last_modified_date": obj["LastModified"],
                    "e_tag": obj["ETag"].strip('"'),
                    "storage_class": obj.get("StorageClass", "STANDARD"),
                    "version_id": None,
                    "is_latest": True,
                    "is_delete_marker": False,
                }
            )
    return rows


def filler(bucket: str, count: int) -> list[dict[str, Any]]:
    """Rows for objects outside s3_dir (a report covers the whole bucket): enough for several ORC stripes."""
    when = datetime(2022, 6, 1, tzinfo=UTC)
    return [
        {"bucket": bucket, "key": f"archive/old-{n:05d}.dat", "size": n, "last_modified_date": when,
         "e_tag": hashlib.md5(str(n).encode()).hexdigest(), "storage_class": "GLACIER"}
        for n in range(count)
    ]  # fmt: skip


def seed(s3: Any, bucket: str) -> dict[str, bytes]:
    objects = {cdr_key(n): f"cdr {n}\n".encode() * n for n in range(1, 31)}
    objects |= {f"incoming/{name}": name.encode() for name in ODD_NAMES}
    objects["incoming/sub/CHARGINGCDR_nested-20221231-10.ccn"] = b"nested"  # not a direct child
    objects["elsewhere/x.txt"] = b"outside s3_dir"
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    s3.copy_object(
        Bucket=bucket, Key=cdr_key(7), CopySource={"Bucket": bucket, "Key": cdr_key(7)}, StorageClass="STANDARD_IA"
    )
    return objects


def plan(tmp_path: Path, bucket: str, name: str, inventory: str | None = None) -> str:
    path = write_config(tmp_path / f"{name}.xml", bucket=bucket)
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


def expected_after_move(objects: dict[str, bytes]) -> dict[str, bytes]:
    out = {}
    for key, body in objects.items():
        name = key.removeprefix("incoming/")
        if not key.startswith("incoming/") or "/" in name:
            out[key] = body
        elif name.startswith("CHARGINGCDR_"):
            out[SEG + name] = body
        else:
            out["error/" + name] = body
    return out


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return cli.run_cli(argv, out), out.getvalue()


# -- planning from a report -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_columnar_inventory_plans_what_a_listing_plans_and_applies_exactly(
    s3: Any, bucket: str, tmp_path: Path, fmt: str
) -> None:
    objects = seed(s3, bucket)
    rows = listed_rows(s3, bucket) + filler(bucket, 15000)
    url, counts = write_inventory(s3, fmt, source=bucket, destination=bucket, rows=rows, group=50)
    assert all(c > 1 for c in counts), counts  # several row groups / stripes in every data file
    before = contents(s3, bucket)

    listed = plan(tmp_path, bucket, "listed")
    from_inventory = plan(tmp_path, bucket, "inventory", url)
    assert moves(from_inventory) == moves(listed)
    planned = {m.src_key: m for m in Manifest(from_inventory).moves()}
    assert len(planned) == 30 + len(ODD_NAMES)
    assert {f"incoming/{n}" for n in ODD_NAMES} <= set(planned)  # spaces, '+', '%2B', unicode: not decoded
    assert planned[cdr_key(7)].storage_class == "STANDARD_IA"
    assert Manifest(from_inventory).info.header["listing"] == url

    result = commands.apply(from_inventory, commands.ExecOptions(processes=0, threads=4, conditional_writes="client"))
    assert result.totals == {"done": 30 + len(ODD_NAMES)}
    reports = {k: v for k, v in before.items() if k.startswith("inventory-reports/")}
    assert contents(s3, bucket) == expected_after_move(objects) | reports


@pytest.mark.parametrize("fmt", FORMATS)
def test_all_versions_report_in_another_bucket_skips_noncurrent_versions_and_delete_markers(
    s3: Any, bucket: str, tmp_path: Path, fmt: str
) -> None:
    seed(s3, bucket)
    s3.create_bucket(Bucket="inventory-dest")
    rows = listed_rows(s3, bucket)
    old = dict(rows[0], is_latest=False, version_id="v1", e_tag="0" * 32)
    marker = dict(rows[1], key="incoming/deleted-file", is_delete_marker=True, size=None, e_tag=None)
    url, _ = write_inventory(
        s3, fmt, source=bucket, destination="inventory-dest", rows=[old, marker, *rows], fields=ALL_VERSIONS
    )
    assert moves(plan(tmp_path, bucket, "inventory", url)) == moves(plan(tmp_path, bucket, "listed"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_plan_takes_a_columnar_inventory(s3: Any, bucket: str, tmp_path: Path, fmt: str) -> None:
    seed(s3, bucket)
    url, _ = write_inventory(s3, fmt, source=bucket, destination=bucket, rows=listed_rows(s3, bucket))
    cfg = str(write_config(tmp_path / "c.xml", bucket=bucket))
    code, out = run(["plan", "-c", cfg, "--inventory", url, "-o", str(tmp_path / "p.jsonl"), "--json"])
    assert code == 0, out
    assert json.loads(out)["planned"] == 30 + len(ODD_NAMES)
    assert moves(str(tmp_path / "p.jsonl")) == moves(plan(tmp_path, bucket, "listed"))


# -- checks: nothing is planned from a report that fails one ---------------------------------------------------
def _flip_last_byte(body: bytes) -> bytes:
    return body[:-1] + bytes([body[-1] ^ 1])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tamper": _flip_last_byte}, "MD5 .* does not match the manifest"),
        ({"source": "some-other-bucket"}, "is an inventory of bucket 'some-other-bucket'"),
        ({"fields": [f for f in CURRENT if f[0] != "e_tag"]}, "no e_tag field"),
        ({"fields": [f for f in CURRENT if f[0] != "size"]}, "no size field"),
        # The manifest promises e_tag, the data file lacks it.
        ({"fields": [f for f in CURRENT if f[0] != "e_tag"], "schema_fields": CURRENT}, "has no e_tag column"),
    ],
    ids=["md5", "source-bucket", "no-etag", "no-size", "etag-not-in-file"],
)
def test_a_columnar_inventory_that_fails_a_check_plans_nothing(
    s3: Any, bucket: str, tmp_path: Path, fmt: str, change: dict[str, Any], message: str
) -> None:
    seed(s3, bucket)
    options: dict[str, Any] = {"source": bucket, "destination": bucket, "rows": listed_rows(s3, bucket)} | change
    url, _ = write_inventory(s3, fmt, **options)
    with pytest.raises(PlanError, match=message):
        plan(tmp_path, bucket, "p", url)
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_rows_of_another_bucket_are_refused(s3: Any, bucket: str, tmp_path: Path, fmt: str) -> None:
    seed(s3, bucket)
    rows = listed_rows(s3, bucket)
    rows[-1] = dict(rows[-1], bucket="intruder")
    url, _ = write_inventory(s3, fmt, source=bucket, destination=bucket, rows=rows)
    with pytest.raises(PlanError, match="is for bucket 'intruder'"):
        plan(tmp_path, bucket, "p", url)
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_data_file_that_is_not_of_the_manifests_format_is_refused(
    s3: Any, bucket: str, tmp_path: Path, fmt: str
) -> None:
    seed(s3, bucket)
    url, _ = write_inventory(s3, fmt, source=bucket, destination=bucket, rows=listed_rows(s3, bucket))
    manifest_key = url.removeprefix(f"s3://{bucket}/")
    data = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    other = "ORC" if fmt == "Parquet" else "Parquet"
    data["fileFormat"], data["fileSchema"] = other, file_schema(other, CURRENT)  # the files stay as they are
    raw = json.dumps(data).encode()
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=raw)
    s3.put_object(
        Bucket=bucket, Key=manifest_key.replace("manifest.json", "manifest.checksum"), Body=hashlib.md5(raw).hexdigest()
    )
    with pytest.raises(PlanError, match=f"not a readable {other} inventory file"):
        plan(tmp_path, bucket, "p", url)


@pytest.mark.parametrize(
    ("fmt", "schema"),
    [("Parquet", "struct<bucket:string,key:string>"), ("ORC", "Bucket, Key, Size, ETag"), ("Parquet", "")],
)
def test_a_file_schema_that_cannot_be_read_is_refused(
    s3: Any, bucket: str, tmp_path: Path, fmt: str, schema: str
) -> None:
    url, _ = write_inventory(s3, fmt, source=bucket, destination=bucket, rows=[], files=1)
    manifest_key = url.removeprefix(f"s3://{bucket}/")
    data = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    data["fileSchema"] = schema
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(data).encode())
    s3.delete_object(Bucket=bucket, Key=manifest_key.replace("manifest.json", "manifest.checksum"))
    with pytest.raises(PlanError, match="fileSchema"):
        plan(tmp_path, bucket, "p", url)


# -- the optional extra ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_without_pyarrow_a_columnar_inventory_names_the_extra_and_plans_nothing(
    s3: Any, bucket: str, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(s3, bucket)
    url, _ = write_inventory(s3, fmt, source=bucket, destination=bucket, rows=listed_rows(s3, bucket))
    for name in ("pyarrow", "pyarrow.parquet", "pyarrow.orc"):
        monkeypatch.setitem(sys.modules, name, None)  # `import pyarrow` now raises ImportError
    with pytest.raises(UsageError, match=rf"this inventory is in {fmt} format: pip install 's3seg\[inventory\]'"):
        plan(tmp_path, bucket, "p", url)
    cfg = str(write_config(tmp_path / "c.xml", bucket=bucket))
    code, _ = run(["plan", "-c", cfg, "--inventory", url, "-o", str(tmp_path / "cli.jsonl")])
    assert code == 2
    assert "pip install 's3seg[inventory]'" in capsys.readouterr().err
    assert not (tmp_path / "p.jsonl").exists() and not (tmp_path / "cli.jsonl").exists()


def test_s3seg_does_not_import_pyarrow_until_a_columnar_inventory_is_used() -> None:
    code = "import sys, s3seg.cli, s3seg.commands, s3seg.inventory; print('pyarrow' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


# -- flat memory: read lazily, file by file and batch by batch ------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_data_files_are_read_one_at_a_time_and_batch_by_batch(
    s3: Any, bucket: str, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = filler(bucket, 3 * 4000)
    url, counts = write_inventory(s3, fmt, source=bucket, destination=bucket, rows=rows, group=100)
    assert all(c > 1 for c in counts), counts
    monkeypatch.setattr(columnar, "BATCH_ROWS", 64)
    downloads: list[str] = []
    units_read: list[int] = []  # rows of each record batch pyarrow handed over
    materialised: list[int] = []  # rows turned into Python objects at once
    storage = Storage(s3)
    real_chunks, real_python = storage.get_chunks, columnar._to_python
    real_reader = columnar._parquet if fmt == "Parquet" else columnar._orc

    def get_chunks(b: str, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        downloads.append(key)
        return real_chunks(b, key, chunk_size)

    def reader(*args: Any) -> Iterator[Any]:
        for batch in real_reader(*args):
            units_read.append(batch.num_rows)
            yield batch

    def to_python(pa_module: Any, batch: Any) -> dict[str, list[Any]]:
        materialised.append(batch.num_rows)
        return real_python(pa_module, batch)

    monkeypatch.setattr(storage, "get_chunks", get_chunks)
    monkeypatch.setattr(columnar, "_parquet" if fmt == "Parquet" else "_orc", reader)
    monkeypatch.setattr(columnar, "_to_python", to_python)

    report = inv.load(storage, url)
    downloads.clear()  # manifest.json and manifest.checksum
    listing = inv.pages(storage, report, bucket=bucket, prefix="archive/", page_size=10)
    first = next(listing)
    assert len(first) == 10
    assert len(downloads) == 1  # only the first data file is fetched to give the first page
    assert len(units_read) == 1  # ... and only its first record batch decoded
    assert materialised == [64]  # ... and one slice of 64 rows made into Python objects

    total = len(first) + sum(len(page) for page in listing)
    assert total == len(rows)
    assert len(downloads) == 3
    assert max(materialised) <= 64 and sum(materialised) == len(rows)
    assert sum(units_read) == len(rows)
    # Record batches of at most BATCH_ROWS rows from pyarrow too: not whole row groups (of 100 rows here), nor
    # whole ORC stripes (of ~2,000 rows here; ORC writers default to 64 MiB stripes).
    assert max(units_read) <= 64
