"""Hundreds of requests in flight need hundreds of open files: a worker raises its soft limit, cuts the number
in flight to what fits under a low hard limit (and says so), and its idle-connection check works on any
descriptor number (``select`` refuses those above 1023)."""

from __future__ import annotations

import logging
import os
import resource
import socket

import pytest

from s3seg import worker
from s3seg.leanpath import _closed_by_peer


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[int, int]]:
    """RLIMIT_NOFILE as a fake the test sets (the real one is this test process's, shared with xdist)."""
    state = {"now": (1024, 4096)}

    def get(which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return state["now"]

    def set_(which: int, value: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE and value[1] == state["now"][1] and value[0] <= value[1]
        state["now"] = value

    monkeypatch.setattr(resource, "getrlimit", get)
    monkeypatch.setattr(resource, "setrlimit", set_)
    return state


def test_the_soft_limit_is_raised_to_what_the_requests_in_flight_need(limits: dict[str, tuple[int, int]]) -> None:
    assert worker.in_flight_allowed(512) == 512
    soft, hard = limits["now"]
    assert soft == 512 * 3 + 128 and hard == 4096
    assert worker.in_flight_allowed(64) == 64 and limits["now"] == (soft, hard)  # never lowered


def test_under_a_low_hard_limit_fewer_are_kept_in_flight_with_a_warning_naming_the_fix(
    limits: dict[str, tuple[int, int]], caplog: pytest.LogCaptureFixture
) -> None:
    limits["now"] = (256, 1024)
    with caplog.at_level(logging.WARNING, logger="s3seg.worker"):
        allowed = worker.in_flight_allowed(512)
    assert allowed == (1024 - 128) // 3 and limits["now"] == (1024, 1024)
    assert "ulimit -n" in caplog.text and "open-file limit" in caplog.text


def test_an_unlimited_soft_limit_is_left_alone(limits: dict[str, tuple[int, int]]) -> None:
    limits["now"] = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    assert worker.in_flight_allowed(1024) == 1024 and limits["now"][0] == resource.RLIM_INFINITY


def test_an_idle_connection_on_a_descriptor_above_1023_is_judged_by_the_peer_not_by_its_number() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft <= 2000:
        pytest.skip(f"this process may not open descriptor 2000 (soft limit {soft})")
    ours, theirs = socket.socketpair()
    high = os.dup2(ours.fileno(), 2000)
    sock = socket.socket(fileno=high)
    ours.close()
    try:
        assert not _closed_by_peer(sock)  # open and quiet: kept
        theirs.close()
        assert _closed_by_peer(sock)  # the peer closed it: dropped
    finally:
        sock.close()
