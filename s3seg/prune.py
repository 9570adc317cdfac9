"""``s3seg prune``: remove the manifests and journals of finished runs older than N days from a state_dir.

A run is finished when every move of its manifest is moved (``APPLY_DONE``) or rolled back (``ROLLBACK_DONE``):
nothing remains for apply, no rollback is half done, no failure or conflict waits for an operator. A manifest
that was never applied (no journal) is a plan waiting for review: kept, unless it plans nothing at all. A
manifest or journal that cannot be read is kept (and reported). Age is the newest modification time of the
manifest, its journal and the journal's lock file, so a run still writing is never old.

Only files named ``*.jsonl`` with their ``.journal`` / ``.journal.lock`` companions are touched. Reads and
removes local files only; sends nothing to S3.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field

from s3seg.errors import S3SegError, UsageError
from s3seg.journal import APPLY_DONE, ROLLBACK_DONE, journal_path_for, replay
from s3seg.manifest import Manifest

log = logging.getLogger(__name__)

FINISHED = APPLY_DONE | ROLLBACK_DONE


@dataclass(slots=True)
class PruneReport:
    removed: list[str] = field(default_factory=list)  # manifests removed (with their journals)
    kept: dict[str, str] = field(default_factory=dict)  # manifest -> why it was kept (only those old enough)


def _companions(manifest: str) -> list[str]:
    journal = journal_path_for(manifest)
    return [manifest, journal, journal + ".lock"]


def _why_kept(manifest: str) -> str:
    """Empty if ``manifest`` is a finished run; otherwise why it must stay."""
    try:
        info = Manifest(manifest).verify()
        journal = journal_path_for(manifest)
        if not os.path.exists(journal):
            return "" if info.entries == 0 else "never applied (a plan waiting for review)"
        state, _ = replay(journal, manifest_sha256=info.sha256, entries=info.entries)
    except (S3SegError, OSError, ValueError) as exc:
        return f"unreadable: {exc}"
    open_ = {s.label: n for s, n in state.counts().items() if s not in FINISHED}
    if open_:
        return "not finished: " + ", ".join(f"{label} {n}" for label, n in sorted(open_.items()))
    return ""


def prune(state_dir: str, older_than: float, *, dry_run: bool = False, now: float | None = None) -> PruneReport:
    """Remove finished runs whose files were last modified more than ``older_than`` seconds ago."""
    if not os.path.isdir(state_dir):
        raise UsageError(f"--state-dir {state_dir} is not a directory")
    cutoff = (time.time() if now is None else now) - older_than
    report = PruneReport()
    for name in sorted(os.listdir(state_dir)):
        if not name.endswith(".jsonl"):
            continue
        manifest = os.path.join(state_dir, name)
        if not os.path.isfile(manifest):
            continue
        mtimes = [os.stat(p).st_mtime for p in _companions(manifest) if os.path.exists(p)]
        if max(mtimes) > cutoff:
            continue
        why = _why_kept(manifest)
        if why:
            report.kept[manifest] = why
            continue
        if not dry_run:
            for path in _companions(manifest)[::-1]:  # the manifest last: a crash between leaves no orphan journal
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            log.info("pruned %s (finished)", manifest)
        report.removed.append(manifest)
    return report
