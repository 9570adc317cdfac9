"""The Python API: one function per verb (plan, apply, rollback, status, run, verify). The CLI is derived from
these.

Each verb validates everything it can before any S3 client exists (config, manifest, journal, lock), so bad
input fails with a clear error and no S3 request. Settings come from ``config.Settings`` only: ``plan`` and
``run`` take them loaded, the others read them back from the manifest header (``Settings.from_header``), so
a default is written in one place. Progress reaches the caller through ``ExecHooks`` callbacks; each finished
move is one log line (``_LoggedJournal``).

Must not: print, parse argv, or call ``sys.exit`` (``cli`` owns user output and exit codes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict, Unpack

from s3seg import inventory as _inventory
from s3seg import verify as _verify
from s3seg.config import Settings
from s3seg.errors import ManifestError, StorageError, StoreRefusedError, UsageError
from s3seg.executor import Backend, InlineBackend, ProcessBackend, RunReport, execute, start_fork_server
from s3seg.journal import (
    APPLY_CONFLICTS,
    APPLY_DONE,
    APPLY_FAILURES,
    Journal,
    JournalState,
    Status,
    header_buckets,
    journal_path_for,
    replay,
)
from s3seg.lease import LEASE_KEY, Holder, Lease, buckets_of, default_ttl
from s3seg.manifest import Manifest, ManifestInfo
from s3seg.moves import Direction, Options, Task
from s3seg.planner import PlanReport
from s3seg.planner import plan as _plan
from s3seg.probe import Capabilities, capabilities
from s3seg.s3errors import PREFLIGHT_REFUSALS, UNREACHABLE
from s3seg.storage import (
    ClientSpec,
    Storage,
    configured_endpoint,
    make_client,
    make_storage,
)
from s3seg.worker import WorkerConfig, warm

log = logging.getLogger(__name__)

# Callbacks the CLI passes for its progress display (commands itself never prints).
OnStart = Callable[[int], None]  # the number of moves this run will attempt, once known
OnProgress = Callable[[int], None]  # that many more moves finished (local processes: copied; see executor)
OnPhase = Callable[[str], None]  # what the run is doing before (and between) its batches, in a few words


def _nothing(_: Any) -> None:
    pass


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

    direction: Direction
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


def client_spec(settings: Settings | Mapping[str, Any], target: Target, *, threads: int = 10) -> ClientSpec:
    """How to build S3 clients for these settings (a mapping is a manifest header's config, read back through
    ``Settings.from_header``: its defaults are ``Settings``' own)."""
    if not isinstance(settings, Settings):
        settings = Settings.from_header(settings)
    region = target.region or settings.region
    profile = target.profile or settings.profile
    return ClientSpec(
        endpoint_url=resolve_endpoint(target.endpoint_url, settings.endpoint_url, profile=profile, region=region),
        region=region,
        profile=profile,
        max_pool_connections=max(threads + 2, 10),
        max_attempts=settings.max_attempts,
        retry_mode=settings.retry_mode,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        lean_http=target.lean_http,
    )


def header_settings(info: ManifestInfo, manifest: str) -> Settings:
    """The settings a manifest was planned with (its header's config), typed; a bad one is refused (exit 3)."""
    try:
        return Settings.from_header(info.header.get("config"))
    except ValueError as exc:
        raise ManifestError(manifest, 1, str(exc)) from None


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
    settings = settings.resolved()  # the header records absolute paths: apply logs where plan did
    spec = client_spec(settings, target, threads=settings.list_workers)
    storage = make_storage(spec, make_client(spec))  # listing pages the lean way where it applies
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
    config = header_settings(info, manifest)
    profile = target.profile or config.profile
    if target.endpoint_url:
        asked: str | None = target.endpoint_url
        source = "--endpoint-url"
    else:
        try:
            asked = configured_endpoint(ClientSpec(profile=profile, region=target.region or config.region))
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


def _count_todo(state: JournalState, direction: Direction) -> int:
    if direction == Direction.APPLY:
        return state.entries - state.mask(APPLY_DONE).count(1)
    return state.rollback_mask().count(1)


class ExecHooks(TypedDict, total=False):
    """The keyword arguments of ``apply`` and ``rollback`` (and ``execute_manifest``) beside the manifest,
    ``opts`` and ``target``: progress callbacks, a backend to run batches on instead of the one ``opts`` asks for
    (tests, embedding), and a lease the caller already holds (``run``: plan and apply under one lease)."""

    on_start: OnStart
    on_progress: OnProgress
    on_phase: OnPhase
    backend: Backend | None
    lease: Lease | None
    planned: Planned | None


@dataclass(frozen=True, slots=True)
class Planned:
    """What this process knows of a manifest it has just written (``run``): its content SHA-256 and the
    (source, destination) bucket pairs its moves can have. With it, the apply that follows verifies the file
    the way a resume does (``Manifest.verify_bound``: the bytes hashed, entries checked as they are executed)
    instead of parsing every entry twice; a file that changed meanwhile gets the full verify."""

    sha256: str
    pairs: frozenset[tuple[str, str]]


def execute_manifest(
    direction: Direction,
    manifest_path: str,
    opts: ExecOptions = ExecOptions(),
    target: Target = Target(),
    **hooks: Unpack[ExecHooks],
) -> ExecResult:
    """Apply (or roll back) a manifest, resuming from its journal. See ``apply`` and ``rollback``; ``hooks``
    are ``ExecHooks``.

    Before any mutation the run takes the lease of every bucket the manifest touches (``s3seg.lease``), unless
    the caller already holds ``lease`` over them (``run``: plan and apply under one lease).
    """
    on_start, on_progress = hooks.get("on_start", _nothing), hooks.get("on_progress", _nothing)
    on_phase, backend, lease = hooks.get("on_phase", _nothing), hooks.get("backend"), hooks.get("lease")
    direction = Direction(direction)  # "apply" and "rollback" as plain strings are accepted too
    if backend is None and not opts.dry_run and opts.processes != 0 and opts.executor == "local":
        start_fork_server()  # its imports overlap the verification below (a pool of 0 processes needs none)
    manifest = Manifest(manifest_path)
    journal_path = opts.journal or journal_path_for(manifest_path)
    info = verify_for_run(manifest, journal_path, hooks.get("planned"))
    endpoint = _check_target(info, manifest_path, target)
    config = dataclasses.replace(header_settings(info, manifest_path), endpoint_url=endpoint)
    name = os.path.basename(manifest_path)

    if opts.dry_run:
        return _dry_run(direction, manifest, info, journal_path)
    if backend is None:
        _check_executor(opts)  # before the journal or any S3 client

    with _LoggedJournal(
        journal_path, manifest_sha256=info.sha256, manifest_name=name, entries=info.entries, buckets=info.buckets
    ) as journal:
        todo = _count_todo(journal.state, direction)
        result = ExecResult(direction, manifest_path, journal_path, info.entries, todo, RunReport(direction))
        on_start(todo)
        if todo:
            threads, processes = _pool_size(opts, config)
            spec = client_spec(config, target, threads=threads)
            mode = opts.conditional_writes or config.conditional_writes
            storage = make_storage(spec, make_client(spec))
            buckets = buckets_of(info.buckets)  # collected by verify(): no second pass over the manifest
            with contextlib.ExitStack() as stack:
                own_backend = backend is None
                if backend is None:
                    # Started first, so that spawning the processes, their imports and their clients overlap the
                    # preflight, the lease and the probe (measured: ~0.6 s of a run's start-up at 50 ms).
                    backend = _start_backend(opts, threads, processes, spec, on_phase)
                    stack.callback(backend.shutdown, cancel=True)  # a refusal before the first batch
                if lease is None or not set(buckets) <= set(lease.buckets):
                    _phase(on_phase, f"checking the store ({spec.endpoint_url or 'AWS S3'}, bucket {buckets[0]})")
                    try:
                        preflight(spec, buckets[0])
                    except StorageError as err:
                        raise StoreRefusedError(err, f"{direction} stopped before any move") from None
                    _phase(on_phase, f"taking the lease on {', '.join(buckets)}")
                    lease = stack.enter_context(
                        _lease(storage, buckets, direction, manifest_path, opts, spec, config.item_retries)
                    )
                probe_bucket = next(_buckets(manifest, direction))
                if mode == "auto":
                    _phase(on_phase, f"probing conditional-write support in bucket {probe_bucket}")
                caps = capabilities(storage, probe_bucket, mode)
                lease.delete_if_match = caps.delete_if_match  # its release: one request, not a read and a delete
                result.mode = caps.describe()
                run = _Run(result, journal, manifest, direction, opts, spec, caps, config, threads, processes)
                _execute_under_lease(run, backend, own_backend, on_progress, on_phase, lease)
        result.totals = {s.label: n for s, n in journal.state.counts().items()}
    return result


def verify_for_run(manifest: Manifest, journal_path: str, planned: Planned | None = None) -> ManifestInfo:
    """Verify ``manifest`` before apply or rollback: fully for a first run, lightly for a resume.

    First run (no journal, or one without bucket pairs in its header, or one bound to another file): the full
    ``verify()``, every entry JSON-parsed and type-checked, before the journal is created and before any S3
    client exists. A forged or hand-edited manifest is refused here with nothing sent to S3, and the journal
    (created only after this, in ``execute_manifest``) records the bucket pairs that verify collected.

    Resume (the journal's header names this file's content SHA-256 and lists bucket pairs):
    ``Manifest.verify_bound(<that SHA-256>, <the header's pairs>)``: the whole file is still hashed and its
    lines counted, header and trailer checked, but entries are not parsed. Why that is safe:

    - The journal was created by a run that had fully verified a manifest with exactly this content SHA-256
      (the journal is created after ``verify()`` in ``execute_manifest``, and nowhere else in s3seg), so these
      very bytes passed the full check once; the light pass proves they are still those bytes.
    - Whatever the journal says, nothing unchecked is executed: ``moves()`` JSON-parses and type-checks every
      entry it yields (a malformed one is refused before it becomes a request), and refuses an entry whose
      bucket pair the header does not list, so the lease (taken over the header's buckets) covers every move
      executed, even against a hand-edited journal. Entries the journal marks done are only hashed.
    - A light verify that fails, or a digest that differs from the journal's, falls back to the full verify,
      so errors read exactly as in a first run (and a journal of another manifest is then refused on opening,
      as before, still before any S3 client exists).

    ``planned`` (``run``, which wrote the manifest a moment ago in this process): the same light verify against
    the digest and bucket pairs the plan knows, under the same fall-back. (An existing journal's binding wins:
    the run of a manifest path that already has one resumes it.)
    """
    binding = header_buckets(journal_path)
    if binding is None and planned is not None:
        binding = planned.sha256, planned.pairs
    if binding is not None:
        bound_sha256, pairs = binding
        with contextlib.suppress(ManifestError):
            info = manifest.verify_bound(bound_sha256, pairs)
            if info is not None:
                return info
    return manifest.verify()


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


@dataclass(frozen=True, slots=True)
class _Run:
    """One apply or rollback with the probe done: what the pipeline needs, resolved."""

    result: ExecResult
    journal: _LoggedJournal
    manifest: Manifest
    direction: Direction
    opts: ExecOptions
    spec: ClientSpec
    caps: Capabilities
    config: Settings  # the manifest's, with its recorded endpoint
    threads: int
    processes: int


def _pool_size(opts: ExecOptions, config: Settings) -> tuple[int, int]:
    """(requests in flight per process, worker processes): the flags, else the config (or manifest header)."""
    return opts.threads or config.n_workers, opts.processes if opts.processes is not None else config.processes


def _start_backend(opts: ExecOptions, threads: int, processes: int, spec: ClientSpec, on_phase: OnPhase) -> Backend:
    """The backend the run's batches go to; local worker processes start building their S3 client at once."""
    where = "this process" if processes == 0 and opts.executor != "dask" else f"{processes} processes"
    _phase(on_phase, f"starting workers ({opts.executor}, {where}, up to {threads} requests each)")
    backend = _make_backend(opts, processes)
    if isinstance(backend, ProcessBackend):
        backend.prestart(warm, spec)  # no request is sent: a client is built and kept for the first batch
    return backend


def _execute_under_lease(
    run: _Run, backend: Backend, own_backend: bool, on_progress: OnProgress, on_phase: OnPhase, lease: Lease
) -> None:
    """Probe done and lease held: build the workers' config and run the pipeline. The backend is shut down
    here, before the lease is released: no worker may still be moving once another run can take the lease."""
    result, config, opts = run.result, run.config, run.opts
    name = os.path.basename(run.manifest.path)
    log.info("%s %s: %d of %d moves to do; %s", run.direction, name, result.todo, result.entries, result.mode)
    cfg = WorkerConfig(
        spec=run.spec,
        threads=run.threads,
        **_concurrency(opts, config, run.processes),
        options=Options(
            caps=run.caps,
            multipart_threshold=config.multipart_threshold,
            multipart_chunksize=config.multipart_chunksize,
            preserve_encryption=config.copy_encryption == "preserve",
            item_retries=config.item_retries,
        ),
    )
    pending = _pending_apply if run.direction == Direction.APPLY else _pending_rollback
    try:
        _phase(on_phase, f"{run.direction}: the first batch is in flight")
        result.report = execute(
            run.journal,
            run.direction,
            run.journal.watch(pending(run.manifest, run.journal.state)),
            backend,
            cfg,
            batch_size=opts.batch_size or config.batch_size,
            on_progress=on_progress,
            guard=lease.guard,
            breaker=config.circuit_breaker,
        )
    finally:
        if own_backend:
            backend.shutdown(cancel=True)


def _phase(on_phase: OnPhase, text: str) -> None:
    log.info("%s", text)
    on_phase(text)


class _LoggedJournal(Journal):
    """The journal, plus one log line per finished move: DEBUG for a move done, WARNING for a conflict or a
    skip, ERROR for a failure. The keys come from the tasks as the pipeline takes them (``watch``), so only
    the moves in flight are remembered."""

    def __init__(self, path: str, **binding: Any) -> None:
        super().__init__(path, **binding)  # the manifest binding, as ``Journal`` takes it
        self._in_flight: dict[int, str] = {}

    def __enter__(self) -> _LoggedJournal:
        return self

    def watch(self, tasks: Iterator[Task]) -> Iterator[Task]:
        for t in tasks:
            self._in_flight[t.id] = f"s3://{t.src_bucket}/{t.src_key} -> s3://{t.dst_bucket}/{t.dst_key}"
            yield t

    def outcome(self, direction: str, status: Status, ids: list[int], code: str = "", msg: str = "") -> None:
        super().outcome(direction, status, ids, code, msg)
        level = _OUTCOME_LEVELS.get(status, logging.DEBUG)
        code = "" if code == "-" else code  # the executor's placeholder when only a detail is known
        why = f": {code} {msg}".rstrip().replace(":  ", ": ") if code or msg else ""
        for i in ids:
            keys = self._in_flight.pop(i, "")
            if log.isEnabledFor(level):
                log.log(level, "%s move %d %s: %s%s", direction, i, keys, status.label, why, extra=PER_OBJECT)


# Marks the per-move log records: the log file gets them, stderr only with -v (the summary lists failures).
PER_OBJECT = {"s3seg_per_object": True}
_OUTCOME_LEVELS: dict[Status, int] = {
    **{s: logging.WARNING for s in APPLY_CONFLICTS | {Status.SKIPPED_ARCHIVED}},
    **{s: logging.WARNING for s in (Status.R_CONFLICT_DEST_MODIFIED, Status.R_CONFLICT_SOURCE_RECREATED)},
    **{
        s: logging.ERROR
        for s in APPLY_FAILURES - {Status.SKIPPED_ARCHIVED} | {Status.R_FAILED, Status.R_FAILED_MISSING}
    },
}


def _concurrency(opts: ExecOptions, config: Settings, processes: int) -> dict[str, Any]:
    """WorkerConfig's concurrency fields: adaptive or fixed, and each process's share of the rate cap.

    Processes share no memory, so a run-wide rate is enforced as rate / processes in each of them.
    """
    mode = opts.concurrency or config.concurrency or "adaptive"
    if mode not in ("adaptive", "fixed"):
        raise UsageError(f"unknown concurrency {mode!r}: choose adaptive or fixed")
    rate = opts.max_requests_per_second or config.max_requests_per_second
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


def _buckets(manifest: Manifest, direction: Direction) -> Iterator[str]:
    """A bucket this run writes to (the probe's scratch space)."""
    for m in manifest.moves():
        yield m.dst_bucket if direction == Direction.APPLY else m.src_bucket
    raise UsageError("the manifest has no moves")


def _dry_run(direction: Direction, manifest: Manifest, info: ManifestInfo, journal_path: str) -> ExecResult:
    """The one choke point for --dry-run: reads manifest and journal, sends nothing to S3."""
    if os.path.exists(journal_path):
        state, _ = replay(journal_path, manifest_sha256=info.sha256, entries=info.entries)
    else:
        state = JournalState(info.entries)
    pending = _pending_apply if direction == Direction.APPLY else _pending_rollback
    lines = []
    for t in pending(manifest, state):
        verb = "move" if direction == Direction.APPLY else "restore"
        lines.append(f"would {verb} s3://{t.src_bucket}/{t.src_key} -> s3://{t.dst_bucket}/{t.dst_key}")
    res = ExecResult(direction, manifest.path, journal_path, info.entries, len(lines), RunReport(direction))
    res.dry_run_lines = lines
    res.dry_run = True
    res.totals = {s.label: n for s, n in state.counts().items()}
    return res


def apply(
    manifest_path: str, opts: ExecOptions = ExecOptions(), target: Target = Target(), **hooks: Unpack[ExecHooks]
) -> ExecResult:
    """Execute a manifest's moves, resuming from its journal; never redoes or loses work."""
    return execute_manifest(Direction.APPLY, manifest_path, opts, target, **hooks)


def rollback(
    manifest_path: str, opts: ExecOptions = ExecOptions(), target: Target = Target(), **hooks: Unpack[ExecHooks]
) -> ExecResult:
    """Undo what the manifest's journal says apply did, leaving everything else untouched."""
    return execute_manifest(Direction.ROLLBACK, manifest_path, opts, target, **hooks)


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
    on_start: OnStart = _nothing,
    on_progress: OnProgress = _nothing,
    on_phase: OnPhase = _nothing,
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
        return report, apply(path, opts, target, on_start=on_start, on_progress=on_progress, on_phase=on_phase)
    # One lease over plan and apply: no other run can change these buckets between the listing and the moves.
    spec = client_spec(settings, target)
    buckets = sorted({settings.source.bucket, settings.segregated.bucket, settings.error.bucket})
    _phase(on_phase, f"checking the store ({spec.endpoint_url or 'AWS S3'}, {settings.source.url})")
    try:
        preflight(spec, settings.source.bucket, settings.source.prefix)
    except StorageError as err:
        raise StoreRefusedError(err, f"run of {settings.source.url} stopped before the plan") from None
    storage = make_storage(spec, make_client(spec))
    _phase(on_phase, f"taking the lease on {', '.join(buckets)}")
    with (
        _lease(storage, buckets, "run", path, opts, spec, settings.item_retries) as lease,
        contextlib.ExitStack() as stack,
    ):
        # The workers start (fork server, imports, clients) while the plan lists; they are shut down before the
        # lease is released (the stack closes first). A plan that finds nothing has cost them ~1 s of CPU.
        backend = None
        threads, processes = _pool_size(opts, settings)
        if opts.executor == "local" and processes > 0:
            backend = _start_backend(opts, threads, processes, client_spec(settings, target, threads=threads), on_phase)
            stack.callback(backend.shutdown, cancel=True)
        _phase(on_phase, f"planning: listing {settings.source.url}")
        report = plan(
            settings, path, now=now, override=override, unlimited=unlimited, target=target, inventory=inventory
        )
        if not report.planned and output is None:
            return report, _nothing_planned(path)
        src = settings.source.bucket
        planned = Planned(report.sha256, frozenset({(src, settings.segregated.bucket), (src, settings.error.bucket)}))
        result = apply(
            path, opts, target, on_start=on_start, on_progress=on_progress, on_phase=on_phase, lease=lease,
            backend=backend, planned=planned,
        )  # fmt: skip
    return report, result


def _nothing_planned(path: str) -> ExecResult:
    """A ``run`` that planned nothing leaves nothing in state_dir: its empty manifest is removed (no journal
    was ever opened), so a cron job every few minutes does not fill the directory."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    return ExecResult(Direction.APPLY, path, journal_path_for(path), 0, 0, RunReport(Direction.APPLY))


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
    config = dataclasses.replace(header_settings(info, manifest_path), endpoint_url=endpoint)
    journal_path = journal or journal_path_for(manifest_path)
    etags = None
    if os.path.exists(journal_path):
        etags = _verify.accepted_etags(journal_path, manifest_sha256=info.sha256, entries=info.entries)
    elif journal is not None:
        raise UsageError(f"journal {journal} does not exist")
    workers = config.list_workers
    spec = client_spec(config, target, threads=workers)
    storage = make_storage(spec, make_client(spec))  # lists (and heads) the lean way where it applies, as plan
    return _verify.audit(
        storage, manifest, etags=etags, journal=journal_path if etags is not None else None,
        list_workers=workers, samples=samples, max_items=max_items,
    )  # fmt: skip
