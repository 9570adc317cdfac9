"""The Python API: one function per verb (plan, apply, rollback, status, run). The CLI is derived from these.

Each verb validates everything it can before any S3 client exists (config, manifest, journal, lock), so bad
input fails with a clear error and no S3 request.

Must not: print, parse argv, or call ``sys.exit`` (``cli`` owns user output and exit codes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from s3seg import inventory as _inventory
from s3seg import verify as _verify
from s3seg.config import Settings
from s3seg.errors import ManifestError, StorageError, StoreRefusedError, UsageError
from s3seg.executor import APPLY, ROLLBACK, Backend, InlineBackend, ProcessBackend, RunReport, execute
from s3seg.journal import (
    APPLY_CONFLICTS,
    APPLY_DONE,
    APPLY_FAILURES,
    Journal,
    JournalState,
    Status,
    journal_path_for,
    replay,
)
from s3seg.lease import LEASE_KEY, Holder, Lease, buckets_of, default_ttl
from s3seg.manifest import Manifest, ManifestInfo
from s3seg.moves import Options, Task
from s3seg.planner import PlanReport
from s3seg.planner import plan as _plan
from s3seg.probe import Capabilities, capabilities
from s3seg.s3errors import PREFLIGHT_REFUSALS, UNREACHABLE
from s3seg.storage import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    ClientSpec,
    Storage,
    configured_endpoint,
    make_client,
    make_storage,
)
from s3seg.worker import WorkerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where to send S3 requests: explicit flags win over the config / manifest, then the environment."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    lean_http: bool = True  # per-object calls on the lean path for explicit endpoints (False: botocore only)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecOptions:
    """Knobs for apply / rollback / run; ``None`` means "as the manifest's config says"."""

    journal: str | None = None
    processes: int | None = None  # 0 runs everything in this process (no pool)
    threads: int | None = None
    batch_size: int | None = None
    concurrency: str | None = None  # adaptive | fixed
    max_requests_per_second: float | None = None  # for the whole run; each process gets its share
    conditional_writes: str | None = None
    dry_run: bool = False
    log_level: int = logging.INFO
    executor: str = "local"  # local (process pool) | dask
    scheduler: str | None = None  # Dask scheduler address; None with executor "dask" starts a LocalCluster
    lock_wait: float = 0.0  # seconds to wait for another run's lease on the same buckets before refusing


@dataclass(slots=True)
class ExecResult:
    """What apply or rollback did, plus the journal-wide picture after it."""

    direction: str
    manifest: str
    journal: str
    entries: int
    todo: int
    report: RunReport
    totals: dict[str, int] = field(default_factory=dict)  # journal-wide counts per status label
    mode: str = ""  # which conditional checks ran where (server / client)
    dry_run_lines: list[str] = field(default_factory=list)
    dry_run: bool = False  # a --dry-run: nothing was sent (``dry_run_lines`` may be empty: nothing left to do)


def resolve_endpoint(
    explicit: str | None, configured: str | None, *, profile: str | None = None, region: str | None = None
) -> str | None:
    """The endpoint S3 requests go to, resolved once (``None``: AWS's own): the flag, then the config element,
    then whatever botocore itself would use (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, the profile's
    ``endpoint_url`` or ``services`` section); recorded in the manifest so apply can hold every client to it."""
    return configured_endpoint(ClientSpec(endpoint_url=explicit or configured or None, profile=profile, region=region))


def client_spec(settings: dict[str, Any], target: Target, *, threads: int = 10) -> ClientSpec:
    region = target.region or settings.get("region")
    profile = target.profile or settings.get("profile")
    return ClientSpec(
        endpoint_url=resolve_endpoint(
            target.endpoint_url, settings.get("endpoint_url"), profile=profile, region=region
        ),
        region=region,
        profile=profile,
        max_pool_connections=max(threads + 2, 10),
        max_attempts=int(settings.get("max_attempts", 8)),
        retry_mode=str(settings.get("retry_mode", "standard")),
        connect_timeout=float(settings.get("connect_timeout", CONNECT_TIMEOUT)),
        read_timeout=float(settings.get("read_timeout", READ_TIMEOUT)),
        lean_http=target.lean_http,
    )


# -- plan ---------------------------------------------------------------------------------------------------
def plan(
    settings: Settings,
    output: str,
    *,
    now: datetime,
    override: datetime | None = None,
    unlimited: bool = False,
    target: Target = Target(),
    inventory: str | None = None,
) -> PlanReport:
    """List ``s3_dir`` once and write the manifest of moves to ``output``. Read-only on S3.

    With ``inventory`` (``s3://BUCKET/PATH/manifest.json`` of a CSV, Parquet or ORC S3 Inventory), plan from that
    report instead of listing.
    """
    if inventory:
        _inventory.parse_url(inventory)  # a malformed URL fails before any S3 client exists
    spec = client_spec(settings.to_dict(), target, threads=settings.list_workers)
    storage = Storage(make_client(spec))
    listing = None
    # A plan only reads: any S3 error here (no bucket, access denied, bad credentials, unreachable) happened
    # before anything changed, and gets its own exit code rather than "some items failed".
    try:
        if inventory:
            inv = _inventory.load(storage, inventory)
            source = settings.source
            listing = _inventory.pages(
                storage, inv, bucket=source.bucket, prefix=source.prefix, page_size=settings.n_keys
            )
        return _plan(
            settings, storage, output, now=now, override=override, unlimited=unlimited, endpoint=spec.endpoint_url,
            listing=listing, listed_from=inventory,
            preflight=lambda: preflight(spec, settings.source.bucket, None if inventory else settings.source.prefix),
        )  # fmt: skip
    except StorageError as err:
        raise StoreRefusedError(err, f"plan of {settings.source.url} stopped") from None


def preflight(spec: ClientSpec, bucket: str, prefix: str | None = None) -> None:
    """One cheap read with at most 2 attempts before the first real request of a run.

    ``prefix`` given (plan, run): a one-key listing of it, which the plan needs permission for anyway; None
    (apply, rollback): a read of the bucket's lease object, which the lease reads next anyway. A store that
    refuses these credentials or this bucket answers at once; an endpoint that accepts connections and never
    answers costs about 2 x ``read_timeout`` here instead of ``max_attempts`` x ``read_timeout`` per request later
    (a run that seems to hang). Raises ``StorageError`` (the message names the endpoint) for an unreachable
    store and for ``PREFLIGHT_REFUSALS``; any other refusal is left to the real request (a prefix-scoped policy
    may refuse this read yet allow the run).
    """
    quick = dataclasses.replace(spec, max_attempts=min(spec.max_attempts, 2), lean_http=False)
    storage = Storage(make_client(quick))
    try:
        if prefix is None:
            storage.read_small(bucket, LEASE_KEY)
        else:
            next(storage.list_pages(bucket, prefix, page_size=1), None)
    except StorageError as err:
        if err.code in UNREACHABLE:
            where = spec.endpoint_url or "AWS S3"
            err.args = (
                f"{err} (endpoint {where}; connect_timeout {spec.connect_timeout:g} s, read_timeout "
                f"{spec.read_timeout:g} s)",
            )
            raise
        if err.code in PREFLIGHT_REFUSALS or prefix is not None:
            raise


# -- apply / rollback -----------------------------------------------------------------------------------------
def _check_target(info: ManifestInfo, manifest: str, target: Target) -> str | None:
    """The endpoint to use: the manifest's. Refused (exit 3, before any S3 client exists) when this run points
    elsewhere: an ``--endpoint-url`` flag, or an endpoint botocore would pick up from the environment or the
    AWS config file (``AWS_ENDPOINT_URL[_S3]``, the profile's ``endpoint_url`` / ``services``). Nothing
    pointing anywhere means the recorded endpoint is used; clients are then built with it explicitly."""
    planned = info.header.get("endpoint") or None
    config: dict[str, Any] = info.header.get("config") or {}
    profile = target.profile or config.get("profile")
    if target.endpoint_url:
        asked: str | None = target.endpoint_url
        source = "--endpoint-url"
    else:
        try:
            asked = configured_endpoint(ClientSpec(profile=profile, region=target.region or config.get("region")))
        except StorageError as err:
            raise StoreRefusedError(err, "could not resolve the S3 endpoint") from None
        source = "the environment / AWS config file (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or endpoint_url in " + (
            f"profile {profile!r})" if profile else "the default profile)"
        )
    if asked is not None and asked.rstrip("/") != (planned or "").rstrip("/"):
        fix = f"--endpoint-url {planned}" if planned else "unset it (or set AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true)"
        raise ManifestError(
            manifest,
            1,
            f"this manifest was planned against endpoint {planned or 'AWS (default)'!r}, but {source} points this "
            f"run at {asked!r}; nothing was sent. To apply it where it was planned, {fix}; to move objects on "
            f"{asked!r}, plan again against it",
        )
    return planned


def _pending_apply(manifest: Manifest, state: JournalState) -> Iterator[Task]:
    for m in manifest.moves(skip=state.mask(APPLY_DONE)):  # done entries are hashed, never parsed
        extra = state.copy_etags.get(m.id)
        yield Task(
            m.id, m.src_bucket, m.src_key, m.dst_bucket, m.dst_key, m.etag, m.size, m.storage_class,
            same_etags=(extra,) if extra else (), resumed=state.dst_may_be_ours(m.id),
        )  # fmt: skip


def _pending_rollback(manifest: Manifest, state: JournalState) -> Iterator[Task]:
    """The inverse of every move this manifest's runs changed something for (``JournalState.rollback_wanted``):
    destination -> source, allowed only if the destination is still what we put there."""
    wanted = state.rollback_mask()
    for m in manifest.moves(skip=wanted.translate(_INVERT)):  # entries with nothing to undo: hashed, never parsed
        moved_etag = state.copy_etags.get(m.id, m.etag)
        yield Task(
            m.id, m.dst_bucket, m.dst_key, m.src_bucket, m.src_key, moved_etag, m.size, m.storage_class,
            same_etags=(m.etag,), keep_source=m.id in state.dedup, resumed=True,
            # A moved object missing from its destination is a loss only if apply may have removed the original;
            # otherwise (its apply failed before copying, say) there is simply nothing to undo.
            src_required=state.src_may_be_deleted(m.id),
        )  # fmt: skip


_INVERT = bytes([1, 0]) + bytes(254)


def _count_todo(state: JournalState, direction: str) -> int:
    if direction == APPLY:
        return state.entries - state.mask(APPLY_DONE).count(1)
    return state.rollback_mask().count(1)


def execute_manifest(
    direction: str,
    manifest_path: str,
    opts: ExecOptions = ExecOptions(),
    target: Target = Target(),
    *,
    on_start: Callable[[int], None] = lambda n: None,
    on_progress: Callable[[int], None] = lambda n: None,
    backend: Backend | None = None,
    lease: Lease | None = None,
) -> ExecResult:
    """Apply (or roll back) a manifest, resuming from its journal. See ``apply`` and ``rollback``.

    Before any mutation the run takes the lease of every bucket the manifest touches (``s3seg.lease``), unless
    the caller already holds ``lease`` over them (``run``: plan and apply under one lease).
    """
    manifest = Manifest(manifest_path)
    info = manifest.verify()
    endpoint = _check_target(info, manifest_path, target)
    config: dict[str, Any] = info.header.get("config") or {}
    journal_path = opts.journal or journal_path_for(manifest_path)
    name = os.path.basename(manifest_path)

    if opts.dry_run:
        return _dry_run(direction, manifest, info, journal_path)
    if backend is None:
        _check_executor(opts)  # before the journal or any S3 client

    with Journal(journal_path, manifest_sha256=info.sha256, manifest_name=name, entries=info.entries) as journal:
        todo = _count_todo(journal.state, direction)
        result = ExecResult(direction, manifest_path, journal_path, info.entries, todo, RunReport(direction))
        on_start(todo)
        if todo:
            threads = opts.threads or int(config.get("n_workers", 256))
            processes = opts.processes if opts.processes is not None else int(config.get("processes", 1))
            spec = client_spec({**config, "endpoint_url": endpoint}, target, threads=threads)
            mode = opts.conditional_writes or str(config.get("conditional_writes", "auto"))
            storage = make_storage(spec, make_client(spec))
            buckets = buckets_of(info.buckets)  # collected by verify(): no second pass over the manifest
            with contextlib.ExitStack() as stack:
                if lease is None or not set(buckets) <= set(lease.buckets):
                    try:
                        preflight(spec, buckets[0])
                    except StorageError as err:
                        raise StoreRefusedError(err, f"{direction} stopped before any move") from None
                    retries = int(config.get("item_retries", 5))
                    lease = stack.enter_context(_lease(storage, buckets, direction, manifest_path, opts, spec, retries))
                probe_bucket = next(_buckets(manifest, direction))
                caps = capabilities(storage, probe_bucket, mode)
                result.mode = caps.describe()
                _execute_under_lease(
                    result, journal, manifest, direction, opts, spec, caps, config, threads, processes, backend,
                    on_progress, lease,
                )  # fmt: skip
        result.totals = {s.label: n for s, n in journal.state.counts().items()}
    return result


def _lease(
    storage: Storage,
    buckets: list[str],
    command: str,
    manifest: str,
    opts: ExecOptions,
    spec: ClientSpec,
    retries: int = 5,
) -> Lease:
    executor = "local" if opts.executor != "dask" else ("dask" if opts.scheduler else "dask-local")
    holder = Holder.me(command, os.path.abspath(manifest) if manifest else "", default_ttl(), executor)
    return Lease(storage, buckets, holder, scope=spec.endpoint_url or "aws", wait=opts.lock_wait, retries=retries)


def _execute_under_lease(
    result: ExecResult,
    journal: Journal,
    manifest: Manifest,
    direction: str,
    opts: ExecOptions,
    spec: ClientSpec,
    caps: Capabilities,
    config: dict[str, Any],
    threads: int,
    processes: int,
    backend: Backend | None,
    on_progress: Callable[[int], None],
    lease: Lease,
) -> None:
    """Probe done and lease held: build the workers' config and run the pipeline."""
    name = os.path.basename(manifest.path)
    log.info("%s %s: %d of %d moves to do; %s", direction, name, result.todo, result.entries, result.mode)
    cfg = WorkerConfig(
        spec=spec,
        threads=threads,
        **_concurrency(opts, config, processes),
        options=Options(
            caps=caps,
            multipart_threshold=int(config.get("multipart_threshold", 5 * 1024**3)),
            multipart_chunksize=int(config.get("multipart_chunksize", 512 * 1024**2)),
            preserve_encryption=config.get("copy_encryption") == "preserve",
            item_retries=int(config.get("item_retries", 5)),
        ),
    )
    own_backend = backend is None
    if backend is None:
        backend = _make_backend(opts, processes)
    pending = _pending_apply if direction == APPLY else _pending_rollback
    try:
        result.report = execute(
            journal,
            direction,
            pending(manifest, journal.state),
            backend,
            cfg,
            batch_size=opts.batch_size or int(config.get("batch_size", 500)),
            on_progress=on_progress,
            guard=lease.guard,
            breaker=int(config.get("circuit_breaker", 100)),
        )
    finally:
        if own_backend:
            backend.shutdown(cancel=True)


def _concurrency(opts: ExecOptions, config: dict[str, Any], processes: int) -> dict[str, Any]:
    """WorkerConfig's concurrency fields: adaptive or fixed, and each process's share of the rate cap.

    Processes share no memory, so a run-wide rate is enforced as rate / processes in each of them.
    """
    mode = opts.concurrency or str(config.get("concurrency") or "adaptive")
    if mode not in ("adaptive", "fixed"):
        raise UsageError(f"unknown concurrency {mode!r}: choose adaptive or fixed")
    rate = opts.max_requests_per_second or float(config.get("max_requests_per_second") or 0.0)
    return {"adaptive": mode == "adaptive", "max_requests_per_second": rate / max(1, processes)}


def _check_executor(opts: ExecOptions) -> None:
    if opts.executor not in ("local", "dask"):
        raise UsageError(f"unknown executor {opts.executor!r}: choose local or dask")
    if opts.executor == "dask":
        from s3seg.dask_backend import require_distributed

        require_distributed()
    elif opts.scheduler:
        raise UsageError("--scheduler is for --executor dask")


def _make_backend(opts: ExecOptions, processes: int) -> Backend:
    if opts.executor == "dask":
        from s3seg.dask_backend import DaskBackend

        return DaskBackend(opts.scheduler, processes=max(processes, 1), log_level=opts.log_level)
    return InlineBackend() if processes == 0 else ProcessBackend(processes, log_level=opts.log_level)


def _buckets(manifest: Manifest, direction: str) -> Iterator[str]:
    """A bucket this run writes to (the probe's scratch space)."""
    for m in manifest.moves():
        yield m.dst_bucket if direction == APPLY else m.src_bucket
    raise UsageError("the manifest has no moves")


def _dry_run(direction: str, manifest: Manifest, info: ManifestInfo, journal_path: str) -> ExecResult:
    """The one choke point for --dry-run: reads manifest and journal, sends nothing to S3."""
    if os.path.exists(journal_path):
        state, _ = replay(journal_path, manifest_sha256=info.sha256, entries=info.entries)
    else:
        state = JournalState(info.entries)
    pending = _pending_apply if direction == APPLY else _pending_rollback
    lines = []
    for t in pending(manifest, state):
        verb = "move" if direction == APPLY else "restore"
        lines.append(f"would {verb} s3://{t.src_bucket}/{t.src_key} -> s3://{t.dst_bucket}/{t.dst_key}")
    res = ExecResult(direction, manifest.path, journal_path, info.entries, len(lines), RunReport(direction))
    res.dry_run_lines = lines
    res.dry_run = True
    res.totals = {s.label: n for s, n in state.counts().items()}
    return res


def apply(manifest_path: str, opts: ExecOptions = ExecOptions(), target: Target = Target(), **kw: Any) -> ExecResult:
    """Execute a manifest's moves, resuming from its journal; never redoes or loses work."""
    return execute_manifest(APPLY, manifest_path, opts, target, **kw)


def rollback(manifest_path: str, opts: ExecOptions = ExecOptions(), target: Target = Target(), **kw: Any) -> ExecResult:
    """Undo what the manifest's journal says apply did, leaving everything else untouched."""
    return execute_manifest(ROLLBACK, manifest_path, opts, target, **kw)


# -- status ---------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class StatusReport:
    manifest: str
    journal: str
    entries: int
    journal_exists: bool
    counts: dict[str, int]
    remaining: int  # moves apply would still attempt
    header: dict[str, Any]
    recent_errors: list[tuple[int, str]]
    errors_total: int = 0  # how many moves have a recorded error (``recent_errors`` lists the first 20)
    problems: int = 0  # moves failed or in conflict now (apply or rollback): ``status`` exits 1 while any remain
    failed: list[dict[str, Any]] = field(default_factory=list)  # every such move, with its keys (``failed=True``)


# Journal statuses in the operator's words (``status`` prints these; JSON keeps the stable labels).
STATUS_WORDS: dict[Status, str] = {
    Status.PENDING: "not started",
    Status.INTENT: "in progress (copy may have started)",
    Status.COPIED: "in progress (copied, original not yet deleted)",
    Status.DONE: "moved",
    Status.DEDUPED: "moved (identical copy was already there)",
    Status.ALREADY_DONE: "moved (found done when resuming)",
    Status.DONE_ELSEWHERE: "moved (by something else)",
    Status.CONFLICT_SOURCE_CHANGED: "conflict: the file changed since the plan",
    Status.CONFLICT_DEST_DIFFERS: "conflict: another file at the destination",
    Status.FAILED_MISSING: "failed: the file is gone",
    Status.SKIPPED_ARCHIVED: "skipped: archived (restore it first)",
    Status.FAILED: "failed: S3 error (re-run to retry)",
    Status.R_INTENT: "rollback in progress (copy back may have started)",
    Status.R_COPIED: "rollback in progress (copied back, moved file not yet deleted)",
    Status.ROLLED_BACK: "rolled back",
    Status.R_NOT_MOVED: "rolled back (had not been moved)",
    Status.R_CONFLICT_DEST_MODIFIED: "rollback conflict: the moved file changed since",
    Status.R_CONFLICT_SOURCE_RECREATED: "rollback conflict: a new file at the original key",
    Status.R_FAILED_MISSING: "rollback failed: the moved file is gone",
    Status.R_FAILED: "rollback failed: S3 error (re-run to retry)",
}
PROBLEMS = (
    APPLY_CONFLICTS
    | APPLY_FAILURES
    | frozenset(
        {
            Status.R_CONFLICT_DEST_MODIFIED,
            Status.R_CONFLICT_SOURCE_RECREATED,
            Status.R_FAILED_MISSING,
            Status.R_FAILED,
        }
    )
)


def status(manifest_path: str, journal: str | None = None, *, failed: bool = False) -> StatusReport:
    """Counts per outcome from the journal, and what remains. Reads files only; takes no lock.

    ``failed``: also list every failed or conflicted move with its keys and last error (a pass over the
    manifest)."""
    manifest = Manifest(manifest_path)
    info = manifest.verify(entries_checked=False)  # executes nothing: digests and ids over every line suffice
    journal_path = journal or journal_path_for(manifest_path)
    exists = os.path.exists(journal_path)
    if exists:
        state, _ = replay(journal_path, manifest_sha256=info.sha256, entries=info.entries)
    else:
        state = JournalState(info.entries)
    raw = state.counts()
    counts = {s.label: n for s, n in sorted(raw.items())}
    remaining = info.entries - state.mask(APPLY_DONE).count(1)
    errors = sorted(state.last_error.items())[:20]
    report = StatusReport(manifest_path, journal_path, info.entries, exists, counts, remaining, info.header, errors)
    report.errors_total = len(state.last_error)
    report.problems = sum(n for s, n in raw.items() if s in PROBLEMS)
    if failed and report.problems:
        for m in manifest.moves():
            st = state.status_of(m.id)
            if st in PROBLEMS:
                report.failed.append(
                    {
                        "id": m.id,
                        "status": st.label,
                        "state": STATUS_WORDS[st],
                        "source": f"s3://{m.src_bucket}/{m.src_key}",
                        "destination": f"s3://{m.dst_bucket}/{m.dst_key}",
                        "error": state.last_error.get(m.id, ""),
                    }
                )
    return report


# -- run --------------------------------------------------------------------------------------------------------
def default_manifest_path(settings: Settings, now: datetime) -> str:
    """``state_dir/s3seg-<now to the microsecond>-<pid>-<random>.jsonl``: sorts by time, never shared.

    Two runs started in the same second (two configs sharing a ``state_dir``, a cron overlap) must not write,
    verify or journal one manifest: the pid and a random suffix keep the names apart even for an equal ``now``.
    """
    stamp = now.strftime("%Y%m%dT%H%M%S.%f")
    return os.path.join(settings.state_dir, f"s3seg-{stamp}-{os.getpid()}-{secrets.token_hex(3)}.jsonl")


def run(
    settings: Settings,
    *,
    now: datetime,
    override: datetime | None = None,
    unlimited: bool = False,
    output: str | None = None,
    opts: ExecOptions = ExecOptions(),
    target: Target = Target(),
    on_start: Callable[[int], None] = lambda n: None,
    on_progress: Callable[[int], None] = lambda n: None,
    inventory: str | None = None,
) -> tuple[PlanReport, ExecResult]:
    """Plan then apply in one go (the original tool's cron usage). Keeps manifest and journal for resume."""
    if not opts.dry_run:
        _check_executor(opts)  # a missing Dask fails before the plan, not after it
    path = output or default_manifest_path(settings, now)
    if opts.dry_run:
        report = plan(
            settings, path, now=now, override=override, unlimited=unlimited, target=target, inventory=inventory
        )
        return report, apply(path, opts, target, on_start=on_start, on_progress=on_progress)
    # One lease over plan and apply: no other run can change these buckets between the listing and the moves.
    spec = client_spec(settings.to_dict(), target)
    buckets = sorted({settings.source.bucket, settings.segregated.bucket, settings.error.bucket})
    try:
        preflight(spec, settings.source.bucket, settings.source.prefix)
    except StorageError as err:
        raise StoreRefusedError(err, f"run of {settings.source.url} stopped before the plan") from None
    storage = make_storage(spec, make_client(spec))
    with _lease(storage, buckets, "run", path, opts, spec, settings.item_retries) as lease:
        report = plan(
            settings, path, now=now, override=override, unlimited=unlimited, target=target, inventory=inventory
        )
        if not report.planned and output is None:
            return report, _nothing_planned(path)
        result = apply(path, opts, target, on_start=on_start, on_progress=on_progress, lease=lease)
    return report, result


def _nothing_planned(path: str) -> ExecResult:
    """A ``run`` that planned nothing leaves nothing in state_dir: its empty manifest is removed (no journal
    was ever opened), so a cron job every few minutes does not fill the directory."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    return ExecResult(APPLY, path, journal_path_for(path), 0, 0, RunReport(APPLY))


# -- verify / report -----------------------------------------------------------------------------------------
def verify(
    manifest_path: str,
    *,
    journal: str | None = None,
    target: Target = Target(),
    samples: int = _verify.DEFAULT_SAMPLES,
    max_items: int = _verify.DEFAULT_MAX_ITEMS,
) -> _verify.VerifyReport:
    """Audit the store against a manifest: is every planned object at exactly one of its two keys? Read-only.

    The verdict comes from listing the manifest's locations, not from the journal; the journal (when present)
    only adds the ETags its copies recorded (multipart and SSE-KMS copies change an object's ETag). The
    endpoint rule is apply's: the manifest's recorded endpoint, an explicit different one is refused.
    """
    manifest = Manifest(manifest_path)
    info = manifest.info  # verified once, and cached for the audit
    endpoint = _check_target(info, manifest_path, target)
    config: dict[str, Any] = info.header.get("config") or {}
    journal_path = journal or journal_path_for(manifest_path)
    etags = None
    if os.path.exists(journal_path):
        etags = _verify.accepted_etags(journal_path, manifest_sha256=info.sha256, entries=info.entries)
    elif journal is not None:
        raise UsageError(f"journal {journal} does not exist")
    workers = int(config.get("list_workers", 1))
    spec = client_spec({**config, "endpoint_url": endpoint}, target, threads=workers)
    storage = Storage(make_client(spec))  # listing only: botocore, as plan lists
    return _verify.audit(
        storage, manifest, etags=etags, journal=journal_path if etags is not None else None,
        list_workers=workers, samples=samples, max_items=max_items,
    )  # fmt: skip
