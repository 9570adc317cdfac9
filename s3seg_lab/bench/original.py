"""Benchmark helpers run as subprocesses, so their CPU and RSS are measured like every other contender's.

``original``: the original tool's algorithm, as its README and main.py describe it (a small re-statement for
the benchmark, not the original's code): list ``n_keys`` (500) keys of ``s3_dir`` from the start on every loop
(the moved keys have left the prefix), skip folder markers, take the date from the file name with the regex
groups joined and ``strptime``, and submit one job per key to a ``ThreadPoolExecutor`` of ``cpu_count // 2``
threads; each job is CopyObject (``CopySource`` as the string "bucket/key") then DeleteObject, no conditions;
wait for the page, list again, until the prefix is empty or ``n_loops`` pages are done. One default boto3
client. The benchmark sets ``n_loops`` high enough for the whole data set, as an operator would.

``list``: a bare paginated ListObjectsV2 loop (what a plan's listing cannot beat), timed from the first request
to the last page, like the planner's own ``elapsed_s``.

Both print one JSON line with their own timings on stdout.

    python s3seg_lab/bench/original.py original --endpoint URL --bucket B --pattern RE --datetime-format F
                                       [--n-keys 500] [--workers N]
    python s3seg_lab/bench/original.py list --endpoint URL --bucket B --prefix incoming/ [--page-size 1000]

It imports nothing from the lab or from s3seg (run by path, it costs what the original's start-up costs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint)  # the original: boto3.client('s3'), all defaults


def _date(filename: str, pattern: str, datetime_format: str) -> datetime | None:
    m = re.compile(pattern).search(filename)  # the original compiled the pattern per file
    if not m:
        return None
    try:
        return datetime.strptime("".join(str(g) for g in m.groups()), datetime_format)
    except ValueError:
        return None


def _move(s3: Any, source_path: str, destination_dir: str) -> None:
    try:
        source_bucket, source_key = source_path.replace("s3://", "").split("/", 1)
        dest_bucket, dest_dir = destination_dir.replace("s3://", "").split("/", 1)
        dest_key = os.path.join(dest_dir, os.path.basename(source_key))
        s3.copy_object(Bucket=dest_bucket, Key=dest_key, CopySource=source_path)
        s3.delete_object(Bucket=source_bucket, Key=source_key)
    except Exception as exc:  # noqa: BLE001 - the original logged and went on
        print(f"error moving {source_path}: {exc}", file=sys.stderr)


def original(args: argparse.Namespace) -> dict[str, Any]:
    s3 = _client(args.endpoint)
    bucket, prefix = args.bucket, args.prefix
    segregated = f"s3://{bucket}/segregated/%Y/%m/%d/%H/"
    error_dir = f"s3://{bucket}/error/"
    workers = args.workers or (os.cpu_count() or 2) // 2
    started = time.monotonic()
    loops = 0
    with ThreadPoolExecutor(max_workers=workers) as executor:
        while loops < args.n_loops:
            response = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=args.n_keys)
            if not response.get("Contents"):
                break
            paths = [os.path.join(bucket, o["Key"]) for o in response["Contents"] if not o["Key"].endswith("/")]
            if not paths:
                break
            loops += 1
            futures = []
            for path in paths:
                date = _date(os.path.basename(path), args.pattern, args.datetime_format)
                dest = error_dir if date is None else date.strftime(segregated)
                futures.append(executor.submit(_move, s3, path, dest))
            wait(futures)
    return {"elapsed_s": time.monotonic() - started, "loops": loops, "workers": workers}


def bare_list(args: argparse.Namespace) -> dict[str, Any]:
    s3 = _client(args.endpoint)
    kwargs: dict[str, Any] = {
        "Bucket": args.bucket,
        "Prefix": args.prefix,
        "PaginationConfig": {"PageSize": args.page_size},
    }
    if args.delimiter:
        kwargs["Delimiter"] = args.delimiter
    started = time.monotonic()
    keys = pages = 0
    for page in s3.get_paginator("list_objects_v2").paginate(**kwargs):
        pages += 1
        keys += len(page.get("Contents", ()))
    return {"elapsed_s": time.monotonic() - started, "keys": keys, "pages": pages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("original")
    o.add_argument("--n-keys", type=int, default=500)
    o.add_argument("--n-loops", type=int, default=10**9)
    o.add_argument("--workers", type=int, default=0, help="default: cpu_count // 2, as the original")
    # The config's match_pattern and datetime_format (the benchmark passes those of s3seg_lab.cdr).
    o.add_argument("--pattern", required=True)
    o.add_argument("--datetime-format", required=True)
    b = sub.add_parser("list")
    b.add_argument("--page-size", type=int, default=1000)
    b.add_argument("--delimiter", default="/")
    for p in (o, b):
        p.add_argument("--endpoint", required=True)
        p.add_argument("--bucket", required=True)
        p.add_argument("--prefix", default="incoming/")
    args = parser.parse_args()
    result = original(args) if args.cmd == "original" else bare_list(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
