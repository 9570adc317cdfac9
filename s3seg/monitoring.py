"""What a monitoring system reads after each run: one JSON run record and, optionally, a Prometheus textfile.

Owns: the run record (one JSON object per invocation of plan, run, apply or rollback: command, exit code,
duration, the plan's and the moves' summaries; ``cli`` logs it on one line) and its rendering in the Prometheus
text format, written the way node_exporter's textfile collector needs it (a temporary file in the same
directory, then a rename, so the collector never reads half a file).

Must not: print, touch S3, or decide exit codes. It works on the summaries ``cli`` already builds (plain dicts).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from s3seg import __version__

RECORD_FORMAT = 1  # the run record's "s3seg_run" field: bumped if a field changes meaning


def run_record(
    command: str,
    exit_code: int,
    *,
    started: float,
    ended: float,
    plan: Mapping[str, Any] | None = None,
    moves: Mapping[str, Any] | None = None,
    error: str = "",
) -> dict[str, Any]:
    """One invocation, as data: ``plan`` is the plan summary (``--json`` of plan), ``moves`` the apply or
    rollback summary; either is None when the command did not get that far (or has no such part)."""
    return {
        "s3seg_run": RECORD_FORMAT,
        "version": __version__,
        "command": command,
        "exit_code": exit_code,
        "ok": exit_code == 0,
        "started": _iso(started),
        "ended": _iso(ended),
        "duration_s": round(max(0.0, ended - started), 3),
        "error": error or None,
        "plan": dict(plan) if plan is not None else None,
        "moves": dict(moves) if moves is not None else None,
    }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


# -- Prometheus text format -------------------------------------------------------------------------------------
_HELP = {
    "s3seg_last_run_exit_code": "Exit code of the last s3seg run (0: success; see the README's exit codes).",
    "s3seg_last_run_success": "1 if the last s3seg run exited 0, else 0.",
    "s3seg_last_run_timestamp_seconds": "When the last s3seg run ended (Unix time).",
    "s3seg_last_success_timestamp_seconds": "When an s3seg run last ended with exit code 0 (Unix time; 0: never).",
    "s3seg_last_run_duration_seconds": "Wall-clock duration of the last s3seg run.",
    "s3seg_last_run_moves": "Moves the last run finished, per outcome (journal status).",
    "s3seg_last_run_moves_todo": "Moves the last run set out to do.",
    "s3seg_last_run_objects_per_second": "Moves finished per second by the last run's apply or rollback.",
    "s3seg_last_plan_listed_objects": "Objects the last plan listed.",
    "s3seg_last_plan_planned_moves": "Moves the last plan wrote to its manifest.",
    "s3seg_last_plan_error_dir_moves": "Planned moves to the error folder (names that did not match).",
    "s3seg_last_plan_warnings": "Warnings the last plan gave (a typo in s3_dir, a pattern matching nothing, ...).",
    "s3seg_last_plan_outcome": "1 for the last plan's outcome: planned, nothing-listed, nothing-planned, all-to-error.",
}


def prometheus_text(record: Mapping[str, Any], *, last_success: float | None = None) -> str:
    """The record as Prometheus text exposition. ``last_success``: the previous file's success time, kept when
    this run failed (so an alert on "no success for N hours" sees the last real one)."""
    command = str(record["command"])
    ended = datetime.fromisoformat(str(record["ended"])).timestamp()
    success = ended if record["ok"] else (last_success or 0.0)
    samples: list[tuple[str, dict[str, str], float]] = [
        ("s3seg_last_run_exit_code", {}, float(record["exit_code"])),
        ("s3seg_last_run_success", {}, 1.0 if record["ok"] else 0.0),
        ("s3seg_last_run_timestamp_seconds", {}, ended),
        ("s3seg_last_success_timestamp_seconds", {}, success),
        ("s3seg_last_run_duration_seconds", {}, float(record["duration_s"])),
    ]
    moves = record.get("moves")
    if moves:
        samples += [("s3seg_last_run_moves", {"outcome": k}, float(n)) for k, n in moves["this_run"].items()]
        samples.append(("s3seg_last_run_moves_todo", {}, float(moves["todo"])))
        samples.append(("s3seg_last_run_objects_per_second", {}, float(moves["objects_per_s"])))
    plan = record.get("plan")
    if plan:
        samples += [
            ("s3seg_last_plan_listed_objects", {}, float(plan["listed"])),
            ("s3seg_last_plan_planned_moves", {}, float(plan["planned"])),
            ("s3seg_last_plan_error_dir_moves", {}, float(plan["to_error_dir"])),
            ("s3seg_last_plan_warnings", {}, float(len(plan["warnings"]))),
            ("s3seg_last_plan_outcome", {"outcome": str(plan["outcome"])}, 1.0),
        ]
    return "".join(_lines(samples, command))


def _lines(samples: list[tuple[str, dict[str, str], float]], command: str) -> Iterator[str]:
    seen: set[str] = set()
    for name, labels, value in samples:
        if name not in seen:
            seen.add(name)
            yield f"# HELP {name} {_HELP[name]}\n# TYPE {name} gauge\n"
        shown = ",".join(f'{k}="{_escape(v)}"' for k, v in {"command": command, **labels}.items())
        yield f"{name}{{{shown}}} {_number(value)}\n"


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def last_success(path: str, command: str) -> float | None:
    """The ``s3seg_last_success_timestamp_seconds`` of ``command`` in an earlier textfile, if there is one."""
    wanted = re.compile(r'^s3seg_last_success_timestamp_seconds\{command="' + re.escape(command) + r'"\} (\S+)$', re.M)
    try:
        with open(path, encoding="utf-8") as f:
            found = wanted.search(f.read(1 << 20))
        return float(found.group(1)) if found else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def write_textfile(path: str, text: str) -> None:
    """Write ``path`` whole or not at all: a temporary file in its directory, then a rename (a collector reading
    it never sees half a file). Raises ``OSError``."""
    path = os.path.expanduser(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".s3seg-metrics-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # the collector usually runs as another user
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
