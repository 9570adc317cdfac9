"""The ``s3seg`` command line: argv -> ``commands`` -> printed summary and exit code.

Owns: argument parsing, logging handlers (the log file, stderr), tqdm progress bars, the human and ``--json``
summaries, and mapping errors to exit codes (the only place that calls ``sys.exit``).

The original tool's invocation ``s3seg -c config.xml [-d DATETIME] [-v]`` (no sub-command) still works and
means ``s3seg run``.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NoReturn, TextIO

from tqdm import tqdm

from s3seg import __version__, commands
from s3seg import config as config_mod
from s3seg.errors import ExitCode, S3SegError, UsageError, os_reason, show_path
from s3seg.journal import APPLY_DONE, ROLLBACK_DONE
from s3seg.naming import parse_datetime_arg
from s3seg.planner import PlanReport

log = logging.getLogger("s3seg")

COMMANDS = ("plan", "apply", "rollback", "status", "run", "verify", "report", "prune")


# -- parser ---------------------------------------------------------------------------------------------------
def _target_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where S3 is")
    g.add_argument("--endpoint-url", help="S3-compatible endpoint (MinIO, Ceph, SeaweedFS, a local test server)")
    g.add_argument("--region", help="AWS region")
    g.add_argument("--profile", help="AWS profile from ~/.aws/config")
    g.add_argument(
        "--botocore-only",
        action="store_true",
        help="send every request through botocore (by default per-object calls to an explicit endpoint take "
        "s3seg's lean HTTP path: same requests, a fifth of the client CPU)",
    )


def _common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="detailed log (to the log file and stderr)")
    p.add_argument("--log-file", help="write the log here instead of the config's log_file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument(
        "-q", "--quiet", action="store_true", help="print no summary unless the command fails (for cron: mail on error)"
    )


def _exec_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--journal", help="journal path (default: MANIFEST.journal)")
    g.add_argument("--processes", type=int, help="worker processes (default: config 'processes'; 0 = no pool)")
    g.add_argument(
        "--threads",
        type=int,
        help="requests in flight per worker process: the upper bound with adaptive concurrency, the exact count "
        "with --concurrency fixed (default: config 'n_workers', 256)",
    )
    g.add_argument(
        "--concurrency",
        choices=("adaptive", "fixed"),
        help="adaptive (default): each process finds its own number in flight, up to --threads, backing off on "
        "rising latency and on 503 SlowDown; fixed: always --threads",
    )
    g.add_argument(
        "--max-requests-per-second",
        type=float,
        metavar="RATE",
        help="cap the whole run's S3 request rate (shared by its processes; default: config "
        "'max_requests_per_second', none)",
    )
    g.add_argument("--batch-size", type=int, help="moves per batch sent to a worker (default 500, max 1000)")
    g.add_argument(
        "--conditional-writes",
        choices=("auto", "server", "client"),
        help="trust the store's conditional headers (server), check with HEAD (client), or probe (auto)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    g.add_argument(
        "--lock-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another s3seg run on the same buckets to finish (default 0: refuse at once, "
        "exit 3, naming the other run)",
    )
    g.add_argument(
        "--executor",
        choices=("local", "dask"),
        default="local",
        help="run batches on local worker processes (default) or on a Dask cluster (pip install 's3seg[dask]')",
    )
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler, e.g. tcp://HOST:8786 (with --executor dask; without it a local cluster of "
        "--processes workers is started)",
    )


def _plan_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, help="XML config file")
    p.add_argument(
        "-d",
        "--datetime",
        help="date for files when there is no match_pattern: ISO 8601 or the config's datetime_format",
    )
    p.add_argument("--recursive", action="store_true", help="also plan keys in sub-folders of s3_dir")
    p.add_argument("--all", action="store_true", help="lift the n_loops cap: plan every listed object")
    p.add_argument(
        "--include", action="append", default=[], metavar="GLOB",
        help="plan only keys whose path relative to s3_dir matches (repeatable; adds to <include>)",
    )  # fmt: skip
    p.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB",
        help="never plan keys whose path relative to s3_dir matches, e.g. '.tmp_*.part' (repeatable; beats --include)",
    )  # fmt: skip
    p.add_argument(
        "--min-age",
        metavar="DURATION",
        help="skip objects modified less than this ago: 30s, 10m, 2h (replaces <min_age>)",
    )
    p.add_argument(
        "--inventory",
        metavar="S3_URL",
        help="plan from this S3 Inventory report (s3://BUCKET/PATH/manifest.json; CSV, or Parquet/ORC with "
        "s3seg[inventory]) instead of listing s3_dir",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s3seg",
        description="Move S3 objects into date-named prefixes: plan, review, apply, roll back. "
        "Run `s3seg COMMAND -h` for a command's flags. `s3seg -c CONFIG` alone means `s3seg run -c CONFIG`.",
    )
    parser.add_argument("--version", action="version", version=f"s3seg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for name, func in (
        ("plan", commands.plan),
        ("apply", commands.apply),
        ("rollback", commands.rollback),
        ("status", commands.status),
        ("run", commands.run),
    ):
        doc = (func.__doc__ or "").strip().splitlines()[0].replace("``", "")
        p = sub.add_parser(name, help=doc, description=doc)
        if name in ("plan", "run"):
            _plan_flags(p)
        if name == "plan":
            p.add_argument("-o", "--output", help="manifest path (default: s3seg-<time>.jsonl in state_dir)")
        if name in ("apply", "rollback", "status"):
            p.add_argument("manifest", help="manifest written by `s3seg plan`")
        if name in ("apply", "rollback", "run"):
            _exec_flags(p)
        if name in ("apply", "rollback", "run"):
            p.add_argument("--dry-run", action="store_true", help="print what would be done; send nothing to S3")
        if name == "status":
            p.add_argument("--journal", help="journal path (default: MANIFEST.journal)")
            p.add_argument("--json", action="store_true", help="print the status as JSON on stdout")
            p.add_argument("--failed", action="store_true", help="list every failed or conflicted move with its keys")
        else:
            _common_flags(p)
            _target_flags(p)
    _add_audit_parsers(sub)
    _add_prune_parser(sub)
    return parser


def _normalise_argv(argv: list[str]) -> list[str]:
    """The original tool had no sub-commands: ``-c config.xml`` alone means ``run``.

    Options given before the command (``s3seg --endpoint-url X plan -c C``) are moved after it; a word that is
    not a command (``s3seg aply``) is refused as a mistyped command, with the closest one suggested.
    """
    if not argv or argv[0] in COMMANDS or argv[0] in ("-h", "--help", "--version"):
        return argv
    if not argv[0].startswith("-"):
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f"; did you mean `s3seg {close[0]}`?" if close else f"; commands: {', '.join(COMMANDS)}"
        raise UsageError(f"unknown command {argv[0]!r}{hint}")
    for i, word in enumerate(argv):
        if word in COMMANDS and not (i and argv[i - 1] in _VALUE_OPTIONS_BEFORE):
            return [word, *argv[:i], *argv[i + 1 :]]
    return ["run", *argv]


# Options taking a value, so that the word after them is never mistaken for the command (``--profile plan``).
_VALUE_OPTIONS_BEFORE = frozenset({"--endpoint-url", "--region", "--profile", "-c", "--config", "--log-file"})


# -- logging / progress ----------------------------------------------------------------------------------------
def setup_logging(log_file: str | None, verbose: bool) -> None:
    root = logging.getLogger("s3seg")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
    if log_file:
        path = config_mod.resolve_log_file(log_file, datetime.now())  # strftime, as the original did
        try:
            fh = LogFileHandler(path)
        except OSError as exc:
            raise UsageError(f"cannot write the log file {show_path(path)}: {os_reason(exc, path)}") from None
        fh.setFormatter(fmt)
        root.addHandler(fh)
    sh = logging.StreamHandler(sys.stderr)
    sh.setLevel(logging.INFO if verbose else logging.WARNING)
    sh.setFormatter(logging.Formatter("s3seg: %(levelname)s: %(message)s"))
    root.addHandler(sh)


class LogFileHandler(logging.FileHandler):
    """The log file. If a write fails (full disk, I/O error) that is a warning, not a failure: it is reported
    once on stderr, the file is not written again this run, and the summary says so (``log_failure()``). The
    run goes on because the journal, not the log, is the record of what was moved; the exit code stays the
    run's own."""

    def __init__(self, path: str) -> None:
        super().__init__(path, encoding="utf-8", errors="backslashreplace")
        self.failure = ""

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failure:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            self._failed(exc)
        else:
            super().handleError(record)  # a formatting bug: logging's own report

    def close(self) -> None:
        try:
            super().close()
        except OSError as exc:  # the final flush of what a failed write left in the buffer
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        if self.failure:
            return
        self.failure = f"cannot write the log file {show_path(self.baseFilename)}: {os_reason(exc)}"
        _stderr(f"s3seg: warning: {self.failure}; continuing without it (the journal still records every move)")


def log_failure() -> str:
    """Why the log file stopped being written this run ("" if it did not, or there is none)."""
    for handler in logging.getLogger("s3seg").handlers:
        if isinstance(handler, LogFileHandler) and handler.failure:
            return handler.failure
    return ""


def _stderr(text: str) -> None:
    """A message on stderr; a closed stderr (``2>&1 | head``) is not an error of its own."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


class Progress:
    """A tqdm bar on a terminal (objects, objects/s, ETA); nothing otherwise."""

    def __init__(self, enabled: bool, desc: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.desc = desc
        self.bar: tqdm[Any] | None = None

    def start(self, total: int) -> None:
        if self.enabled and total:
            self.bar = tqdm(total=total, desc=self.desc, unit="obj", dynamic_ncols=True, smoothing=0.1)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- output -----------------------------------------------------------------------------------------------------
def _print(out: TextIO, text: str = "") -> None:
    try:
        out.write(text + "\n")
    except BrokenPipeError:
        _discard_output(out)


def _flush(out: TextIO) -> None:
    try:
        out.flush()
    except BrokenPipeError:
        _discard_output(out)


def _discard_output(out: TextIO) -> None:
    """The reader of stdout went away (``s3seg status M | head``): the rest of the output is dropped, as the
    Python docs advise (stdout pointed at /dev/null), and the exit code stays the command's own."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, out.fileno())
        finally:
            os.close(devnull)


def _with_log_failure(summary: dict[str, Any]) -> dict[str, Any]:
    """A JSON summary, plus why the log file stopped being written, if it did."""
    failure = log_failure()
    return {**summary, "log_error": failure} if failure else summary


def _print_log_failure(out: TextIO) -> None:
    failure = log_failure()
    if failure:
        _print(out, f"warning: {failure}; the log is incomplete (the journal is not)")


def plan_summary(report: PlanReport, top: int = 15) -> dict[str, Any]:
    return {
        "manifest": report.manifest_path,
        "sha256": report.sha256,
        "listed": report.listed,
        "planned": report.planned,
        "to_error_dir": report.to_error,
        "skipped": dict(report.skipped),
        "reasons": dict(report.reasons),
        "pages": report.pages,
        "cap_hit": report.cap_hit,
        "folders": len(report.folders),
        "top_folders": dict(report.folders.most_common(top)),
        "elapsed_s": round(report.elapsed, 3),
        "outcome": report.outcome,
        "warnings": list(report.warnings),
    }


def print_plan(report: PlanReport, out: TextIO) -> None:
    s = plan_summary(report)
    _print(out, f"manifest: {report.manifest_path}")
    _print(out, f"listed {report.listed} objects in {report.pages} pages ({report.elapsed:.1f}s)")
    _print(out, f"planned {report.planned} moves, {report.to_error} of them to the error dir")
    if report.skipped:
        _print(out, "skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(report.skipped.items())))
    for text in report.warnings:
        _print(out, f"WARNING: {text}")
    if report.cap_hit:
        _print(out, "NOTE: n_loops cap reached: more objects remain. Apply, then plan again, or use --all.")
    if report.folders:
        _print(out, f"destination folders: {len(report.folders)} (top {len(s['top_folders'])}):")
        width = max(len(str(n)) for n in s["top_folders"].values())
        for folder, n in s["top_folders"].items():
            _print(out, f"  {n:>{width}}  {folder}")
        _print(out, f"  {report.planned:>{width}}  total")
    if report.planned:
        _print(out, f"review it, then: s3seg apply {report.manifest_path}")


def exec_summary(result: commands.ExecResult) -> dict[str, Any]:
    r = result.report
    rate = r.finished / r.elapsed if r.elapsed > 0 else 0.0
    return {
        "command": result.direction,
        "manifest": result.manifest,
        "journal": result.journal,
        "entries": result.entries,
        "todo": result.todo,
        "this_run": {s.label: n for s, n in sorted(r.counts.items())},
        "finished": r.finished,
        "elapsed_s": round(r.elapsed, 3),
        "objects_per_s": round(rate, 1),
        "interrupted": r.interrupted,
        "aborted": r.aborted,
        "conditional_checks": result.mode,
        "journal_totals": result.totals,
        "failures": [{"id": i, "key": k, "status": s, "detail": d} for i, s, d, k in r.failures],
        "failures_cut": r.failures_cut,  # true: more failures than listed (``s3seg status --failed`` has all)
    }


def print_exec(result: commands.ExecResult, out: TextIO) -> None:
    s = exec_summary(result)
    r = result.report
    verb = "apply" if result.direction == "apply" else "rollback"
    if result.dry_run or result.dry_run_lines:
        for line in result.dry_run_lines:
            _print(out, line)
        _print(out, f"dry run: {len(result.dry_run_lines)} of {result.entries} moves would be attempted")
        return
    if not result.todo:
        _print(out, f"{verb}: nothing to do ({result.entries} moves in the manifest)")
        return
    _print(out, f"{verb}: {r.finished} of {result.todo} finished in {r.elapsed:.1f}s ({s['objects_per_s']} obj/s)")
    for label, n in s["this_run"].items():
        _print(out, f"  {label:<28} {n}")
    for f in s["failures"][:10]:
        _print(out, f"  ! move {f['id']} {f['key']}: {f['status']}: {f['detail']}")
    if r.aborted:
        _print(out, f"stopped early: {r.aborted}")
    elif r.interrupted:
        _print(out, f"interrupted: re-run `s3seg {verb} {result.manifest}` to resume")


def exec_exit_code(result: commands.ExecResult) -> int:
    r = result.report
    if r.journal_failed:
        return ExitCode.REFUSED  # the journal is unusable: free space (or fix the path), then re-run
    if r.interrupted:
        return 128 + r.signal if r.signal else ExitCode.INTERRUPTED
    if result.dry_run or result.dry_run_lines or not result.todo:
        return ExitCode.OK
    good = APPLY_DONE if result.direction == "apply" else ROLLBACK_DONE
    if r.aborted or any(s not in good for s in r.counts) or r.finished < result.todo:
        return ExitCode.ITEMS_FAILED
    return ExitCode.OK


# -- main ---------------------------------------------------------------------------------------------------------
def _target(args: argparse.Namespace) -> commands.Target:
    return commands.Target(
        endpoint_url=args.endpoint_url, region=args.region, profile=args.profile, lean_http=not args.botocore_only
    )


def _exec_opts(args: argparse.Namespace) -> commands.ExecOptions:
    if args.batch_size is not None and not 1 <= args.batch_size <= 1000:
        raise UsageError("--batch-size must be between 1 and 1000")
    if args.processes is not None and args.processes < 0:
        raise UsageError("--processes must be 0 or more")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be 1 or more")
    if args.lock_wait < 0:
        raise UsageError("--lock-wait must be 0 or more seconds")
    if args.max_requests_per_second is not None and not args.max_requests_per_second > 0:
        raise UsageError("--max-requests-per-second must be above 0")
    return commands.ExecOptions(
        journal=args.journal,
        processes=args.processes,
        threads=args.threads,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        max_requests_per_second=args.max_requests_per_second,
        conditional_writes=args.conditional_writes,
        dry_run=getattr(args, "dry_run", False),
        log_level=logging.DEBUG if args.verbose else logging.INFO,
        executor=args.executor,
        scheduler=args.scheduler,
        lock_wait=args.lock_wait,
    )


def _load_settings(args: argparse.Namespace) -> config_mod.Settings:
    settings = config_mod.load(args.config)
    if args.recursive and not settings.recursive:
        import dataclasses

        settings = dataclasses.replace(settings, recursive=True)
    return _with_filters(args, settings)


def _with_filters(args: argparse.Namespace, settings: config_mod.Settings) -> config_mod.Settings:
    """``--include`` / ``--exclude`` add to the config's globs; ``--min-age`` replaces its ``min_age``."""
    import dataclasses

    changes: dict[str, Any] = {}
    if args.include:
        changes["include"] = (*settings.include, *args.include)
    if args.exclude:
        changes["exclude"] = (*settings.exclude, *args.exclude)
    if args.min_age is not None:
        try:
            changes["min_age"] = config_mod.parse_duration(args.min_age)
        except ValueError as exc:
            raise UsageError(f"--min-age {exc}") from None
    return dataclasses.replace(settings, **changes) if changes else settings


def _override(args: argparse.Namespace, settings: config_mod.Settings) -> datetime | None:
    if args.datetime is None:
        return None
    if not args.datetime.strip():  # an empty -d (an unset shell variable, say) must not mean "now - time_delay"
        raise UsageError("-d/--datetime is empty: give a date (ISO 8601 or the config's datetime_format) or drop it")
    try:
        return parse_datetime_arg(args.datetime, settings.datetime_format)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _manifest_log_file(path: str) -> str | None:
    """The log_file recorded in a manifest's config (apply/rollback log where plan did)."""
    try:
        with open(path, encoding="utf-8") as f:
            header = json.loads(f.readline(1 << 20))
        value = header.get("config", {}).get("log_file")
        return str(value) if value else None
    except (OSError, ValueError, AttributeError, RecursionError):  # verify() reports a bad manifest properly
        return None


def _status(args: argparse.Namespace, out: TextIO) -> int:
    """``status``: counts in the operator's words; ``--failed`` lists every failed or conflicted move with its
    keys. Exits 1 while failures or conflicts remain (re-run apply, or resolve them), 0 otherwise."""
    st = commands.status(args.manifest, args.journal, failed=args.failed)
    if args.json:
        data: dict[str, Any] = {
            "manifest": st.manifest,
            "journal": st.journal if st.journal_exists else None,
            "entries": st.entries,
            "counts": st.counts,
            "remaining": st.remaining,
            "problems": st.problems,
            "recent_errors": [{"id": i, "error": e} for i, e in st.recent_errors],
            "recent_errors_total": st.errors_total,
            "recent_errors_cut": st.errors_total > len(st.recent_errors),  # --failed lists them all
        }
        if args.failed:
            data["failed"] = st.failed  # complete: every failed or conflicted move
        _print(out, json.dumps(data, indent=2))
        return ExitCode.ITEMS_FAILED if st.problems else ExitCode.OK
    words = {s.label: w for s, w in commands.STATUS_WORDS.items()}
    _print(out, f"manifest: {st.manifest} ({st.entries} moves)")
    _print(out, f"journal:  {st.journal if st.journal_exists else '(none yet: nothing applied)'}")
    for label, n in st.counts.items():
        _print(out, f"  {words.get(label, label):<52} {n}")
    _print(out, f"still to move (apply): {st.remaining}")
    if args.failed:
        for f in st.failed:
            _print(
                out, f"  ! move {f['id']} {f['source']} -> {f['destination']}: {f['state']}; {f['error']}".rstrip("; ")
            )
    else:
        for i, e in st.recent_errors:
            _print(out, f"  ! move {i}: {e}")
        if st.errors_total > len(st.recent_errors):
            _print(out, f"  ... {st.errors_total - len(st.recent_errors)} more: `s3seg status --failed` lists them all")
    if st.problems:
        _print(out, f"{st.problems} moves failed or conflict: see `s3seg status --failed {st.manifest}`")
    return ExitCode.ITEMS_FAILED if st.problems else ExitCode.OK


def _run(args: argparse.Namespace, out: TextIO) -> int:
    cmd = args.command
    manifest = getattr(args, "manifest", None)
    if cmd in ("apply", "rollback", "status") and manifest is not None and not os.path.lexists(manifest):
        raise UsageError(f"manifest {manifest} does not exist (write one with `s3seg plan -c CONFIG -o {manifest}`)")
    if cmd in ("verify", "report"):
        return _run_audit(args, out)
    if cmd == "status":
        return _status(args, out)
    if cmd == "prune":
        return _run_prune(args, out)

    now = datetime.now()
    if cmd in ("plan", "run"):
        settings = _load_settings(args)  # exits 2 before any S3 client exists if the config is bad
        override = _override(args, settings)
        setup_logging(args.log_file or settings.log_file, args.verbose)
        target = _target(args)
        if cmd == "plan":
            output = args.output or commands.default_manifest_path(settings, now)
            report = commands.plan(
                settings, output, now=now, override=override, unlimited=args.all, target=target,
                inventory=args.inventory,
            )  # fmt: skip
            log.info("plan: %s", json.dumps(plan_summary(report)))
            if args.json:
                _print(out, json.dumps(_with_log_failure(plan_summary(report)), indent=2))
            else:
                print_plan(report, out)
                _print_log_failure(out)
            _plan_pictures(args, report.manifest_path, out)
            return ExitCode.OK
        progress = Progress(not args.no_progress, "run")
        try:
            report, result = commands.run(
                settings, now=now, override=override, unlimited=args.all, opts=_exec_opts(args),
                target=target, on_start=progress.start, on_progress=progress.advance, inventory=args.inventory,
            )  # fmt: skip
        finally:
            progress.close()
        _log_exec(result)
        if args.json:
            both = {"plan": plan_summary(report), "apply": exec_summary(result)}
            _print(out, json.dumps(_with_log_failure(both), indent=2))
        else:
            print_plan(report, out)
            print_exec(result, out)
            _print_log_failure(out)
        return exec_exit_code(result)

    # apply / rollback
    setup_logging(args.log_file or _manifest_log_file(args.manifest), args.verbose)
    progress = Progress(not args.no_progress and not args.dry_run, cmd)
    verb: Callable[..., commands.ExecResult] = commands.apply if cmd == "apply" else commands.rollback
    try:
        result = verb(
            args.manifest, _exec_opts(args), _target(args), on_start=progress.start, on_progress=progress.advance
        )
    finally:
        progress.close()
    _log_exec(result)
    if args.json:
        _print(out, json.dumps(_with_log_failure(exec_summary(result)), indent=2))
    else:
        print_exec(result, out)
        _print_log_failure(out)
    return exec_exit_code(result)


def _log_exec(result: commands.ExecResult) -> None:
    if not result.dry_run_lines:
        log.info("%s summary: %s", result.direction, json.dumps(exec_summary(result)))


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> NoReturn:
    """Entry point of the ``s3seg`` console script."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        # A path that is not UTF-8 (its bytes surrogate-escaped by Python) is printed as the same bytes, as ls
        # prints it, instead of failing the whole summary with UnicodeEncodeError.
        sys.stdout.reconfigure(errors="surrogateescape")
    sys.exit(run_cli(argv, out))


def run_cli(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Parse ``argv``, run the command, return the exit code (``main`` without ``sys.exit``, for tests)."""
    out = out or sys.stdout
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(_normalise_argv(raw))
    except UsageError as exc:
        _stderr(f"s3seg: error: {exc}")
        return ExitCode.USAGE
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if not args.command:
        parser.print_usage(sys.stderr)
        return ExitCode.USAGE
    # SIGTERM and SIGHUP (systemd, cron timeouts, a closed terminal) stop as cleanly as Ctrl-C. While moves run,
    # the executor routes all three to a graceful stop of its own; elsewhere (planning, probing) they interrupt.
    received: list[int] = []

    def interrupt(signum: int, frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    held = io.StringIO() if getattr(args, "quiet", False) else None
    try:
        code = int(_run(args, held or out))
        if held is not None and code != ExitCode.OK:
            out.write(held.getvalue())  # -q: the summary only when the command failed
        return code
    except S3SegError as exc:
        _stderr(f"s3seg: error: {exc}")
        logging.getLogger("s3seg").debug("error detail", exc_info=True)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _stderr("s3seg: interrupted; re-run the same command to resume")
        return 128 + received[0] if received else int(ExitCode.INTERRUPTED)
    finally:
        _flush(out)  # a closed pipe shows here for short outputs: dropped, not a traceback at exit


# -- verify / report / plan pictures (kept together so they merge beside other CLI changes) ----------------------
def _add_audit_parsers(sub: Any) -> None:
    plan_p = sub.choices["plan"]
    plan_p.add_argument("--heatmap", action="store_true", help="print a day x hour heatmap of the planned moves")
    plan_p.add_argument("--report", metavar="HTML", help="write a self-contained HTML review page of the plan here")
    for name, func in (("verify", commands.verify), ("report", _report_doc)):
        doc = (func.__doc__ or "").strip().splitlines()[0].replace("``", "")
        p = sub.add_parser(name, help=doc, description=doc)
        p.add_argument("manifest", help="manifest written by `s3seg plan`")
        p.add_argument("--journal", help="journal path (default: MANIFEST.journal, if it exists)")
        p.add_argument("-v", "--verbose", action="store_true", help="detailed log on stderr")
        p.add_argument("--log-file", help="also write the log here")
        if name == "verify":
            p.add_argument("--json", action="store_true", help="print the result as JSON (every discrepancy)")
            p.add_argument("--samples", type=int, default=10, help="sample keys per category (default 10)")
            p.add_argument(
                "--max-items",
                type=int,
                default=100_000,
                help="discrepancies listed in --json before the list is cut (default 100000)",
            )
            _target_flags(p)
        else:
            p.add_argument(
                "-o", "--output", metavar="HTML", help="write the HTML page here (default: print the heatmap)"
            )


def _add_prune_parser(sub: Any) -> None:
    doc = "Remove the manifests and journals of finished runs older than a given age from a state_dir."
    p = sub.add_parser("prune", help=doc, description=doc + " Unfinished runs are never removed.")
    p.add_argument("--state-dir", required=True, help="the directory (the config's state_dir)")
    p.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 30d, 12h (last modification)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing unless it fails")


def _run_prune(args: argparse.Namespace, out: TextIO) -> int:
    from s3seg import prune

    try:
        age = config_mod.parse_duration(args.older_than)
    except ValueError as exc:
        raise UsageError(f"--older-than {exc}") from None
    report = prune.prune(args.state_dir, age, dry_run=args.dry_run)
    if args.json:
        _print(out, json.dumps({"removed": report.removed, "kept": report.kept, "dry_run": args.dry_run}, indent=2))
        return ExitCode.OK
    verb = "would remove" if args.dry_run else "removed"
    for path in report.removed:
        _print(out, f"{verb} {path}")
    for path, why in report.kept.items():
        _print(out, f"kept {path}: {why}")
    _print(out, f"prune: {verb} {len(report.removed)} finished runs, kept {len(report.kept)} old unfinished ones")
    return ExitCode.OK


def _report_doc() -> None:
    """Review a manifest (and, after apply, its outcomes) as a heatmap or a self-contained HTML page."""


def _run_audit(args: argparse.Namespace, out: TextIO) -> ExitCode:
    setup_logging(args.log_file, args.verbose)
    if args.command == "verify":
        from s3seg import verify as verify_mod

        if args.samples < 0 or args.max_items < 0:
            raise UsageError("--samples and --max-items must be 0 or more")
        result = commands.verify(
            args.manifest, journal=args.journal, target=_target(args), samples=args.samples, max_items=args.max_items
        )
        if args.json:
            _print(out, json.dumps(verify_mod.summary(result), indent=2, ensure_ascii=False))
        else:
            for line in verify_mod.render(result):
                _print(out, line)
        return ExitCode.OK if result.ok else ExitCode.ITEMS_FAILED
    import os

    from s3seg import report as report_mod
    from s3seg.journal import journal_path_for

    if args.journal is not None and not os.path.exists(args.journal):
        raise UsageError(f"journal {args.journal} does not exist")
    pic = report_mod.collect(args.manifest, args.journal or journal_path_for(args.manifest))
    if args.output:
        _write_report(pic, args.output, out)
    else:
        for line in report_mod.heatmap_text(pic, unicode=_unicode_ok(out)):
            _print(out, line)
        for label, n in sorted(pic.statuses.items()):
            _print(out, f"  {label:<28} {n}")
    return ExitCode.OK


def _plan_pictures(args: argparse.Namespace, manifest_path: str, out: TextIO) -> None:
    if not (args.heatmap or args.report):
        return
    from s3seg import report as report_mod

    pic = report_mod.collect(manifest_path)
    dest = sys.stderr if args.json else out  # stdout holds the JSON document
    if args.heatmap:
        for line in report_mod.heatmap_text(pic, unicode=_unicode_ok(dest)):
            _print(dest, line)
    if args.report:
        _write_report(pic, args.report, dest)


def _write_report(pic: Any, path: str, out: TextIO) -> None:
    from s3seg import report as report_mod

    try:
        report_mod.write_html(pic, path)
    except OSError as exc:
        raise UsageError(f"cannot write the report {path}: {exc.strerror or exc}") from None
    _print(out, f"report: {path}")


def _unicode_ok(out: TextIO) -> bool:
    return (getattr(out, "encoding", None) or "").lower().replace("-", "") in ("utf8", "utf_8")
