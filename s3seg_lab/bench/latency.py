"""Latency-bound benchmark: s3seg (defaults) vs s5cmd (defaults) against a store that answers after N ms.

    python scripts/bench_latency.py                 # 20,000 objects, 0/20/50/100 ms, 3 runs, + throttled store
    python scripts/bench_latency.py --quick         # 5,000 objects, 1 run: a few minutes
    python -m s3seg_lab.bench.latency --quick       # the same, from the repo root

The store is ``s3seg_lab.fakes3`` in its own process (in-memory, asyncio: the delay costs no CPU), so what is
measured is the client's concurrency and CPU, as against a remote store such as AWS. Per run, in a fresh bucket
seeded through the store's admin call (no delay): the contender runs as a subprocess (``s3seg plan`` then
``s3seg apply``; ``s5cmd run`` of one ``mv`` per object), then the bucket is verified (exact destination key
set, sizes, source prefix empty) as in ``s3seg_lab.bench``. Reported: objects/s (plan + apply, apply alone),
client CPU per 1,000 objects (user+sys of the process tree, from ``wait4``), requests per object and the peak
number of requests in flight, both counted by the store.

The throttled pass runs ``s3seg apply`` (defaults) against the store answering 503 SlowDown above ``--rate``
requests/s (at ``--throttle-delay-ms``): it reports the accepted request rate against the limit, the number of
503s, and the failed items (the run must end with every item done).

Prints a Markdown table and writes ``bench-out/LATENCY.md`` and ``bench-out/latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from typing import Any

from s3seg_lab import ROOT, cdr, lab_env, module_command
from s3seg_lab.bench.contenders import s3seg_binary, s5cmd_binary
from s3seg_lab.bench.dataset import OBJECT_SIZE, object_names
from s3seg_lab.bench.procmon import SERVER_PIDS, measure
from s3seg_lab.bench.report import machine


class Store:
    """``s3seg_lab.fakes3`` as a subprocess, driven through its admin calls."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            module_command("s3seg_lab.fakes3"), stdout=subprocess.PIPE, text=True, env=lab_env()
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("PORT "):
            raise SystemExit(f"fakes3 did not start: {line!r}")
        self.endpoint = f"http://127.0.0.1:{int(line.split()[1])}"
        SERVER_PIDS[:] = [self.proc.pid]

    def admin(self, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.endpoint}/_fake/{name}", data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(req, timeout=120) as r:
            result: dict[str, Any] = json.loads(r.read())
            return result

    def list_all(self, bucket: str) -> dict[str, int]:
        import boto3
        from botocore.config import Config

        s3 = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="x", aws_secret_access_key="y",
                          region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))  # fmt: skip
        out: dict[str, int] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 1000}):
            out.update((o["Key"], o["Size"]) for o in page.get("Contents", ()))
        return out

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    e.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="benchsecret", AWS_DEFAULT_REGION="us-east-1")
    e.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    return e


class LatencyBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.store = Store()
        self.work = tempfile.mkdtemp(prefix="s3seg-latbench-")
        self.names = object_names(args.objects)
        self.s5cmd = s5cmd_binary()

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def fresh(self, label: str) -> tuple[str, str]:
        bucket = f"lat-{label}-{uuid.uuid4().hex[:8]}"
        self.store.admin("seed", {"bucket": bucket, "keys": [f"incoming/{n}" for n, _ in self.names],
                                  "size": OBJECT_SIZE})  # fmt: skip
        run_dir = os.path.join(self.work, bucket)
        os.makedirs(run_dir)
        return bucket, run_dir

    def verify(self, bucket: str) -> None:
        delay = self.store.admin("config", {"delay_ms": 0, "rate": 0})
        del delay
        found = self.store.list_all(bucket)
        expected = {dst for _, dst in self.names}
        if set(found) != expected:
            missing, extra = sorted(expected - set(found)), sorted(set(found) - expected)
            raise SystemExit(f"{bucket}: {len(missing)} missing (e.g. {missing[:3]}), {len(extra)} extra ({extra[:3]})")
        if any(size != OBJECT_SIZE for size in found.values()):
            raise SystemExit(f"{bucket}: objects of the wrong size")

    def set_store(self, delay_ms: float, rate: float = 0.0) -> None:
        self.store.admin("config", {"delay_ms": delay_ms, "jitter_ms": delay_ms * self.args.jitter, "rate": rate})
        self.store.admin("reset", {})

    def config(self, bucket: str, run_dir: str) -> str:
        path = os.path.join(run_dir, "config.xml")
        cdr.write_config(path, bucket=bucket, endpoint=self.store.endpoint, n_loops=0, state_dir=run_dir)
        return path

    def run_s3seg(self, delay_ms: float, extra: list[str], rate: float = 0.0) -> dict[str, Any]:
        bucket, run_dir = self.fresh("s3seg")
        cfg, manifest = self.config(bucket, run_dir), os.path.join(run_dir, "plan.jsonl")
        self.set_store(delay_ms, rate)
        plan = measure([*s3seg_binary(), "plan", "-c", cfg, "-o", manifest, "--json"], env(), run_dir)
        if plan.rc != 0:
            raise SystemExit(f"plan failed: {plan.stderr[-2000:]}")
        self.set_store(delay_ms, rate)
        cmd = [*s3seg_binary(), "apply", manifest, "--json", "--no-progress", *extra]
        apply = measure(cmd, env(), run_dir)
        stats = self.store.admin("stats")
        out = json.loads(apply.stdout) if apply.stdout.strip().startswith("{") else {}
        if rate == 0 and (apply.rc != 0 or out.get("this_run") != {"done": len(self.names)}):
            raise SystemExit(f"apply failed (rc {apply.rc}): {apply.stdout[-1500:]} {apply.stderr[-1500:]}")
        if rate == 0:
            self.verify(bucket)
        return {"plan_s": plan.wall_s, "apply_s": apply.wall_s, "cpu_s": plan.cpu_s + apply.cpu_s,
                "apply_cpu_s": apply.cpu_s, "stats": stats, "rc": apply.rc, "outcomes": out.get("this_run"),
                "bucket": bucket}  # fmt: skip

    def run_one_shot(self, delay_ms: float, extra: list[str]) -> dict[str, Any]:
        """``s3seg run``: plan and apply in one command (the cron form), timed as a whole."""
        bucket, run_dir = self.fresh("run")
        cfg = self.config(bucket, run_dir)
        self.set_store(delay_ms)
        m = measure([*s3seg_binary(), "run", "-c", cfg, "--json", "--no-progress", *extra], env(), run_dir)
        stats = self.store.admin("stats")
        if m.rc != 0:
            raise SystemExit(f"run failed (rc {m.rc}): {m.stdout[-1500:]} {m.stderr[-1500:]}")
        self.verify(bucket)
        return {"apply_s": m.wall_s, "cpu_s": m.cpu_s, "apply_cpu_s": m.cpu_s, "stats": stats}

    def run_s5cmd(self, delay_ms: float) -> dict[str, Any]:
        bucket, run_dir = self.fresh("s5cmd")
        cmds = os.path.join(run_dir, "cmds.txt")
        with open(cmds, "w") as f:
            f.writelines(f"mv s3://{bucket}/incoming/{n} s3://{bucket}/{d}\n" for n, d in self.names)
        self.set_store(delay_ms)
        m = measure([self.s5cmd, "--endpoint-url", self.store.endpoint, "--log", "error", "run", cmds], env(), run_dir)
        if m.rc != 0 or m.stderr.strip():
            raise SystemExit(f"s5cmd failed (rc {m.rc}): {m.stderr[-2000:]}")
        stats = self.store.admin("stats")
        self.verify(bucket)
        return {"apply_s": m.wall_s, "cpu_s": m.cpu_s, "apply_cpu_s": m.cpu_s, "stats": stats}

    def main(self) -> dict[str, Any]:
        a = self.args
        n = len(self.names)
        rows: list[dict[str, Any]] = []
        for delay in [float(x) for x in a.delays.split(",")]:
            runs: dict[str, list[dict[str, Any]]] = {"s3seg": [], "s3seg-run": [], "s5cmd": []}
            for rnd in range(a.runs):
                order = ["s3seg", "s3seg-run", "s5cmd"]
                for name in order if rnd % 2 == 0 else order[::-1]:
                    if name == "s3seg":
                        r = self.run_s3seg(delay, shlex.split(a.s3seg_flags))
                    elif name == "s3seg-run":
                        r = self.run_one_shot(delay, shlex.split(a.s3seg_flags))
                    else:
                        r = self.run_s5cmd(delay)
                    runs[name].append(r)
                    self.log(f"{delay:>5.0f} ms {name:<6} round {rnd + 1}: apply {r['apply_s']:.2f}s "
                             f"({n / r['apply_s']:.0f}/s), plan {r.get('plan_s', 0):.2f}s, cpu {r['cpu_s']:.2f}s, "
                             f"peak in flight {r['stats']['peak_in_flight']} -- verified")  # fmt: skip
            for name, rs in runs.items():
                apply_s = statistics.median(r["apply_s"] for r in rs)
                total_s = statistics.median(r["apply_s"] + r.get("plan_s", 0.0) for r in rs)
                reqs = statistics.median(sum(r["stats"]["requests"].values()) for r in rs)
                rows.append({"delay_ms": delay, "contender": name, "apply_s": apply_s, "total_s": total_s,
                             "apply_per_s": n / apply_s, "total_per_s": n / total_s,
                             "cpu_per_1000": statistics.median(r["cpu_s"] for r in rs) / n * 1000,
                             "apply_cpu_per_1000": statistics.median(r["apply_cpu_s"] for r in rs) / n * 1000,
                             "requests_per_object": reqs / n,
                             "peak_in_flight": max(r["stats"]["peak_in_flight"] for r in rs),
                             "mean_in_flight": statistics.median(r["stats"]["busy_seconds"] / r["apply_s"]
                                                                 for r in rs)})  # fmt: skip
        result: dict[str, Any] = {"objects": n, "runs": a.runs, "rows": rows}
        if a.rate > 0:
            result["throttled"] = self.throttled()
        return result

    def throttled(self) -> dict[str, Any]:
        a, n = self.args, len(self.names)
        r = self.run_s3seg(a.throttle_delay_ms, shlex.split(a.s3seg_flags), rate=a.rate)
        stats = r["stats"]
        accepted = sum(v for k, v in stats["requests"].items() if k != "throttled")
        done = (r["outcomes"] or {}).get("done", 0)
        self.store.admin("config", {"delay_ms": 0, "rate": 0})
        self.verify(r["bucket"])
        out = {"rate_limit": a.rate, "delay_ms": a.throttle_delay_ms, "apply_s": r["apply_s"],
               "accepted_per_s": accepted / r["apply_s"], "throttled": stats["throttled"], "accepted": accepted,
               # between the store's first request and its last answer: the rate once the run is talking to it
               "active_s": stats["last_at"] - stats["first_at"],
               "active_per_s": accepted / max(1e-9, stats["last_at"] - stats["first_at"]),
               "done": done, "failed": n - done, "peak_in_flight": stats["peak_in_flight"], "rc": r["rc"]}  # fmt: skip
        self.log(f"throttled store: {out}")
        return out


def limiter_cost(threads: int = 300, per_thread: int = 100, latency: float = 0.005) -> dict[str, float]:
    """Client CPU of the gate + adaptive limit per request, at ``threads`` in flight (sleeping "requests")."""
    import threading

    from s3seg.concurrency import AdaptiveLimit, Gate

    def run(gate: Gate | None) -> float:
        def work() -> None:
            for _ in range(per_thread):
                token = gate.enter() if gate is not None else None
                time.sleep(latency)
                if gate is not None and token is not None:
                    gate.leave(token)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        cpu0 = time.process_time()
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        return time.process_time() - cpu0

    bare = min(run(None) for _ in range(3))
    gated = min(run(Gate(AdaptiveLimit(initial=threads, floor=threads, max_limit=threads))) for _ in range(3))
    n = threads * per_thread
    return {"threads": threads, "us_per_request_bare": bare / n * 1e6, "us_per_request_gated": gated / n * 1e6,
            "us_per_request_limiter": (gated - bare) / n * 1e6}  # fmt: skip


def markdown(result: dict[str, Any], command: str) -> str:
    m = result["machine"]
    lines = [
        f"## Latency-bound benchmark: {result['objects']:,} objects, fake S3 (`s3seg_lab/fakes3.py`), "
        f"medians of {result['runs']}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}); load average at start {m['load_avg_at_start'][0]:.2f}, "
        f"at end {result['load_avg_at_end'][0]:.2f} (client and store share these CPUs).",
        "",
        "| latency | contender | plan + apply s (obj/s) | apply alone s (obj/s) | client CPU s / 1,000 obj"
        " (apply) | requests / obj (apply) | in flight: peak / mean (apply) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        who = r["contender"]
        total = f"{r['total_s']:.2f} ({r['total_per_s']:,.0f})" if who != "s5cmd" else "-"
        alone = f"{r['apply_s']:.2f} ({r['apply_per_s']:,.0f})" if who != "s3seg-run" else "-"
        name = {"s3seg": "s3seg plan, apply", "s3seg-run": "s3seg run (one command)"}.get(who, "s5cmd defaults")
        lines.append(
            f"| {r['delay_ms']:.0f} ms | {name} | {total} | {alone} | "
            f"{r['cpu_per_1000']:.2f} ({r['apply_cpu_per_1000']:.2f}) | {r['requests_per_object']:.3f} | "
            f"{r['peak_in_flight']} / {r['mean_in_flight']:.0f} |"
        )
    by = {(r["delay_ms"], r["contender"]): r for r in result["rows"]}
    ratios = []
    for (delay, who), r in sorted(by.items()):
        other = by.get((delay, "s5cmd"))
        if who == "s3seg" and other:
            one = by.get((delay, "s3seg-run"))
            ratios.append(f"{delay:.0f} ms: plan+apply {r['total_per_s'] / other['apply_per_s']:.2f}x"
                          + (f" (run {one['total_per_s'] / other['apply_per_s']:.2f}x)" if one else "")
                          + f", apply {r['apply_per_s'] / other['apply_per_s']:.2f}x")  # fmt: skip
    if ratios:
        lines += ["", "s3seg vs s5cmd objects/s: " + "; ".join(ratios) + "."]
    t = result.get("throttled")
    if t:
        lines += [
            "",
            f"Throttled store (503 SlowDown above {t['rate_limit']:,.0f} requests/s, {t['delay_ms']:.0f} ms): "
            f"apply {t['apply_s']:.2f}s, accepted {t['accepted_per_s']:,.0f} requests/s "
            f"(**{t['accepted_per_s'] / t['rate_limit']:.0%}** of the limit over the whole apply, start-up "
            f"included; {t['active_per_s'] / t['rate_limit']:.0%} over the {t['active_s']:.2f} s from the store's "
            f"first request to its last answer), {t['throttled']:,} answered 503 "
            f"({t['throttled'] / max(1, t['accepted'] + t['throttled']):.1%} of requests), "
            f"{t['failed']} failed items, peak {t['peak_in_flight']} in flight.",
        ]
    c = result.get("limiter_cost")
    if c:
        lines += [
            "",
            f"Limiter cost: {c['us_per_request_limiter']:.1f} us of client CPU per request at {c['threads']} in "
            f"flight (gate + adaptive limit: {c['us_per_request_gated']:.1f} us, the same threads without it: "
            f"{c['us_per_request_bare']:.1f} us; in-process, sleeping requests).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description="s3seg vs s5cmd on a latency-bound fake S3")
    p.add_argument("--quick", action="store_true", help="5,000 objects, 1 run")
    p.add_argument("--objects", type=int, default=20_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--delays", default="0,20,50,100", help="comma list of per-request latencies in ms")
    p.add_argument("--jitter", type=float, default=0.1, help="jitter as a fraction of the latency (default 0.1)")
    p.add_argument("--rate", type=float, default=1000, help="throttled pass: the store's limit (0: skip the pass)")
    p.add_argument("--throttle-delay-ms", type=float, default=50)
    p.add_argument("--s3seg-flags", default="", help="extra `s3seg apply` flags (default: none, the defaults)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench-out"))
    args = p.parse_args()
    if args.quick:
        args.objects, args.runs = 5000, 1
    command = "python scripts/bench_latency.py " + shlex.join(sys.argv[1:])
    bench = LatencyBench(args)
    started = machine()
    try:
        t0 = time.time()
        result = bench.main()
        result["limiter_cost"] = limiter_cost()
        result["wall_s"] = time.time() - t0
    finally:
        bench.store.stop()
        shutil.rmtree(bench.work, ignore_errors=True)
    result["machine"] = started
    result["load_avg_at_end"] = os.getloadavg()
    text = markdown(result, command)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "LATENCY.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "latency.json"), "w") as f:
        json.dump(result, f, indent=2, default=str)
    print(text)


if __name__ == "__main__":
    main()
