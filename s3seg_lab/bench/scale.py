"""Scale benchmark (not in CI): plan, apply, kill -9 mid-apply + resume, status and rollback at several sizes.

    .venv/bin/python scripts/bench_scale.py --sizes 100000 300000 1000000 --out docs/scale

Against ``s3seg_lab/fakes3.py`` (an in-memory S3 on 127.0.0.1 that enforces the copy/delete/put conditions
s3seg relies on; copied unchanged from helper d's branch), with no added latency, so what is measured is
s3seg's own cost per object. Each size: seed N objects, ``plan -o plan.jsonl.gz``, ``apply`` killed with
SIGKILL (the whole process group) once ~40% is journaled, ``apply`` again (resume: the time until the store
sees its first new CopyObject), ``status``, ``rollback``; after apply and after rollback every key is checked
against what is expected. Peak RSS (VmHWM) of the parent and of every worker is sampled from /proc every 50 ms.
Writes ``<out>.json`` and ``<out>.png`` (matplotlib, installed only for this script).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from s3seg_lab import ROOT, lab_env, module_command

BUCKET = "landing"
LEASE_TTL = 5  # the killed run's lease expires this long after its last renewal; resume starts after that


def key(i: int) -> str:
    return f"incoming/CHARGINGCDR_{i:09d}-20221231-{i % 24:02d}.ccn"


def dst(i: int) -> str:
    return f"segregated/2022/12/31/{i % 24:02d}/CHARGINGCDR_{i:09d}-20221231-{i % 24:02d}.ccn"


class Store:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            module_command("s3seg_lab.fakes3"),
            stdout=subprocess.PIPE, text=True, env=lab_env(),
        )  # fmt: skip
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def admin(self, what: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/_fake/{what}", data=data, method="GET" if data is None else "POST")
        with urllib.request.urlopen(req) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def copies(self) -> int:
        return int(self.admin("stats")["requests"].get("CopyObject", 0))

    def listing(self) -> set[str]:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.url, aws_access_key_id="x", aws_secret_access_key="x",
                          region_name="us-east-1")  # fmt: skip
        out: set[str] = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            out.update(o["Key"] for o in page.get("Contents", []) if o["Key"].startswith(("incoming/", "segregated/")))
        return out

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(args: list[str], *, env: dict[str, str], until: Any = None) -> dict[str, Any]:
    """Run ``python -m s3seg ARGS``; sample peak RSS per process; ``until()`` true -> SIGKILL the group."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "s3seg", *args], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    peaks: dict[int, int] = {}
    first_copy = None
    killed = False
    while proc.poll() is None:
        for p in tree(proc.pid):
            peaks[p] = max(peaks.get(p, 0), hwm(p))
        if until is not None:
            verdict = until(time.monotonic() - started)
            if verdict == "kill":
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
            elif verdict is not None and first_copy is None:
                first_copy = verdict
        time.sleep(0.05)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    if proc.returncode not in (0, -9) and not killed:
        print(f"s3seg {args[0]} exited {proc.returncode}: {err.decode(errors='replace')[-3000:]}", file=sys.stderr)
    workers = sorted((v for p, v in peaks.items() if p != proc.pid), reverse=True)
    return {
        "seconds": round(time.monotonic() - started, 2),
        "rc": proc.returncode,
        "killed": killed,
        "first_copy_s": first_copy,
        "parent_rss_mb": round(peaks.get(proc.pid, 0) / 2**20, 1),
        "worker_rss_mb": [round(v / 2**20, 1) for v in workers],
        "stdout": out.decode(errors="replace")[-2000:],
    }


def one_size(n: int, work: Path, processes: int, threads: int) -> dict[str, Any]:
    store = Store()
    try:
        for lo in range(1, n + 1, 50_000):
            store.admin("seed", {"bucket": BUCKET, "keys": [key(i) for i in range(lo, min(lo + 50_000, n + 1))],
                                 "size": 100})  # fmt: skip
        cfg = work / "config.xml"
        values = {
            "log_file": str(work / "s3seg.log"), "state_dir": str(work), "endpoint_url": store.url,
            "match_pattern": r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*", "datetime_format": "%Y%m%d%H",
            "s3_dir": f"s3://{BUCKET}/incoming/", "s3_segregated_dir": f"s3://{BUCKET}/segregated/%Y/%m/%d/%H/",
            "s3_error_dir": f"s3://{BUCKET}/error/", "n_loops": 0, "processes": processes, "n_workers": threads,
            "conditional_writes": "server",
        }  # fmt: skip
        cfg.write_text("<config>\n" + "".join(f"  <{k}>{v}</{k}>\n" for k, v in values.items()) + "</config>\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
               "AWS_DEFAULT_REGION": "us-east-1", "S3SEG_LEASE_TTL": str(LEASE_TTL)}  # fmt: skip
        manifest = str(work / "plan.jsonl.gz")
        journal = manifest + ".journal"
        res: dict[str, Any] = {"objects": n}
        res["plan"] = run(["plan", "-c", str(cfg), "-o", manifest, "--all"], env=env)
        res["manifest_bytes"] = os.path.getsize(manifest)

        target = int(n * 0.4)

        def kill_when_journaled(_: float) -> str | None:
            done = moved(store)
            return "kill" if done >= target else None

        res["apply_killed"] = run(["apply", manifest, "--no-progress"], env=env, until=kill_when_journaled)
        res["moved_before_kill"] = moved(store)
        time.sleep(LEASE_TTL + 1)  # not measured: a kill -9 leaves its lease to expire (see docs/scale.md)
        before = store.copies()

        def first_copy(t: float) -> float | None:
            return round(t, 2) if store.copies() > before else None

        res["resume"] = run(
            ["apply", manifest, "--no-progress", "--json", "--lock-wait", "60"], env=env, until=first_copy
        )
        res["journal_bytes"] = os.path.getsize(journal)
        res["apply_verified"] = store.listing() == {dst(i) for i in range(1, n + 1)}
        res["status"] = run(["status", manifest, "--json"], env=env)
        res["rollback"] = run(["rollback", manifest, "--no-progress", "--json"], env=env)
        res["journal_bytes_after_rollback"] = os.path.getsize(journal)
        res["rollback_verified"] = store.listing() == {key(i) for i in range(1, n + 1)}
        return res
    finally:
        store.close()


def moved(store: Store) -> int:
    return int(store.admin("stats")["requests"].get("DeleteObjects", 0)) * 500  # batches of 500 deleted


def plot(results: list[dict[str, Any]], png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["objects"] for r in results]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for phase in ("plan", "resume", "status", "rollback"):
        a.plot(ns, [r[phase]["seconds"] for r in results], marker="o", label=phase)
    a.set_xlabel("objects")
    a.set_ylabel("wall seconds")
    a.set_xscale("log")
    a.set_yscale("log")
    a.legend()
    a.set_title("wall time per phase (loaded 2-core machine)")
    b.plot(ns, [r["resume"]["parent_rss_mb"] for r in results], marker="o", label="apply parent")
    b.plot(ns, [max(r["resume"]["worker_rss_mb"] or [0]) for r in results], marker="o", label="largest worker")
    b.plot(ns, [r["plan"]["parent_rss_mb"] for r in results], marker="o", label="plan")
    b.set_xscale("log")
    b.set_xlabel("objects")
    b.set_ylabel("peak RSS MB")
    b.set_ylim(bottom=0)
    b.legend()
    b.set_title("peak RSS per process")
    fig.tight_layout()
    fig.savefig(png, dpi=90)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--out", default=str(ROOT / "docs" / "scale"))
    a = p.parse_args()
    results = []
    for n in a.sizes:
        with tempfile.TemporaryDirectory(prefix="s3seg-scale-") as work:
            r = one_size(n, Path(work), a.processes, a.threads)
        for phase in ("plan", "apply_killed", "resume", "status", "rollback"):
            r[phase].pop("stdout", None)
        results.append(r)
        print(json.dumps(r), flush=True)
        Path(a.out + ".json").write_text(json.dumps(results, indent=1))
    try:
        plot(results, a.out + ".png")
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)


if __name__ == "__main__":
    main()
