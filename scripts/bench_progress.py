"""Micro-benchmark: the per-object CPU cost of the progress counter a pool worker keeps (``worker._count_copied``).

Times a no-op copy-phase function over many tasks, with and without the counter, on one thread and on several
threads of one process (the lock is shared by a process's copy threads), and prints the difference per object.
No store, no network; about two seconds.

    PYTHONPATH=. python scripts/bench_progress.py [objects]
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from collections.abc import Callable

from s3seg import worker
from s3seg.moves import Kind, Result, Task


def per_object(fn: Callable[[Task], Result], tasks: list[Task], threads: int) -> float:
    """Seconds of wall time per object, ``threads`` threads each calling ``fn`` over its share of ``tasks``."""
    share = len(tasks) // threads

    def drain(part: list[Task]) -> None:
        for t in part:
            fn(t)

    workers = [threading.Thread(target=drain, args=(tasks[i * share : (i + 1) * share],)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return (time.perf_counter() - start) / (share * threads)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    task = Task(1, "b", "in/k", "b", "out/k", '"e"', 1)
    tasks = [task] * n
    result = Result(1, Kind.COPIED)

    def noop(t: Task) -> Result:
        return result

    counters = multiprocessing.get_context("spawn").Array("q", 1, lock=False)
    worker._take_progress_slot(counters, multiprocessing.get_context("spawn").Value("i", 0))
    counted = worker._count_copied(noop)
    assert counted is not noop
    for threads in (1, 4):
        base = min(per_object(noop, tasks, threads) for _ in range(3))
        with_counter = min(per_object(counted, tasks, threads) for _ in range(3))
        print(f"{threads} thread(s): {base * 1e9:.0f} ns/object bare, {with_counter * 1e9:.0f} ns with the counter:"
              f" +{(with_counter - base) * 1e9:.0f} ns per object")  # fmt: skip
    assert 0 < counters[0] <= 6 * n  # the counter counted (racing threads may leave it a little behind)


if __name__ == "__main__":
    main()
