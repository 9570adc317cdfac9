"""Listing + naming -> a manifest. Read-only on S3.

Streams the source listing page by page (``n_keys`` per page, at most ``n_loops`` pages unless lifted)
straight into a ``ManifestWriter``: nothing per key is kept in memory except a bounded per-folder histogram.

Rejects unsafe plans before a manifest exists: a destination equal to its source, a destination key over
1,024 bytes, and two sources mapping to one destination. The last is proven impossible cheaply in the common
case (destination folders that are not prefixes of one another cannot collide, because relative paths are
unique); only when folders nest does an exact check run, in a temporary SQLite index (flat memory).

Must not: write to S3.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from s3seg import __version__, advice
from s3seg.config import Settings
from s3seg.errors import PlanError, StorageError, UsageError
from s3seg.journal import journal_path_for
from s3seg.listing import list_pages
from s3seg.manifest import ManifestWriter, Move, read_lines
from s3seg.naming import MAX_KEY_BYTES, Filters, Reason, Rule, Skip, destination, skip_reason
from s3seg.objects import Listed
from s3seg.storage import Storage

log = logging.getLogger(__name__)

MAX_FOLDERS_TRACKED = 100_000  # histogram size cap; beyond it folders are counted as "(other folders)"
MATCH_TIME_LIMIT = 2.0  # seconds one match_pattern search may take on one file name (normal: microseconds)
_WATCH_INTERVAL = 0.25  # how often the watchdog looks


class _MatchTimeout(Exception):
    """Raised by the watchdog's signal handler inside a runaway regex search (``re`` checks for signals)."""


class _RegexWatchdog:
    """Bounds each match_pattern search: a pattern that backtracks catastrophically (``^(a+)+$``) must not hang
    a cron job on one file name.

    The stdlib ``re`` cannot be given a timeout, but its matcher checks for pending signals as it runs, so a
    SIGALRM handler that raises interrupts it. One interval timer runs for the whole plan; per key the planner
    only records which key it is naming and since when (two assignments), and the handler raises only when
    that one key has taken longer than ``limit``. Signals reach the main thread only, and ``setitimer`` is
    POSIX only: elsewhere (a plan started from another thread, Windows) searches are not bounded.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.key: str | None = None
        self.started = 0.0

    def _on_alarm(self, signum: int, frame: object) -> None:
        if self.key is not None and time.monotonic() - self.started > self.limit:
            raise _MatchTimeout(self.key)

    @contextlib.contextmanager
    def armed(self, enabled: bool) -> Iterator[_RegexWatchdog]:
        usable = enabled and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        if not usable:
            yield self
            return
        previous = signal.signal(signal.SIGALRM, self._on_alarm)
        signal.setitimer(signal.ITIMER_REAL, _WATCH_INTERVAL, _WATCH_INTERVAL)
        try:
            yield self
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


@dataclass(slots=True)
class PlanReport:
    manifest_path: str
    sha256: str = ""
    listed: int = 0
    planned: int = 0
    pages: int = 0
    cap_hit: bool = False
    reasons: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    folders: Counter[str] = field(default_factory=Counter)  # "s3://bucket/folder" -> planned moves
    elapsed: float = 0.0
    warnings: list[str] = field(default_factory=list)  # s3seg.advice: a plan that does nothing or the wrong thing

    @property
    def to_error(self) -> int:
        return self.reasons[Reason.NO_MATCH] + self.reasons[Reason.BAD_DATE]

    @property
    def outcome(self) -> str:
        """``nothing-listed`` | ``nothing-planned`` | ``all-to-error`` | ``planned`` (``s3seg.advice``)."""
        return advice.outcome(self.listed, self.planned, self.to_error)


def plan(
    settings: Settings,
    storage: Storage,
    output: str,
    *,
    now: datetime,
    override: datetime | None = None,
    unlimited: bool = False,
    endpoint: str | None = None,
    listing: Iterable[list[Listed]] | None = None,
    listed_from: str | None = None,
    preflight: Callable[[], None] = lambda: None,
) -> PlanReport:
    """List ``s3_dir`` and write the manifest of moves to ``output``; return what was planned.

    ``listing`` replaces the listing of ``s3_dir`` (pages of objects from an S3 Inventory, say; ``listed_from``
    names it in the manifest header). It has no delimiter, so keys below sub-folders are skipped by the same
    direct-child rule (``naming.skip_reason``) unless ``recursive`` is on. ``preflight`` runs once the manifest
    is open and before the first listing request (a quick reachability check; it raises to stop the plan).
    """
    started = time.monotonic()
    rule = Rule.from_settings(settings, now=now, override=override)
    header: dict[str, Any] = {
        "tool": "s3seg",
        "version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "now": now.isoformat(),
        "datetime": override.isoformat() if override else None,
        "fallback_date": rule.fallback.isoformat(),
        "endpoint": endpoint,
        "source": settings.source.url,
        "unlimited": unlimited,
        "listing": listed_from or "ListObjectsV2",
        "config": settings.to_dict(),
    }
    report = PlanReport(manifest_path=output)
    journal = journal_path_for(output)
    if os.path.exists(journal):
        # Replacing that manifest would orphan its journal: rollback needs both, and apply would refuse the pair.
        raise UsageError(
            f"{output} has a journal ({journal}): apply or rollback of that manifest still need it; "
            "write the new plan to another manifest path"
        )
    try:
        writer = ManifestWriter(output, header)
    except OSError as exc:  # before any S3 request: a bad -o fails fast and cleanly
        raise UsageError(f"cannot write the manifest {output}: {exc.strerror or exc}") from None
    folders_by_bucket: dict[str, set[str]] = {}
    watchdog = _RegexWatchdog(MATCH_TIME_LIMIT)
    try:
        preflight()
        with watchdog.armed(rule.pattern is not None):
            _plan_pages(settings, storage, writer, report, rule, folders_by_bucket, watchdog, unlimited, listing)
        report.planned = writer.count
        if not _folders_prefix_free(folders_by_bucket):
            writer.flush()
            _exact_collision_check(writer.partial_path)
    except _MatchTimeout as exc:
        writer.abort()
        raise PlanError(
            f"<match_pattern> {settings.match_pattern!r} took more than {MATCH_TIME_LIMIT:g} s on the file name of "
            f"s3://{settings.source.bucket}/{exc.args[0]}: the pattern backtracks catastrophically (nested "
            "quantifiers such as (a+)+); rewrite it without nested repetition"
        ) from None
    except BaseException:
        writer.abort()
        raise
    try:
        report.sha256 = writer.close()
    except OSError as exc:  # e.g. -o names a directory: nothing is left behind
        writer.abort()
        raise UsageError(f"cannot write the manifest {output}: {exc.strerror or exc}") from None
    report.elapsed = time.monotonic() - started
    _advise(settings, storage, report, rule, override, own_listing=listing is None)
    if report.cap_hit:
        log.warning(
            "stopped after n_loops=%d pages of n_keys=%d: more objects remain; plan again after applying, "
            "or pass --all to lift the cap",
            settings.n_loops,
            settings.n_keys,
        )
    return report


def _advise(
    settings: Settings,
    storage: Storage,
    report: PlanReport,
    rule: Rule,
    override: datetime | None,
    *,
    own_listing: bool,
) -> None:
    """Attach (and log) the warnings of ``s3seg.advice``. When nothing was planned from a listing with a
    delimiter, one more listing page without it tells whether files wait below sub-folders (``recursive``)."""
    nested, sample = 0, ""
    if not report.planned and not settings.recursive and own_listing:
        src = settings.source
        try:
            page = next(storage.list_pages(src.bucket, src.prefix, page_size=1000), [])
        except StorageError:
            page = []
        below = [o.key for o in page if skip_reason(src.bucket, o.key, rule) is Skip.NOT_DIRECT_CHILD]
        nested, sample = len(below), (f"s3://{src.bucket}/{below[0]}" if below else "")
    report.warnings = advice.plan_warnings(
        settings, listed=report.listed, planned=report.planned, reasons=report.reasons, skipped=report.skipped,
        nested=nested, nested_sample=sample, override=override,
    )  # fmt: skip
    for text in report.warnings:
        log.warning("%s", text)


def _plan_pages(
    settings: Settings,
    storage: Storage,
    writer: ManifestWriter,
    report: PlanReport,
    rule: Rule,
    folders_by_bucket: dict[str, set[str]],
    watchdog: _RegexWatchdog,
    unlimited: bool,
    listing: Iterable[list[Listed]] | None,
) -> None:
    """The listing loop of ``plan``: every listed key -> skipped, or one manifest entry."""
    pages = listing
    if pages is None:
        pages = list_pages(
            storage,
            settings.source.bucket,
            settings.source.prefix,
            delimiter="" if settings.recursive else "/",
            page_size=settings.n_keys,
            workers=settings.list_workers,
        )
    src_bucket = settings.source.bucket
    # Only pages that plan a move count against n_loops: with date folders inside a recursive s3_dir, pages
    # of already segregated keys (which sort before new files) would otherwise use up the cap in every run,
    # and no run would ever plan anything.
    planned_pages = 0
    filters, now_utc, cut = Filters.from_settings(settings), datetime.now(UTC), len(settings.source.prefix)
    for page in pages:
        if not unlimited and settings.n_loops and planned_pages >= settings.n_loops:
            report.cap_hit = True
            break
        report.pages += 1
        before = writer.count
        for obj in page:
            report.listed += 1
            skip = skip_reason(src_bucket, obj.key, rule)
            if skip is None and filters:
                skip = filters.skip(obj.key[cut:], obj.last_modified, now_utc)
            if skip is not None:
                report.skipped[skip] += 1
                continue
            watchdog.key, watchdog.started = obj.key, time.monotonic()
            target = destination(obj.key, rule)
            watchdog.key = None
            if target.bucket == src_bucket and target.key == obj.key:
                raise PlanError(
                    f"s3://{src_bucket}/{obj.key} would move onto itself; check s3_segregated_dir / s3_error_dir"
                )
            if len(target.key.encode()) > MAX_KEY_BYTES:
                raise PlanError(
                    f"destination key for s3://{src_bucket}/{obj.key} would be "
                    f"{len(target.key.encode())} bytes, over S3's {MAX_KEY_BYTES}-byte limit; "
                    "shorten s3_segregated_dir or s3_error_dir"
                )
            writer.add(
                Move(
                    id=writer.count + 1,
                    src_bucket=src_bucket,
                    src_key=obj.key,
                    dst_bucket=target.bucket,
                    dst_key=target.key,
                    size=obj.size,
                    etag=obj.etag,
                    storage_class=obj.storage_class,
                    last_modified=obj.last_modified,
                    reason=target.reason,
                    detail=target.detail,
                )
            )
            report.reasons[target.reason] += 1
            folders = folders_by_bucket.setdefault(target.bucket, set())
            folders.add(target.folder)
            name = f"s3://{target.bucket}/{target.folder}"
            if name in report.folders or len(report.folders) < MAX_FOLDERS_TRACKED:
                report.folders[name] += 1
            else:
                report.folders["(other folders)"] += 1
        if writer.count > before:
            planned_pages += 1


def _folders_prefix_free(folders_by_bucket: dict[str, set[str]]) -> bool:
    """True if no destination folder is a proper prefix of another in the same bucket.

    Then two moves can only share a destination key if they share the folder and the relative path, i.e.
    are the same source key. In sorted order a prefix is always directly followed by a key it prefixes.
    """
    for folders in folders_by_bucket.values():
        ordered = sorted(folders)
        for a, b in itertools.pairwise(ordered):
            if b.startswith(a):
                return False
    return True


def _exact_collision_check(manifest_tmp: str) -> None:
    """Find two moves with the same destination using an on-disk SQLite index (flat memory)."""
    log.info("destination folders nest: running the exact collision check")
    fd, db_path = tempfile.mkstemp(suffix=".sqlite", prefix="s3seg-collisions-")
    os.close(fd)
    try:
        db = sqlite3.connect(db_path)
        db.execute("CREATE TABLE d (bucket TEXT, key TEXT, id INTEGER, PRIMARY KEY (bucket, key))")
        lines = read_lines(manifest_tmp, partial=True)  # plain, or gzip flushed but not finished
        next(lines)
        for raw in lines:
            e = json.loads(raw)
            try:
                db.execute("INSERT INTO d VALUES (?, ?, ?)", (e["dst_bucket"], e["dst_key"], e["id"]))
            except sqlite3.IntegrityError:
                (other,) = db.execute(
                    "SELECT id FROM d WHERE bucket = ? AND key = ?", (e["dst_bucket"], e["dst_key"])
                ).fetchone()
                raise PlanError(
                    f"two sources map to one destination s3://{e['dst_bucket']}/{e['dst_key']} "
                    f"(entries {other} and {e['id']}, the second from {e['src_key']!r}); "
                    "make the s3_segregated_dir template end with '/' so folders cannot nest"
                ) from None
        db.close()
    finally:
        os.unlink(db_path)


__all__ = ["PlanReport", "plan"]
