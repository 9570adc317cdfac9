"""``executor.ProgressMeter``: a per-object estimate reconciled with the journaled count. The bar never goes
backwards, never past what was handed to the workers, and ends exactly at the journaled count."""

from __future__ import annotations

from s3seg.executor import ProgressMeter


def meter() -> tuple[ProgressMeter, list[int]]:
    steps: list[int] = []
    return ProgressMeter(steps.append), steps


def test_the_estimate_moves_the_bar_within_a_batch_and_the_journal_adds_nothing_already_shown() -> None:
    m, steps = meter()
    m.estimate(3, limit=10)
    m.estimate(7, limit=10)
    m.journaled(4)  # behind the estimate: nothing to move
    m.estimate(10, limit=10)
    m.journaled(6)  # the batch's results: the journal agrees with the bar
    assert steps == [3, 4, 3] and m.shown == 10 == m.done


def test_the_estimate_is_capped_at_the_moves_handed_out_and_never_moves_the_bar_back() -> None:
    m, steps = meter()
    m.estimate(12, limit=5)  # a counter ahead of what was handed out (never the total's beyond)
    assert m.shown == 5
    m.estimate(2, limit=5)  # a lower estimate (a fresh backend count, a racy read): no step backwards
    m.estimate(5, limit=5)
    assert steps == [5]


def test_the_journal_is_the_truth_when_it_is_ahead_of_the_estimate() -> None:
    m, steps = meter()
    m.estimate(2, limit=8)
    m.journaled(5)  # results arrived before the next poll of the counters
    m.estimate(4, limit=8)  # below the journal: the journal wins
    m.journaled(3)
    assert steps == [2, 3, 3] and m.shown == 8 == m.done


def test_without_an_estimate_the_bar_moves_per_journaled_batch() -> None:
    m, steps = meter()  # inline and Dask backends: no per-object counter
    for n in (500, 500, 120):
        m.journaled(n)
    assert steps == [500, 500, 120] and sum(steps) == m.done
