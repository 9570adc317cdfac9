"""Faults between s3seg and the store, injected by ``FaultProxy`` across the real process pool.

Every run is the CLI as a subprocess (processes=2) talking to the store only through the proxy. The claims:

* at 10% of each fault kind (fail before forwarding: not applied; forward then lose the answer: applied,
  the client sees an error) one ``apply`` finishes every move with the exact final state, and so does
  ``rollback``;
* during a 100% outage ``apply`` exits 1 with nothing lost and nothing recorded done without proof, and a
  re-run after the outage finishes;
* a 503 SlowDown storm is outlasted with backoff; the journal never calls an item done that is not.
"""

from __future__ import annotations

import random
import threading

import pytest
from advlab import Lab, cdr_name

pytestmark = pytest.mark.integration

MUTATING_OPS = ("CopyObject", "DeleteObject", "DeleteObjects")
SEEDS = [11]  # per store; the proxy's RNG is seeded, so a failure replays exactly


@pytest.mark.parametrize("seed", SEEDS)
def test_apply_at_10_percent_of_each_fault_finishes_every_move_exactly(lab: Lab, seed: int) -> None:
    lab.seed(37, seed=seed)
    lab.plan()
    lab.proxy.set(fail_before=0.1, lose_after=0.1, seed=seed)
    run = lab.apply()
    lab.proxy.heal()
    assert run.code == 0, run
    assert lab.proxy.total("fail_before") > 0 and lab.proxy.total("lose_after") > 0
    lab.assert_applied()
    assert lab.assert_done_has_proof() == len(lab.moves())


@pytest.mark.parametrize("seed", [21])
def test_rollback_at_10_percent_of_each_fault_restores_the_bucket_exactly(lab: Lab, seed: int) -> None:
    lab.seed(30, seed=seed)
    lab.plan()
    assert lab.inline("apply") == 0, lab.last_result
    lab.proxy.set(fail_before=0.1, lose_after=0.1, seed=seed)
    run = lab.rollback()
    lab.proxy.heal()
    assert run.code == 0, run
    assert lab.proxy.total("fail_before") > 0 and lab.proxy.total("lose_after") > 0
    lab.assert_rolled_back()


def test_faults_only_on_copy_and_delete_requests_are_survived(lab: Lab) -> None:
    """Lost answers concentrated on the mutating calls: the 412/404-after-retry path, at 25%."""
    lab.seed(30, seed=3)
    lab.plan()
    lab.proxy.set(lose_after=0.25, ops=MUTATING_OPS, seed=3)
    run = lab.apply()
    lab.proxy.heal()
    assert run.code == 0, run
    assert lab.proxy.total("lose_after", MUTATING_OPS) > 0
    lab.assert_applied()


def test_outage_from_the_start_exits_4_with_nothing_changed_and_a_rerun_finishes(lab: Lab) -> None:
    lab.seed(30, seed=5)
    lab.plan(max_attempts=1, item_retries=1)
    lab.proxy.set(storm=3600)  # a 100% outage for the whole run
    run = lab.apply()
    # The run's first request (taking the lease) never gets through: nothing changed, exit 4 says so.
    assert run.code == 4, run
    assert "nothing was changed" in run.err
    assert lab.proxy.total("forwarded") == 0
    lab.proxy.heal()
    lab.assert_nothing_lost()
    lab.assert_done_has_proof()
    rerun = lab.run("apply")
    assert rerun.code == 0, rerun
    lab.assert_applied()


def test_outage_midway_leaves_nothing_lost_and_no_done_without_proof(lab: Lab) -> None:
    """The outage starts once some moves are done: a mix of done, copied and untouched items."""
    lab.seed(50, seed=6)
    lab.plan(max_attempts=1, item_retries=1)
    lab.proxy.set(delay=0.01)
    proc = lab.spawn(*lab.exec_args("apply"))
    started = threading.Event()

    def trip() -> None:
        while proc.poll() is None:
            # The capability probe sends 5 deletes of its own scratch objects first; then 2 delete requests
            # of real moves (single deletes on moto, DeleteObjects batches on SeaweedFS).
            if lab.proxy.total("forwarded", ("DeleteObject", "DeleteObjects")) >= 7:
                lab.proxy.set(storm=3600)
                started.set()
                return
            threading.Event().wait(0.01)

    t = threading.Thread(target=trip)
    t.start()
    run = lab.finish(proc)
    t.join()
    assert started.is_set(), run
    assert run.code == 1, run
    lab.proxy.heal()
    lab.assert_nothing_lost()
    done = lab.assert_done_has_proof()
    assert 0 < done < len(lab.moves())
    rerun = lab.run("apply")
    assert rerun.code == 0, rerun
    lab.assert_applied()


def test_slowdown_storm_is_outlasted_with_backoff_and_completes(lab: Lab) -> None:
    """A 1.5 s storm of 503 SlowDown on every request: botocore gives up, the item-level backoff does not."""
    lab.seed(20, seed=7)
    lab.plan(item_retries=8, max_attempts=2)
    lab.proxy.set(storm=1.5, storm_after=("CopyObject", 3))  # the capability probe sends the first 2 copies
    run = lab.apply()
    assert run.code == 0, run
    assert lab.proxy.total("storm") > 20
    lab.assert_applied()
    assert lab.assert_done_has_proof() == len(lab.moves())


def test_lost_copy_answers_are_not_mistaken_for_someone_elses_identical_destination(lab: Lab) -> None:
    """A copy applied but unanswered, retried by botocore: the retry's 412 (or identical HEAD) is our own copy.

    Recording it as "deduped" (the destination existed before apply) would make rollback keep that copy: the
    object would end up at both places after apply + rollback.
    """
    lab.seed(30, seed=8)
    lab.plan(max_attempts=4)
    lab.proxy.set(lose_after=0.3, ops=("CopyObject",), seed=8)
    run = lab.apply()
    lab.proxy.heal()
    assert run.code == 0, run
    assert lab.proxy.total("lose_after", ("CopyObject",)) > 3
    lab.assert_applied()
    assert lab.journal_counts().get("deduped", 0) == 0
    assert lab.inline("rollback") == 0, lab.last_result
    lab.assert_rolled_back()


MULTIPART_OPS = ("CreateMultipartUpload", "UploadPartCopy", "CompleteMultipartUpload", "DeleteObject", "DeleteObjects")


def test_lost_answers_on_the_multipart_copy_path_end_exact_and_roll_back(lab: Lab) -> None:
    """Objects above a lowered multipart threshold (5 MiB): 40% of the multipart calls' answers are lost.

    A lost CreateMultipartUpload answer leaves an empty incomplete upload no one knows the id of (not data;
    a lifecycle rule cleans them on AWS); every object still ends exact.
    """
    for i in range(3):
        lab.put("incoming/" + cdr_name(700 + i), random.Random(i).randbytes(5 * 1024 * 1024 + 1 + i))
    lab.seed(3, errors=0)
    lab.plan(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    lab.proxy.set(lose_after=0.4, ops=MULTIPART_OPS, seed=4)
    run = lab.apply()
    lab.proxy.heal()
    assert run.code == 0, run
    assert lab.proxy.total("lose_after", MULTIPART_OPS[:3]) > 0
    lab.assert_applied()
    assert lab.run("rollback").code == 0, lab.last_result
    lab.assert_rolled_back()
