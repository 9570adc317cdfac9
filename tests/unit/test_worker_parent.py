"""Worker processes must never outlive the parent: the parent sentinel, whatever started the process."""

from __future__ import annotations

import multiprocessing
import os
import sys

import pytest

from s3seg import executor, worker


@pytest.fixture
def sentinel(monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    r, w = os.pipe()
    monkeypatch.setattr(worker, "_parent_sentinel", r)
    monkeypatch.setattr(worker, "_parent_pid", None)
    yield r, w
    os.close(r)


def test_a_live_parent_is_not_orphaned(sentinel: tuple[int, int]) -> None:
    assert not worker._orphaned()
    os.close(sentinel[1])


def test_a_closed_sentinel_means_the_parent_is_gone(sentinel: tuple[int, int]) -> None:
    os.close(sentinel[1])  # what the kernel does to the parent's end when the parent dies, kill -9 included
    assert worker._orphaned()


def test_without_a_sentinel_the_parent_pid_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "_parent_sentinel", None)
    monkeypatch.setattr(worker, "_parent_pid", os.getppid())
    assert not worker._orphaned()
    monkeypatch.setattr(worker, "_parent_pid", os.getppid() + 1_000_000)
    assert worker._orphaned()


@pytest.mark.skipif(sys.platform != "linux", reason="the fork server is a POSIX start method")
def test_workers_start_from_the_fork_server_with_s3seg_preloaded() -> None:
    ctx = executor.worker_context()
    assert ctx.get_start_method() == "forkserver"
    assert "s3seg.worker" in executor._PRELOAD


def _parent_is_watched() -> tuple[bool, bool]:
    return worker._parent_sentinel is not None, worker._orphaned()


def test_a_pool_worker_watches_its_parent_through_the_sentinel() -> None:
    backend = executor.ProcessBackend(1)
    try:
        watched, orphaned = backend.submit(_parent_is_watched).result(timeout=60)
    finally:
        backend.shutdown(cancel=True)
    assert watched and not orphaned
    assert multiprocessing.parent_process() is None  # this test process is nobody's pool worker
