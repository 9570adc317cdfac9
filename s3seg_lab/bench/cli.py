"""``python -m s3seg_lab.bench`` (or ``scripts/bench.py``): arguments, the runs, the result files."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from dataclasses import asdict
from datetime import datetime
from typing import Any

from s3seg_lab import ROOT
from s3seg_lab.bench.contenders import Bench
from s3seg_lab.bench.memory_pass import rss_scaling
from s3seg_lab.bench.report import machine, markdown, measured_json, ratios, summarise, versions


def main() -> None:
    p = argparse.ArgumentParser(description="s3seg vs s5cmd vs the original algorithm, on a local S3 server")
    p.add_argument("--store", choices=("seaweedfs", "rclone", "moto"), default="seaweedfs")
    p.add_argument("--objects", type=int, default=20_000, help="objects per run (default 20,000; try 100000, 200000)")
    p.add_argument("--runs", type=int, default=3, help="timed runs per contender (default 3)")
    p.add_argument(
        "--contenders", default="s3seg,s5cmd,original", help="comma list of s3seg,s3seg-tuned,s5cmd,original"
    )
    p.add_argument("--tuned", default="", help="extra `s3seg apply` flags for an s3seg-tuned contender")
    p.add_argument("--n-keys", type=int, default=0, help="n_keys in the s3seg config (default: s3seg's default)")
    p.add_argument("--count-objects", type=int, default=5000, help="objects in the counting pass (0: skip it)")
    p.add_argument("--rss-sizes", default="", help="comma list of synthetic manifest sizes for the memory pass")
    p.add_argument("--rss-only", action="store_true", help="only the memory pass (no store, no contenders)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench-out"), help="where RESULTS.md and results.json go")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    result: dict[str, Any] = {
        "command": "python scripts/bench.py " + shlex.join(sys.argv[1:]),
        "store": args.store,
        "objects": args.objects,
        "runs": args.runs,
        "tuned": args.tuned,
        "page_size": 1000,
        "machine": machine(),
        "versions": versions(),
        "started": datetime.now().isoformat(timespec="seconds"),
    }
    bench = Bench(args)
    try:
        if not args.rss_only:
            bench.main()
            result["summary"] = summarise(bench.records)
            result["ratios"] = ratios(result["summary"])
            result["records"] = [
                {**{k: v for k, v in asdict(r).items() if k not in ("apply", "plan", "bare_list")},
                 **{k: measured_json(getattr(r, k)) for k in ("apply", "plan", "bare_list")}}
                for r in bench.records
            ]  # fmt: skip
        else:
            result["summary"], result["ratios"] = {}, {}
        if args.rss_sizes:
            sizes = [int(x) for x in args.rss_sizes.split(",") if x]
            bench.log(f"memory pass: synthetic manifests of {sizes}")
            result["rss_scaling"] = rss_scaling(sizes, bench.work, bench.log)
    finally:
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
    result["load_avg_at_end"] = os.getloadavg()
    result["finished"] = datetime.now().isoformat(timespec="seconds")
    text = markdown(result)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "RESULTS.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=2, default=str)
    print(text)
    print(
        json.dumps(
            {"summary": result["summary"], "ratios": result["ratios"], "rss_scaling": result.get("rss_scaling")},
            default=str,
        )
    )


if __name__ == "__main__":
    main()
