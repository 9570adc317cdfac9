"""The benchmark's report: per-contender medians, ratios, issue 5's targets, the machine, Markdown."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
from dataclasses import asdict
from typing import Any

from s3seg_lab.bench.contenders import RunRecord, s5cmd_binary
from s3seg_lab.bench.procmon import Measured


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
            "`s3seg_lab/instant_s3.py`, `--conditional-writes server`; VmHWM sampled from /proc):",
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
            "through a counting proxy (`s3seg_lab/counting_proxy.py`), not in the timed runs.",
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


def measured_json(m: Measured | None) -> dict[str, Any] | None:
    if m is None:
        return None
    d = asdict(m)
    d.pop("stdout")
    d["stderr_tail"] = d.pop("stderr")[-500:]
    return d
