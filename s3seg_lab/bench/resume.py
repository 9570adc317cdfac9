"""Resume skip benchmark: how fast a resume gets from start to its first new request (issue 15's target:
>= 500,000 manifest entries per second), without S3.

A synthetic manifest of N entries (plain or ``.gz``) and a journal with the first ``--done`` fraction of the
ids done (a killed apply leaves about a prefix done: batches go out in id order). Per case it times, in
process CPU and wall seconds, what ``apply`` does before its first request of a resume:

- ``verify``: ``commands.verify_for_run`` (light when the journal is bound to the manifest) or, on code that
  has none, the full ``Manifest.verify()`` every apply did before;
- ``replay``: the journal replayed into its state;
- ``first``: ``moves(skip=done mask)`` up to the first pending entry;
- ``rest``: the remainder of that stream (every pending entry parsed), reported separately.

``first_request`` = verify + replay + first; entries/s = N / that. Run on whatever s3seg is importable, so
the same file measures old code too: ``PYTHONPATH=<old checkout> python s3seg_lab/bench/resume.py``.

    python scripts/bench_resume.py --sizes 100000 1000000 [--done 0.9] [--dir /tmp/s3seg-bench-resume]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from s3seg import commands
from s3seg.journal import APPLY_DONE, Journal, Status, replay
from s3seg.manifest import Manifest, ManifestWriter, Move, content_sha256

_HEADER: dict[str, Any] = {"tool": "s3seg", "version": "bench", "now": "2023-01-02T03:04:05", "config": {}}


def _moves(n: int) -> Iterator[Move]:
    for i in range(1, n + 1):
        yield Move(
            id=i,
            src_bucket="landing",
            src_key=f"incoming/2022/12/31/cdr-{i:09d}-node{i % 97:02d}.ccn.gz",
            dst_bucket="segregated",
            dst_key=f"seg/2022/12/31/cdr-{i:09d}-node{i % 97:02d}.ccn.gz",
            size=1000 + i % 5000,
            etag=f'"{i:032x}"',
            storage_class="STANDARD",
            last_modified="2022-12-31T10:00:00+00:00",
        )


def prepare(directory: str, n: int, gz: bool, done: float) -> tuple[str, str]:
    """The manifest and its journal (made once per size and kind, then reused)."""
    path = os.path.join(directory, f"plan-{n}.jsonl" + (".gz" if gz else ""))
    jpath = path + ".journal"
    if not os.path.exists(path):
        writer = ManifestWriter(path, _HEADER)
        for m in _moves(n):
            writer.add(m)
        writer.close()
    if os.path.exists(jpath):
        os.unlink(jpath)
    kw: dict[str, Any] = {"buckets": {("landing", "segregated")}}
    try:
        journal = Journal(jpath, manifest_sha256=content_sha256(path), manifest_name="plan", entries=n, **kw)
    except TypeError:  # code from before journals recorded bucket pairs
        journal = Journal(jpath, manifest_sha256=content_sha256(path), manifest_name="plan", entries=n)
    last = int(n * done)
    for start in range(1, last + 1, 500):
        journal.outcome("apply", Status.DONE, list(range(start, min(start + 500, last + 1))))
    journal.close()
    return path, jpath


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def measure(path: str, jpath: str) -> dict[str, Any]:
    manifest = Manifest(path)
    verify_for_run = getattr(commands, "verify_for_run", None)
    info, v_cpu, v_wall = _timed(lambda: verify_for_run(manifest, jpath) if verify_for_run else manifest.verify())
    (state, _), r_cpu, r_wall = _timed(lambda: replay(jpath, manifest_sha256=info.sha256, entries=info.entries))
    stream = manifest.moves(skip=state.mask(APPLY_DONE))
    first, f_cpu, f_wall = _timed(lambda: next(stream))
    rest, s_cpu, s_wall = _timed(lambda: sum(1 for _ in stream))
    cpu, wall = v_cpu + r_cpu + f_cpu, v_wall + r_wall + f_wall
    n = info.entries
    return {
        "entries": n,
        "first_pending_id": first.id,
        "pending": rest + 1,
        "verify": [round(v_cpu, 3), round(v_wall, 3)],
        "replay": [round(r_cpu, 3), round(r_wall, 3)],
        "first": [round(f_cpu, 3), round(f_wall, 3)],
        "rest": [round(s_cpu, 3), round(s_wall, 3)],
        "first_request": [round(cpu, 3), round(wall, 3)],
        "entries_per_s": [round(n / cpu), round(n / wall)],
        "light_verify": _light(manifest),
    }


def _light(manifest: Manifest) -> bool:
    return getattr(manifest, "_claimed", None) is not None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--done", type=float, default=0.9, help="fraction of ids done in the journal (a prefix)")
    parser.add_argument("--dir", default="/tmp/s3seg-bench-resume")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the best (least CPU) is kept")
    parser.add_argument("--kinds", nargs="+", default=["plain", "gz"], choices=["plain", "gz"])
    args = parser.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    print(f"load average {os.getloadavg()}", flush=True)
    for n in args.sizes:
        for kind in args.kinds:
            path, jpath = prepare(args.dir, n, kind == "gz", args.done)
            runs = [measure(path, jpath) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: float(r["first_request"][0]))
            print(json.dumps({"kind": kind, **best, "load": os.getloadavg()[0]}), flush=True)


if __name__ == "__main__":
    main()
