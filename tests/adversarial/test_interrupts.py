"""SIGINT, SIGTERM and SIGHUP at exact protocol steps, to the parent alone or to the whole process group
(issue 11, point 4): the run stops gracefully, every batch in flight is finished and journaled (no object left
at both keys, no item left INTENT or COPIED), it exits 128+signal, and a re-run ends exact."""

from __future__ import annotations

import os
import signal
import time

import pytest
from advlab import Lab, wait_for

from s3seg.journal import Status

pytestmark = pytest.mark.integration

CASES = [
    # (crash point, signal, whole group)
    ("after-copied-record", "INT", False),  # the reported case: the batch's delete phase was never sent
    ("after-copied-record", "TERM", True),  # systemd / Kubernetes / timeout: the whole group
    ("after-intent", "HUP", True),
    ("worker-copied", "TERM", True),  # sent from inside a worker, mid copy phase
    ("worker-deleted", "INT", True),
    ("after-outcome", "TERM", False),
    ("journal-append:3", "HUP", False),
]


def _exit_for(sig: str) -> int:
    return 128 + int(signal.Signals[f"SIG{sig}"])


@pytest.mark.parametrize(
    ("point", "sig", "group"), CASES, ids=[f"{p}-{s}-{'group' if g else 'parent'}" for p, s, g in CASES]
)
def test_a_signal_at_any_step_stops_gracefully_leaving_every_object_in_one_place(
    moto_lab: Lab, point: str, sig: str, group: bool
) -> None:
    lab = moto_lab
    lab.seed(40, errors=2)
    lab.plan()
    stopped = lab.apply(
        "--processes", "2", crash_at=point, S3SEG_CRASH_SIGNAL=sig, S3SEG_CRASH_GROUP="1" if group else "0",
        S3SEG_CRASH_ONCE=str(lab.tmp / "signalled"),
    )  # fmt: skip
    assert stopped.code == _exit_for(sig), stopped
    assert "Traceback" not in stopped.err, stopped.err
    assert stopped.summary.get("interrupted") is True, stopped
    assert "worker process died" not in stopped.err

    state = lab.journal()
    open_ids = [i for i in range(1, state.entries + 1) if state.status_of(i) in (Status.INTENT, Status.COPIED)]
    assert open_ids == [], f"items left open by a graceful stop: {open_ids[:5]}"
    now = lab.assert_nothing_lost()
    both = [src for _, src, dst in lab.moves() if src in now and dst in now]
    assert both == [], f"objects at both keys after a graceful stop: {both[:5]}"

    again = lab.apply()
    assert again.code == 0, again
    lab.assert_applied()


def test_rollback_interrupted_by_sigterm_to_the_group_is_graceful_too(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(30, errors=1)
    lab.plan()
    assert lab.run("apply").code == 0
    stopped = lab.rollback(
        crash_at="after-copied-record:2", S3SEG_CRASH_SIGNAL="TERM", S3SEG_CRASH_GROUP="1",
        S3SEG_CRASH_ONCE=str(lab.tmp / "signalled"),
    )  # fmt: skip
    assert stopped.code == 143, stopped
    state = lab.journal()
    left = [i for i in range(1, state.entries + 1) if state.status_of(i) in (Status.R_INTENT, Status.R_COPIED)]
    assert not left, stopped.err[-3000:]
    assert lab.rollback().code == 0
    lab.assert_rolled_back()


def test_a_second_signal_abandons_within_seconds_and_a_rerun_ends_exact(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(60, errors=1)
    lab.plan()
    lab.proxy.set(delay=0.5, ops={"CopyObject"})  # a slow store: in-flight batches would take long to finish
    proc = lab.spawn(*lab.exec_args("apply", "--processes", "2", "--batch-size", "10"))
    # past the capability probe (two copies of its own) and into the moves
    assert wait_for(lambda: lab.proxy.total("forwarded", {"CopyObject"}) >= 8, timeout=60)
    os.killpg(proc.pid, signal.SIGTERM)
    # Not a wait for a count: two signals sent back to back can merge into one pending signal (POSIX), so the
    # second is sent once the first has surely been delivered.
    time.sleep(0.3)
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    run = lab.finish(proc, timeout=60)
    assert time.monotonic() - started < 15, "a second signal must end the run within seconds"
    assert run.code == 143, run
    assert "abandoned" in run.summary.get("aborted", ""), run
    lab.proxy.heal()
    lab.assert_nothing_lost()
    assert lab.apply().code == 0
    lab.assert_applied()


def test_sigterm_while_planning_in_run_exits_143_and_leaves_no_manifest(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(20, errors=1)
    lab.proxy.set(delay=0.5, ops={"ListObjectsV2"})
    config = lab.config(name="cron.xml", n_keys=5)
    proc = lab.spawn("run", "-c", str(config), "--no-progress", "--json")
    assert wait_for(lambda: lab.proxy.total("request", {"ListObjectsV2"}) >= 1, timeout=60)
    os.killpg(proc.pid, signal.SIGTERM)
    run = lab.finish(proc, timeout=60)
    assert run.code == 143, run
    assert "Traceback" not in run.err
    lab.proxy.heal()
    assert lab.state() == lab.seeded
    assert not list(lab.tmp.glob("s3seg-*.jsonl"))
