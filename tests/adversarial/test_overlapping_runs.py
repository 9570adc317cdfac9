"""Runs that overlap in time, and journals across apply/rollback cycles (issue 11, points 1 and 2).

Each test drives real s3seg processes (or in-process runs) against the moto server through the fault proxy,
then checks the bucket itself, every object's bytes, and what the journals say each manifest did.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from advlab import LEASE_KEY, Lab, wait_for

pytestmark = pytest.mark.integration

NEW = b"a newer object written at the original key"


def _seed_and_apply(lab: Lab, n: int = 12) -> None:
    lab.seed(n, errors=1)
    lab.plan()
    run = lab.run("apply")
    assert run.code == 0, run
    lab.assert_applied()


def _sources_back(lab: Lab) -> int:
    now = lab.state(bodies=False)
    return sum(1 for key in lab.seeded if key in now)


def _cron(lab: Lab, *extra: str) -> list[str]:
    """``s3seg run -c CONFIG``: what cron fires, planning into the config's state_dir."""
    return ["run", "-c", str(lab.config(name="cron.xml")), "--no-progress", "--json", *extra]


# -- point 1: exclusion ------------------------------------------------------------------------------------------
def test_a_cron_run_fired_while_a_rollback_deletes_slowly_is_refused_and_nothing_is_lost(moto_lab: Lab) -> None:
    """The reported loss: rollback copies objects back, its deletes are slow, cron fires `run` on the same
    config. Before the lease both exited 0 and every object was gone from both keys."""
    lab = moto_lab
    _seed_and_apply(lab)
    lab.proxy.set(delay=0.4, ops={"DeleteObject", "DeleteObjects"})
    rollback = lab.spawn(*lab.exec_args("rollback", "--processes", "1", "--batch-size", "4"))
    assert wait_for(lambda: _sources_back(lab) >= 4, timeout=60), "the rollback never copied anything back"

    cron = lab.cli(*_cron(lab))

    assert cron.code == 3, cron
    assert "another s3seg run holds this bucket" in cron.err and "rollback of" in cron.err, cron.err
    assert "Traceback" not in cron.err
    done = lab.finish(rollback)
    assert done.code == 0, done
    lab.proxy.heal()
    lab.assert_rolled_back()  # every object back at its original key, once
    assert not [p for p in Path(lab.tmp).glob("s3seg-*.jsonl")], "the refused run left a manifest behind"

    again = lab.cli(*_cron(lab))  # the next cron run, once the rollback is over, moves everything again
    assert again.code == 0, again
    lab.assert_applied()
    assert "Contents" not in lab.s3.list_objects_v2(Bucket=lab.bucket, Prefix=LEASE_KEY)  # released at the end


def test_with_lock_wait_the_cron_run_waits_for_the_rollback_then_moves_everything(moto_lab: Lab) -> None:
    lab = moto_lab
    _seed_and_apply(lab)
    lab.proxy.set(delay=0.3, ops={"DeleteObject", "DeleteObjects"})
    rollback = lab.spawn(*lab.exec_args("rollback", "--processes", "1", "--batch-size", "4"))
    assert wait_for(lambda: _sources_back(lab) >= 2, timeout=60)

    cron = lab.spawn(*_cron(lab, "--lock-wait", "120"))
    done = lab.finish(rollback)
    waited = lab.finish(cron, timeout=180)

    assert done.code == 0, done
    assert waited.code == 0, waited
    assert "waiting up to" in waited.err
    lab.proxy.heal()
    lab.assert_applied()


def test_two_applies_of_different_manifests_on_one_bucket_never_mutate_together(
    moto_lab: Lab, proxy_factory: Any
) -> None:
    lab = moto_lab
    lab.seed(10, errors=1)
    first = lab.plan("first.jsonl")
    # The same objects, planned twice (two operators, two hosts): the second host reaches the store through
    # a proxy of its own, so the first run can be frozen mid-way below while the second one runs.
    second = lab.plan("second.jsonl", endpoint=proxy_factory(lab.store.endpoint).url)
    lab.proxy.set(delay=0.2, ops={"CopyObject"})
    lab.manifest = first
    running = lab.spawn(*lab.exec_args("apply", "--processes", "1", "--batch-size", "2"))
    assert wait_for(lambda: _sources_back(lab) < len(lab.seeded), timeout=60)
    # Frozen mid-way (its lease held, moves left to do) for as long as the second CLI takes to start: without
    # this, on a loaded machine the first run could finish before the second one looked (exit 0, not 3).
    lab.proxy.hold()
    assert running.poll() is None, "the first run must still be running"
    lab.manifest = second
    refused = lab.cli(*lab.exec_args("apply"))
    assert refused.code == 3, refused
    assert "apply of" in refused.err and os.path.basename(first) in refused.err
    lab.proxy.release()
    lab.manifest = first
    assert lab.finish(running).code == 0
    lab.proxy.heal()
    lab.assert_applied()


def test_a_lease_left_by_a_killed_run_on_this_host_is_taken_over_at_once(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(10, errors=1)
    lab.plan()
    killed = lab.apply(crash_at="after-copied-record:2")
    assert killed.code == -9, killed
    assert LEASE_KEY in lab.s3.list_objects_v2(Bucket=lab.bucket, Prefix=LEASE_KEY).get("Contents", [{}])[0].get(
        "Key", ""
    )
    start = time.monotonic()
    again = lab.apply()
    assert again.code == 0, again
    assert "took over the stale lease" in again.err
    assert time.monotonic() - start < 30  # no waiting for the ttl: its process is provably gone
    lab.assert_applied()
    assert "Contents" not in lab.s3.list_objects_v2(Bucket=lab.bucket, Prefix=LEASE_KEY)


def _foreign_lease(lab: Lab, *, ttl: float) -> None:
    body = {
        "format": 1, "token": "f" * 32, "host": "cron-host-2", "pid": 31337, "pid_start": "1", "boot_id": "x",
        "command": "run", "manifest": "/var/lib/s3seg/s3seg-x.jsonl", "since": "2026-12-01T00:00:00+00:00",
        "ttl": ttl, "executor": "local", "renewed": "2026-12-01T00:00:00+00:00",
    }  # fmt: skip
    lab.s3.put_object(Bucket=lab.bucket, Key=LEASE_KEY, Body=json.dumps(body).encode())


def test_a_live_lease_of_another_host_refuses_with_its_name_and_an_expired_one_is_taken_over(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(6, errors=1)
    lab.plan()
    _foreign_lease(lab, ttl=3)
    refused = lab.run("apply")
    assert refused.code == 3, refused
    assert "cron-host-2" in refused.err and "pid 31337" in refused.err
    assert lab.proxy.mutations() == 1  # our one attempt to create the lease; no move started
    time.sleep(4.5)  # the store's clock must see it unrenewed for a whole ttl
    done = lab.run("apply")
    assert done.code == 0, done
    lab.assert_applied()


def test_a_run_whose_lease_is_taken_over_stops_at_once_and_loses_nothing(
    moto_lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = moto_lab
    lab.seed(30, errors=1)
    lab.plan()
    lab.proxy.set(delay=0.15, ops={"CopyObject", "DeleteObjects", "HeadObject"})
    running = lab.spawn(*lab.exec_args("apply", "--processes", "1", "--batch-size", "2"), S3SEG_LEASE_TTL="3")
    assert wait_for(lambda: _sources_back(lab) < len(lab.seeded), timeout=60)
    _foreign_lease(lab, ttl=600)  # another host decided we were dead and took over
    stopped = lab.finish(running, timeout=60)
    assert stopped.code == 1, stopped
    assert "lost the lease" in stopped.summary["aborted"], stopped
    lab.proxy.heal()
    lab.assert_nothing_lost()
    lab.s3.delete_object(Bucket=lab.bucket, Key=LEASE_KEY)  # the "other host" finishes and releases
    assert lab.run("apply").code == 0
    lab.assert_applied()


# -- point 2: what the journal says across cycles ---------------------------------------------------------------
def test_reapply_after_a_rollback_killed_after_its_copied_record_journals_done_and_rolls_back_exactly(
    moto_lab: Lab,
) -> None:
    lab = moto_lab
    _seed_and_apply(lab)
    killed = lab.rollback(crash_at="after-copied-record")  # objects now at both keys
    assert killed.code == -9, killed
    again = lab.run("apply")
    assert again.code == 0, again
    counts = lab.journal_counts()
    assert counts.get("deduped", 0) == 0, counts  # our own copies are never "someone else's"
    lab.assert_applied()
    back = lab.run("rollback")
    assert back.code == 0, back
    lab.assert_rolled_back()  # nothing left at both keys


def test_a_dedup_mark_does_not_survive_a_cycle_in_which_the_object_was_really_moved(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(6, errors=1)
    lab.plan()
    mid, src, dst = lab.moves()[0]
    lab.s3.put_object(Bucket=lab.bucket, Key=dst, Body=lab.seeded[src])  # an identical copy, there before us
    assert lab.run("apply").code == 0
    assert lab.journal().status_of(mid).label == "deduped"
    assert lab.run("rollback").code == 0
    assert lab.state()[dst] == lab.seeded[src]  # theirs: kept
    lab.s3.delete_object(Bucket=lab.bucket, Key=dst)  # its owner removes it
    assert lab.run("apply").code == 0  # now really moved, by us
    assert lab.journal().status_of(mid).label == "done"
    assert lab.run("rollback").code == 0
    lab.assert_rolled_back()  # our copy taken back: no duplicate at the destination


def test_rollback_of_moves_that_never_happened_and_whose_source_changed_has_nothing_to_undo(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(5, errors=1)
    # One retry at each level, not FAST's 3 x 4: every copy fails, so each retry is only a backoff sleep
    # (~20 s of them with FAST); the test is about what rollback does after the failed apply.
    lab.plan(max_attempts=2, item_retries=1)
    lab.proxy.set(fail_before=1.0, ops={"CopyObject"})
    failed = lab.run("apply")
    assert failed.code == 1, failed
    assert set(lab.journal_counts()) <= {"failed", "pending"}
    lab.proxy.heal()
    mid, src, _ = lab.moves()[0]
    lab.put(src, NEW)  # the source changed since: its owner rewrote it

    back = lab.run("rollback")
    assert back.code == 0, back  # not exit 1 forever with r-failed-missing
    assert lab.journal().status_of(mid).label == "r-not-moved"
    lab.assert_rolled_back()
    assert lab.run("rollback").code == 0  # and nothing left to do


def test_rolling_back_the_second_of_two_overlapping_manifests_leaves_the_first_ones_moves(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(8, errors=1)
    first = lab.plan("first.jsonl")
    second = lab.plan("second.jsonl")
    lab.manifest = first
    assert lab.run("apply").code == 0
    lab.manifest = second
    run = lab.run("apply")
    assert run.code == 0, run
    assert set(lab.journal_counts()) == {"done-elsewhere"}

    assert lab.run("rollback").code == 0
    lab.assert_applied()  # the first manifest's moves stand
    lab.manifest = first
    assert set(lab.journal_counts()) == {"done"}
    assert lab.run("rollback").code == 0
    lab.assert_rolled_back()
