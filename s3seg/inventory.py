"""Plan from an S3 Inventory report instead of listing: ``manifest.json`` + data files -> listing pages.

Owns: reading an inventory manifest (``s3://BUCKET/PATH/manifest.json``, format CSV, Parquet or ORC), checking it
(its ``manifest.checksum`` when present, the source bucket, the fields s3seg needs), downloading each data file
to a temporary file and verifying its MD5 against the manifest before one row of it is used, and turning rows
into the same ``Listed`` records a ListObjectsV2 listing gives (CSV keys URL-decoded, ETags quoted, sizes as
int, LastModified in ISO 8601), filtered to the source prefix. Parquet and ORC files are read by
``s3seg.columnar`` (pyarrow, imported only for those formats).

An inventory is a snapshot (eventually consistent, up to a day or a week old): an object listed in it but gone
from the bucket fails at apply as "missing", and one overwritten since fails as "source changed" (every copy
is conditioned on the inventory's ETag). Nothing is moved on the inventory's word alone.

Must not: write to S3, or import boto3 (all reads go through ``Storage``).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import logging
import re
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from s3seg import columnar
from s3seg.errors import PlanError, StorageError, UsageError
from s3seg.objects import Listed, paged, quoted
from s3seg.s3errors import NOT_FOUND_CODES
from s3seg.storage import Storage

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("Key", "Size", "ETag")
# The name AWS uses in fileSchema is LastModifiedDate; LastModified is accepted too.
_LAST_MODIFIED = ("LastModifiedDate", "LastModified")
# Parquet and ORC inventories name their columns in snake case (fileSchema ``message s3.inventory { required
# binary bucket (UTF8); required binary key (UTF8); ... optional binary e_tag (UTF8); ... }`` for Parquet,
# ``struct<bucket:string,key:string,...,e_tag:string,...>`` for ORC; S3 User Guide, "Locating your inventory
# list"), and their keys are NOT URL-encoded: only "when using the CSV file format, the key name is URL-encoded".
COLUMNAR_REQUIRED = ("key", "size", "e_tag")
_COLUMNAR_WANTED = (
    "bucket", "key", "size", "e_tag", "storage_class", "last_modified_date", "is_latest", "is_delete_marker",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFile:
    key: str
    size: int | None
    md5: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Inventory:
    """A verified inventory manifest."""

    url: str
    bucket: str  # where the data files are: the inventory's destination bucket
    source_bucket: str  # the bucket the inventory lists
    columns: tuple[str, ...]  # the field names of fileSchema, as written there
    files: tuple[DataFile, ...]
    created: str = ""  # creationTimestamp, milliseconds since the epoch, as given
    format: str = "CSV"  # "CSV", "Parquet" or "ORC"


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/path/manifest.json`` -> (bucket, key)."""
    if not url.startswith("s3://"):
        raise UsageError(f"--inventory must be an s3://BUCKET/PATH/manifest.json URL (got {url!r})")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise UsageError(
            f"--inventory must name the manifest.json object, s3://BUCKET/PATH/manifest.json (got {url!r})"
        )
    return bucket, key


def decode_key(raw: str) -> str:
    """A key as S3 Inventory writes it into CSV -> the real key.

    AWS: "When using the CSV file format, the key name is URL-encoded and must be decoded before you can use
    it" (S3 User Guide, "Amazon S3 Inventory list", Key name). The encoding is the form encoding (Java's
    URLEncoder): a space is written '+', a literal '+' as '%2B', UTF-8 bytes as %XX; so it is decoded with
    ``unquote_plus`` (cloud-custodian/cloud-custodian#1997: decoding inventory keys with plain ``unquote``
    left '+' where the key has a space). Invalid UTF-8 is refused rather than replaced.
    """
    return urllib.parse.unquote_plus(raw, encoding="utf-8", errors="strict")


def load(storage: Storage, url: str) -> Inventory:
    """Read and check the manifest at ``url``; nothing is planned from an inventory that fails a check."""
    bucket, key = parse_url(url)
    raw = storage.get_bytes(bucket, key)
    _check_manifest_checksum(storage, bucket, key, raw)
    try:
        data: dict[str, Any] = json.loads(raw)
    except ValueError as exc:
        raise PlanError(f"{url} is not a JSON inventory manifest: {exc}") from None
    if not isinstance(data, dict):
        raise PlanError(f"{url} is not an inventory manifest (a JSON object with fileFormat, fileSchema, files)")
    fmt = _format(url, data)
    columns = _schema_fields(url, fmt, str(data.get("fileSchema", "")))
    required = REQUIRED_FIELDS if fmt == "CSV" else COLUMNAR_REQUIRED
    missing = [f for f in required if f not in columns]
    if missing:
        raise PlanError(
            f"{url}: the inventory has no {', '.join(missing)} field (fileSchema {data.get('fileSchema')!r}); "
            f"s3seg needs {', '.join(required)} (the ETag is what every copy is conditioned on): add Size and "
            "ETag to the inventory configuration"
        )
    if ("StorageClass" if fmt == "CSV" else "storage_class") not in columns:
        log.warning(
            "%s: the inventory has no StorageClass field: objects are taken to be STANDARD, so a moved object "
            "of another class would be stored as STANDARD; add StorageClass to the inventory configuration",
            url,
        )
    files = []
    for entry in data.get("files") or []:
        try:
            size = entry.get("size")
            files.append(
                DataFile(
                    key=str(entry["key"]), size=int(size) if size is not None else None, md5=str(entry["MD5checksum"])
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise PlanError(f"{url}: a files[] entry lacks key or MD5checksum: {entry!r}") from None
    if not files:
        raise PlanError(f"{url}: the inventory manifest lists no data files")
    destination = str(data.get("destinationBucket") or bucket)
    destination = destination.removeprefix("arn:aws:s3:::")  # AWS writes the bucket's ARN
    source = str(data.get("sourceBucket") or "")
    if not source:
        raise PlanError(f"{url}: the inventory manifest has no sourceBucket")
    return Inventory(
        url=url,
        bucket=destination,
        source_bucket=source,
        columns=columns,
        files=tuple(files),
        created=str(data.get("creationTimestamp", "")),
        format=fmt,
    )


def _format(url: str, data: dict[str, Any]) -> str:
    """fileFormat -> "CSV", "Parquet" or "ORC"; for Parquet and ORC, pyarrow must be importable (checked now,
    before anything is downloaded)."""
    raw = str(data.get("fileFormat", ""))
    if raw.upper() == "CSV":
        return "CSV"
    fmt = columnar.FORMATS.get(raw.upper())
    if fmt is None:
        raise PlanError(
            f"{url}: inventory format {raw or '(none)'!r} is not supported (s3seg reads CSV, Parquet and ORC)"
        )
    columnar.require(fmt)
    return fmt


def _schema_fields(url: str, fmt: str, schema: str) -> tuple[str, ...]:
    """The field names of a fileSchema: CSV "Bucket, Key, ...", Parquet "message s3.inventory { required binary
    bucket (UTF8); ... }", ORC "struct<bucket:string,key:string,...>"."""
    if fmt == "CSV":
        return tuple(c.strip() for c in schema.split(","))
    if fmt == "Parquet":
        body = re.fullmatch(r"\s*message\s+[\w.]+\s*\{(.*)\}\s*", schema, re.S)
        fields = [m.group(1) for m in _PARQUET_FIELD.finditer(body.group(1))] if body else []
    else:
        body = re.fullmatch(r"\s*struct<(.*)>\s*", schema, re.S)
        fields = [f.partition(":")[0].strip() for f in body.group(1).split(",")] if body else []
    if not fields:
        raise PlanError(f"{url}: the {fmt} fileSchema {schema!r} cannot be read (no field names in it)")
    return tuple(fields)


_PARQUET_FIELD = re.compile(r"(?:required|optional|repeated)\s+\w+\s+(\w+)")


def _check_manifest_checksum(storage: Storage, bucket: str, key: str, raw: bytes) -> None:
    """AWS writes ``manifest.checksum`` (the MD5 of manifest.json) beside it; check it where it exists."""
    checksum_key = key.rsplit("/", 1)[0] + "/manifest.checksum" if "/" in key else "manifest.checksum"
    try:
        expected = storage.get_bytes(bucket, checksum_key).decode("ascii", "replace").strip().lower()
    except StorageError as err:
        if err.code in NOT_FOUND_CODES:
            log.info("no manifest.checksum beside s3://%s/%s: manifest not checksummed", bucket, key)
            return
        raise
    actual = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    if expected != actual:
        raise PlanError(
            f"s3://{bucket}/{key} does not match its manifest.checksum ({actual} != {expected}): the manifest "
            "is incomplete or was changed; wait for the inventory to finish or use another one"
        )


def pages(
    storage: Storage, inventory: Inventory, *, bucket: str, prefix: str, page_size: int
) -> Iterator[list[Listed]]:
    """The inventory's current objects under ``prefix`` in ``bucket``, as listing pages of ``page_size``.

    Rows come in the inventory's order (data file by data file), not necessarily key order. Noncurrent
    versions and delete markers (inventories of all versions) are left out. Lazy throughout: one data file is
    on local disk at a time, and only the rows of the current page (and one batch of a Parquet/ORC file) are
    in memory.
    """
    if inventory.source_bucket != bucket:
        raise PlanError(
            f"{inventory.url} is an inventory of bucket {inventory.source_bucket!r}, not of {bucket!r} (s3_dir)"
        )
    objects = _csv_objects if inventory.format == "CSV" else _columnar_objects
    yield from paged((obj for obj in objects(storage, inventory, bucket) if obj.key.startswith(prefix)), page_size)


def _csv_objects(storage: Storage, inventory: Inventory, bucket: str) -> Iterator[Listed]:
    col = {name: i for i, name in enumerate(inventory.columns)}
    last_modified = next((col[n] for n in _LAST_MODIFIED if n in col), None)
    for data_file in inventory.files:
        where = f"s3://{inventory.bucket}/{data_file.key}"
        for line, row in enumerate(_rows(storage, inventory.bucket, data_file), start=1):
            if len(row) != len(inventory.columns):
                raise PlanError(
                    f"{where}: row {line} has {len(row)} fields; the fileSchema has {len(inventory.columns)}"
                )
            if "Bucket" in col and row[col["Bucket"]] != bucket:
                raise PlanError(f"{where}: row {line} is for bucket {row[col['Bucket']]!r}, not {bucket!r}")
            if "IsLatest" in col and row[col["IsLatest"]].strip().lower() != "true":
                continue
            if "IsDeleteMarker" in col and row[col["IsDeleteMarker"]].strip().lower() == "true":
                continue
            try:
                yield Listed(
                    key=decode_key(row[col["Key"]]),
                    size=int(row[col["Size"]]),
                    etag=quoted(row[col["ETag"]]),
                    storage_class=(row[col["StorageClass"]] if "StorageClass" in col else "") or "STANDARD",
                    last_modified=_iso(row[last_modified]) if last_modified is not None else "",
                )
            except (ValueError, UnicodeDecodeError) as exc:
                raise PlanError(f"{where}: row {line} cannot be read: {exc}") from None


def _columnar_objects(storage: Storage, inventory: Inventory, bucket: str) -> Iterator[Listed]:
    """Parquet/ORC rows -> Listed. Keys are used as written (not URL-encoded in these formats)."""
    # A column the file does not have reads as: the configured bucket, current, not a delete marker, no value.
    absent: dict[str, Any] = {"bucket": bucket, "is_latest": True, "is_delete_marker": False}
    for data_file in inventory.files:
        where = f"s3://{inventory.bucket}/{data_file.key}"
        line = 0
        with _spooled(storage, inventory.bucket, data_file) as spool:
            batches = columnar.read(
                spool, inventory.format, wanted=_COLUMNAR_WANTED, required=COLUMNAR_REQUIRED, where=where
            )
            for batch in batches:
                n = len(batch["key"])
                columns = [batch[c] if c in batch else [absent.get(c)] * n for c in _COLUMNAR_WANTED]
                for row in zip(*columns, strict=True):
                    line += 1
                    obj = _columnar_row(row, bucket, f"{where}: row {line}")
                    if obj is not None:
                        yield obj


def _columnar_row(row: tuple[Any, ...], bucket: str, where: str) -> Listed | None:
    """One row, in ``_COLUMNAR_WANTED`` order, as Listed; None for a noncurrent version or a delete marker."""
    row_bucket, key, size, etag, storage_class, last_modified, is_latest, is_delete_marker = row
    if row_bucket != bucket:
        raise PlanError(f"{where} is for bucket {row_bucket!r}, not {bucket!r}")
    if is_latest is not True or is_delete_marker is True:
        return None
    if not isinstance(key, str) or not key or not isinstance(size, int) or not isinstance(etag, str) or not etag:
        raise PlanError(f"{where} cannot be read: key {key!r}, size {size!r}, e_tag {etag!r}")
    return Listed(
        key=key,
        size=size,
        etag=quoted(etag),
        storage_class=storage_class or "STANDARD",
        last_modified=_iso_datetime(last_modified) if isinstance(last_modified, datetime) else "",
    )


def _iso(value: str) -> str:
    """Inventory time ('2022-12-31T10:05:11.000Z') in the form a listing gives ('2022-12-31T10:05:11+00:00')."""
    if not value:
        return ""
    return datetime.fromisoformat(value).isoformat()


def _iso_datetime(value: datetime) -> str:
    """A Parquet/ORC timestamp in the form a listing gives; a timestamp without a zone is UTC (S3 times are)."""
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()


@contextlib.contextmanager
def _spooled(storage: Storage, bucket: str, data_file: DataFile) -> Iterator[IO[bytes]]:
    """One data file, downloaded chunk by chunk to a temporary file (deleted on exit) and MD5-verified against
    the manifest before it is handed out: no row of a changed or truncated file is ever used."""
    with tempfile.TemporaryFile(prefix="s3seg-inventory-") as spool:
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        for chunk in storage.get_chunks(bucket, data_file.key):
            digest.update(chunk)
            size += len(chunk)
            spool.write(chunk)
        where = f"s3://{bucket}/{data_file.key}"
        if digest.hexdigest() != data_file.md5.lower():
            raise PlanError(
                f"{where}: MD5 {digest.hexdigest()} does not match the manifest's {data_file.md5}: the data file is "
                "incomplete or was changed"
            )
        if data_file.size is not None and size != data_file.size:
            raise PlanError(f"{where}: {size} bytes, the manifest says {data_file.size}")
        spool.seek(0)
        yield spool


def _rows(storage: Storage, bucket: str, data_file: DataFile) -> Iterator[list[str]]:
    """The CSV rows of one data file, downloaded to a temporary file and MD5-verified before any is read."""
    with _spooled(storage, bucket, data_file) as spool:
        try:
            with gzip.open(spool, "rb") as unzipped:
                text = io.TextIOWrapper(unzipped, encoding="utf-8", newline="")
                # AWS writes every field quoted and no header row.
                yield from csv.reader(text)
        except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
            raise PlanError(f"s3://{bucket}/{data_file.key}: not a gzip CSV inventory file: {exc}") from None
