"""What runs inside a worker process (or a Dask worker): one S3 client and one thread pool per process.

The executor sends batches of ``Task``; a worker runs the copy phase or the delete phase of the move protocol
over a batch on its thread pool and returns plain ``Result`` data. Every exception inside a thread becomes a
``Result`` (never lost); a worker never touches the journal: the parent owns it.

Clients are built lazily in the process that uses them, from a credential-free ``ClientSpec`` (clients and
credentials never cross a process boundary). Worker processes ignore SIGINT so only the parent decides when to
stop; their log records travel to the parent through a queue.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import logging.handlers
import multiprocessing
import os
import resource
import select
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from s3seg import copyloop, moves
from s3seg.concurrency import AdaptiveLimit, Gate, RateLimiter, ThrottlePacer
from s3seg.crashpoints import crash_point
from s3seg.moves import Kind, Options, Result, SentCopy, Task, copy_first, copy_phase, delete_sources
from s3seg.s3errors import THROTTLE_CODES, THROTTLE_STATUS
from s3seg.storage import ClientSpec, make_client, make_storage
from s3seg.storage import Storage as BotoStorage
from s3seg.store import Storage

log = logging.getLogger(__name__)
X = TypeVar("X")
Y = TypeVar("Y")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """Everything a worker needs; picklable, and the same for every batch of a run."""

    spec: ClientSpec
    options: Options
    threads: int  # adaptive: the most copy requests in flight in this process; fixed: exactly this many threads
    adaptive: bool = False  # learn the number in flight (s3seg.concurrency); False: always ``threads``
    max_requests_per_second: float = 0.0  # this process's share of the run's rate cap (0: none)


_lock = threading.Lock()
_DELETE_THREADS = 4  # pool threads beyond the requests in flight, for the delete phase that overlaps a copy phase
START_THREADS = 16  # where an adaptive limit starts, and its floor on latency alone (the former fixed default)
# Where it starts when a copy loop sends the copies: a place in flight is a socket there, not a thread, and at
# 50 ms the limit took ~0.6 s (12 windows of x1.25) to grow from 16 to 256 (the whole first batch).
START_IN_FLIGHT_LOOP = 64


@dataclass(slots=True)
class _Resources:
    storage: Storage
    pool: ThreadPoolExecutor
    gate: Gate | None  # None: fixed concurrency, no gate (the thread count is the limit)
    loop: copyloop.CopyLoop | None = None  # lean path on: the batch's copy requests from one thread
    threads: int = 1  # requests in flight at most: cfg.threads, or fewer if the open-file limit says so


_cache: dict[WorkerConfig, _Resources] = {}
_warm: dict[ClientSpec, Any] = {}  # clients built ahead of the first batch, each taken by one _Resources


def warm(spec: ClientSpec) -> None:
    """Build this process's S3 client now (botocore's loaders: ~0.2 s of CPU), while the parent still takes the
    lease and probes the store; the first batch then finds it ready. Sends no request."""
    with _lock:
        if spec not in _warm and not any(cfg.spec == spec for cfg in _cache):
            _warm[spec] = make_client(spec)


# Open files one request in flight may need in a worker: its copy loop socket, and at worst a pool thread's lean
# connection and a botocore pool connection (a task handed over); plus this many for everything else.
_FILES_PER_REQUEST = 3
_FILES_RESERVED = 128


def in_flight_allowed(threads: int) -> int:
    """``threads``, or fewer if this process may not open enough files for them (``RLIMIT_NOFILE``).

    The soft limit is raised as far as the hard limit allows (many systems start processes at a soft 1,024
    with a hard limit far above it, and 512 requests in flight need about 1,700 descriptors); below what
    ``threads`` needs the number in flight is cut to what fits, with a warning that names the fix.
    """
    need = threads * _FILES_PER_REQUEST + _FILES_RESERVED
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < need:
            raised = need if hard == resource.RLIM_INFINITY else min(hard, need)
            if raised > soft:
                resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
                soft = raised
    except (OSError, ValueError):
        return threads  # the limit cannot be read or changed here: leave it to the requests
    if soft == resource.RLIM_INFINITY or soft >= need:
        return threads
    fits = max(1, (soft - _FILES_RESERVED) // _FILES_PER_REQUEST)
    log.warning(
        "the open-file limit (%d, hard %d) allows about %d requests in flight per process, not %d: raise it "
        "(ulimit -n %d, or LimitNOFILE= for a systemd service) or lower --threads",
        soft, hard, fits, threads, need,
    )  # fmt: skip
    return min(threads, fits)


def _resources(cfg: WorkerConfig) -> _Resources:
    with _lock:
        found = _cache.get(cfg)
        if found is None:
            threads = in_flight_allowed(cfg.threads)
            client = _warm.pop(cfg.spec, None) or make_client(cfg.spec)
            real = make_storage(cfg.spec, client)
            storage: Storage = real
            gate = None
            limiter = None
            looped = copyloop.enabled_for(real.lean)
            if cfg.adaptive:
                floor = min(START_THREADS, threads)
                start = min(START_IN_FLIGHT_LOOP if looped else START_THREADS, threads)
                # Throttling is answered with a rate (the pacer), not by shrinking the number in flight: at a
                # fixed latency the two are the same, but the rate is what the store limits and can be measured.
                limit = AdaptiveLimit(initial=start, floor=floor, max_limit=threads, backoff=1.0)
                gate = Gate(limit, pacer=ThrottlePacer())
                _observe_throttling(client, real, gate)
            if cfg.max_requests_per_second > 0:
                limiter = RateLimiter(cfg.max_requests_per_second)
                storage = cast(Storage, _Paced(storage, limiter))
            loop = None
            if looped:
                assert real.lean is not None
                loop = copyloop.CopyLoop(real.lean, cfg.options, gate=gate, fixed=threads, limiter=limiter)
            # Room for a delete phase's few DeleteObjects beside a full copy phase (see ``step_batch``).
            pool = ThreadPoolExecutor(threads + _DELETE_THREADS, thread_name_prefix="s3seg")
            found = _cache[cfg] = _Resources(storage, pool, gate, loop, threads)
        return found


def _observe_throttling(client: Any, storage: BotoStorage, gate: Gate) -> None:
    """Tell ``gate`` about every throttling answer, including those the request layers retry by themselves."""

    def on_retry(response: Any = None, **_: Any) -> None:
        if response is not None:
            http, parsed = response
            code = (parsed or {}).get("Error", {}).get("Code", "")
            if getattr(http, "status_code", 0) in THROTTLE_STATUS or code in THROTTLE_CODES:
                gate.throttled()

    client.meta.events.register("needs-retry.s3", on_retry)
    if storage.lean is not None:
        storage.lean.on_throttle = gate.throttled  # the lean path retries 503s itself: it reports each one
        if gate.pacer is not None:
            storage.lean.before_retry = gate.pacer.acquire


class _Paced:
    """A ``Storage`` whose request-sending calls each wait for a token of this process's rate limiter."""

    _CALLS = frozenset({"copy", "multipart_copy", "head", "delete", "delete_batch", "tagging", "get_bytes", "put"})

    def __init__(self, storage: Storage, limiter: RateLimiter) -> None:
        self._storage = storage
        self._limiter = limiter

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._storage, name)
        if name not in self._CALLS:
            return attr
        limiter = self._limiter

        def paced(*args: Any, **kwargs: Any) -> Any:
            limiter.acquire()
            return attr(*args, **kwargs)

        return paced


# Set in pool workers, which must never outlive the parent (see _orphaned): the parent sentinel (a file
# descriptor that reads as closed once the parent is gone), or where there is none the parent's pid.
_parent_sentinel: int | None = None
_parent_pid: int | None = None


_abort_event: Any = None  # set by the parent when it abandons the run (second signal, lost lease, ...)
# This process's counter of objects whose copy phase finished: one slot of the parent's shared array
# (``ProcessBackend``), polled by the parent to move its progress bar per object rather than per batch. None in
# the parent itself (inline backend) and on Dask workers: they report per batch.
_progress: Any = None
_progress_numbers = itertools.count(1)
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def init_process(
    log_queue: Any = None,
    level: int = logging.INFO,
    parent_pid: int | None = None,
    abort_event: Any = None,
    progress: tuple[Any, Any] | None = None,
) -> None:
    """ProcessPoolExecutor initializer: ignore Ctrl-C, SIGTERM and SIGHUP (the parent drains and stops: systemd,
    Kubernetes and ``timeout`` signal the whole process group), log via the queue, and exit as soon as the
    parent is gone.

    The parent is watched through multiprocessing's parent sentinel (a pipe whose last writer is the parent
    itself: it reads as closed the moment the parent dies, kill -9 included), which works whatever started this
    process (spawn, or the fork server, whose workers are not the parent's children); ``parent_pid`` (the
    parent's ``os.getpid()``) is the fallback where there is no sentinel. The parent starts workers with those
    signals blocked (``executor.signals_blocked``): ignore them first, then unblock, so one sent during
    start-up is dropped rather than fatal.

    ``progress`` is (a shared array of counters, one per worker process; a shared next-free-slot number): this
    process takes the next slot and counts there each object whose copy phase finished (``_count_copied``).
    """
    global _parent_pid, _parent_sentinel, _abort_event
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    _abort_event = abort_event
    if progress is not None:
        _take_progress_slot(*progress)
    if abort_event is not None and aborted not in moves.retry_vetoes:
        moves.retry_vetoes.append(aborted)
    parent = multiprocessing.parent_process()
    if parent is not None and parent.sentinel is not None:
        _parent_sentinel = parent.sentinel
    else:
        _parent_pid = parent_pid if parent_pid is not None else os.getppid()
    threading.Thread(target=_watch_parent, name="s3seg-parent-watch", daemon=True).start()
    if log_queue is not None:
        root = logging.getLogger()
        root.handlers[:] = [logging.handlers.QueueHandler(log_queue)]
        root.setLevel(level)


def _take_progress_slot(counters: Any, next_slot: Any) -> None:
    global _progress, _progress_numbers
    with next_slot.get_lock():  # processes start one by one, but nothing promises it: take the slot atomically
        slot = int(next_slot.value)
        next_slot.value = slot + 1
    if slot < len(counters):  # a pool never starts more processes than slots; if one did, it counts nothing
        # A ctypes view of the one 64-bit slot: an aligned word, so the parent reads it whole while it changes.
        _progress = ctypes.c_int64.from_address(ctypes.addressof(counters) + slot * ctypes.sizeof(ctypes.c_int64))
        _progress_numbers = itertools.count(int(_progress.value) + 1)


def _count_copied(fn: Callable[[Task], Result]) -> Callable[[Task], Result]:
    """``fn``, counting each object it finishes in this process's progress slot (when the parent gave one).

    No lock: each finished object takes the next number from ``itertools.count`` (one C call, atomic under the
    GIL) and stores it in the slot. Two threads racing may store out of order, so the slot can lag the true
    count by fewer objects than there are copy threads until the next store; it never runs ahead of it. That is
    fine for an estimate the parent reconciles with the journal (``executor.ProgressMeter``). Measured with
    ``scripts/bench_progress.py``: about 0.1-0.2 us per object (a lock around an add cost 0.5-0.9 us on the same
    loaded machine), against the milliseconds of the object's requests.
    """
    count = _counter()
    if count is None:
        return fn

    def run(task: Task) -> Result:
        result = fn(task)
        count(result)
        return result

    return run


def _counter() -> Callable[[Result], None] | None:
    """Counts one finished object in this process's progress slot (None: no slot; see ``_count_copied``)."""
    slot = _progress
    if slot is None:
        return None
    numbers = _progress_numbers

    def count(_: Result) -> None:
        slot.value = next(numbers)

    return count


# More "whoever sent this work is gone" checks, consulted with the parent check before every object. The Dask
# backend adds one per running batch (its driver died, or abandoned the task): a Dask worker outlives drivers.
stop_checks: list[Callable[[], bool]] = []


def _orphaned() -> bool:
    """True in a pool worker whose parent died (kill -9): its queued batches must not run.

    After the parent's death its journal lock is free, so a re-run or a rollback may already be working on the
    same moves; a delete from an orphan racing a rollback of the same move could remove both copies. Orphans
    would also linger forever, blocked on the dead parent's queue.
    """
    if _parent_sentinel is not None and select.select([_parent_sentinel], [], [], 0)[0]:
        return True  # readable: end of file, the parent is gone (it never writes to this pipe)
    if _parent_pid is not None and os.getppid() != _parent_pid:
        return True
    return any(check() for check in tuple(stop_checks))


def _watch_parent() -> None:
    if _parent_sentinel is not None:
        select.select([_parent_sentinel], [], [])  # returns when the parent is gone
    else:
        while os.getppid() == _parent_pid:
            time.sleep(0.1)
    os._exit(1)


def aborted() -> bool:
    """True once the parent has abandoned the run: no new object may be started."""
    return _abort_event is not None and bool(_abort_event.is_set())


class Aborted(Exception):
    """The parent abandoned the run while this work was queued or running."""


def _may_start(task: Task) -> Result | None:
    """Checked before every object: none starts after the parent died (this process exits) or abandoned the run
    (the object's result says so)."""
    if _orphaned():
        os._exit(1)
    if aborted():
        return Result(task.id, Kind.ERROR, code="Aborted", detail="the run stopped before this object")
    return None


def _safe(fn: Callable[[Task], Result]) -> Callable[[Task], Result]:
    def run(task: Task) -> Result:
        refused = _may_start(task)
        if refused is not None:
            return refused
        try:
            return fn(task)
        except Exception as exc:
            log.exception("unexpected error on move %s", task.id)
            return Result(task.id, Kind.ERROR, code=type(exc).__name__, detail=str(exc))

    return run


def _fan_out(
    pool: ThreadPoolExecutor, threads: int, fn: Callable[[X], Y], items: list[X], gate: Gate | None = None
) -> list[Y]:
    """``[fn(x) for x in items]`` on up to ``threads`` pool threads, each draining a shared iterator.

    One future per thread instead of one per item (``pool.map``): the per-item future, condition variable and
    queue hand-off cost more client CPU than a lean S3 request itself. An exception in ``fn`` propagates.
    With ``gate`` (adaptive concurrency), see ``_fan_out_gated``.
    """
    if gate is not None:
        return _fan_out_gated(pool, threads, fn, items, gate)
    results: list[Y | None] = [None] * len(items)
    todo = iter(enumerate(items))
    lock = threading.Lock()

    def drain() -> None:
        while True:
            with lock:
                nxt = next(todo, None)
            if nxt is None:
                return
            results[nxt[0]] = fn(nxt[1])

    for fut in [pool.submit(drain) for _ in range(min(threads, len(items)))]:
        fut.result()
    return cast(list[Y], results)  # every slot is filled: an exception in fn would have propagated above


def _fan_out_gated(pool: ThreadPoolExecutor, threads: int, fn: Callable[[X], Y], items: list[X], gate: Gate) -> list[Y]:
    """``_fan_out`` with as many draining threads as ``gate.limit`` allows, following it as it changes.

    Threads are not parked at the gate: a drain starts another when the limit is above the number running,
    and retires when it is below (measured: 240 threads parked per batch cost ~35% more client CPU than 16).
    Each item passes ``gate`` so its latency feeds the adaptive limit.
    """
    results: list[Y | None] = [None] * len(items)
    todo = iter(enumerate(items))
    lock = threading.Lock()
    futures: list[Future[None]] = []
    active = [min(threads, gate.limit, len(items))]

    def drain() -> None:
        while True:
            with lock:
                cap = min(threads, gate.limit)
                nxt = next(todo, None) if active[0] <= cap else None
                if nxt is None:
                    active[0] -= 1  # no work left, or the limit went down: this thread retires
                    return
                if active[0] < cap:
                    active[0] += 1
                    futures.append(pool.submit(drain))
            token = gate.enter()
            try:
                results[nxt[0]] = fn(nxt[1])
            finally:
                gate.leave(token)

    with lock:
        futures.extend(pool.submit(drain) for _ in range(active[0]))
    while True:
        with lock:
            if not futures:
                break
            fut = futures.pop()
        fut.result()
    return cast(list[Y], results)


def copy_batch(cfg: WorkerConfig, tasks: list[Task]) -> list[Result]:
    """Copy phase over a batch, on this process's thread pool."""
    crash_point("worker-copy")
    if _orphaned():
        os._exit(1)  # a batch queued by a parent that has since died
    res = _resources(cfg)
    st, gate = res.storage, res.gate
    if res.loop is not None and res.loop.usable() and any(copy_first(t, cfg.options) for t in tasks):
        results = _copy_looped(cfg, res, res.loop, tasks)
    else:
        copy = _count_copied(_safe(lambda t: copy_phase(st, t, cfg.options)))
        results = _fan_out(res.pool, res.threads, copy, tasks, gate)
    if gate is not None:
        if any(r.code in THROTTLE_CODES for r in results):
            gate.throttled()  # retries did not outlast the throttling: slow down (the items are re-tried next run)
        log.debug("adaptive concurrency: limit %d (peak %d in flight) after a batch of %d", gate.limit, gate.peak,
                  len(tasks))  # fmt: skip
    crash_point("worker-copied")  # every copy of the batch made, none reported to the parent
    return results


def _copy_looped(cfg: WorkerConfig, res: _Resources, loop: copyloop.CopyLoop, tasks: list[Task]) -> list[Result]:
    """The copy phase with the batch's copy requests sent by ``loop``; the pool's threads do the rest of each
    copy step that needs more (a refused condition, an error, a task that does not start with its copy)."""
    st, gate, opts = res.storage, res.gate, cfg.options
    futures: dict[int, Future[Result]] = {}

    def go_on(task: Task, sent: SentCopy | None) -> None:
        def step(t: Task) -> Result:
            if gate is None:
                return copy_phase(st, t, opts, sent)
            token = gate.enter()
            try:
                return copy_phase(st, t, opts, sent)
            finally:
                gate.leave(token)

        futures[task.id] = res.pool.submit(_count_copied(_safe(step)), task)

    first = []
    for task in tasks:
        if copy_first(task, opts):
            first.append(task)
        else:
            go_on(task, None)
    done = loop.run(first, go_on, _may_start, _counter())
    return [done[t.id] if t.id in done else futures[t.id].result() for t in tasks]


def delete_batch(cfg: WorkerConfig, items: list[tuple[Task, Result]]) -> list[Result]:
    """Delete phase over a batch of proven copies."""
    crash_point("worker-delete")
    if _orphaned():
        os._exit(1)
    res = _resources(cfg)
    st, pool = res.storage, res.pool

    def run(fn: Callable[[X], Y], items: list[X]) -> list[Y]:
        def guarded(item: X) -> Y:
            if aborted():
                raise Aborted("the run stopped before this delete")  # another process may own the keys now
            return fn(item)

        return _fan_out(pool, res.threads, guarded, items)

    try:
        results = delete_sources(st, items, cfg.options, run)
        crash_point("worker-deleted")  # every source of the batch deleted, none reported to the parent
        return results
    except Aborted as exc:  # the parent abandoned the run: these stay COPIED and are re-checked next run
        return [Result(t.id, Kind.ERROR, code="Aborted", detail=str(exc)) for t, _ in items]
    except Exception as exc:
        log.exception("unexpected error in a delete batch")
        return [Result(t.id, Kind.ERROR, code=type(exc).__name__, detail=str(exc)) for t, _ in items]


def step_batch(
    cfg: WorkerConfig, items: list[tuple[Task, Result]], tasks: list[Task]
) -> tuple[list[Result], list[Result]]:
    """The delete phase of one batch and the copy phase of the next, at the same time in this process.

    A delete phase is a few DeleteObjects that the store works through key by key; run alone it leaves this
    process's copy threads idle (measured: the two cores dipped to ~65% busy for a third of the time). The
    parent sends this only after both preconditions are durable: ``copied`` for ``items`` (their deletes may
    start) and ``intent`` for ``tasks`` (their copies may start). Returns (delete results, copy results).
    """
    deleted: list[list[Result]] = []
    deleter = threading.Thread(target=lambda: deleted.append(delete_batch(cfg, items)), name="s3seg-delete-phase")
    deleter.start()
    try:
        copied = copy_batch(cfg, tasks)
    finally:
        deleter.join()
    if not deleted:  # delete_batch turns every exception into results; only a process exit gets here
        raise RuntimeError("the delete phase returned no results")
    return deleted[0], copied
