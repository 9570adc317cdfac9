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
``ProcessBackend`` (a ``ProcessPoolExecutor`` of workers forked from a clean fork server, see ``worker_context``),
and the Dask backend in ``s3seg.dask_backend``.

Progress (``on_progress``, through ``ProgressMeter``) moves per object with ``ProcessBackend``: its workers count
each object whose copy phase finished in shared memory, and the loop polls that count between waits. Inline and
Dask backends have no such count (a backend opts in with a ``progressed()`` method): progress moves per batch,
as each batch's outcomes are journaled.

Must not: parse CLI arguments, print, or draw progress bars (``on_progress`` is a callback).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import islice
from logging.handlers import QueueListener
from typing import Any, NotRequired, Protocol, TypedDict, Unpack

from s3seg.crashpoints import crash_point
from s3seg.errors import JournalError
from s3seg.journal import APPLY_DONE, ROLLBACK_DONE, Journal, Status
from s3seg.moves import NEEDS_DELETE, Direction, Kind, Result, Task, final_status
from s3seg.worker import WorkerConfig, copy_batch, delete_batch, init_process, step_batch

log = logging.getLogger(__name__)


class Backend(Protocol):
    """Where batches run. ``submit`` returns a future of the worker function's result."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]: ...

    def shutdown(self, *, cancel: bool) -> None: ...

    def abort(self) -> None:
        """Stop the workers as soon as possible: no new object is started; running requests may be cut."""
        ...

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

    def abort(self) -> None:
        return None  # nothing runs beside the caller


class ProcessBackend:
    """A pool of worker processes started clean: no client, lock or thread of this process is inherited."""

    def __init__(self, processes: int, *, log_level: int = logging.INFO) -> None:
        ctx = worker_context()
        with signals_blocked():  # helper processes (the resource tracker) start with the signals held too
            self._queue: Any = ctx.Queue()
            self._abort_event: Any = ctx.Event()
            self._listener = QueueListener(self._queue, _ForwardToLogging(), respect_handler_level=False)
            self._listener.start()
            # One counter per worker process in shared memory (each takes a slot when it starts): objects whose
            # copy phase finished, polled by the pipeline to move the progress bar per object (``progressed``).
            self._progress: Any = ctx.Array("q", processes, lock=False)
            next_slot: Any = ctx.Value("i", 0)
        self._pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=ctx,
            initializer=init_process,
            # the workers watch this pid (they die with it) and the abort event (they stop starting objects)
            initargs=(self._queue, log_level, os.getpid(), self._abort_event, (self._progress, next_slot)),
        )
        self._processes = processes
        self.slots = processes * 2  # one batch running and one queued per process: no idle gaps
        self.pipelined = True  # a batch's delete phase runs beside the next batch's copy phase (step_batch)
        self._aborted = False
        self._shut = False
        self._running: set[Future[Any]] = set()
        self._starter: threading.Thread | None = None

    def prestart(self, fn: Callable[..., Any], /, *args: Any) -> None:
        """Start every worker process now, in the background, each running ``fn(*args)`` first.

        With the fork server, starting a process waits until the server is up (its imports: ~0.5 s on the first
        pool) and has forked; a thread of its own does that wait while the caller goes on (preflight, lease,
        probe). Batches submitted meanwhile queue behind these calls.
        """

        def start() -> None:
            _tracker_running()
            with signals_blocked():  # this thread's signal mask is what the processes it starts inherit
                for _ in range(self._processes):
                    try:
                        self.submit(fn, *args)
                    except RuntimeError:  # shut down meanwhile (a refusal before the first batch)
                        return

        self._starter = threading.Thread(target=start, name="s3seg-start-workers", daemon=True)
        self._starter.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        with signals_blocked():  # the pool starts worker processes on demand, inside submit
            fut = self._pool.submit(fn, *args)
        self._running.add(fut)
        fut.add_done_callback(self._running.discard)
        return fut

    def progressed(self) -> int:
        """Objects whose copy phase finished in any worker so far (cumulative over this backend's life).

        An estimate ahead of the journal (a batch's results reach the parent only when all of it is done);
        ``ProgressMeter`` reconciles it with the journaled count.
        """
        return sum(self._progress)

    def abort(self, grace: float = 2.0) -> None:
        """Tell every worker to start no new object, give running requests ``grace`` seconds, then end the
        worker processes: what they were doing is INTENT or COPIED in the journal (kill -9 is as safe)."""
        if self._aborted:
            return
        self._aborted = True
        self._abort_event.set()
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        wait(list(self._running), timeout=grace)  # workers answer "aborted" for objects not yet started
        for proc in processes:
            if proc.is_alive():
                proc.terminate()

    def shutdown(self, *, cancel: bool) -> None:
        """End the pool (waiting for its processes unless aborted); a second call does nothing."""
        if self._shut:
            return
        self._shut = True
        if self._starter is not None:
            self._starter.join()
        if self._aborted:
            self._pool.shutdown(wait=False, cancel_futures=True)
        else:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
        self._listener.stop()


# What the fork server imports once, before it forks any worker: the worker side and the command line (a spawned or
# forked worker re-runs the parent's main module, which for the ``s3seg`` command imports ``s3seg.cli``).
_PRELOAD = ["s3seg.worker", "s3seg.cli"]


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method for worker processes: ``forkserver`` where the platform has it, else ``spawn``.

    Both start workers from a clean, single-threaded process, never from this one (which has threads, clients
    and locks). A spawned worker pays Python's start-up and imports s3seg, boto3 and the main module again: about
    0.5 s of CPU each, on the cores the run needs. The fork server does that once and forks each worker from it,
    ready to run: the first copy request goes out sooner, and the CPU is spent once instead of once per process.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)  # effective when the server starts (at the first pool of this process)
    return ctx


def start_fork_server() -> None:
    """Start the fork server now, on a thread of its own, if the platform has one: its interpreter and imports
    (~0.5 s of CPU) then run on the other core while this process verifies the manifest, opens the journal and
    builds its clients, instead of after that, when the first pool starts (measured at 50 ms: the first copy
    went out 0.4 s after the first batch was ready, waiting for the workers). The pool started later finds the
    server up (``ensure_running`` is idempotent and locked)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    worker_context()  # the preload list, before the server starts

    def start() -> None:
        _tracker_running()
        with signals_blocked():  # the server, and every worker it forks, start with these blocked
            multiprocessing.forkserver.ensure_running()

    threading.Thread(target=start, name="s3seg-fork-server", daemon=True).start()


def _tracker_running() -> None:
    """Start multiprocessing's resource tracker (if it is not running) in a ``signals_blocked`` of its own.

    Starting it unblocks SIGINT and SIGTERM in the calling thread (bpo-33613): the fork server started next in
    that block would then die of a SIGTERM sent to the process group, and with it every worker's exit status (a
    broken pool). The tracker itself ignores SIGINT and SIGTERM but not SIGHUP, which stays blocked in it this
    way (unblocked, a SIGHUP to the group killed it). Callers block the signals again for the fork server."""
    with signals_blocked():
        multiprocessing.resource_tracker.ensure_running()


class _ForwardToLogging(logging.Handler):
    """Re-emits worker log records through the parent's logger tree (so they reach the log file)."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


@dataclass(slots=True)
class RunReport:
    """What one apply or rollback run did."""

    direction: Direction
    counts: Counter[Status] = field(default_factory=Counter)
    elapsed: float = 0.0
    interrupted: bool = False
    signal: int = 0  # the signal that asked the run to stop (0: none, or Ctrl-C outside a signal handler)
    aborted: str = ""  # why the run stopped early (a worker died, the journal cannot be written, ...), if it did
    journal_failed: bool = False  # the journal could not be written: the run stopped before anything new
    # (id, status label, detail, s3://bucket/key of the object moved), the first ``max_failures_listed``
    failures: list[tuple[int, str, str, str]] = field(default_factory=list)
    failures_cut: bool = False  # more failures happened than ``failures`` lists

    @property
    def finished(self) -> int:
        return sum(self.counts.values())


class ProgressMeter:
    """The position of the progress bar, from two counts: ``on_progress(n)`` moves it ``n`` forward.

    - ``journaled(n)``: ``n`` more moves have their outcome in the journal: the truth, and the only count a
      backend without per-object counters gives (inline, Dask: the bar moves per batch).
    - ``estimate(objects, limit)``: a process pool's workers have finished the copy phase of ``objects`` objects
      this run; that reaches the parent ahead of the batch's results, so the bar moves per object. It is capped
      at ``limit``, the number of moves handed to the workers so far (never beyond the total).

    The bar shows the larger of the two and never goes backwards: an estimate below what it already shows (or
    below the journaled count) moves nothing. In a finished run both counts end at the number of moves, so the
    bar ends exactly there; in a run that was abandoned (second signal, dead worker) it may show copies whose
    results never came back: the summary, from the journal, says what was finished.
    """

    def __init__(self, on_progress: Callable[[int], None]) -> None:
        self.on_progress = on_progress
        self.shown = 0
        self.done = 0  # journaled outcomes

    def journaled(self, n: int) -> None:
        self.done += n
        self._show(self.done)

    def estimate(self, objects: int, limit: int) -> None:
        self._show(min(objects, limit))

    def _show(self, position: int) -> None:
        position = max(position, self.done)
        if position > self.shown:
            step, self.shown = position - self.shown, position
            self.on_progress(step)


class CircuitBreaker:
    """Trips after ``limit`` consecutive ERROR results with the same S3 error code on the same operation.

    A store that refuses every move the same way (a missing bucket answered with 500 InternalError, a policy
    denying CopyObject) would otherwise have the run retry and fail every item, one by one, for as long as the
    manifest lasts. Any other result (a move done, a conflict, a different error) resets the count. ``limit`` 0
    disables the breaker. ``tripped`` is the reason to stop (empty while closed); the pipeline reads it between
    steps like the lease guard, so what is in flight ends as INTENT or COPIED in the journal (nothing is lost).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.last: tuple[str, str] = ("", "")
        self.sample = ""
        self.tripped = ""

    def see(self, result: Result) -> None:
        if not self.limit or self.tripped:
            return
        if result.kind is not Kind.ERROR:
            self.count = 0
            return
        op = result.detail.split(" ", 1)[0] if " s3://" in result.detail else "-"
        cause = (result.code or "-", op)
        if cause != self.last:
            self.last, self.count = cause, 0
        self.count += 1
        self.sample = result.detail
        if self.count >= self.limit:
            self.tripped = (
                f"circuit breaker: the last {self.count} moves all failed with {cause[0]} on {op} "
                f"(e.g. {self.sample}); the store refuses every move the same way, so the run stopped. Nothing "
                "was lost: fix the cause (bucket, permissions, endpoint) and re-run to resume"
            )


class Stop:
    """How a run is asked to stop: by a signal, by the lease keeper, or by the run itself.

    Only flags are set here, never an exception raised: a signal handler that raised KeyboardInterrupt could
    land between a batch's ``copied`` record and the submission of its delete phase, leaving its objects at
    both keys. The pipeline reads the flags between steps instead.
    """

    def __init__(self) -> None:
        self.graceful = ""  # finish what is in flight, start nothing new
        self.abandon = ""  # stop now: in-flight batches are left to the journal's re-check
        self.signum = 0

    def on_signal(self, signum: int, frame: object = None) -> None:
        name = signal.Signals(signum).name
        self.signum = self.signum or signum
        if self.graceful:
            self.abandon = self.abandon or f"{name} again: in-flight batches abandoned; re-run to resume"
        else:
            self.graceful = f"{name}: finishing the batches in flight, starting nothing new"


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_to(stop: Stop) -> Iterator[None]:
    """Route SIGINT, SIGTERM and SIGHUP to ``stop`` for the duration (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, stop.on_signal) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP pending in this thread while it starts worker processes.

    A started process inherits the blocked mask (across fork and exec: the fork server started here, and the
    workers it forks, hold them too), so a signal sent to the whole process group while a worker is still
    starting cannot kill it before its initializer ignores those signals; the fork server never takes them (it
    ends when this process does); the parent gets its own copy of the signal as soon as the mask is restored.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _batches(tasks: Iterable[Task], size: int) -> Iterator[list[Task]]:
    it = iter(tasks)
    while batch := list(islice(it, size)):
        yield batch


class _Prefetched:
    """``batches`` made ``depth`` ahead on a thread of their own: reading and checking a batch's manifest entries
    (JSON, fields, ids; ~20 ms for 500) happens while the pipeline's loop waits on its workers, instead of
    between a finished batch and the next one it submits (measured: the loop was busy ~40% of a 20k apply at
    50 ms, and the workers waited for it). Only the tasks are made ahead: ``intent`` is still journaled by the
    loop, batch by batch, just before a batch is submitted. An exception in ``batches`` (a bad entry, a manifest
    changed under the run) is raised by ``next`` in its place, after the batches before it."""

    _END = object()

    def __init__(self, batches: Iterator[list[Task]], depth: int = 2) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._source = batches
        self._thread = threading.Thread(target=self._fill, name="s3seg-batches", daemon=True)

    def _fill(self) -> None:
        item: Any
        try:
            for batch in self._source:
                if not self._put(batch):
                    return
            item = self._END
        except Exception as exc:  # noqa: BLE001 -- handed to the loop, raised where the failing batch would have been
            item = exc
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()  # a generator's own clean-up (the manifest's file) runs now, not at garbage collection
        self._put(item)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return True
        return False

    def __iter__(self) -> _Prefetched:
        return self

    def __next__(self) -> list[Task]:
        if self._thread.ident is None:
            self._thread.start()  # on first use: a pipeline built and never run leaves no thread behind
        while True:
            try:
                item = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the thread reading the manifest's batches ended without a word") from None
        if item is self._END:
            self._queue.put(item)  # the end stays the end
            raise StopIteration
        if isinstance(item, BaseException):
            self._queue.put(item)
            raise item
        batch: list[Task] = item
        return batch

    def close(self) -> None:
        """Stop making batches (the loop stopped early); returns once the thread is done with the source."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()


# What is in flight on the backend, one typed state per submitted call.
@dataclass(frozen=True, slots=True)
class _Copying:
    batch: list[Task]


@dataclass(frozen=True, slots=True)
class _Deleting:
    kinds: dict[int, Kind]  # copy-phase kind per id (tells a dedup from a move)


@dataclass(frozen=True, slots=True)
class _Stepping:
    kinds: dict[int, Kind]  # the deleting batch's copy-phase kinds
    following: list[Task]  # the batch whose copy phase runs beside it


_InFlight = _Copying | _Deleting | _Stepping


# Outcomes that finish a move successfully: their detail, if any, is a remark, not a failure line.
SETTLED = APPLY_DONE | ROLLBACK_DONE


def _no_progress(done: int) -> None:
    """The default ``on_progress``: nobody is told."""


def _no_guard() -> str:
    """The default ``guard``: nothing stops the run."""
    return ""


class RunOptions(TypedDict):
    """The keyword arguments of ``execute`` and ``Pipeline`` (beside journal, direction, tasks, backend, config)."""

    batch_size: int  # tasks per batch (one DeleteObjects request at most 1,000)
    on_progress: NotRequired[Callable[[int], None]]  # told how far the bar moves (``ProgressMeter``)
    guard: NotRequired[Callable[[], str]]  # asked between steps; a non-empty answer stops the run at once
    max_failures_listed: NotRequired[int]  # failure lines kept in the report (default 50; the rest are counted)
    breaker: NotRequired[int]  # consecutive identical failures that stop the run (default 0: off)


class Pipeline:
    """Runs tasks through copy and delete phases on a backend, journaling each step in order (module doc).

    Stops: ``stop.graceful`` (first signal) submits nothing new but finishes and journals what is in flight,
    delete phases of proven copies included; ``stop.abandon`` (second signal), a lost lease (``guard``), a
    journal that cannot be written or a dead worker stop at once: the backend is told to abort, and whatever
    was in flight is INTENT or COPIED in the journal, re-checked by the next run.
    """

    def __init__(
        self,
        journal: Journal,
        direction: Direction,
        tasks: Iterable[Task],
        backend: Backend,
        cfg: WorkerConfig,
        stop: Stop,
        **opts: Unpack[RunOptions],
    ) -> None:
        self.journal, self.backend, self.cfg, self.stop = journal, backend, cfg, stop
        self.direction = Direction(direction)  # a plain "apply"/"rollback" from a caller is accepted
        self.on_progress = opts.get("on_progress", _no_progress)
        self.guard = opts.get("guard", _no_guard)
        self.max_failures_listed = opts.get("max_failures_listed", 50)
        self.report = RunReport(self.direction)
        self.breaker = CircuitBreaker(opts.get("breaker", 0))
        self.in_flight: dict[Future[Any], _InFlight] = {}
        self._keys: dict[int, str] = {}  # id -> s3://bucket/key of each task in flight (failure lines name it)
        self._batches = _Prefetched(_batches(tasks, opts["batch_size"]))
        self.meter = ProgressMeter(self.on_progress)
        self._handed = 0  # moves handed to the backend (their intent journaled): the cap of the estimate
        # A backend may count objects past their copy phase as they finish (``ProcessBackend.progressed``);
        # its count is cumulative, so this run's share is what it counts beyond the count at the start.
        self._progressed: Callable[[], int] | None = getattr(backend, "progressed", None)
        self._progress_base = self._progressed() if self._progressed is not None else 0

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self) -> RunReport:
        start = time.monotonic()
        try:
            self._loop()
        except BrokenProcessPool as exc:
            self._abort(f"a worker process died ({exc}); re-run to resume: the journal has every step")
        except JournalError as exc:
            self.report.journal_failed = True
            self._abort(f"{exc}; nothing new was started")
        except KeyboardInterrupt:  # Ctrl-C where no handler of ours was installed (not the main thread)
            self.report.interrupted = True
            self._abort("interrupted: in-flight batches abandoned; re-run to resume")
        finally:
            self._batches.close()
            try:
                self.journal.sync()
            except JournalError as exc:
                self.report.journal_failed = True
                self.report.aborted = self.report.aborted or str(exc)
            self.report.elapsed = time.monotonic() - start
            if self.stop.signum:
                self.report.interrupted = True
                self.report.signal = self.stop.signum
        return self.report

    def _loop(self) -> None:
        announced = False
        while True:
            why = self.stop.abandon or self.guard() or self.breaker.tripped
            if why:
                self._abort(why)
                return
            if self.stop.graceful and not announced:
                announced = True
                log.warning("%s (%d in flight)", self.stop.graceful, len(self.in_flight))
            if not self.stop.graceful and len(self.in_flight) < self.backend.slots:
                batch = self._next_batch()
                if batch is not None:
                    self.in_flight[self.backend.submit(copy_batch, self.cfg, batch)] = _Copying(batch)
                    continue
            if not self.in_flight:
                return
            done, _ = wait(list(self.in_flight), timeout=0.2, return_when=FIRST_COMPLETED)
            if self._progressed is not None:  # objects finished within batches still running: the bar moves
                self.meter.estimate(self._progressed() - self._progress_base, self._handed)
            for fut in [f for f in self.in_flight if f in done]:  # in submission order: a set's order is by id
                self._handle(fut)

    def _abort(self, why: str) -> None:
        self.report.aborted = why
        log.error("%s", why)
        self.backend.abort()

    # -- steps -----------------------------------------------------------------------------------------------
    def _next_batch(self) -> list[Task] | None:
        """The next batch with its ``intent`` record durable (copies may start), or None (none left, stopping)."""
        if self.stop.graceful or self.stop.abandon:
            return None
        batch = next(self._batches, None)
        if batch is not None:
            self._keys.update((t.id, f"s3://{t.src_bucket}/{t.src_key}") for t in batch)
            self.journal.intent(self.direction, [t.id for t in batch])  # durable before any copy
            self._handed += len(batch)
            crash_point("after-intent")
        return batch

    def _handle(self, fut: Future[Any]) -> None:
        state = self.in_flight.pop(fut)
        if isinstance(state, _Copying):
            self._copied(state.batch, fut.result())
        elif isinstance(state, _Stepping):
            deleted, copied = fut.result()
            self._record(deleted, state.kinds)
            self._copied(state.following, copied)
        else:
            self._record(fut.result(), state.kinds)

    def _copied(self, batch: list[Task], results: list[Result]) -> None:
        by_id = {t.id: t for t in batch}
        proven = [(by_id[r.id], r) for r in results if r.kind in NEEDS_DELETE]
        finals = [r for r in results if r.kind not in NEEDS_DELETE]
        if proven:
            etags = {t.id: r.dst_etag for t, r in proven if r.dst_etag and r.dst_etag != t.etag}
            dedup = [t.id for t, r in proven if r.kind is Kind.IDENTICAL_THEIRS]
            crash_point("before-copied-record")
            self.journal.copied(self.direction, [t.id for t, _ in proven], etags, dedup)  # durable before deletes
            crash_point("after-copied-record")
            # Even when stopping gracefully: the delete phase belongs to a batch already in flight, and finishing
            # it leaves no object at both keys (COPIED items would be re-checked on resume, but a promise of
            # "finished and journaled" is kept only this way).
            kinds = {t.id: r.kind for t, r in proven}
            following = self._next_batch() if self.backend.pipelined else None
            if following is not None:
                # Both records are durable: copied for this batch (deletes may start), intent for the next
                # (copies may start). One worker call runs the two phases side by side.
                fut = self.backend.submit(step_batch, self.cfg, proven, following)
                self.in_flight[fut] = _Stepping(kinds, following)
            else:
                self.in_flight[self.backend.submit(delete_batch, self.cfg, proven)] = _Deleting(kinds)
        if finals:
            self._record(finals)

    def _record(self, results: list[Result], copy_kinds: dict[int, Kind] | None = None) -> None:
        journal, direction, report = self.journal, self.direction, self.report
        groups: dict[Status, list[int]] = {}
        for r in results:
            status = final_status(direction, r.kind, (copy_kinds or {}).get(r.id))
            key = self._keys.pop(r.id, "")
            if r.code or r.detail:
                journal.outcome(direction, status, [r.id], r.code or "-", r.detail)
                if status in SETTLED:  # a success's remark ("source kept") is journaled, not listed as a failure
                    pass
                elif len(report.failures) < self.max_failures_listed:
                    report.failures.append((r.id, status.label, f"{r.code} {r.detail}".strip(), key))
                else:
                    report.failures_cut = True
            else:
                groups.setdefault(status, []).append(r.id)
            report.counts[status] += 1
            self.breaker.see(r)
        for status, ids in groups.items():
            journal.outcome(direction, status, ids)
        crash_point("after-outcome")
        self.meter.journaled(len(results))


def execute(
    journal: Journal,
    direction: Direction,
    tasks: Iterable[Task],
    backend: Backend,
    cfg: WorkerConfig,
    **opts: Unpack[RunOptions],
) -> RunReport:
    """Run every task through copy and delete phases on ``backend``, journaling each step in order.

    SIGINT, SIGTERM and SIGHUP (in the main thread) stop it gracefully: nothing new starts, what is in flight
    finishes and is journaled, and the report says ``interrupted`` with the signal; a second signal abandons
    the in-flight batches (still safe: they are INTENT or COPIED in the journal and will be re-checked).
    ``guard`` is asked between steps; a non-empty answer (the lease was lost, say) stops the run at once.
    ``breaker`` (0: off) stops it the same way after that many consecutive identical failures (``CircuitBreaker``).
    """
    stop = Stop()
    pipeline = Pipeline(journal, direction, tasks, backend, cfg, stop, **opts)
    with signals_to(stop):
        return pipeline.run()
