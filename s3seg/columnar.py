"""Parquet and ORC S3 Inventory data files, read through pyarrow (the optional extra ``s3seg[inventory]``).

Owns: importing pyarrow -- only when a Parquet or ORC inventory is used, with a message naming the extra when it
is missing -- and reading one local, already MD5-verified data file in bounded slices: Parquet record batch by
record batch (``ParquetFile.iter_batches``), ORC stripe by stripe (``ORCFile.read_stripe``), each turned into
Python values at most ``batch_rows`` rows at a time. Only the columns s3seg uses are read (projection), and the
file's own schema is checked for the required ones before any row is read.

Memory: one Parquet record batch, or one ORC stripe (ORC has no smaller unit pyarrow reads), of the projected
columns in Arrow form, plus ``batch_rows`` rows as Python objects. Nothing accumulates across batches.

Must not: touch S3 or know about listings. pyarrow has no complete type stubs: its objects are ``Any`` here and
nowhere else in s3seg (``pyarrow.*`` has ``ignore_missing_imports`` in pyproject.toml).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from typing import IO, Any

from s3seg.errors import PlanError, UsageError

FORMATS = {"PARQUET": "Parquet", "ORC": "ORC"}  # fileFormat (any case) -> the name AWS writes
BATCH_ROWS = 10_000  # rows turned into Python objects at once


def require(fmt: str) -> Any:
    """The ``pyarrow`` module, with its Parquet or ORC reader imported; a UsageError naming the extra if absent."""
    reader = "pyarrow.parquet" if fmt == "Parquet" else "pyarrow.orc"
    try:
        pa = importlib.import_module("pyarrow")
        importlib.import_module(reader)
    except ImportError as exc:
        raise UsageError(
            f"this inventory is in {fmt} format: pip install 's3seg[inventory]' (it needs pyarrow: {exc})"
        ) from None
    return pa


def read(
    source: IO[bytes],
    fmt: str,
    *,
    wanted: Sequence[str],
    required: Sequence[str],
    where: str,
    batch_rows: int | None = None,
) -> Iterator[dict[str, list[Any]]]:
    """The rows of one data file as column dicts (name -> values) of at most ``batch_rows`` rows each.

    ``wanted`` columns the file lacks are left out of the dicts; a ``required`` one it lacks is a PlanError.
    """
    pa = require(fmt)
    rows = batch_rows or BATCH_ROWS
    try:
        reader = _parquet if fmt == "Parquet" else _orc
        for batch in reader(source, wanted, required, where, rows):
            for start in range(0, batch.num_rows, rows):
                yield _to_python(pa, batch.slice(start, rows))
    except (pa.ArrowException, OSError) as exc:
        raise PlanError(f"{where}: not a readable {fmt} inventory file: {exc}") from None


def _present(names: Sequence[str], wanted: Sequence[str], required: Sequence[str], where: str, fmt: str) -> list[str]:
    missing = [c for c in required if c not in names]
    if missing:
        raise PlanError(
            f"{where}: the {fmt} file has no {', '.join(missing)} column (it has {', '.join(names)}), although "
            "the manifest's fileSchema lists it"
        )
    return [c for c in wanted if c in names]


def _parquet(source: IO[bytes], wanted: Sequence[str], required: Sequence[str], where: str, rows: int) -> Iterator[Any]:
    parquet = importlib.import_module("pyarrow.parquet")
    pf = parquet.ParquetFile(source)
    columns = _present(pf.schema_arrow.names, wanted, required, where, "Parquet")
    # iter_batches decodes one row group's pages at a time into batches of batch_size rows: never the whole file.
    yield from pf.iter_batches(batch_size=rows, columns=columns)


def _orc(source: IO[bytes], wanted: Sequence[str], required: Sequence[str], where: str, rows: int) -> Iterator[Any]:
    orc = importlib.import_module("pyarrow.orc")
    of = orc.ORCFile(source)
    columns = _present(of.schema.names, wanted, required, where, "ORC")
    for n in range(of.nstripes):
        yield of.read_stripe(n, columns=columns)  # sliced into ``rows`` by read()


def _to_python(pa: Any, batch: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_timestamp(column.type) and column.type.unit == "ns":
            # ORC timestamps come as nanoseconds; Python datetimes hold microseconds (S3 times are milliseconds).
            column = column.cast(pa.timestamp("us", tz=column.type.tz), safe=False)
        out[name] = column.to_pylist()
    return out
