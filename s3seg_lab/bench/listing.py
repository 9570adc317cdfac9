"""Parallel listing vs the serial listing of one flat prefix, on a local S3 server (moto or SeaweedFS).

    python scripts/bench_listing.py [--store moto|seaweedfs] [--keys 20000] [--workers 2,4,8,16] [--repeat 3]

Seeds ``--keys`` CDR-like keys (numbered, several dates and hours: the shape s3seg plans) under one prefix,
then lists it serially (``Storage.list_pages``, 1,000 keys a request) and with ``s3seg.listing.list_pages`` at
each worker count; every parallel result is checked to equal the serial one, key for key. Prints one JSON
document. On this kind of machine client and server share two cores, so the numbers say more about the
server's CPU than about S3, whose listing is bound by round-trip latency.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from s3seg.listing import list_pages
from s3seg.storage import Storage
from s3seg_lab.cdr import cdr_key
from s3seg_lab.local_s3 import client, start_store


def seed(s3: object, bucket: str, n: int) -> float:
    started = time.monotonic()

    def put(i: int) -> None:
        s3.put_object(Bucket=bucket, Key=cdr_key(i, f"202212{28 + i % 4:02d}", i % 24, width=5), Body=b"")  # type: ignore[attr-defined]

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put, range(n)))
    return time.monotonic() - started


def timed(fn: object, repeat: int) -> tuple[float, list[str]]:
    best, keys = float("inf"), []
    for _ in range(repeat):
        started = time.monotonic()
        keys = [o.key for page in fn() for o in page]  # type: ignore[operator]
        best = min(best, time.monotonic() - started)
    return best, keys


def stop(store: object) -> None:
    """Stop the server's process group; remove only this server's SeaweedFS sockets (others may be running)."""
    proc = store.proc  # type: ignore[attr-defined]
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for port in re.findall(r"grpc=(\d+)", " ".join(store.cmd)):  # type: ignore[attr-defined]
        for kind in ("master", "volume", "filer", "s3"):
            path = os.path.join(tempfile.gettempdir(), f"seaweedfs-{kind}-grpc-{port}.sock")
            if os.path.exists(path):
                os.unlink(path)
    subprocess.run(["rm", "-rf", store.workdir], check=False)  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="moto", choices=("moto", "seaweedfs"))
    ap.add_argument("--keys", type=int, default=20000)
    ap.add_argument("--workers", default="2,4,8,16")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    store = start_store(args.store)
    try:
        os.environ.update(store.env)
        s3 = client(store.endpoint)
        s3.create_bucket(Bucket="bench")
        seed_s = seed(s3, "bench", args.keys)
        storage = Storage(client(store.endpoint))
        serial_s, serial = timed(lambda: storage.list_pages("bench", "incoming/", page_size=1000), args.repeat)
        assert len(serial) == args.keys, len(serial)
        out: dict[str, object] = {
            "store": args.store,
            "keys": args.keys,
            "seed_s": round(seed_s, 1),
            "serial_s": round(serial_s, 3),
            "serial_keys_per_s": round(args.keys / serial_s),
            "parallel": {},
        }
        for w in (int(x) for x in args.workers.split(",")):
            t, keys = timed(
                lambda w=w: list_pages(storage, "bench", "incoming/", page_size=1000, workers=w), args.repeat
            )
            assert keys == serial, f"workers={w}: parallel listing differs from the serial one"
            out["parallel"][str(w)] = {"s": round(t, 3), "speedup": round(serial_s / t, 2)}  # type: ignore[index]
        print(json.dumps(out, indent=2))
    finally:
        stop(store)


if __name__ == "__main__":
    main()
