"""What runs inside a worker process (or a Dask worker): one S3 client and one thread pool per process.

The executor sends batches of ``Task``; a worker runs the copy phase or the delete phase of the move protocol
over a batch on its thread pool and returns plain ``Result`` data. Every exception inside a thread becomes a
``Result`` (never lost); a worker never touches the journal: the parent owns it.

Clients are built lazily in the process that uses them, from a credential-free ``ClientSpec`` (clients and
credentials never cross a process boundary). Worker processes ignore SIGINT so only the parent decides when to
stop; their log records travel to the parent through a queue.
"""

from __future__ import annotations

import logging
import logging.handlers
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from s3seg.crashpoints import crash_point
from s3seg.moves import Kind, Options, Result, Task, copy_phase, delete_sources
from s3seg.storage import ClientSpec, Storage, make_client

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """Everything a worker needs; picklable, and the same for every batch of a run."""

    spec: ClientSpec
    options: Options
    threads: int


_lock = threading.Lock()
_cache: dict[WorkerConfig, tuple[Storage, ThreadPoolExecutor]] = {}


def _resources(cfg: WorkerConfig) -> tuple[Storage, ThreadPoolExecutor]:
    with _lock:
        found = _cache.get(cfg)
        if found is None:
            found = (Storage(make_client(cfg.spec)), ThreadPoolExecutor(cfg.threads, thread_name_prefix="s3seg"))
            _cache[cfg] = found
        return found


def init_process(log_queue: Any = None, level: int = logging.INFO) -> None:
    """ProcessPoolExecutor initializer: ignore Ctrl-C (the parent drains and stops) and log via the queue."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_queue is not None:
        root = logging.getLogger()
        root.handlers[:] = [logging.handlers.QueueHandler(log_queue)]
        root.setLevel(level)


def _safe(fn: Callable[[Task], Result]) -> Callable[[Task], Result]:
    def run(task: Task) -> Result:
        try:
            return fn(task)
        except Exception as exc:
            log.exception("unexpected error on move %s", task.id)
            return Result(task.id, Kind.ERROR, code=type(exc).__name__, detail=str(exc))

    return run


def copy_batch(cfg: WorkerConfig, tasks: list[Task]) -> list[Result]:
    """Copy phase over a batch, on this process's thread pool."""
    crash_point("worker-copy")
    st, pool = _resources(cfg)
    return list(pool.map(_safe(lambda t: copy_phase(st, t, cfg.options)), tasks))


def delete_batch(cfg: WorkerConfig, items: list[tuple[Task, Result]]) -> list[Result]:
    """Delete phase over a batch of proven copies."""
    crash_point("worker-delete")
    st, pool = _resources(cfg)

    def run(fn: Callable[[Task], Result], tasks: list[Task]) -> list[Result]:
        return list(pool.map(_safe(fn), tasks))

    try:
        return delete_sources(st, items, cfg.options, run)
    except Exception as exc:
        log.exception("unexpected error in a delete batch")
        return [Result(t.id, Kind.ERROR, code=type(exc).__name__, detail=str(exc)) for t, _ in items]
