"""The executor's pipeline (``s3seg.executor.Pipeline``) with a fake backend over the in-memory store.

The backend runs the worker's phases (``copy_batch``, ``delete_batch``, ``step_batch``) with the real protocol
against ``memstore.MemStore`` and reads the journal file at every submission, so each test sees the order the
pipeline promises: ``intent`` durable before a batch's copies, ``copied`` durable before its deletes. Stops
(graceful signal, abandon, lost lease, circuit breaker, journal failure, a dead worker) and the report are
checked the same way. No processes, no server.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest
from memstore import MemStore, etag_of

from s3seg import worker
from s3seg.errors import JournalWriteError
from s3seg.executor import Pipeline, RunReport, Stop, execute
from s3seg.journal import Journal, Status, replay
from s3seg.moves import Direction, Options, Result, Task, copy_phase, delete_sources
from s3seg.probe import Capabilities
from s3seg.storage import ClientSpec

B = "bkt"
SHA = "0" * 64
TRUSTED = Capabilities.trusted()


def serial(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    return [fn(x) for x in items]


class FakeBackend:
    """Runs the worker's phase functions against ``store`` (inline, or on a thread pool with ``threads``)."""

    def __init__(
        self, store: MemStore, journal_path: str, *, slots: int = 1, pipelined: bool = False, threads: int = 0
    ) -> None:
        self.store = store
        self.journal_path = journal_path
        self.slots = slots
        self.pipelined = pipelined
        self.pool = ThreadPoolExecutor(threads) if threads else None
        self.submitted: list[tuple[str, list[int]]] = []  # (phase, ids)
        self.violations: list[str] = []  # a phase sent before its journal record was on disk
        self.aborted = False
        self.running: set[Future[Any]] = set()
        self.max_running = 0
        self.on_submit: Callable[[int], None] = lambda n: None

    def _on_disk(self, ev: str) -> set[int]:
        with open(self.journal_path, encoding="utf-8") as f:
            records = [json.loads(line) for line in f][1:]
        out: set[int] = set()
        for r in records:
            if r["ev"] == ev:
                for i in r["ids"]:
                    out.update(range(i[0], i[1] + 1) if isinstance(i, list) else [i])
        return out

    def _check(self, phase: str, ids: list[int], ev: str) -> None:
        self.submitted.append((phase, ids))
        missing = set(ids) - self._on_disk(ev)
        if missing:
            self.violations.append(f"{phase} of {sorted(missing)} sent before their {ev} record")

    def _copy(self, cfg: worker.WorkerConfig, tasks: list[Task]) -> list[Result]:
        return [copy_phase(self.store, t, cfg.options) for t in tasks]

    def _delete(self, cfg: worker.WorkerConfig, items: list[tuple[Task, Result]]) -> list[Result]:
        return delete_sources(self.store, items, cfg.options, serial)

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        cfg = args[0]
        if fn is worker.copy_batch:
            self._check("copy", [t.id for t in args[1]], "intent")
            call: Callable[[], Any] = lambda: self._copy(cfg, args[1])  # noqa: E731
        elif fn is worker.delete_batch:
            self._check("delete", [t.id for t, _ in args[1]], "copied")
            call = lambda: self._delete(cfg, args[1])  # noqa: E731
        else:
            assert fn is worker.step_batch and self.pipelined
            self._check("delete", [t.id for t, _ in args[1]], "copied")
            self._check("copy", [t.id for t in args[2]], "intent")
            call = lambda: (self._delete(cfg, args[1]), self._copy(cfg, args[2]))  # noqa: E731
        self.on_submit(len(self.submitted))
        if self.pool is not None:
            fut = self.pool.submit(call)
        else:
            fut = Future()
            try:
                fut.set_result(call())
            except BaseException as exc:  # noqa: BLE001 - delivered through the future
                fut.set_exception(exc)
        self.running = {f for f in self.running if not f.done()} | {fut}
        self.max_running = max(self.max_running, len(self.running))
        return fut

    def shutdown(self, *, cancel: bool) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def abort(self) -> None:
        self.aborted = True


def setup(tmp_path: Path, n: int, caps: Capabilities = TRUSTED) -> tuple[MemStore, list[Task], str]:
    store = MemStore(caps)
    tasks = []
    for i in range(1, n + 1):
        body = f"object {i}".encode()
        store.put(B, f"in/{i:03}", body)
        tasks.append(Task(i, B, f"in/{i:03}", B, f"out/{i:03}", etag_of(body), len(body)))
    return store, tasks, str(tmp_path / "plan.jsonl.journal")


def config(caps: Capabilities = TRUSTED, **kw: Any) -> worker.WorkerConfig:
    return worker.WorkerConfig(spec=ClientSpec(), options=Options(caps=caps, backoff_base=0.0, **kw), threads=1)


def pipeline(
    journal: Journal,
    tasks: list[Task],
    backend: FakeBackend,
    *,
    direction: Direction = Direction.APPLY,
    stop: Stop | None = None,
    guard: Callable[[], str] = lambda: "",
    caps: Capabilities = TRUSTED,
    **kw: Any,
) -> Pipeline:
    kw.setdefault("max_failures_listed", 50)
    options = {k: kw.pop(k) for k in ("item_retries",) if k in kw}
    return Pipeline(
        journal, direction, tasks, backend, config(caps, **options), batch_size=kw.pop("batch_size", 4),
        on_progress=kw.pop("on_progress", lambda n: None), stop=stop or Stop(), guard=guard, **kw,
    )  # fmt: skip


def statuses(path: str, entries: int) -> dict[int, Status]:
    state, _ = replay(path, manifest_sha256=SHA, entries=entries)
    return {i: state.status_of(i) for i in range(1, entries + 1)}


def open_journal(path: str, entries: int) -> Journal:
    return Journal(path, manifest_sha256=SHA, manifest_name="plan.jsonl", entries=entries)


@pytest.mark.parametrize("pipelined", [False, True], ids=["phase-by-phase", "pipelined"])
def test_every_phase_is_sent_only_after_its_journal_record_is_on_disk(tmp_path: Path, pipelined: bool) -> None:
    store, tasks, path = setup(tmp_path, 10)
    backend = FakeBackend(store, path, slots=2 if pipelined else 1, pipelined=pipelined)
    progress: list[int] = []
    with open_journal(path, 10) as journal:
        report = pipeline(journal, tasks, backend, on_progress=progress.append).run()
    assert backend.violations == []
    assert report.counts == {Status.DONE: 10} and not report.aborted and not report.interrupted
    assert sum(progress) == 10
    assert statuses(path, 10) == dict.fromkeys(range(1, 11), Status.DONE)
    assert store.snapshot() == {(B, f"out/{i:03}"): f"object {i}".encode() for i in range(1, 11)}
    phases = [phase for phase, _ in backend.submitted]
    assert phases.count("copy") == 3 and phases.count("delete") == 3  # batches of 4, 4, 2
    if pipelined:  # the next batch's copies go out with the deletes of whichever batch was copied first
        assert backend.submitted[:2] == [("copy", [1, 2, 3, 4]), ("copy", [5, 6, 7, 8])]
        assert backend.submitted[2] in [("delete", [1, 2, 3, 4]), ("delete", [5, 6, 7, 8])]
        assert backend.submitted[3] == ("copy", [9, 10])
    else:
        assert phases == ["copy", "delete"] * 3


def test_in_flight_batches_never_exceed_the_backends_slots(tmp_path: Path) -> None:
    store, tasks, path = setup(tmp_path, 40)
    backend = FakeBackend(store, path, slots=2, pipelined=True, threads=4)
    with open_journal(path, 40) as journal:
        report = pipeline(journal, tasks, backend, batch_size=3).run()
    backend.shutdown(cancel=False)
    assert report.counts == {Status.DONE: 40} and backend.violations == []
    assert backend.max_running <= 2


def test_results_are_journaled_with_their_status_and_failures_listed_up_to_the_limit(tmp_path: Path) -> None:
    store, tasks, path = setup(tmp_path, 6)
    for i in (2, 4, 6):  # someone else's object already at the destination, and one identical (a dedup)
        store.put(B, f"out/{i:03}", b"theirs" if i != 6 else b"object 6")
    with open_journal(path, 6) as journal:
        report = pipeline(journal, tasks, FakeBackend(store, path), max_failures_listed=1).run()
    assert report.counts == {Status.DONE: 3, Status.CONFLICT_DEST_DIFFERS: 2, Status.DEDUPED: 1}
    assert [(i, label, key) for i, label, _, key in report.failures] == [
        (2, "conflict-dest-differs", f"s3://{B}/in/002")
    ]
    assert report.failures_cut
    assert statuses(path, 6) == {1: Status.DONE, 2: Status.CONFLICT_DEST_DIFFERS, 3: Status.DONE,
                                 4: Status.CONFLICT_DEST_DIFFERS, 5: Status.DONE, 6: Status.DEDUPED}  # fmt: skip


def test_a_graceful_stop_finishes_the_batch_in_flight_and_starts_nothing_new(tmp_path: Path) -> None:
    store, tasks, path = setup(tmp_path, 12)
    stop = Stop()
    backend = FakeBackend(store, path)
    backend.on_submit = lambda n: stop.on_signal(signal.SIGTERM) if n == 1 else None
    with open_journal(path, 12) as journal:
        report = pipeline(journal, tasks, backend, stop=stop).run()
    assert backend.submitted == [("copy", [1, 2, 3, 4]), ("delete", [1, 2, 3, 4])]  # its deletes still sent
    assert report.interrupted and report.signal == signal.SIGTERM and not report.aborted
    assert report.counts == {Status.DONE: 4}
    assert set(statuses(path, 12).values()) == {Status.DONE, Status.PENDING}
    assert not [k for k in store.snapshot() if k[1] in ("in/001", "out/005")]  # moved, and untouched


@pytest.mark.parametrize("why", ["abandon", "guard"])
def test_an_abandoned_run_or_a_lost_lease_aborts_the_backend_and_leaves_the_rest_to_the_journal(
    tmp_path: Path, why: str
) -> None:
    store, tasks, path = setup(tmp_path, 12)
    stop = Stop()
    lost = [""]
    backend = FakeBackend(store, path)

    def on_submit(n: int) -> None:
        if n == 2:  # after the first batch's copies: its deletes are in flight
            if why == "abandon":
                stop.on_signal(signal.SIGINT)
                stop.on_signal(signal.SIGINT)
            else:
                lost[0] = "lost the lease"

    backend.on_submit = on_submit
    with open_journal(path, 12) as journal:
        report = pipeline(journal, tasks, backend, stop=stop, guard=lambda: lost[0]).run()
    assert backend.aborted
    assert report.aborted == ("SIGINT again: in-flight batches abandoned; re-run to resume" if why == "abandon"
                              else "lost the lease")  # fmt: skip
    assert [p for p, _ in backend.submitted] == ["copy", "delete"]
    assert set(statuses(path, 12).values()) <= {Status.DONE, Status.COPIED, Status.PENDING}


def test_the_circuit_breaker_stops_a_run_whose_every_move_fails_the_same_way(tmp_path: Path) -> None:
    store, tasks, path = setup(tmp_path, 20)
    for _ in tasks:
        store.fail_before("copy")
    with open_journal(path, 20) as journal:
        report = pipeline(journal, tasks, FakeBackend(store, path), breaker=6, item_retries=0).run()
    assert report.aborted.startswith("circuit breaker: the last 6 moves all failed with ConnectionClosedError")
    assert report.counts == {Status.FAILED: 8}  # two batches of 4: it trips during the second
    assert store.snapshot() == {(B, t.src_key): f"object {t.id}".encode() for t in tasks}


def test_a_journal_that_cannot_be_written_stops_the_run_before_anything_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, tasks, path = setup(tmp_path, 8)
    backend = FakeBackend(store, path)
    with open_journal(path, 8) as journal:

        def refuse(*_: Any) -> None:
            raise JournalWriteError(path, None, "cannot write the journal: no space left")

        monkeypatch.setattr(journal, "copied", refuse)
        report = pipeline(journal, tasks, backend).run()
    assert report.journal_failed and "no space left" in report.aborted and backend.aborted
    assert backend.submitted == [("copy", [1, 2, 3, 4])]  # no delete without its copied record
    assert all(store.body(B, t.src_key) is not None for t in tasks)


def test_a_worker_that_died_aborts_the_run(tmp_path: Path) -> None:
    store, tasks, path = setup(tmp_path, 8)
    backend = FakeBackend(store, path)

    def dead(cfg: Any, items: list[Task]) -> list[Result]:
        raise BrokenProcessPool("a child process terminated abruptly")

    backend._copy = dead  # type: ignore[method-assign]
    with open_journal(path, 8) as journal:
        report = pipeline(journal, tasks, backend).run()
    assert report.aborted.startswith("a worker process died") and backend.aborted
    assert set(statuses(path, 8).values()) == {Status.INTENT, Status.PENDING}


def test_rollback_runs_the_inverse_moves_through_the_same_pipeline(tmp_path: Path) -> None:
    store, tasks, path = setup(tmp_path, 5)
    with open_journal(path, 5) as journal:
        execute(journal, "apply", tasks, FakeBackend(store, path), config(), batch_size=2)  # type: ignore[arg-type]
    inverse = [
        Task(t.id, t.dst_bucket, t.dst_key, t.src_bucket, t.src_key, t.etag, t.size, same_etags=(t.etag,), resumed=True)
        for t in tasks
    ]
    with open_journal(path, 5) as journal:
        report = execute(journal, Direction.ROLLBACK, inverse, FakeBackend(store, path), config(), batch_size=2)
    assert isinstance(report, RunReport) and report.direction is Direction.ROLLBACK
    assert report.counts == {Status.ROLLED_BACK: 5}
    assert statuses(path, 5) == dict.fromkeys(range(1, 6), Status.ROLLED_BACK)
    assert store.snapshot() == {(B, t.src_key): f"object {t.id}".encode() for t in tasks}
    with open(path, encoding="utf-8") as f:
        dirs = [json.loads(line).get("dir") for line in f][1:]
    assert dirs[: dirs.index("rollback")] == ["apply"] * dirs.index("rollback") and dirs[-1] == "rollback"


def test_a_rolled_back_dedup_is_a_success_not_a_failure_line(tmp_path: Path) -> None:
    store, tasks, path = setup(tmp_path, 3)
    store.put(B, "out/002", b"object 2")  # identical bytes already at the destination: apply dedups move 2
    with open_journal(path, 3) as journal:
        applied = execute(journal, Direction.APPLY, tasks, FakeBackend(store, path), config(), batch_size=3)
    assert applied.counts == {Status.DONE: 2, Status.DEDUPED: 1}
    inverse = [
        Task(t.id, t.dst_bucket, t.dst_key, t.src_bucket, t.src_key, t.etag, t.size, same_etags=(t.etag,),
             keep_source=t.id == 2, resumed=True)
        for t in tasks
    ]  # fmt: skip
    with open_journal(path, 3) as journal:
        report = execute(journal, Direction.ROLLBACK, inverse, FakeBackend(store, path), config(), batch_size=3)
    assert report.counts == {Status.ROLLED_BACK: 3}
    assert report.failures == []  # "source kept" is what a dedup's rollback does, not a failure
    assert store.snapshot()[(B, "out/002")] == b"object 2"  # their identical object stays where it was
