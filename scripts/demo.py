"""The s3seg demo (run it through scripts/demo.sh): plan, apply and roll back on a local moto S3 server."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, which `python -m` from it has

from s3seg_lab.cdr import cdr_key, write_config
from s3seg_lab.local_s3 import start_store

BUCKET = "demo-cdr"


def banner(text: str) -> None:
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")  # no escapes in a log or a pipe
    print(f"\n{bold}=== {text}{plain}", flush=True)


def sample_keys(n: int, rng: random.Random) -> list[str]:
    """Keys named like the original's example, over 3 days x 24 hours, ~5% that do not match."""
    keys = []
    for i in range(n):
        if i % 20 == 7:
            keys.append(f"incoming/README-{i}.txt" if i % 40 == 7 else f"incoming/CHARGINGCDR_bad-{i}-2022XX31-10.ccn")
            continue
        day = 20221229 + rng.randrange(3)
        hour = rng.randrange(24)
        keys.append(cdr_key(8000 + i, str(day), hour, seq=i % 100))
    return keys


def show_bucket(s3: object, title: str) -> dict[str, bytes]:
    listing: dict[str, bytes] = {}
    paginator = s3.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    for page in paginator.paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            listing[obj["Key"]] = obj["ETag"].encode()
    folders = Counter("/".join(k.split("/")[:-1]) + "/" for k in listing)
    print(f"{title}: {len(listing)} objects in {len(folders)} folders")
    for folder, n in sorted(folders.items())[:8]:
        print(f"  {n:4d}  s3://{BUCKET}/{folder}")
    if len(folders) > 8:
        print(f"  ...   ({len(folders) - 8} more folders)")
    return listing


def s3seg(*args: str, env: dict[str, str]) -> int:
    print(f"$ s3seg {' '.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "s3seg", *args], env=env, check=False).returncode


def main() -> int:
    n = int(os.environ.get("DEMO_OBJECTS", "300"))
    work = Path(tempfile.mkdtemp(prefix="s3seg-demo-"))
    banner("starting a local S3 (moto server) on 127.0.0.1")
    store = start_store("moto")
    try:
        print(f"endpoint {store.endpoint} (ready in {store.ready_seconds:.1f}s); work dir {work}")
        env = {**os.environ, **store.env}
        os.environ.update(store.env)
        import boto3

        s3 = boto3.client("s3", endpoint_url=store.endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        keys = sample_keys(n, random.Random(42))
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: s3.put_object(Bucket=BUCKET, Key=k, Body=f"cdr {k}\n".encode()), keys))
        config = work / "config.xml"
        write_config(config, bucket=BUCKET, endpoint=store.endpoint, log_file=f"{work}/s3seg-%Y%m%d.log",
                     processes=2, n_workers=8)  # fmt: skip
        banner(f"seeded {n} files; the config")
        print(config.read_text())
        before = show_bucket(s3, "bucket before")

        manifest = str(work / "plan.jsonl")
        banner("plan: list once, write a reviewable manifest (read-only on S3)")
        if s3seg("plan", "-c", str(config), "-o", manifest, env=env):
            return 1
        lines = Path(manifest).read_text(encoding="utf-8").splitlines()
        print(f"\nthe manifest ({len(lines)} lines): header, one line per move, trailer. First move and a no-match:")
        print(lines[1][:300])
        print(next((line for line in lines if '"no-match"' in line or '"bad-date"' in line), "")[:300])
        print(lines[-1])

        banner("apply: a process pool of thread pools, every step journaled")
        rc = s3seg("apply", manifest, env=env)
        print(f"(exit code {rc})")
        show_bucket(s3, "bucket after apply")
        banner("verify: an independent audit by listing (not the journal): each object at exactly one place")
        s3seg("verify", manifest, env=env)
        banner("status: from the journal")
        s3seg("status", manifest, env=env)
        banner("apply again: resumes, so there is nothing left to do")
        s3seg("apply", manifest, env=env)

        banner("rollback: undo exactly what the journal says was done")
        rc = s3seg("rollback", manifest, env=env)
        print(f"(exit code {rc})")
        after = show_bucket(s3, "bucket after rollback")
        same = after == before
        print(f"\nbucket back exactly as it started (keys and ETags): {'YES' if same else 'NO'}")
        return 0 if same else 1
    finally:
        store.stop()
        print("local S3 stopped.")
        if os.environ.get("DEMO_KEEP") == "1":
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
