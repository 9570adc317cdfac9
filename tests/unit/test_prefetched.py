"""The pipeline's batches read ahead (``executor._Prefetched``): the same batches in the same order, an error
where the failing batch would have been, and nothing left reading once the pipeline stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from s3seg.executor import _Prefetched
from s3seg.moves import Task


def _batch(i: int) -> list[Task]:
    return [Task(i, "b", f"k{i}", "b", f"d{i}", '"e"', 1)]


def test_the_batches_come_in_order_then_the_end_stays_the_end() -> None:
    ahead = _Prefetched(iter([_batch(i) for i in range(5)]))
    assert [b[0].id for b in ahead] == [0, 1, 2, 3, 4]
    assert next(ahead, None) is None and next(ahead, None) is None
    ahead.close()


def test_an_error_in_the_source_comes_after_the_batches_before_it() -> None:
    def source() -> Iterator[list[Task]]:
        yield _batch(1)
        yield _batch(2)
        raise ValueError("line 3: not valid JSON")

    ahead = _Prefetched(source())
    assert next(ahead)[0].id == 1 and next(ahead)[0].id == 2
    with pytest.raises(ValueError, match="line 3"):
        next(ahead)
    with pytest.raises(ValueError, match="line 3"):
        next(ahead)  # asked again: the same error, never a silent end
    ahead.close()


def test_close_stops_the_reader_and_runs_the_source_clean_up() -> None:
    closed = threading.Event()

    def source() -> Iterator[list[Task]]:
        try:
            i = 0
            while True:
                yield _batch(i)
                i += 1
        finally:
            closed.set()

    ahead = _Prefetched(source(), depth=2)
    assert next(ahead)[0].id == 0
    ahead.close()  # the reader was blocked on a full queue
    assert closed.is_set()
    assert not any(t.name == "s3seg-batches" and t.is_alive() for t in threading.enumerate())


def test_a_pipeline_never_run_starts_no_reader() -> None:
    before = sum(t.name == "s3seg-batches" for t in threading.enumerate())
    ahead = _Prefetched(iter([_batch(1)]))
    assert sum(t.name == "s3seg-batches" for t in threading.enumerate()) == before
    ahead.close()
