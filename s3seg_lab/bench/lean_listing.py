"""Client CPU of listing one prefix: ``Storage.list_pages`` the lean way vs botocore's (``--botocore-only``).

The store is ``s3seg_lab.fakes3`` in a child process (its CPU is not counted), at 0 ms, seeded with ``--keys``
CDR-like keys under one prefix. Each run lists the whole prefix at 1,000 keys a page and reads this process's
CPU time (``time.process_time``, all threads) around it; runs alternate lean / botocore, and every lean listing
is checked to equal the botocore one, object for object. Prints one JSON document.

    python scripts/bench_lean_listing.py --keys 20000 --runs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

from s3seg.storage import ClientSpec, Storage, make_storage
from s3seg_lab.cdr import cdr_key

BUCKET = "bench"
PREFIX = "incoming/"


def start_store(delay_ms: float = 0.0) -> tuple[subprocess.Popen[str], str]:
    """``s3seg_lab.fakes3`` in a child process answering after ``delay_ms``: (the process, its endpoint)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "s3seg_lab.fakes3", "--delay-ms", str(delay_ms)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"fakes3 did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


def _seed(endpoint: str, n: int) -> None:
    keys = [cdr_key(i, f"202212{28 + i % 4:02d}", i % 24, width=5) for i in range(n)]
    body = json.dumps({"bucket": BUCKET, "keys": keys, "size": 1024}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/_fake/seed", body, method="POST")).read()


def _cpu(storage: Storage) -> tuple[float, list[object]]:
    started = time.process_time()
    objects: list[object] = [o for page in storage.list_pages(BUCKET, PREFIX, page_size=1000) for o in page]
    return time.process_time() - started, objects


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--keys", type=int, default=20_000)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    proc, endpoint = start_store()
    try:
        _seed(endpoint, a.keys)
        spec = ClientSpec(endpoint_url=endpoint, region="us-east-1")
        lean, boto = make_storage(spec), make_storage(dataclasses.replace(spec, lean_http=False))
        assert lean.lean is not None and boto.lean is None
        _cpu(lean), _cpu(boto)  # warm-up: models loaded, connections open, timestamp cache filled
        runs: dict[str, list[float]] = {"lean": [], "botocore": []}
        for _ in range(a.runs):
            lean_s, ours = _cpu(lean)
            boto_s, theirs = _cpu(boto)
            if ours != theirs or len(ours) != a.keys:
                raise SystemExit(f"listings differ: lean {len(ours)} objects, botocore {len(theirs)}")
            runs["lean"].append(lean_s)
            runs["botocore"].append(boto_s)
        med = {k: statistics.median(v) for k, v in runs.items()}
        print(json.dumps({
            "keys": a.keys, "pages": -(-a.keys // 1000), "runs_cpu_s": runs, "median_cpu_s": med,
            "ratio": round(med["botocore"] / med["lean"], 1) if med["lean"] else None,
        }, indent=2))  # fmt: skip
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
