"""kill -9 of apply and rollback at every crash point, at several hit counts, and at random instants.

Each case: seed 23 objects, plan (batch_size 5: five batches, so there are many windows), run the CLI with
``S3SEG_CRASH_AT=<point>:<n>`` (the process reaching ``<point>`` for the n-th time SIGKILLs itself: the parent
for parent points, a pool worker for worker points), check at that instant that nothing is lost and that
the journal calls nothing done without proof, re-run, and check the exact final state.

Crash points (``grep -rn crash_point s3seg``):

parent (executor / journal)   after-intent, before-copied-record, after-copied-record, after-outcome,
                              journal-append (half a record written and fsynced, then the kill: a torn write)
worker (worker / moves)       worker-copy, worker-copied, worker-delete, worker-deleted (batch boundaries),
                              after-copy-request, after-delete-request (one request done, others in flight)
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from advlab import Lab, Run, StoreHandle, process_state_kept, wait_for

from s3seg_lab.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

OBJECTS = 20  # + 3 unmatched names: 23 moves in 5 batches of 5 (BATCH)
BATCH = 5

PARENT_POINTS = {
    "after-intent": [1, 3],
    "before-copied-record": [1, 4],
    "after-copied-record": [1, 4],
    "after-outcome": [1, 3],
    "journal-append": [1, 6, 11],
}
WORKER_POINTS = {
    "worker-copy": [1, 2],
    "worker-copied": [1, 2],
    "worker-delete": [1, 2],
    "worker-deleted": [1, 2],
    "after-copy-request": [1, 9],
    "after-delete-request": [1, 3],
}
APPLY_CASES = [(p, n) for p, ns in {**PARENT_POINTS, **WORKER_POINTS}.items() for n in ns]
ROLLBACK_CASES = [
    ("after-copied-record", 1),
    ("journal-append", 3),
    ("worker-copied", 1),
    ("worker-deleted", 1),
    ("after-copy-request", 5),
    ("after-delete-request", 2),
]
ROLLBACK_AFTER_CRASHED_APPLY = [("after-copied-record", 2), ("worker-copied", 1)]
# On SeaweedFS (every condition server-enforced, deletes batched with per-key ETags): a subset.
SEAWEEDFS_CASES = [
    ("after-copied-record", 2),
    ("journal-append", 6),
    ("worker-copied", 1),
    ("after-delete-request", 1),
]
RANDOM_APPLY_SEEDS = [1, 2, 3]
RANDOM_ROLLBACK_SEEDS = [5, 6]


def _crashed(lab: Lab, run: object, point: str) -> None:
    """The run really died at the point: the parent by SIGKILL, or a worker (the parent then exits 1)."""
    code = run.code  # type: ignore[attr-defined]
    if point in PARENT_POINTS:
        assert code == -signal.SIGKILL, run
    else:
        assert code == 1 and run.summary.get("aborted"), run  # type: ignore[attr-defined]


def _pool(point: str) -> tuple[str, str]:
    """Worker points need a pool worker to die in (one process is enough); parent points run inline (no pool
    start-up cost; the kill takes the whole run down). The real two-process pool is killed at random below."""
    return ("--processes", "0" if point in PARENT_POINTS else "1")


def _setup(lab: Lab, seed: int = 0) -> None:
    lab.seed(OBJECTS, seed=seed)
    lab.plan(batch_size=BATCH)


# -- the crashed runs of a matrix are launched together, a few at a time -------------------------------------------
# Each case has its own bucket, proxy and manifest, so their crashed runs are independent: a module fixture
# starts all the selected ones up front (PARALLEL subprocesses at once: start-up is most of their cost), and
# each parametrized test then checks its own crashed state, re-runs in-process and checks the final state.
PARALLEL = 3
Case = tuple[str, int]


def _launch_all(jobs: list[tuple[Lab, list[str], str]]) -> list[Run]:
    results: list[Run | None] = [None] * len(jobs)
    pending = list(enumerate(jobs))
    running: dict[int, tuple[Lab, subprocess.Popen[str]]] = {}
    while pending or running:
        while pending and len(running) < PARALLEL:
            i, (lab, args, crash_at) = pending.pop(0)
            running[i] = (lab, lab.spawn(*args, crash_at=crash_at))
        for i, (lab, proc) in list(running.items()):
            if proc.poll() is not None:
                results[i] = lab.finish(proc)
                del running[i]
        time.sleep(0.02)
    return [r for r in results if r is not None]


class CrashRuns:
    """The crashed runs of one parametrized test, by case: set up and launched together, PARALLEL at a time.

    Without xdist every case selected in this session is launched when the fixture starts. Under xdist a
    worker runs only some of the cases, unknown in advance, so each case is launched when its test asks for it
    (xdist's workers already run in parallel).
    """

    def __init__(
        self,
        request: pytest.FixtureRequest,
        store: StoreHandle,
        test: str,
        cases: list[Case],
        prepare: Callable[[Lab, Case], list[str]],
    ) -> None:
        self.store = store
        self.prepare = prepare
        self.factory = request.getfixturevalue("tmp_path_factory")
        self.results: dict[Case, tuple[Lab, Run]] = {}
        self.labs: list[Lab] = []
        if not os.environ.get("PYTEST_XDIST_WORKER"):
            selected = {
                (item.callspec.params["point"], item.callspec.params["n"])
                for item in request.session.items
                if getattr(item, "originalname", "") == test and hasattr(item, "callspec")
            }
            self._launch([case for case in cases if case in selected])

    def __getitem__(self, case: Case) -> tuple[Lab, Run]:
        if case not in self.results:
            self._launch([case])
        return self.results[case]

    def _launch(self, cases: list[Case]) -> None:
        jobs = []
        with pytest.MonkeyPatch.context() as mp, process_state_kept():
            mp.setenv("AWS_ACCESS_KEY_ID", self.store.access_key)
            mp.setenv("AWS_SECRET_ACCESS_KEY", self.store.secret_key)
            mp.delenv("AWS_ENDPOINT_URL", raising=False)
            for case in cases:
                lab = Lab(self.store, self.factory.mktemp("crash"), FaultProxy(self.store.endpoint).start())
                self.labs.append(lab)
                jobs.append((lab, self.prepare(lab, case), f"{case[0]}:{case[1]}"))
        runs = _launch_all(jobs)
        for case, (lab, _, _), run in zip(cases, jobs, runs, strict=True):
            self.results[case] = (lab, run)

    def close(self) -> None:
        for lab in self.labs:
            lab.proxy.stop()


@contextmanager
def _prepared(
    request: pytest.FixtureRequest,
    store: StoreHandle,
    test: str,
    cases: list[Case],
    prepare: Callable[[Lab, Case], list[str]],
) -> Iterator[CrashRuns]:
    runs = CrashRuns(request, store, test, cases, prepare)
    try:
        yield runs
    finally:
        runs.close()


def _apply_case(seed_base: int) -> Callable[[Lab, Case], list[str]]:
    def prepare(lab: Lab, case: Case) -> list[str]:
        _setup(lab, seed=seed_base + case[1])
        return lab.exec_args("apply", *_pool(case[0]))

    return prepare


def _rollback_case(lab: Lab, case: Case) -> list[str]:
    _setup(lab, seed=100 + case[1])
    assert lab.inline("apply") == 0, lab.last_result
    return lab.exec_args("rollback", *_pool(case[0]))


@pytest.fixture(scope="module")
def crashed_applies(request: pytest.FixtureRequest, moto_server: StoreHandle) -> Iterator[CrashRuns]:
    test = "test_apply_killed_at_a_crash_point_then_rerun_moves_every_object_exactly_once"
    with _prepared(request, moto_server, test, APPLY_CASES, _apply_case(0)) as runs:
        yield runs


@pytest.fixture(scope="module")
def crashed_rollbacks(request: pytest.FixtureRequest, moto_server: StoreHandle) -> Iterator[CrashRuns]:
    test = "test_rollback_killed_at_a_crash_point_then_rerun_restores_the_bucket_exactly"
    with _prepared(request, moto_server, test, ROLLBACK_CASES, _rollback_case) as runs:
        yield runs


@pytest.fixture(scope="module")
def crashed_applies_to_roll_back(request: pytest.FixtureRequest, moto_server: StoreHandle) -> Iterator[CrashRuns]:
    test = "test_rollback_of_an_apply_killed_midway_undoes_exactly_what_was_done"
    with _prepared(request, moto_server, test, ROLLBACK_AFTER_CRASHED_APPLY, _apply_case(200)) as runs:
        yield runs


@pytest.fixture(scope="module")
def crashed_applies_on_seaweedfs(request: pytest.FixtureRequest, seaweedfs_server: StoreHandle) -> Iterator[CrashRuns]:
    test = "test_on_seaweedfs_apply_killed_at_a_crash_point_then_rerun_ends_exact_and_rolls_back"
    with _prepared(request, seaweedfs_server, test, SEAWEEDFS_CASES, _apply_case(500)) as runs:
        yield runs


@pytest.mark.parametrize(("point", "n"), APPLY_CASES, ids=[f"{p}:{n}" for p, n in APPLY_CASES])
def test_apply_killed_at_a_crash_point_then_rerun_moves_every_object_exactly_once(
    crashed_applies: CrashRuns, point: str, n: int
) -> None:
    lab, crashed = crashed_applies[point, n]
    _crashed(lab, crashed, point)
    lab.assert_nothing_lost()
    lab.assert_done_has_proof()
    assert lab.inline("apply") == 0, lab.last_result
    lab.assert_applied()
    assert lab.assert_done_has_proof() == len(lab.moves())


@pytest.mark.seaweedfs
@pytest.mark.parametrize(("point", "n"), SEAWEEDFS_CASES, ids=[f"{p}:{n}" for p, n in SEAWEEDFS_CASES])
def test_on_seaweedfs_apply_killed_at_a_crash_point_then_rerun_ends_exact_and_rolls_back(
    crashed_applies_on_seaweedfs: CrashRuns, point: str, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab, crashed = crashed_applies_on_seaweedfs[point, n]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", lab.store.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", lab.store.secret_key)
    _crashed(lab, crashed, point)
    lab.assert_nothing_lost()
    lab.assert_done_has_proof()
    assert lab.inline("apply") == 0, lab.last_result
    lab.assert_applied()
    assert lab.journal_counts().get("deduped", 0) == 0  # a resumed copy is ours, never "someone else's"
    assert lab.inline("rollback") == 0, lab.last_result
    lab.assert_rolled_back()


@pytest.mark.parametrize(("point", "n"), ROLLBACK_CASES, ids=[f"{p}:{n}" for p, n in ROLLBACK_CASES])
def test_rollback_killed_at_a_crash_point_then_rerun_restores_the_bucket_exactly(
    crashed_rollbacks: CrashRuns, point: str, n: int
) -> None:
    lab, crashed = crashed_rollbacks[point, n]
    _crashed(lab, crashed, point)
    lab.assert_nothing_lost()
    assert lab.inline("rollback") == 0, lab.last_result
    lab.assert_rolled_back()


@pytest.mark.parametrize(
    ("point", "n"), ROLLBACK_AFTER_CRASHED_APPLY, ids=[f"{p}:{n}" for p, n in ROLLBACK_AFTER_CRASHED_APPLY]
)
def test_rollback_of_an_apply_killed_midway_undoes_exactly_what_was_done(
    crashed_applies_to_roll_back: CrashRuns, point: str, n: int
) -> None:
    lab, crashed = crashed_applies_to_roll_back[point, n]
    _crashed(lab, crashed, point)
    assert lab.inline("rollback") == 0, lab.last_result
    lab.assert_rolled_back()


def _kill_group_at_random(lab: Lab, args: list[str], rng: random.Random) -> subprocess.Popen[str]:
    proc = lab.spawn(*args)
    time.sleep(rng.uniform(0.6, 2.4))  # start-up is ~0.7 s; the slowed-down run then takes ~2 s
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and every worker at once
    lab.finish(proc)
    return proc


@pytest.mark.parametrize("seed", RANDOM_APPLY_SEEDS)
def test_apply_killed_twice_at_random_instants_then_rerun_ends_exact(moto_lab: Lab, seed: int) -> None:
    lab = moto_lab
    rng = random.Random(seed)
    _setup(lab, seed=300 + seed)
    lab.proxy.set(delay=0.03)  # stretch the run so the kills land mid-way
    for _ in range(2):
        _kill_group_at_random(lab, lab.exec_args("apply"), rng)
        lab.assert_nothing_lost()
        lab.assert_done_has_proof()
    lab.proxy.heal()
    assert lab.inline("apply") == 0, lab.last_result
    lab.assert_applied()


@pytest.mark.parametrize("seed", RANDOM_ROLLBACK_SEEDS)
def test_rollback_killed_at_a_random_instant_then_rerun_restores_exactly(moto_lab: Lab, seed: int) -> None:
    lab = moto_lab
    rng = random.Random(seed)
    _setup(lab, seed=400 + seed)
    assert lab.inline("apply") == 0
    lab.proxy.set(delay=0.03)
    _kill_group_at_random(lab, lab.exec_args("rollback"), rng)
    lab.assert_nothing_lost()
    lab.proxy.heal()
    assert lab.inline("rollback") == 0, lab.last_result
    lab.assert_rolled_back()


def _group_alive(pgid: int) -> list[str]:
    ps = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True, check=False)
    return [s for s in ps.stdout.split() if not s.startswith("Z")]


def test_workers_die_with_a_killed_parent_and_send_nothing_after_it(moto_lab: Lab) -> None:
    """kill -9 of the parent alone: its queued batches must not run on in orphaned workers.

    After the parent's death its journal lock is free, so a re-run or a rollback may start at once; an orphan
    still deleting sources of the dead run's batches could race a rollback of the same moves.
    """
    lab = moto_lab
    _setup(lab, seed=7)
    lab.proxy.set(delay=0.05)
    proc = lab.spawn(*lab.exec_args("apply"), crash_at="after-copied-record:1")  # batches queued behind it
    assert proc.wait(60) == -signal.SIGKILL
    # Within the two seconds the workers always had, every one of them is gone ...
    assert wait_for(lambda: not _group_alive(proc.pid), timeout=2.0), "worker processes outlived the killed parent"
    # ... and the requests they had in flight at the kill have landed: no sender is left, the count is final.
    assert lab.proxy.wait_idle()
    seen = lab.proxy.requests()
    assert not _group_alive(proc.pid) and lab.proxy.requests() == seen, "an orphaned worker kept sending requests"
    lab.proxy.heal()
    assert lab.inline("rollback") == 0, lab.last_result
    lab.assert_rolled_back()
