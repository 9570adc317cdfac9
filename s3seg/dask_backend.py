"""Apply and rollback on a Dask cluster: the executor's ``Backend`` over a ``distributed.Client``.

Only the pool changes. The driver (this process) still owns the manifest and the one journal and runs
``executor.execute`` exactly as with local processes; each batch's copy phase and delete phase become Dask
tasks running the same ``worker.copy_batch`` / ``worker.delete_batch`` functions. Dask's futures are adapted to
``concurrent.futures.Future`` so the executor cannot tell the difference.

What crosses the wire is a ``WorkerConfig`` (a credential-free ``ClientSpec`` plus options) and batches of
``Task``: plain data. Each Dask worker process builds its own S3 client from its own environment (instance role,
IRSA, environment variables, ``~/.aws``), once per process (``worker``'s cache). Credentials are never pickled.

A lost worker: Dask runs its tasks again on another worker. The move protocol is idempotent, so that is safe;
what the re-run must know is that an identical destination it finds may be its own earlier copy, not someone
else's object (``Task.resumed``). A copy task therefore marks itself started in the scheduler's metadata before
touching S3, and a second start of the same task runs its moves as resumed, as the local executor's re-run
does. If Dask gives up on a task (its worker died too often), the run stops like a local run whose process pool
broke: everything is in the journal, and a re-run of the same command resumes.

``distributed`` is imported lazily: without ``pip install 's3seg[dask]'`` only ``--executor dask`` fails.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from s3seg import worker as worker_mod
from s3seg.errors import UsageError
from s3seg.moves import Result, Task
from s3seg.worker import WorkerConfig, copy_batch

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 's3seg[dask]'"
_METADATA_ROOT = "s3seg-started"


def require_distributed() -> Any:
    """The ``distributed`` module, or a UsageError saying how to get it."""
    try:
        # Imported by name: the module (and mypy) must work where the extra is not installed.
        return importlib.import_module("distributed")
    except ImportError:
        raise UsageError(f"--executor dask needs dask's distributed scheduler: {INSTALL_HINT}") from None


def run_copy_batch(run_id: str, token: str, cfg: WorkerConfig, tasks: list[Task]) -> list[Result]:
    """``worker.copy_batch`` as a Dask task that knows whether it ran before (on a worker that was lost)."""
    client = require_distributed().get_client()
    path = [_METADATA_ROOT, run_id, token]
    if client.get_metadata(path, default=None) is not None:
        log.info("copy batch %s runs again after a lost worker: its moves are resumed", token)
        tasks = [dataclasses.replace(t, resumed=True) for t in tasks]
    else:
        client.set_metadata(path, 1)  # before any copy: a later start then knows copies may be ours
    results: list[Result] = run_guarded(copy_batch, cfg, tasks)
    return results


def run_guarded(fn: Callable[..., Any], /, *args: Any) -> Any:
    """Run a worker batch function as a Dask task that stops as soon as its driver no longer wants it.

    Dask workers outlive drivers: when a driver dies (kill -9) or abandons its run, the scheduler cancels its
    tasks, but a running task is a thread nobody can stop. Its journal lock is free by then, so a re-run or a
    rollback may already work on the same moves, and a delete from the old task racing a rollback of the same
    move could remove both copies. So the task checks, before every object, whether this worker still has it
    as executing (a local lookup: the scheduler's cancel reaches the worker within about 0.1 s of the driver's
    death); if not, the worker process exits before sending another request, as an orphaned pool worker does
    (``worker._orphaned``), and its nanny starts a fresh one.
    """
    dask_worker = require_distributed().get_worker()
    key = dask_worker.get_current_task()

    def abandoned() -> bool:
        ts = dask_worker.state.tasks.get(key)
        return ts is None or ts.state not in ("executing", "long-running", "resumed")

    worker_mod.stop_checks.append(abandoned)
    try:
        return fn(*args)
    finally:
        worker_mod.stop_checks.remove(abandoned)


class DaskBackend:
    """Batches as Dask tasks on an existing cluster (``scheduler``) or on a LocalCluster started here."""

    def __init__(
        self,
        scheduler: str | None,
        *,
        processes: int = 2,
        log_level: int = logging.INFO,
        wait_for_workers: float = 60.0,
    ) -> None:
        distributed = require_distributed()
        self._cluster: Any = None
        if scheduler:
            try:
                self._client: Any = distributed.Client(scheduler, timeout=30)
            except (OSError, TimeoutError) as exc:
                raise UsageError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        else:
            # One thread per worker process: each batch runs on the worker's own S3 thread pool (n_workers).
            # Loopback only; the scheduler's HTTP endpoint on a free port (8787 may be taken).
            self._cluster = distributed.LocalCluster(
                n_workers=max(1, processes),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            )
            self._client = distributed.Client(self._cluster)
        try:
            self._client.wait_for_workers(1, timeout=wait_for_workers)
        except (OSError, TimeoutError):
            self.shutdown(cancel=True)
            raise UsageError(
                f"no Dask worker joined {scheduler or 'the local cluster'} within {wait_for_workers:.0f}s"
            ) from None
        try:
            self._client.forward_logging("s3seg", level=log_level)  # worker log records -> the driver's log
        except Exception:  # an old scheduler without log forwarding: the logs stay on the workers
            log.debug("Dask log forwarding unavailable", exc_info=True)
        self._run_id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._pending: dict[Future[Any], Any] = {}  # keeps each Dask future referenced until it is done
        self._slots = 2
        self.pipelined = False  # each phase is its own Dask task
        self._slots_at = 0.0
        log.info("dask: %s, %d batches in flight", self._client.scheduler.address, self.slots)

    @property
    def slots(self) -> int:
        """Two batches per worker thread (one running, one queued), re-read every few seconds as workers
        join or leave."""
        now = time.monotonic()
        if now - self._slots_at > 5.0:
            try:
                info = self._client.scheduler_info(n_workers=-1)  # -1: every worker, not the first few
            except TypeError:  # distributed before the n_workers argument: always every worker
                info = self._client.scheduler_info()
            workers = info.get("workers", {})
            threads = sum(int(w.get("nthreads", 1)) for w in workers.values())
            self._slots = max(2, 2 * threads)
            self._slots_at = now
        return self._slots

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        if fn is copy_batch:
            dfut = self._client.submit(run_copy_batch, self._run_id, uuid.uuid4().hex, *args, pure=False)
        else:
            dfut = self._client.submit(run_guarded, fn, *args, pure=False)
        fut: Future[Any] = Future()
        fut.set_running_or_notify_cancel()
        with self._lock:
            self._pending[fut] = dfut  # a Dask future nobody references is cancelled

        def settle(done: Any) -> None:
            try:
                fut.set_result(done.result())
            except BaseException as exc:  # noqa: BLE001 - delivered through the future
                fut.set_exception(_translate(exc))
            finally:
                with self._lock:
                    self._pending.pop(fut, None)

        dfut.add_done_callback(settle)
        return fut

    def abort(self) -> None:
        """Cancel every batch not yet finished (a running Dask task may still complete its current objects)."""
        with self._lock:
            pending = list(self._pending.values())
        if pending:
            try:
                self._client.cancel(pending)
            except Exception:  # best effort on a scheduler going away
                log.debug("could not cancel Dask tasks", exc_info=True)

    def shutdown(self, *, cancel: bool) -> None:
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        try:
            if cancel and pending:
                self._client.cancel(pending)
            if self._cluster is None:
                try:
                    self._client.set_metadata([_METADATA_ROOT, self._run_id], None)  # forget this run's marks
                except Exception:  # best effort on a scheduler going away
                    log.debug("could not clear this run's Dask metadata", exc_info=True)
            self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()


def _translate(exc: BaseException) -> BaseException:
    """Dask giving up on a task (a worker died too often, the scheduler went away, the task was cancelled)
    stops the run the way a broken local process pool does; any other exception is the task's own."""
    module = type(exc).__module__ or ""
    if module.startswith(("distributed", "tornado", "asyncio")) or isinstance(
        exc, (OSError, TimeoutError, CancelledError)
    ):
        return BrokenProcessPool(f"Dask: {type(exc).__name__}: {exc}")
    return exc
