"""The lease protocol (``s3seg.lease``) against an in-memory store with conditional PutObject and a settable
clock: exclusion, stale takeover judged by the store's clock, lost answers, renewal, loss, release, and the
local-lock fallback for stores that ignore conditional writes. No server; each test runs in milliseconds."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from s3seg import lease as lease_mod
from s3seg.errors import LockedError, StorageError
from s3seg.lease import LEASE_KEY, Holder, Lease
from s3seg.objects import Stamped


@dataclass
class FakeStore:
    """PutObject / GetObject / DeleteObject with the conditions S3 enforces, and a clock of the store's own."""

    enforce: bool = True
    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    objects: dict[tuple[str, str], tuple[bytes, str, datetime]] = field(default_factory=dict)
    lose_next_put_answer: bool = False
    puts: int = 0

    def put(
        self, bucket: str, key: str, body: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        self.puts += 1
        current = self.objects.get((bucket, key))
        if self.enforce:
            if if_none_match and current is not None:
                raise StorageError("PutObject", bucket, key, "PreconditionFailed")
            if if_match is not None and (current is None or current[1] != if_match):
                raise StorageError("PutObject", bucket, key, "PreconditionFailed" if current else "NoSuchKey")
        etag = f'"{hashlib.md5(body + str(self.puts).encode()).hexdigest()}"'
        self.objects[(bucket, key)] = (body, etag, self.now)
        if self.lose_next_put_answer:
            self.lose_next_put_answer = False
            # The store applied it; the answer was lost; botocore's retry of the same request is refused.
            raise StorageError("PutObject", bucket, key, "PreconditionFailed", retried=True)
        return etag

    def read_small(self, bucket: str, key: str) -> Stamped | None:
        found = self.objects.get((bucket, key))
        if found is None:
            return None
        body, etag, modified = found
        return Stamped(body=body, etag=etag, last_modified=modified, server_now=self.now)

    def delete(self, bucket: str, key: str, *, if_match: str | None = None) -> None:
        current = self.objects.get((bucket, key))
        if self.enforce and if_match is not None and (current is None or current[1] != if_match):
            raise StorageError("DeleteObject", bucket, key, "PreconditionFailed")
        self.objects.pop((bucket, key), None)

    def holder_at(self, bucket: str) -> Holder | None:
        found = self.objects.get((bucket, LEASE_KEY))
        return Holder.parse(found[0]) if found else None


def make(store: FakeStore, buckets: list[str], *, command: str = "apply", wait: float = 0.0, ttl: float = 60) -> Lease:
    return Lease(store, buckets, Holder.me(command, f"/m/{command}.jsonl", ttl), scope="test", wait=wait)  # type: ignore[arg-type]


def foreign(store: FakeStore, bucket: str, *, host: str = "other-host", age: float = 0, ttl: float = 60) -> None:
    """A lease written by a run on another machine, last renewed ``age`` seconds ago by the store's clock."""
    body = json.dumps(
        {"format": 1, "token": "x" * 32, "host": host, "pid": 4242, "pid_start": "1", "boot_id": "b",
         "command": "rollback", "manifest": "/elsewhere/plan.jsonl", "since": "2026-01-01T00:00:00+00:00",
         "ttl": ttl, "executor": "local", "renewed": "2026-01-01T00:00:00+00:00"}
    ).encode()  # fmt: skip
    store.objects[(bucket, LEASE_KEY)] = (body, '"foreign"', store.now - timedelta(seconds=age))


def test_a_free_bucket_is_leased_and_released_leaving_nothing_behind() -> None:
    store = FakeStore()
    with make(store, ["b1", "b2"]) as lease:
        assert lease.guard() == ""
        assert store.holder_at("b1") is not None and store.holder_at("b2") is not None
    assert store.objects == {}


def test_a_second_run_on_a_leased_bucket_is_refused_naming_the_holder() -> None:
    store = FakeStore()
    with make(store, ["b1"], command="rollback"), pytest.raises(LockedError) as exc:
        make(store, ["b1"], command="run").acquire()
    message = str(exc.value)
    assert "rollback of /m/rollback.jsonl" in message and f"pid {os.getpid()}" in message
    assert exc.value.exit_code == 3


def test_runs_on_overlapping_bucket_sets_exclude_each_other_and_the_loser_holds_nothing() -> None:
    store = FakeStore()
    with make(store, ["a", "b"]):
        with pytest.raises(LockedError):
            make(store, ["b", "c"]).acquire()
        assert store.holder_at("c") is None  # all or nothing: the lease it got on c first was given back


def test_a_fresh_lease_from_another_host_is_respected() -> None:
    store = FakeStore()
    foreign(store, "b1", age=30, ttl=60)
    with pytest.raises(LockedError) as exc:
        make(store, ["b1"]).acquire()
    assert "other-host" in str(exc.value) and "expires 30s from now" in str(exc.value)
    assert store.holder_at("b1") is not None and store.holder_at("b1").host == "other-host"  # type: ignore[union-attr]


def test_a_lease_not_renewed_for_a_whole_ttl_by_the_stores_clock_is_taken_over() -> None:
    store = FakeStore()
    foreign(store, "b1", age=61, ttl=60)
    with make(store, ["b1"]) as lease:
        holder = store.holder_at("b1")
        assert holder is not None and holder.token == lease.holder.token


def test_a_dead_holder_on_this_host_is_taken_over_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lease_mod, "_SAME_HOST_GRACE", {"local": 0.0})
    store = FakeStore()
    dead = Holder.me("apply", "/m/x.jsonl", 60)
    dead = Holder(**{**{n: getattr(dead, n) for n in Holder.__slots__}, "pid_start": "not-this-process"})
    store.objects[("b1", LEASE_KEY)] = (dead.body(), '"dead"', store.now)  # renewed just now: fresh by the clock
    with make(store, ["b1"]) as lease:
        assert store.holder_at("b1").token == lease.holder.token  # type: ignore[union-attr]


def test_a_live_holder_on_this_host_is_not_taken_over() -> None:
    store = FakeStore()
    with make(store, ["b1"]), pytest.raises(LockedError):
        make(store, ["b1"]).acquire()  # same pid, same start time: alive


def test_a_lost_create_answer_is_recognised_as_our_own_lease() -> None:
    store = FakeStore()
    store.lose_next_put_answer = True
    with make(store, ["b1"]) as lease:
        assert store.holder_at("b1").token == lease.holder.token  # type: ignore[union-attr]
    assert store.objects == {}


def test_waiting_gives_up_after_lock_wait_seconds() -> None:
    store = FakeStore()
    foreign(store, "b1", age=0)
    with pytest.raises(LockedError):
        make(store, ["b1"], wait=0.3).acquire()


def test_renewal_keeps_the_lease_and_a_takeover_is_noticed_as_lost() -> None:
    store = FakeStore()
    lease = make(store, ["b1"], ttl=1.2)  # renews every 0.2 s
    lease.acquire()
    try:
        first = store.objects[("b1", LEASE_KEY)][1]
        deadline = datetime.now() + timedelta(seconds=5)
        while store.objects[("b1", LEASE_KEY)][1] == first and datetime.now() < deadline:
            pass
        assert store.objects[("b1", LEASE_KEY)][1] != first  # renewed: a new ETag
        assert lease.guard() == ""
        foreign(store, "b1", age=0)  # another run took it over (we were presumed dead)
        deadline = datetime.now() + timedelta(seconds=5)
        while not lease.guard() and datetime.now() < deadline:
            pass
        assert "lost the lease on s3://b1" in lease.guard() and "other-host" in lease.guard()
    finally:
        lease.release()
    assert store.holder_at("b1").host == "other-host"  # type: ignore[union-attr]  # release never deletes theirs


def test_a_lease_that_cannot_be_renewed_for_half_its_ttl_is_lost() -> None:
    store = FakeStore()
    lease = make(store, ["b1"], ttl=1.2)
    lease.acquire()
    try:

        def down(*args: object, **kw: object) -> str:
            raise StorageError("PutObject", "b1", LEASE_KEY, "ServiceUnavailable", retryable=True)

        store.put = down  # type: ignore[method-assign]
        deadline = datetime.now() + timedelta(seconds=5)
        while not lease.guard() and datetime.now() < deadline:
            pass
        assert "not been renewed" in lease.guard() or "could not renew" in lease.guard()
    finally:
        lease.release()


def test_a_store_ignoring_conditional_writes_falls_back_to_a_local_lock_with_a_loud_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("S3SEG_LOCK_DIR", str(tmp_path))
    store = FakeStore(enforce=False)
    with caplog.at_level(logging.WARNING, logger="s3seg.lease"), make(store, ["b1"]):
        assert "IGNORES CONDITIONAL WRITES" in caplog.text
        with pytest.raises(LockedError) as exc:  # the store would let it "create" the lease: the local lock does not
            make(store, ["b1"]).acquire()
        assert "local lock" in str(exc.value)
    with make(store, ["b1"]):  # released: free again
        pass


@dataclass
class CountingStore(FakeStore):
    reads: int = 0
    deletes: int = 0

    def read_small(self, bucket: str, key: str) -> Stamped | None:
        self.reads += 1
        return super().read_small(bucket, key)

    def delete(self, bucket: str, key: str, *, if_match: str | None = None) -> None:
        self.deletes += 1
        super().delete(bucket, key, if_match=if_match)


def test_where_deletes_are_conditional_release_is_one_request_and_never_deletes_another_runs_lease() -> None:
    store = CountingStore()
    lease = make(store, ["b1", "b2"])
    lease.delete_if_match = True
    lease.acquire()
    reads = store.reads
    lease.release()
    assert store.objects == {} and store.reads == reads and store.deletes == 2  # no read before each delete

    # A renewal applied whose answer was lost: the ETag we hold is stale; the refused delete falls back to reading
    # the lease, which is still ours, and deletes that version.
    lease = make(store, ["b1"])
    lease.delete_if_match = True
    lease.acquire()
    lease._held[0].etag = '"stale"'
    lease.release()
    assert store.objects == {}

    # Taken over meanwhile: the refused delete and the read that follows leave the other run's lease alone.
    lease = make(store, ["b1"])
    lease.delete_if_match = True
    lease.acquire()
    foreign(store, "b1", age=0)
    lease.release()
    assert store.holder_at("b1").host == "other-host"  # type: ignore[union-attr]


def test_where_deletes_may_ignore_if_match_release_reads_first_and_leaves_another_runs_lease() -> None:
    """Without the probe's word that DeleteObject If-Match is enforced, an unconditional-in-effect delete could
    remove a lease another run took over: release reads it and deletes only its own."""
    store = CountingStore(enforce=False)
    lease = make(store, ["b1"])
    lease.delete_if_match = False
    lease._held.append(lease_mod._Held("b1", '"ours"'))  # as if acquired (acquire falls back to a local lock here)
    foreign(store, "b1", age=0)
    lease.release()
    assert store.holder_at("b1").host == "other-host"  # type: ignore[union-attr]
    assert store.deletes == 0 and store.reads == 1
