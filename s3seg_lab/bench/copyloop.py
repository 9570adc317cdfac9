"""Client CPU per copy request: the worker's copy loop (one thread, non-blocking sockets) vs its thread pool.

The store is ``s3seg_lab.fakes3`` in a child process (its CPU is not counted) answering after ``--delay-ms``.
For each number in flight, the same batches of conditional CopyObjects (the copy phase of ``--objects`` moves)
go once through ``worker.copy_batch`` with the copy loop and once with threads only (``S3SEG_COPYLOOP=0``), in
a fresh child process each, with a fixed number in flight (``--threads N`` semantics); every result must be
COPIED. Reported: this process's CPU per object (``time.process_time``, all threads) and objects/s.

    python scripts/bench_copyloop.py --objects 20000 --in-flight 64,128,256 --delay-ms 50
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request

from s3seg_lab.bench.lean_listing import start_store

BUCKET = "bench"


def _seed(endpoint: str, keys: list[str]) -> None:
    body = json.dumps({"bucket": BUCKET, "keys": keys, "size": 1024}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/_fake/seed", body, method="POST")).read()


def _child(endpoint: str, prefix: str, n: int, in_flight: int) -> None:
    """One measurement, in this (child) process: prints a JSON line."""
    from s3seg.moves import Kind, Options, Task
    from s3seg.probe import Capabilities
    from s3seg.storage import ClientSpec
    from s3seg.worker import WorkerConfig, _resources, copy_batch

    spec = ClientSpec(endpoint_url=endpoint, region="us-east-1")
    cfg = WorkerConfig(spec=spec, options=Options(caps=Capabilities.trusted()), threads=in_flight)
    keys = [f"{prefix}k{i:07d}" for i in range(n)]
    tasks = [Task(i, BUCKET, k, BUCKET, "out/" + k, '"' + hashlib.md5(k.encode()).hexdigest() + '"', 1024)
             for i, k in enumerate(keys)]  # fmt: skip
    _resources(cfg)  # the client and pool built before the clock starts
    cpu, wall = time.process_time(), time.monotonic()
    results = [r for i in range(0, n, 500) for r in copy_batch(cfg, tasks[i : i + 500])]
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    bad = [r for r in results if r.kind is not Kind.COPIED]
    print(json.dumps({"cpu_us": cpu / n * 1e6, "rate": n / wall, "failed": len(bad)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--objects", type=int, default=20_000)
    p.add_argument("--in-flight", default="64,128,256")
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    if a.child:
        _child(a.child[0], a.child[1], int(a.child[2]), int(a.child[3]))
        return
    proc, endpoint = start_store(a.delay_ms)
    rows = []
    try:
        for n_in in [int(x) for x in a.in_flight.split(",")]:
            for mode in ("loop", "threads"):
                prefix = f"{mode}-{n_in}/"
                _seed(endpoint, [f"{prefix}k{i:07d}" for i in range(a.objects)])
                env = {**os.environ, "S3SEG_COPYLOOP": "1" if mode == "loop" else "0"}
                out = subprocess.run(
                    [sys.executable, "-m", "s3seg_lab.bench.copyloop", "--child", endpoint, prefix,
                     str(a.objects), str(n_in)],
                    env=env, capture_output=True, text=True, check=True,
                )  # fmt: skip
                row = {"in_flight": n_in, "mode": mode, **json.loads(out.stdout.strip().splitlines()[-1])}
                rows.append(row)
                print(f"{n_in:4d} in flight, {mode:7s}: {row['cpu_us']:6.0f} us CPU per copy, "
                      f"{row['rate']:6.0f} copies/s, {row['failed']} failed", flush=True)  # fmt: skip
    finally:
        proc.kill()
    print(json.dumps({"objects": a.objects, "delay_ms": a.delay_ms, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
