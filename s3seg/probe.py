"""Which conditional headers a store enforces: the ``Capabilities`` a run moves by, and the probe that finds them.

Owns: ``Capabilities`` (per condition: server-enforced, or checked client-side with a HEAD), the
``conditional_writes`` policy (``server``: trust the store; ``client``: check everything; ``auto``: probe), and
the probe itself, with scratch objects under ``.s3seg-probe/`` that it deletes again (and sweeps when an
earlier probe was killed before it could).

Must not: call botocore (it probes through ``storage.Storage`` like any other caller), or move anything.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from s3seg.errors import StorageError, StoreRefusedError
from s3seg.objects import CopyConditions
from s3seg.s3errors import PRECONDITION_CODES, PREFLIGHT_REFUSALS, UNSUPPORTED_CODES
from s3seg.storage import Storage

log = logging.getLogger(__name__)

PROBE_PREFIX = ".s3seg-probe/"  # at the bucket's root; ``naming.INTERNAL_PREFIXES`` keeps plans away from it
_WRONG_ETAG = '"00000000000000000000000000000000"'
# The two probe copies: one of a version that is not the source's, one onto an existing destination.
_WRONG_SOURCE: CopyConditions = {"if_match": _WRONG_ETAG, "if_none_match": False, "storage_class": ""}
_NO_OVERWRITE: CopyConditions = {"if_match": None, "if_none_match": True, "storage_class": ""}


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """Which conditional headers the store enforces (True) or silently ignores (False)."""

    copy_if_match: bool  # CopyObject CopySourceIfMatch
    copy_if_none_match: bool  # CopyObject IfNoneMatch="*"
    delete_if_match: bool  # DeleteObject IfMatch
    batch_delete_etag: bool  # DeleteObjects per-object ETag

    @classmethod
    def trusted(cls) -> Capabilities:
        return cls(copy_if_match=True, copy_if_none_match=True, delete_if_match=True, batch_delete_etag=True)

    @classmethod
    def none(cls) -> Capabilities:
        return cls(copy_if_match=False, copy_if_none_match=False, delete_if_match=False, batch_delete_etag=False)

    def describe(self) -> str:
        def word(flag: bool) -> str:
            return "server-enforced" if flag else "client-checked"

        return (
            f"copy source version: {word(self.copy_if_match)}; no-overwrite on copy: "
            f"{word(self.copy_if_none_match)}; delete condition: "
            f"{'batched, server-enforced' if self.batch_delete_etag else word(self.delete_if_match)}"
        )


def capabilities(storage: Storage, bucket: str, mode: str) -> Capabilities:
    """The capabilities a run uses under ``conditional_writes`` ``mode`` (``server``, ``client`` or ``auto``).

    ``auto`` probes ``bucket``. A probe the store refuses the way it would refuse every move (``PREFLIGHT_REFUSALS``)
    stops the run before any move (``StoreRefusedError``, exit 4); any other failure falls back to checking every
    condition client-side, which is always safe.
    """
    if mode == "server":
        return Capabilities.trusted()
    if mode == "client":
        return Capabilities.none()
    try:
        return probe(storage, bucket)
    except StorageError as err:
        if err.code in PREFLIGHT_REFUSALS:  # the store refuses this identity or bucket outright: stop here
            raise StoreRefusedError(err, "the store refused the first request, before any move") from None
        log.warning("could not probe conditional-header support (%s); checking every condition client-side", err)
        return Capabilities.none()


def probe(storage: Storage, bucket: str, prefix: str = PROBE_PREFIX) -> Capabilities:
    """Find out which conditional headers this store enforces, with scratch objects under ``prefix``.

    Each check sends a request that an enforcing store must refuse with 412; a store that answers 200
    instead ignores the header, and s3seg then checks that condition itself (HEAD) before acting.
    Everything created here is deleted again.

    The ten requests go in four rounds of independent ones (a run's start-up pays 4 round trips, not 10: 0.3 s
    at 50 ms): (1) sweep old probes, create ``a`` and ``b``; (2) the two copies, which only read ``a`` and
    (ignored conditions) write ``c`` or overwrite ``b``; (3) the two conditional deletes, which a store ignoring
    the condition carries out, so they wait until nothing reads ``a`` or ``b`` any more; (4) the clean-up.
    """
    base = f"{prefix}{uuid.uuid4().hex}/"
    a, b, c = base + "a", base + "b", base + "c"
    created = [a, b]
    with ThreadPoolExecutor(3, thread_name_prefix="s3seg-probe") as pool:
        try:
            _together(
                pool,
                lambda: _sweep_stale_probes(storage, bucket, prefix),
                lambda: storage.put(bucket, a, b"s3seg probe a"),
                lambda: storage.put(bucket, b, b"s3seg probe b"),
            )
            created.append(c)
            copy_if_match, copy_if_none_match = _together(
                pool,
                lambda: _refused(lambda: storage.copy(bucket, a, bucket, c, **_WRONG_SOURCE)),
                lambda: _refused(lambda: storage.copy(bucket, a, bucket, b, **_NO_OVERWRITE)),
            )
            delete_if_match, errors = _together(
                pool,
                lambda: _refused(lambda: storage.delete(bucket, a, if_match=_WRONG_ETAG)),
                lambda: storage.delete_batch(bucket, [(b, _WRONG_ETAG)]),
            )
            batch_delete_etag = b in errors and errors[b].code in PRECONDITION_CODES
        finally:
            for key, fut in [(key, pool.submit(storage.delete, bucket, key)) for key in created]:
                try:
                    fut.result()
                except StorageError:
                    log.warning("could not delete probe object s3://%s/%s", bucket, key)
    return Capabilities(
        copy_if_match=copy_if_match,
        copy_if_none_match=copy_if_none_match,
        delete_if_match=delete_if_match,
        batch_delete_etag=batch_delete_etag,
    )


def _together(pool: ThreadPoolExecutor, *calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` at once; their results in order, or the first one's exception after all have ended."""
    futures = [pool.submit(call) for call in calls]
    wait(futures)
    return [f.result() for f in futures]


def _sweep_stale_probes(storage: Storage, bucket: str, prefix: str, max_age: timedelta = timedelta(hours=1)) -> None:
    """Delete scratch objects that earlier probes, killed mid-way, left under ``prefix`` (older than an hour:
    a probe takes seconds, so a younger one may belong to a run that is probing right now). Best effort."""
    cutoff = datetime.now(UTC) - max_age
    try:
        for page in storage.list_pages(bucket, prefix):
            stale = [o.key for o in page if datetime.fromisoformat(o.last_modified) < cutoff]
            for key in stale:
                storage.delete(bucket, key)
            if stale:
                log.info("removed %d stale probe objects under s3://%s/%s", len(stale), bucket, prefix)
    except StorageError as err:
        log.debug("could not sweep old probe objects under s3://%s/%s: %s", bucket, prefix, err)


def _refused(call: Callable[[], object]) -> bool:
    """True if the store refused ``call`` on its condition (enforced); False if it ignored or does not know it."""
    try:
        call()
    except StorageError as err:
        if err.code in PRECONDITION_CODES:
            return True
        if err.code in UNSUPPORTED_CODES:
            return False
        raise
    return False
