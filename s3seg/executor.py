"""Parent side of apply and rollback: tasks -> batches -> a pool of worker processes -> the journal.

For each batch, in this order (the order is what makes a kill -9 at any instant safe):

1. ``intent`` record, fsynced          -> then the batch's copy phase is sent to a worker
2. ``copied`` record, fsynced          -> then the delete phase of the proven copies is sent
3. ``outcome`` records (group commit)  -> the batch is finished

With a process pool, step 2 also writes the next batch's ``intent`` and sends both phases in one call
(``step_batch``): that batch's deletes run beside the next batch's copies, each after its own durable record.

A crash between any two steps leaves ids in INTENT or COPIED; the next run re-checks them against S3 with the
same idempotent protocol. The number of batches in flight is bounded (back-pressure), so memory does not grow
with the manifest.

The pool is behind a small ``Backend`` seam: ``InlineBackend`` (no processes: in-process tests and debugging),
``ProcessBackend`` (a ``ProcessPoolExecutor`` of spawned workers), and the Dask backend in ``s3seg.dask_backend``.

Must not: parse CLI arguments, print, or draw progress bars (``on_progress`` is a callback).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import islice
from logging.handlers import QueueListener
from typing import Any, Protocol

from s3seg.crashpoints import crash_point
from s3seg.journal import Journal, Status
from s3seg.moves import NEEDS_DELETE, Kind, Result, Task
from s3seg.worker import WorkerConfig, copy_batch, delete_batch, init_process, step_batch

log = logging.getLogger(__name__)

APPLY = "apply"
ROLLBACK = "rollback"

_APPLY_STATUS = {
    Kind.ALREADY_DONE: Status.ALREADY_DONE,
    Kind.SOURCE_CHANGED: Status.CONFLICT_SOURCE_CHANGED,
    Kind.DEST_DIFFERS: Status.CONFLICT_DEST_DIFFERS,
    Kind.MISSING: Status.FAILED_MISSING,
    Kind.ARCHIVED: Status.SKIPPED_ARCHIVED,
    Kind.ERROR: Status.FAILED,
}
_ROLLBACK_STATUS = {
    Kind.ALREADY_DONE: Status.ROLLED_BACK,
    Kind.SOURCE_CHANGED: Status.R_CONFLICT_DEST_MODIFIED,  # the moved object changed since the move
    Kind.DEST_DIFFERS: Status.R_CONFLICT_SOURCE_RECREATED,  # a new object sits at the original key
    Kind.MISSING: Status.R_FAILED_MISSING,
    Kind.ARCHIVED: Status.R_FAILED,
    Kind.ERROR: Status.R_FAILED,
}


def final_status(direction: str, kind: Kind, copied: Kind | None = None) -> Status:
    """The journal status for a task's last protocol result (``copied``: its copy-phase kind, if any)."""
    if kind is Kind.DELETED:
        if direction == ROLLBACK:
            return Status.ROLLED_BACK
        return Status.DEDUPED if copied is Kind.IDENTICAL_THEIRS else Status.DONE
    table = _ROLLBACK_STATUS if direction == ROLLBACK else _APPLY_STATUS
    return table[kind]


class Backend(Protocol):
    """Where batches run. ``submit`` returns a future of the worker function's result."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]: ...

    def shutdown(self, *, cancel: bool) -> None: ...

    @property
    def slots(self) -> int:
        """How many batches may usefully be in flight at once."""
        ...

    @property
    def pipelined(self) -> bool:
        """Whether ``step_batch`` (a delete phase beside the next copy phase, in one call) may be submitted."""
        ...


class InlineBackend:
    """Runs each batch immediately in this process (tests with in-process moto, debugging)."""

    slots = 1
    pipelined = False

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            fut.set_exception(exc)
        return fut

    def shutdown(self, *, cancel: bool) -> None:
        return None


class ProcessBackend:
    """A pool of spawned worker processes (never forked: no client, lock or thread is inherited)."""

    def __init__(self, processes: int, *, log_level: int = logging.INFO) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._queue: Any = ctx.Queue()
        self._listener = QueueListener(self._queue, _ForwardToLogging(), respect_handler_level=False)
        self._listener.start()
        self._pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=ctx,
            initializer=init_process,
            initargs=(self._queue, log_level, os.getpid()),  # the workers watch this pid: they die with it
        )
        self.slots = processes * 2  # one batch running and one queued per process: no idle gaps
        self.pipelined = True  # a batch's delete phase runs beside the next batch's copy phase (step_batch)

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        return self._pool.submit(fn, *args)

    def shutdown(self, *, cancel: bool) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel)
        self._listener.stop()


class _ForwardToLogging(logging.Handler):
    """Re-emits worker log records through the parent's logger tree (so they reach the log file)."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


@dataclass(slots=True)
class RunReport:
    """What one apply or rollback run did."""

    direction: str
    counts: Counter[Status] = field(default_factory=Counter)
    submitted: int = 0
    elapsed: float = 0.0
    interrupted: bool = False
    aborted: str = ""  # why the run stopped early (a worker died, ...), if it did
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # (id, status label, detail), capped

    @property
    def finished(self) -> int:
        return sum(self.counts.values())


def _batches(tasks: Iterable[Task], size: int) -> Iterator[list[Task]]:
    it = iter(tasks)
    while batch := list(islice(it, size)):
        yield batch


def execute(
    journal: Journal,
    direction: str,
    tasks: Iterable[Task],
    backend: Backend,
    cfg: WorkerConfig,
    *,
    batch_size: int,
    on_progress: Callable[[int], None] = lambda n: None,
    max_failures_listed: int = 50,
) -> RunReport:
    """Run every task through copy and delete phases on ``backend``, journaling each step in order.

    Ctrl-C (KeyboardInterrupt) stops submitting new batches, lets what is in flight finish and be journaled,
    and returns with ``interrupted`` set; a second Ctrl-C abandons the in-flight batches (still safe: they are
    INTENT or COPIED in the journal and will be re-checked).
    """
    report = RunReport(direction)
    start = time.monotonic()
    in_flight: dict[Future[Any], tuple[str, Any]] = {}
    batches = _batches(tasks, batch_size)
    stopping = False

    def record(results: list[Result], copy_kinds: dict[int, Kind] | None = None) -> None:
        groups: dict[Status, list[int]] = {}
        for r in results:
            status = final_status(direction, r.kind, (copy_kinds or {}).get(r.id))
            if r.code or r.detail:
                journal.outcome(direction, status, [r.id], r.code or "-", r.detail)
                if len(report.failures) < max_failures_listed:
                    report.failures.append((r.id, status.label, f"{r.code} {r.detail}".strip()))
            else:
                groups.setdefault(status, []).append(r.id)
            report.counts[status] += 1
        for status, ids in groups.items():
            journal.outcome(direction, status, ids)
        crash_point("after-outcome")
        on_progress(len(results))

    def next_batch() -> list[Task] | None:
        """The next batch with its ``intent`` record durable (copies may start), or None (none left, stopping)."""
        if stopping:
            return None
        batch = next(batches, None)
        if batch is not None:
            journal.intent(direction, [t.id for t in batch])  # durable before any copy
            crash_point("after-intent")
            report.submitted += len(batch)
        return batch

    def handle_copied(batch: list[Task], results: list[Result]) -> None:
        by_id = {t.id: t for t in batch}
        proven = [(by_id[r.id], r) for r in results if r.kind in NEEDS_DELETE]
        finals = [r for r in results if r.kind not in NEEDS_DELETE]
        if proven:
            etags = {t.id: r.dst_etag for t, r in proven if r.dst_etag and r.dst_etag != t.etag}
            dedup = [t.id for t, r in proven if r.kind is Kind.IDENTICAL_THEIRS]
            crash_point("before-copied-record")
            journal.copied(direction, [t.id for t, _ in proven], etags, dedup)  # durable before deletes
            crash_point("after-copied-record")
            # Even when stopping: the delete phase belongs to a batch already in flight, and finishing it
            # leaves fewer items in COPIED (either way is safe: COPIED items are re-checked on resume).
            kinds = {t.id: r.kind for t, r in proven}
            following = next_batch() if backend.pipelined else None
            if following is not None:
                # Both records are durable: copied for this batch (deletes may start), intent for the next
                # (copies may start). One worker call runs the two phases side by side.
                in_flight[backend.submit(step_batch, cfg, proven, following)] = ("step", (kinds, following))
            else:
                in_flight[backend.submit(delete_batch, cfg, proven)] = ("delete", kinds)
        if finals:
            record(finals)

    def handle(fut: Future[Any]) -> None:
        phase, payload = in_flight.pop(fut)
        if phase == "copy":
            handle_copied(payload, fut.result())
        elif phase == "step":
            kinds, following = payload
            deleted, copied = fut.result()
            record(deleted, kinds)
            handle_copied(following, copied)
        else:
            record(fut.result(), payload)

    try:
        while True:
            try:
                if not stopping and len(in_flight) < backend.slots:
                    batch = next_batch()
                    if batch is not None:
                        in_flight[backend.submit(copy_batch, cfg, batch)] = ("copy", batch)
                        continue
                    if not in_flight:
                        break
                if not in_flight:
                    break
                done, _ = wait(list(in_flight), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    handle(fut)
            except KeyboardInterrupt:
                if stopping:
                    raise
                stopping = True
                report.interrupted = True
                log.warning("interrupted: finishing the %d batches in flight, starting nothing new", len(in_flight))
    except BrokenProcessPool as exc:
        report.aborted = f"a worker process died ({exc}); re-run to resume: the journal has every step"
        log.error("%s", report.aborted)
    except KeyboardInterrupt:
        report.interrupted = True
        report.aborted = "interrupted twice: in-flight batches abandoned; re-run to resume"
        log.warning("%s", report.aborted)
    finally:
        journal.sync()
        report.elapsed = time.monotonic() - start
    return report
