"""Exclusion between s3seg runs: while a run mutates a bucket, it holds that bucket's lease object.

Why: two runs moving the same keys at the same time (a rollback racing a cron run, two cron hosts, two Dask
drivers) can each satisfy their own conditional deletes and together delete both copies of an object. No
per-object S3 condition makes "delete A only while B exists" atomic, so the fix is exclusion: at most one
s3seg run mutates a bucket at any moment, whichever machine it runs on.

The lease is the object ``.s3seg-lease`` at the root of every bucket a run writes to (sources and
destinations), holding JSON that names its holder (host, pid, command, manifest, since)::

    acquire   PutObject If-None-Match: *          only one creator wins (412/409 for the others)
    renew     PutObject If-Match: <our ETag>      every ttl/6 seconds; a new ETag each time
    take over PutObject If-Match: <stale ETag>    only when provably stale (below); one taker wins
    release   DeleteObject If-Match: <our ETag>   after re-reading that it is still ours

Provably stale: the store's own clock (the ``Date`` of a GET of the lease) is more than ``ttl`` past the
lease's ``LastModified``, i.e. its holder has not renewed for a whole ttl. A holder that cannot renew for
ttl/2 stops mutating by itself (``lost``), so by the time anyone may take over, the old holder has stopped.
Comparing two machines' clocks is never needed. On the holder's own host a holder whose process is gone
(same boot, pid not alive or reused) is stale at once, after a short grace for its workers to exit: a kill -9
and a re-run do not wait for the ttl.

Stores that ignore conditional PutObject (checked on every acquisition: a second create must be refused)
get a loud warning and a local ``flock`` instead, which excludes runs on this machine only.

Must not: decide anything about moves; it only answers "may this run mutate these buckets now".
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from s3seg.errors import LockedError, StorageError, StoreRefusedError
from s3seg.objects import Stamped
from s3seg.s3errors import NOT_FOUND_CODES, WRITE_CONFLICT_CODES
from s3seg.storage import Storage

log = logging.getLogger(__name__)

LEASE_KEY = ".s3seg-lease"
DEFAULT_TTL = 60.0
# Seconds for a dead holder's workers to notice and stop: pool workers poll their parent every 0.1 s; a local
# Dask cluster's workers check their driver before every object. A remote Dask cluster's workers live on
# other machines: such a holder is never taken over early.
_SAME_HOST_GRACE = {"local": 1.0, "dask-local": 5.0}


def default_ttl() -> float:
    """The lease ttl: ``S3SEG_LEASE_TTL`` seconds (tests shorten it), else 60."""
    try:
        return max(1.0, float(os.environ.get("S3SEG_LEASE_TTL", DEFAULT_TTL)))
    except ValueError:
        return DEFAULT_TTL


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22): tells a reused pid.

    "" for a process that is gone, including a zombie (killed, not yet reaped by its parent): it sends nothing.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "" if not fields or fields[0] in ("Z", "X") or len(fields) < 20 else fields[19]


@dataclass(frozen=True, slots=True, kw_only=True)
class Holder:
    """Who holds (or wants) a lease; the lease object's body."""

    token: str
    host: str
    pid: int
    pid_start: str
    boot_id: str
    command: str
    manifest: str
    since: str
    ttl: float
    executor: str = "local"

    @classmethod
    def me(cls, command: str, manifest: str, ttl: float, executor: str = "local") -> Holder:
        pid = os.getpid()
        return cls(
            token=uuid.uuid4().hex, host=socket.gethostname(), pid=pid, pid_start=_start_time(pid),
            boot_id=_boot_id(), command=command, manifest=manifest,
            since=datetime.now(UTC).isoformat(timespec="seconds"), ttl=ttl, executor=executor,
        )  # fmt: skip

    def body(self) -> bytes:
        data = {"format": 1, "renewed": datetime.now(UTC).isoformat(timespec="seconds")}
        data.update({name: getattr(self, name) for name in self.__slots__})
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def parse(cls, raw: bytes) -> Holder | None:
        try:
            data = json.loads(raw)
            return cls(**{name: data[name] for name in cls.__slots__})
        except (ValueError, TypeError, KeyError, RecursionError):
            return None

    def describe(self) -> str:
        return (
            f"{self.command} of {self.manifest or '(no manifest)'} by pid {self.pid} on {self.host}, since {self.since}"
        )

    def dead_here(self) -> bool:
        """True if this holder ran on this machine, this boot, and its process is gone (or its pid reused)."""
        if self.executor not in _SAME_HOST_GRACE or self.host != socket.gethostname() or not self.boot_id:
            return False
        if self.boot_id != _boot_id():
            return False
        return _start_time(self.pid) != self.pid_start


@dataclass(slots=True)
class _Held:
    bucket: str
    etag: str
    local_lock: IO[bytes] | None = None  # only where the store ignores conditional writes (``_check_enforced``)


@dataclass(slots=True)
class Lease:
    """The leases of one run over a set of buckets: ``acquire`` them all or none, keep them renewed, release.

    ``lost`` is non-empty once the run must stop mutating (a renewal was refused, or none succeeded for
    ttl/2); the executor's guard reads it between steps.
    """

    storage: Storage
    buckets: list[str]
    holder: Holder
    scope: str = ""  # the endpoint, for the local fallback lock's name
    wait: float = 0.0  # seconds to wait for a held lease before refusing
    retries: int = 5  # retries of a transient failure (throttling, 5xx, transport) while acquiring
    lost: str = ""
    # The store enforces If-Match on DeleteObject (the run's probe found so): release deletes the version it
    # last wrote without reading it first, one round trip instead of two (a refusal falls back to the read).
    delete_if_match: bool = False
    _held: list[_Held] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _last_ok: float = 0.0

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- acquire -------------------------------------------------------------------------------------------
    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        started = time.monotonic()
        bucket = ""
        try:
            for bucket in sorted(set(self.buckets)):  # one global order: two waiting runs cannot deadlock
                self._held.append(self._acquire_retrying(bucket, deadline))
        except StorageError as err:  # the first request of the run: nothing has been changed yet
            self.release()
            raise StoreRefusedError(err, f"taking the lease s3://{bucket}/{LEASE_KEY} before any move") from None
        except BaseException:
            self.release()
            raise
        self._last_ok = started
        self._thread = threading.Thread(target=self._renew_loop, name="s3seg-lease", daemon=True)
        self._thread.start()

    def _acquire_retrying(self, bucket: str, deadline: float) -> _Held:
        """``_acquire_one``, outlasting a throttling storm or a short outage as the moves' own retries would.

        Safe to repeat: a create whose answer was lost is recognised as ours by its token on the next try.
        """
        attempt = 0
        while True:
            try:
                return self._acquire_one(bucket, deadline)
            except StorageError as err:
                if not err.retryable or attempt >= self.retries:
                    raise
                log.info("taking the lease on s3://%s: %s; retrying", bucket, err)
            time.sleep(min(20.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0))
            attempt += 1

    def _acquire_one(self, bucket: str, deadline: float) -> _Held:
        announced = False
        while True:
            try:
                etag = self.storage.put(bucket, LEASE_KEY, self.holder.body(), if_none_match=True)
                return self._check_enforced(bucket, etag)
            except StorageError as err:
                if err.code not in WRITE_CONFLICT_CODES:
                    raise
            current = self.storage.read_small(bucket, LEASE_KEY)
            if current is None:
                continue  # released between our two requests: try again
            other = Holder.parse(current.body)
            if other is not None and other.token == self.holder.token:
                return _Held(bucket, current.etag)  # our own create, whose answer was lost and retried
            taken = self._take_over_if_stale(bucket, current, other)
            if taken is not None:
                return taken
            if time.monotonic() >= deadline:
                raise _refusal(bucket, other, current)
            if not announced:
                announced = True
                log.warning(
                    "waiting up to %.0fs for the lease on s3://%s (held: %s)",
                    deadline - time.monotonic(), bucket, other.describe() if other else "unreadable lease",
                )  # fmt: skip
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    def _take_over_if_stale(self, bucket: str, current: Stamped, other: Holder | None) -> _Held | None:
        age = (current.server_now - current.last_modified).total_seconds()
        ttl = other.ttl if other is not None else self.holder.ttl
        if other is not None and other.dead_here():
            why = f"its process is gone ({other.describe()})"
            time.sleep(_SAME_HOST_GRACE[other.executor])
        elif age > ttl:
            why = f"not renewed for {age:.0f}s, ttl {ttl:.0f}s ({other.describe() if other else 'unreadable'})"
        else:
            return None
        try:
            etag = self.storage.put(bucket, LEASE_KEY, self.holder.body(), if_match=current.etag)
        except StorageError as err:
            if err.code in WRITE_CONFLICT_CODES or err.code in NOT_FOUND_CODES:
                return None  # someone renewed, released or took it first: look again
            raise
        log.warning("took over the stale lease on s3://%s: %s", bucket, why)
        return self._check_enforced(bucket, etag)

    def _check_enforced(self, bucket: str, etag: str) -> _Held:
        """A store that ignores If-None-Match would let anyone "create" our lease again: find out now."""
        try:
            again = self.storage.put(bucket, LEASE_KEY, self.holder.body(), if_none_match=True)
        except StorageError as err:
            if err.code in WRITE_CONFLICT_CODES:
                return _Held(bucket, etag)
            raise
        log.warning(
            "THIS STORE IGNORES CONDITIONAL WRITES (If-None-Match on PutObject): the lease on s3://%s cannot "
            "exclude runs on other machines. Only runs on this machine are excluded (a local lock). Never run "
            "s3seg on the same buckets from two machines against this store.",
            bucket,
        )
        return _Held(bucket, again, _local_lock(self.scope, bucket, self.wait, self.holder))

    # -- renew ---------------------------------------------------------------------------------------------
    def _renew_loop(self) -> None:
        interval = self.holder.ttl / 6
        while not self._stop.wait(interval):
            if self.lost:
                return
            attempt_start = time.monotonic()
            try:
                for held in self._held:
                    self._renew(held)
            except _Lost as exc:
                self._lose(str(exc))
                return
            except StorageError as err:
                if time.monotonic() - self._last_ok > self.holder.ttl / 2:
                    self._lose(f"could not renew the lease for {time.monotonic() - self._last_ok:.0f}s ({err})")
                    return
                log.warning("could not renew the lease (%s); retrying", err)
                continue
            self._last_ok = attempt_start

    def _renew(self, held: _Held) -> None:
        try:
            held.etag = self.storage.put(held.bucket, LEASE_KEY, self.holder.body(), if_match=held.etag)
            return
        except StorageError as err:
            if err.code not in WRITE_CONFLICT_CODES and err.code not in NOT_FOUND_CODES:
                raise
        current = self.storage.read_small(held.bucket, LEASE_KEY)
        other = Holder.parse(current.body) if current is not None else None
        if current is not None and other is not None and other.token == self.holder.token:
            held.etag = current.etag  # our renewal applied; its answer was lost and the retry refused
            return
        raise _Lost(
            f"lost the lease on s3://{held.bucket}: "
            + (f"taken over by {other.describe()}" if other else "it was deleted")
            + "; stopped at once, re-run to resume"
        )

    def _lose(self, why: str) -> None:
        self.lost = why
        log.error("%s", why)

    def guard(self) -> str:
        """The executor's question between steps: non-empty means stop mutating now."""
        if not self.lost and self._thread is not None and time.monotonic() - self._last_ok > self.holder.ttl / 2:
            self._lose(f"the lease has not been renewed for {time.monotonic() - self._last_ok:.0f}s")
        return self.lost

    # -- release -------------------------------------------------------------------------------------------
    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        while self._held:
            held = self._held.pop()
            try:
                if not self.delete_if_match or not self._delete_as_written(held):
                    current = self.storage.read_small(held.bucket, LEASE_KEY)
                    other = Holder.parse(current.body) if current is not None else None
                    if current is not None and other is not None and other.token == self.holder.token:
                        self.storage.delete(held.bucket, LEASE_KEY, if_match=current.etag)
            except StorageError as err:
                log.warning(
                    "could not release the lease on s3://%s (%s): it expires %.0fs after its last renewal",
                    held.bucket, err, self.holder.ttl,
                )  # fmt: skip
            finally:
                if held.local_lock is not None:
                    held.local_lock.close()

    def _delete_as_written(self, held: _Held) -> bool:
        """Delete the lease if it is still the version we last wrote (a store enforcing If-Match deletes nothing
        else). False when it is not: a renewal whose answer was lost, or someone else's now; the caller reads it."""
        try:
            self.storage.delete(held.bucket, LEASE_KEY, if_match=held.etag)
        except StorageError as err:
            if err.code in WRITE_CONFLICT_CODES or err.code in NOT_FOUND_CODES:
                return False
            raise
        return True


class _Lost(Exception):
    pass


def _refusal(bucket: str, other: Holder | None, current: Stamped) -> LockedError:
    age = (current.server_now - current.last_modified).total_seconds()
    who = other.describe() if other else "a lease object s3seg cannot read"
    ttl = other.ttl if other else DEFAULT_TTL
    return LockedError(
        f"s3://{bucket}/{LEASE_KEY}",
        None,
        f"another s3seg run holds this bucket: {who}; last renewed {age:.0f}s ago. Wait for it to finish "
        f"(pass --lock-wait SECONDS to wait), or, if that run died on another machine, its lease expires "
        f"{max(0.0, ttl - age):.0f}s from now",
    )


def _local_lock(scope: str, bucket: str, wait: float, holder: Holder) -> IO[bytes]:
    """The fallback for stores without conditional writes: an flock per (endpoint, bucket) on this machine."""
    folder = os.environ.get("S3SEG_LOCK_DIR") or os.path.join(tempfile.gettempdir(), "s3seg-locks")
    os.makedirs(folder, exist_ok=True)
    _share(folder)
    name = hashlib.sha256(f"{scope}\0{bucket}".encode()).hexdigest()[:32] + ".lock"
    path = os.path.join(folder, name)
    f = open(path, "a+b")  # noqa: SIM115 - held for the lease's lifetime
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                f.close()
                raise LockedError(
                    path, None, f"another s3seg run on this machine holds s3://{bucket} (local lock; the store "
                    "ignores conditional writes); wait for it, or pass --lock-wait SECONDS",
                ) from None  # fmt: skip
            time.sleep(0.2)
    f.truncate(0)
    f.write(holder.body())
    f.flush()
    return f


def _share(folder: str) -> None:
    """The lock folder is shared by every user of this machine (sticky, like /tmp)."""
    with contextlib.suppress(OSError):  # someone else's folder: already shared, or flock will say why
        os.chmod(folder, 0o1777)


def buckets_of(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """Every bucket named in (source bucket, destination bucket) pairs, in one sorted list."""
    out: set[str] = set()
    for a, b in pairs:
        out.add(a)
        out.add(b)
    return sorted(out)


__all__ = ["DEFAULT_TTL", "LEASE_KEY", "Holder", "Lease", "buckets_of", "default_ttl"]
