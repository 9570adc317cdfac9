"""The ``s3seg`` command line: argv -> ``commands`` -> printed summary and exit code.

Owns: argument parsing, logging handlers (the log file, stderr), tqdm progress bars, the human and ``--json``
summaries, the run record and metrics file (``s3seg.monitoring`` renders them), and mapping errors to exit
codes (the only place that calls ``sys.exit``).

Layout: every flag is one row of ``FLAGS`` (names, ``add_argument`` keywords, the commands that take it);
``build_parser`` adds each row to each of its commands. Each command has one handler in ``HANDLERS``
(``args, out, run -> exit code``) that calls one ``commands`` verb and prints its summary; ``run_cli`` parses,
dispatches, maps errors to exit codes and writes the run record.

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
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, NoReturn, TextIO

from tqdm import tqdm

from s3seg import __version__, commands, monitoring
from s3seg import config as config_mod
from s3seg.errors import ExitCode, S3SegError, UsageError, os_reason, show_path
from s3seg.journal import APPLY_DONE, ROLLBACK_DONE
from s3seg.naming import parse_datetime_arg
from s3seg.planner import PlanReport

log = logging.getLogger("s3seg")

COMMANDS = ("plan", "apply", "rollback", "status", "run", "verify", "report", "prune")

# -- parser: every flag in one table -------------------------------------------------------------------------
PLAN_RUN = frozenset({"plan", "run"})
EXEC = frozenset({"apply", "rollback", "run"})  # commands that move objects
LOGGED = frozenset({"plan", "run", "apply", "rollback"})  # commands with a config or a manifest's config
WHERE_S3 = LOGGED | {"verify"}  # commands that send S3 requests and take the "where S3 is" flags
AUDIT = frozenset({"verify", "report"})
MANIFEST_IN = frozenset({"apply", "rollback", "status", "verify", "report"})


@dataclass(frozen=True, slots=True)
class Flag:
    """One row of the flag table: ``add_argument(*names, **kwargs)`` on every parser in ``commands``."""

    names: tuple[str, ...]
    kwargs: dict[str, Any]
    commands: frozenset[str]
    group: str = ""  # an argument group of ``-h`` ("" : the command's own options)


def _f(*names: str, on: Iterable[str], group: str = "", **kwargs: Any) -> Flag:
    return Flag(names, kwargs, frozenset(on), group)


_S3 = "where S3 is"
_EX = "execution"
FLAGS: tuple[Flag, ...] = (
    # plan and run: what to plan
    _f("-c", "--config", on=PLAN_RUN, required=True, help="XML config file"),
    _f(
        "-d", "--datetime", on=PLAN_RUN,
        help="date for files when there is no match_pattern: ISO 8601 or the config's datetime_format",
    ),
    _f("--recursive", on=PLAN_RUN, action="store_true", help="also plan keys in sub-folders of s3_dir"),
    _f("--all", on=PLAN_RUN, action="store_true", help="lift the n_loops cap: plan every listed object"),
    _f(
        "--include", on=PLAN_RUN, action="append", default=[], metavar="GLOB",
        help="plan only keys whose path relative to s3_dir matches (repeatable; adds to <include>)",
    ),
    _f(
        "--exclude", on=PLAN_RUN, action="append", default=[], metavar="GLOB",
        help="never plan keys whose path relative to s3_dir matches, e.g. '.tmp_*.part' (repeatable; beats --include)",
    ),
    _f(
        "--min-age", on=PLAN_RUN, metavar="DURATION",
        help="skip objects modified less than this ago: 30s, 10m, 2h (replaces <min_age>)",
    ),
    _f(
        "--inventory", on=PLAN_RUN, metavar="S3_URL",
        help="plan from this S3 Inventory report (s3://BUCKET/PATH/manifest.json; CSV, or Parquet/ORC with "
        "s3seg[inventory]) instead of listing s3_dir",
    ),
    _f("-o", "--output", on={"plan"}, help="manifest path (default: s3seg-<time>.jsonl in state_dir)"),
    # the manifest others read
    _f("manifest", on=MANIFEST_IN, help="manifest written by `s3seg plan`"),
    _f("--journal", on=EXEC, group=_EX, help="journal path (default: MANIFEST.journal)"),
    _f("--journal", on={"status"}, help="journal path (default: MANIFEST.journal)"),
    _f("--journal", on=AUDIT, help="journal path (default: MANIFEST.journal, if it exists)"),
    # how to move
    _f(
        "--processes", on=EXEC, group=_EX, type=int,
        help="worker processes (default: config 'processes'; 0 = no pool)",
    ),
    _f(
        "--threads", on=EXEC, group=_EX, type=int,
        help="requests in flight per worker process: the upper bound with adaptive concurrency, the exact count "
        "with --concurrency fixed (default: config 'n_workers', 512)",
    ),
    _f(
        "--concurrency", on=EXEC, group=_EX, choices=("adaptive", "fixed"),
        help="adaptive (default): each process finds its own number in flight, up to --threads, backing off on "
        "rising latency and on 503 SlowDown; fixed: always --threads",
    ),
    _f(
        "--max-requests-per-second", on=EXEC, group=_EX, type=float, metavar="RATE",
        help="cap the whole run's S3 request rate (shared by its processes; default: config "
        "'max_requests_per_second', none)",
    ),
    _f(
        "--batch-size", on=EXEC, group=_EX, type=int,
        help="moves per batch sent to a worker (default 1000, the most)",
    ),
    _f(
        "--conditional-writes", on=EXEC, group=_EX, choices=("auto", "server", "client"),
        help="trust the store's conditional headers (server), check with HEAD (client), or probe (auto)",
    ),
    _f("--no-progress", on=EXEC, group=_EX, action="store_true", help="no progress bar even on a terminal"),
    _f(
        "--lock-wait", on=EXEC, group=_EX, type=float, default=0.0, metavar="SECONDS",
        help="wait this long for another s3seg run on the same buckets to finish (default 0: refuse at once, "
        "exit 3, naming the other run)",
    ),
    _f(
        "--executor", on=EXEC, group=_EX, choices=("local", "dask"), default="local",
        help="run batches on local worker processes (default) or on a Dask cluster (pip install 's3seg[dask]')",
    ),
    _f(
        "--scheduler", on=EXEC, group=_EX, metavar="ADDRESS",
        help="Dask scheduler, e.g. tcp://HOST:8786 (with --executor dask; without it a local cluster of "
        "--processes workers is started)",
    ),
    _f("--dry-run", on=EXEC, action="store_true", help="print what would be done; send nothing to S3"),
    # status
    _f("--json", on={"status"}, action="store_true", help="print the status as JSON on stdout"),
    _f("--failed", on={"status"}, action="store_true", help="list every failed or conflicted move with its keys"),
    # output and logging
    _f("-v", "--verbose", on=LOGGED, action="store_true", help="detailed log (to the log file and stderr)"),
    _f("-v", "--verbose", on=AUDIT, action="store_true", help="detailed log on stderr"),
    _f("--log-file", on=LOGGED, help="write the log here instead of the config's log_file"),
    _f("--log-file", on=AUDIT, help="also write the log here"),
    _f("--json", on=LOGGED, action="store_true", help="print the summary as JSON on stdout"),
    _f("--json", on={"verify"}, action="store_true", help="print the result as JSON (every discrepancy)"),
    _f(
        "-q", "--quiet", on=LOGGED, action="store_true",
        help="print no summary unless the command fails (for cron: mail on error)",
    ),
    _f(
        "--metrics-file", on=LOGGED, metavar="PATH",
        help="write a Prometheus textfile here after the run (node_exporter textfile collector; replaces the "
        "config's metrics_file)",
    ),
    # verify
    _f("--samples", on={"verify"}, type=int, default=10, help="sample keys per category (default 10)"),
    _f(
        "--max-items", on={"verify"}, type=int, default=100_000,
        help="discrepancies listed in --json before the list is cut (default 100000)",
    ),
    # report
    _f("-o", "--output", on={"report"}, metavar="HTML", help="write the HTML page here (default: print the heatmap)"),
    # where S3 is
    _f(
        "--endpoint-url", on=WHERE_S3, group=_S3,
        help="S3-compatible endpoint (MinIO, Ceph, SeaweedFS, a local test server)",
    ),
    _f("--region", on=WHERE_S3, group=_S3, help="AWS region"),
    _f("--profile", on=WHERE_S3, group=_S3, help="AWS profile from ~/.aws/config"),
    _f(
        "--botocore-only", on=WHERE_S3, group=_S3, action="store_true",
        help="send every request through botocore (by default per-object calls and listing take "
        "s3seg's lean HTTP path: same requests, a fifth of the client CPU)",
    ),
    # plan pictures
    _f("--heatmap", on={"plan"}, action="store_true", help="print a day x hour heatmap of the planned moves"),
    _f("--report", on={"plan"}, metavar="HTML", help="write a self-contained HTML review page of the plan here"),
    # prune
    _f("--state-dir", on={"prune"}, required=True, help="the directory (the config's state_dir)"),
    _f("--older-than", on={"prune"}, required=True, metavar="DURATION", help="e.g. 30d, 12h (last modification)"),
    _f("--dry-run", on={"prune"}, action="store_true", help="list what would be removed; remove nothing"),
    _f("--json", on={"prune"}, action="store_true", help="print the result as JSON on stdout"),
    _f("-q", "--quiet", on={"prune"}, action="store_true", help="print nothing unless it fails"),
)  # fmt: skip


def _first_line(func: Callable[..., Any]) -> str:
    return (func.__doc__ or "").strip().splitlines()[0].replace("``", "")


def _report_doc() -> None:
    """Review a manifest (and, after apply, its outcomes) as a heatmap or a self-contained HTML page."""


_PRUNE_DOC = "Remove the manifests and journals of finished runs older than a given age from a state_dir."
# command -> (help, description): the verbs' docstrings, as alembic derives its CLI from its commands.
_DOCS: dict[str, tuple[str, str]] = {
    **{
        name: (_first_line(func), _first_line(func))
        for name, func in (
            ("plan", commands.plan),
            ("apply", commands.apply),
            ("rollback", commands.rollback),
            ("status", commands.status),
            ("run", commands.run),
            ("verify", commands.verify),
            ("report", _report_doc),
        )
    },
    "prune": (_PRUNE_DOC, _PRUNE_DOC + " Unfinished runs are never removed."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s3seg",
        description="Move S3 objects into date-named prefixes: plan, review, apply, roll back. "
        "Run `s3seg COMMAND -h` for a command's flags. `s3seg -c CONFIG` alone means `s3seg run -c CONFIG`.",
    )
    parser.add_argument("--version", action="version", version=f"s3seg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        doc, description = _DOCS[name]
        p = sub.add_parser(name, help=doc, description=description)
        groups: dict[str, Any] = {"": p}
        for flag in FLAGS:
            if name in flag.commands:
                if flag.group not in groups:
                    groups[flag.group] = p.add_argument_group(flag.group)
                groups[flag.group].add_argument(*flag.names, **flag.kwargs)
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
        if word in COMMANDS and not (i and argv[i - 1] in _VALUE_OPTIONS):
            return [word, *argv[:i], *argv[i + 1 :]]
    return ["run", *argv]


# Options taking a value, so that the word after them is never mistaken for the command (``--profile plan``).
_VALUE_OPTIONS = frozenset(
    name
    for flag in FLAGS
    if flag.names[0].startswith("-") and flag.kwargs.get("action") != "store_true"
    for name in flag.names
)


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
    if not verbose:  # a line per failed move goes to the log file; stderr has the summary's first ten
        sh.addFilter(lambda record: not getattr(record, "s3seg_per_object", False))
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
        self.phased = False  # the bar shows a phase (cleared when the first moves finish)

    def start(self, total: int) -> None:
        if self.enabled and total:
            self.bar = tqdm(total=total, desc=self.desc, unit="obj", dynamic_ncols=True, smoothing=0.1)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            if self.phased:  # the first moves are done: the bar's own figures say the rest
                self.phased = False
                self.bar.set_postfix_str("", refresh=False)
            self.bar.update(n)

    def phase(self, text: str) -> None:
        """What the run is doing before its first batch (checking the store, probing, starting workers)."""
        if self.bar is not None:
            self.phased = True
            self.bar.set_postfix_str(text)
        elif self.enabled:
            _stderr(f"s3seg: {text} ...")

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
    # Each option is the flag of the same name (a command without that flag gets the default), but the log level.
    named: dict[str, Any] = {f.name: getattr(args, f.name, f.default) for f in fields(commands.ExecOptions)}
    del named["log_level"]
    return commands.ExecOptions(**named, log_level=logging.DEBUG if args.verbose else logging.INFO)


def _load_settings(args: argparse.Namespace) -> config_mod.Settings:
    settings = config_mod.load(args.config)
    if args.recursive and not settings.recursive:
        settings = replace(settings, recursive=True)
    return _with_filters(args, settings)


def _with_filters(args: argparse.Namespace, settings: config_mod.Settings) -> config_mod.Settings:
    """``--include`` / ``--exclude`` add to the config's globs; ``--min-age`` replaces its ``min_age``."""
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
    return replace(settings, **changes) if changes else settings


def _override(args: argparse.Namespace, settings: config_mod.Settings) -> datetime | None:
    if args.datetime is None:
        return None
    if not args.datetime.strip():  # an empty -d (an unset shell variable, say) must not mean "now - time_delay"
        raise UsageError("-d/--datetime is empty: give a date (ISO 8601 or the config's datetime_format) or drop it")
    try:
        return parse_datetime_arg(args.datetime, settings.datetime_format)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _manifest_settings(path: str) -> config_mod.Settings:
    """The settings recorded in a manifest's header (apply/rollback log, and write metrics, where plan did).
    Unreadable: the defaults, since ``Manifest.verify`` then refuses the manifest with the real reason."""
    import gzip

    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 20)
            if first.startswith(b"\x1f\x8b"):  # a gzip manifest
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as g:
                    first = g.readline(1 << 20)
        header = json.loads(first)
        return config_mod.Settings.from_header(header.get("config") if isinstance(header, dict) else None)
    except (OSError, ValueError, EOFError, RecursionError):
        return config_mod.Settings.from_header(None)


# -- one handler per command ----------------------------------------------------------------------------------
@dataclass(slots=True)
class Run:
    """One invocation, as the run record and the metrics file see it (handlers fill it in as they go)."""

    command: str
    started: float = field(default_factory=time.time)
    metrics_file: str | None = None
    plan: PlanReport | None = None
    result: commands.ExecResult | None = None
    error: str = ""


Handler = Callable[[argparse.Namespace, TextIO, Run], int]


def _check_manifest(args: argparse.Namespace) -> None:
    if not os.path.lexists(args.manifest):
        raise UsageError(
            f"manifest {args.manifest} does not exist (write one with `s3seg plan -c CONFIG -o {args.manifest}`)"
        )


def _start_plan(args: argparse.Namespace, run: Run) -> tuple[config_mod.Settings, datetime | None]:
    """plan and run: the config (exits 2 before any S3 client exists if it is bad), -d, logging."""
    settings = _load_settings(args)
    override = _override(args, settings)
    setup_logging(args.log_file or settings.log_file, args.verbose)
    run.metrics_file = args.metrics_file or settings.metrics_file
    return settings, override


def _plan(args: argparse.Namespace, out: TextIO, run: Run) -> int:
    """``plan``: list once, write the manifest, print the summary (and the pictures asked for)."""
    now = datetime.now()
    settings, override = _start_plan(args, run)
    output = args.output or commands.default_manifest_path(settings, now)
    report = commands.plan(
        settings, output, now=now, override=override, unlimited=args.all, target=_target(args),
        inventory=args.inventory,
    )  # fmt: skip
    run.plan = report
    log.info("plan: %s", json.dumps(plan_summary(report)))
    if args.json:
        _print(out, json.dumps(_with_log_failure(plan_summary(report)), indent=2))
    else:
        print_plan(report, out)
        _print_log_failure(out)
    _plan_pictures(args, report.manifest_path, out)
    return ExitCode.OK


def _run(args: argparse.Namespace, out: TextIO, run: Run) -> int:
    """``run``: plan then apply under one lease."""
    now = datetime.now()
    settings, override = _start_plan(args, run)
    progress = Progress(not args.no_progress, "run")
    try:
        report, result = commands.run(
            settings, now=now, override=override, unlimited=args.all, opts=_exec_opts(args), target=_target(args),
            on_start=progress.start, on_progress=progress.advance, on_phase=progress.phase, inventory=args.inventory,
        )  # fmt: skip
    finally:
        progress.close()
    run.plan, run.result = report, result
    _log_exec(result)
    if args.json:
        both = {"plan": plan_summary(report), "apply": exec_summary(result)}
        _print(out, json.dumps(_with_log_failure(both), indent=2))
    else:
        print_plan(report, out)
        print_exec(result, out)
        _print_log_failure(out)
    return exec_exit_code(result)


def _execute(verb: Callable[..., commands.ExecResult]) -> Handler:
    """``apply`` / ``rollback``: log where the plan logged, run the manifest, print the summary."""

    def handler(args: argparse.Namespace, out: TextIO, run: Run) -> int:
        _check_manifest(args)
        planned = _manifest_settings(args.manifest)
        setup_logging(args.log_file or planned.log_file or None, args.verbose)
        run.metrics_file = args.metrics_file or planned.metrics_file
        progress = Progress(not args.no_progress and not args.dry_run, args.command)
        try:
            result = verb(
                args.manifest, _exec_opts(args), _target(args), on_start=progress.start,
                on_progress=progress.advance, on_phase=progress.phase,
            )  # fmt: skip
        finally:
            progress.close()
        run.result = result
        _log_exec(result)
        if args.json:
            _print(out, json.dumps(_with_log_failure(exec_summary(result)), indent=2))
        else:
            print_exec(result, out)
            _print_log_failure(out)
        return exec_exit_code(result)

    return handler


def _status(args: argparse.Namespace, out: TextIO, run: Run) -> int:
    """``status``: counts in the operator's words; ``--failed`` lists every failed or conflicted move with its
    keys. Exits 1 while failures or conflicts remain (re-run apply, or resolve them), 0 otherwise."""
    _check_manifest(args)
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


def _verify(args: argparse.Namespace, out: TextIO, run: Run) -> int:
    """``verify``: the audit by listing; exit 1 on any discrepancy."""
    from s3seg import verify as verify_mod

    setup_logging(args.log_file, args.verbose)
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


def _report(args: argparse.Namespace, out: TextIO, run: Run) -> int:
    """``report``: the heatmap on the terminal, or the HTML page with ``-o``."""
    from s3seg import report as report_mod
    from s3seg.journal import journal_path_for

    setup_logging(args.log_file, args.verbose)
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


def _prune(args: argparse.Namespace, out: TextIO, run: Run) -> int:
    """``prune``: remove finished runs' files from a state_dir."""
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


HANDLERS: dict[str, Handler] = {
    "plan": _plan,
    "apply": _execute(commands.apply),
    "rollback": _execute(commands.rollback),
    "status": _status,
    "run": _run,
    "verify": _verify,
    "report": _report,
    "prune": _prune,
}


def _log_exec(result: commands.ExecResult) -> None:
    if not result.dry_run_lines:
        log.info("%s summary: %s", result.direction, json.dumps(exec_summary(result)))


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> NoReturn:
    """Entry point of the ``s3seg`` console script: ends the process (``run_cli`` is the in-process form)."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        # A path that is not UTF-8 (its bytes surrogate-escaped by Python) is printed as the same bytes, as ls
        # prints it, instead of failing the whole summary with UnicodeEncodeError.
        sys.stdout.reconfigure(errors="surrogateescape")
    _exit(run_cli(argv, out))


def _exit(code: int) -> NoReturn:
    """End the process once everything it owes is written, without the interpreter's teardown.

    Freeing botocore's models, the modules and their objects took 0.15-0.22 s after every command had finished
    (measured at the end of plan and apply): a tenth of a plan, paid by every cron run. Nothing is lost by
    skipping it: the journal and the manifest are fsynced and closed before their command returns, the worker
    pool is shut down (its resource tracker has nothing left to clean up), and here the log file is flushed and
    closed (``logging.shutdown``) and stdout and stderr are flushed.
    A thread still running (none is, after any command) means work in progress: the normal exit waits for it.
    """
    if threading.active_count() > 1:
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be said anyway
            stream.flush()
    os._exit(code)


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
    run = Run(args.command, metrics_file=getattr(args, "metrics_file", None))
    code = int(ExitCode.INTERRUPTED)
    try:
        code = int(HANDLERS[args.command](args, held or out, run))
        if held is not None and code != ExitCode.OK:
            out.write(held.getvalue())  # -q: the summary only when the command failed
        return code
    except S3SegError as exc:
        _stderr(f"s3seg: error: {exc}")
        logging.getLogger("s3seg").debug("error detail", exc_info=True)
        code, run.error = int(exc.exit_code), str(exc)
        return code
    except KeyboardInterrupt:
        _stderr("s3seg: interrupted; re-run the same command to resume")
        code = 128 + received[0] if received else int(ExitCode.INTERRUPTED)
        run.error = "interrupted"
        return code
    finally:
        if args.command in LOGGED:
            try:
                _record(run, code)
            except (OSError, ValueError, TypeError, KeyError) as exc:  # monitoring never changes the exit code
                _stderr(f"s3seg: warning: could not write the run record: {exc}")
        _flush(out)  # a closed pipe shows here for short outputs: dropped, not a traceback at exit


def _record(run: Run, code: int) -> None:
    """The run record: one JSON line in the log (every run, for log-based monitoring) and, with
    ``--metrics-file`` / ``<metrics_file>``, the Prometheus textfile. Neither can change the exit code."""
    record = monitoring.run_record(
        run.command, code, started=run.started, ended=time.time(),
        plan=plan_summary(run.plan) if run.plan is not None else None,
        moves=exec_summary(run.result) if run.result is not None and not run.result.dry_run else None,
        error=run.error,
    )  # fmt: skip
    log.info("run record: %s", json.dumps(record, separators=(",", ":"), ensure_ascii=False))
    if run.metrics_file:
        path = os.path.expanduser(run.metrics_file)
        text = monitoring.prometheus_text(record, last_success=monitoring.last_success(path, run.command))
        try:
            monitoring.write_textfile(path, text)
        except OSError as exc:
            why = f"cannot write the metrics file {show_path(path)}: {os_reason(exc, path)}"
            _stderr(f"s3seg: warning: {why}")
            log.warning("%s", why)


# -- plan pictures ---------------------------------------------------------------------------------------------
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
