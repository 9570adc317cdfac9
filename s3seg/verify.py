"""An independent audit of a manifest against the store: where is every planned object now? Read-only on S3.

Every move has two places, its source key and its destination key. ``audit`` lists the prefixes the manifest
involves (ListObjectsV2, optionally in parallel ranges through ``s3seg.listing``; never a HEAD per object) and
classifies each move by what sits at each place: the planned object (planned size and an accepted ETag),
another object, or nothing::

    source \\ destination   nothing            planned               other
    planned                at-source (ok)     both                  at-source-destination-taken
    nothing                neither            at-destination (ok)   destination-differs
    other                  source-differs     at-destination-source-taken   both-differ

Only ``at-source`` (not applied yet, or rolled back) and ``at-destination`` (moved) account for a move; every
other category is a discrepancy. The verdict comes from the listing alone. The journal, when there is one, is
read only to learn ETags a copy legitimately changed (a multipart or SSE-KMS copy gives the copy a new ETag;
apply and rollback record those in their ``copied`` records).

Memory is near-flat for manifests of any size: both places of every move go into a temporary on-disk SQLite
table (rowid ``2*id-1`` the source, ``2*id`` the destination, indexed by bucket and key), each listing page
marks the rows it finds in one ``executemany``, and a final pass reads the rows back in rowid order beside a
second stream of the manifest. Only the ETags the journal records as changed, the per-category counts, a few
sample keys and at most ``max_items`` discrepancy records stay in memory.

Must not: write to S3, decide what to do about a discrepancy, or build S3 clients (``commands.verify`` does).
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from s3seg.config import Settings
from s3seg.journal import expand_ids, replay
from s3seg.listing import Lister, list_pages
from s3seg.manifest import Manifest, Move, read_lines
from s3seg.objects import Listed

log = logging.getLogger(__name__)

AT_SOURCE = "at-source"
AT_DESTINATION = "at-destination"
BOTH = "both"
NEITHER = "neither"
SOURCE_DIFFERS = "source-differs"
DESTINATION_DIFFERS = "destination-differs"
AT_SOURCE_DESTINATION_TAKEN = "at-source-destination-taken"
AT_DESTINATION_SOURCE_TAKEN = "at-destination-source-taken"
BOTH_DIFFER = "both-differ"

ACCOUNTED = frozenset({AT_SOURCE, AT_DESTINATION})
CATEGORIES = (
    AT_DESTINATION,
    AT_SOURCE,
    BOTH,
    NEITHER,
    SOURCE_DIFFERS,
    DESTINATION_DIFFERS,
    AT_SOURCE_DESTINATION_TAKEN,
    AT_DESTINATION_SOURCE_TAKEN,
    BOTH_DIFFER,
)
DESCRIPTIONS = {
    AT_DESTINATION: "moved: the planned object is at its destination only",
    AT_SOURCE: "not moved (or rolled back): the planned object is at its source only",
    BOTH: "duplicate: the planned object is at both keys",
    NEITHER: "missing: nothing at either key",
    SOURCE_DIFFERS: "a different object at the source, nothing at the destination: the planned object is gone",
    DESTINATION_DIFFERS: "a different object at the destination, nothing at the source: the planned object is gone",
    AT_SOURCE_DESTINATION_TAKEN: "at the source, but a different object occupies the destination",
    AT_DESTINATION_SOURCE_TAKEN: "at the destination, and a different (new) object sits at the source key",
    BOTH_DIFFER: "different objects at both keys: the planned object is gone",
}

DEFAULT_SAMPLES = 10
DEFAULT_MAX_ITEMS = 100_000  # discrepancy records kept for --json; beyond it the list says it was cut


class Place(enum.IntEnum):
    ABSENT = 0
    PLANNED = 1
    OTHER = 2


_VERDICT: dict[tuple[Place, Place], str] = {
    (Place.PLANNED, Place.ABSENT): AT_SOURCE,
    (Place.ABSENT, Place.PLANNED): AT_DESTINATION,
    (Place.PLANNED, Place.PLANNED): BOTH,
    (Place.ABSENT, Place.ABSENT): NEITHER,
    (Place.OTHER, Place.ABSENT): SOURCE_DIFFERS,
    (Place.ABSENT, Place.OTHER): DESTINATION_DIFFERS,
    (Place.PLANNED, Place.OTHER): AT_SOURCE_DESTINATION_TAKEN,
    (Place.OTHER, Place.PLANNED): AT_DESTINATION_SOURCE_TAKEN,
    (Place.OTHER, Place.OTHER): BOTH_DIFFER,
}


@dataclass(frozen=True, slots=True)
class AcceptedEtags:
    """ETags a copy gave an object instead of the planned one, per move id (from the journal)."""

    source: dict[int, set[str]] = field(default_factory=dict)  # rollback copies back to the source
    destination: dict[int, set[str]] = field(default_factory=dict)  # apply copies to the destination


@dataclass(slots=True)
class VerifyReport:
    manifest: str
    entries: int
    journal: str | None = None  # the journal whose copy ETags were accepted, if any
    prefixes: list[str] = field(default_factory=list)  # s3:// URLs listed
    listed: int = 0  # objects listed under those prefixes
    counts: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[str]] = field(default_factory=dict)  # category -> a few "s3://..." descriptions
    items: list[dict[str, Any]] = field(default_factory=list)  # discrepancies, at most max_items
    items_complete: bool = True
    elapsed: float = 0.0

    @property
    def discrepancies(self) -> int:
        return sum(n for c, n in self.counts.items() if c not in ACCOUNTED)

    @property
    def ok(self) -> bool:
        return self.discrepancies == 0


# -- journal -----------------------------------------------------------------------------------------------------
def accepted_etags(journal_path: str, *, manifest_sha256: str, entries: int) -> AcceptedEtags:
    """The ETags apply and rollback recorded for their copies. Refuses a journal of another manifest."""
    replay(journal_path, manifest_sha256=manifest_sha256, entries=entries)  # JournalError if foreign or corrupt
    out = AcceptedEtags()
    with open(journal_path, "rb") as f:
        next(f, None)  # header
        for raw in f:
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # replay accepted the file, so this is the torn last line
            if not isinstance(record, dict) or record.get("ev") != "copied":
                continue
            rollback = record.get("dir") == "rollback"
            side = out.source if rollback else out.destination
            for key, etag in (record.get("etags") or {}).items():
                side.setdefault(int(key), set()).add(str(etag))
            if rollback:
                # A rollback copy records an ETag only where it differs from the destination's, so a restored
                # source may also carry the ETag apply's copy gave the destination (same parts, same bytes).
                for i in expand_ids(record.get("ids") or [], entries):
                    if i in out.destination:
                        out.source.setdefault(i, set()).update(out.destination[i])
    return out


# -- what to list -----------------------------------------------------------------------------------------------
def static_prefix(template: str) -> str:
    """The part of a strftime template before its first directive: every expansion starts with it."""
    cut = template.find("%")
    return template if cut < 0 else template[:cut]


def prefixes_for(header: dict[str, Any]) -> dict[str, list[str]]:
    """bucket -> the minimal set of prefixes covering the source, segregated and error locations."""
    config = Settings.from_header(header.get("config"))
    wanted: dict[str, set[str]] = {}
    for loc, template in ((config.source, False), (config.segregated, True), (config.error, False)):
        if loc.bucket:  # a partial header (no rule recorded) has no such location
            wanted.setdefault(loc.bucket, set()).add(static_prefix(loc.prefix) if template else loc.prefix)
    return {bucket: minimal(prefixes) for bucket, prefixes in wanted.items()}


def minimal(prefixes: set[str]) -> list[str]:
    """Drop every prefix that another one in the set already covers (so no key is listed twice)."""
    kept: list[str] = []
    for p in sorted(prefixes):
        if not any(p.startswith(k) for k in kept):
            kept.append(p)
    return kept


# -- the index --------------------------------------------------------------------------------------------------
Seen = tuple[int | None, str | None]  # (size, etag) the listing showed at a key; (None, None) for nothing


class _Index:
    """Both places of every move in a temporary on-disk SQLite table (flat memory for any manifest size).

    Row ``2*id-1`` is move ``id``'s source (with the planned size and ETag), row ``2*id`` its destination;
    ``size``/``etag`` are filled in by the listing.
    """

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(suffix=".sqlite", prefix="s3seg-verify-")
        os.close(fd)
        self.db = sqlite3.connect(self.path)
        # A scratch file: no rollback journal, no fsync, a bounded page cache (~64 MB).
        self.db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536;"
            "CREATE TABLE w (rowid INTEGER PRIMARY KEY, bucket TEXT, key TEXT, psize INTEGER, petag TEXT,"
            " size INTEGER, etag TEXT);"
        )

    def load(self, manifest_path: str, prefixes: dict[str, list[str]]) -> None:
        """One pass over the manifest's entry lines (already verified: no per-field checks again)."""
        covers = {bucket: tuple(p) for bucket, p in prefixes.items()}
        batch: list[tuple[int, str, str, int | None, str | None]] = []
        for e in _entries(manifest_path):
            i = e["id"]
            for bucket, key in ((e["src_bucket"], e["src_key"]), (e["dst_bucket"], e["dst_key"])):
                if not key.startswith(covers.get(bucket, ())):
                    # The header's locations do not cover this key (cannot happen for an s3seg plan): list the
                    # whole bucket rather than miss it.
                    log.warning("s3://%s/%s is outside the configured locations: listing the whole bucket", bucket, key)
                    prefixes[bucket] = [""]
                    covers[bucket] = ("",)
            batch.append((2 * i - 1, e["src_bucket"], e["src_key"], e["size"], e["etag"]))
            batch.append((2 * i, e["dst_bucket"], e["dst_key"], None, None))
            if len(batch) >= 4_000:  # bounded: the rows of a batch are the only per-entry Python objects
                self._insert(batch)
                batch = []
        self._insert(batch)
        self.db.execute("CREATE INDEX w_key ON w (bucket, key)")
        self.db.commit()

    def _insert(self, rows: list[tuple[int, str, str, int | None, str | None]]) -> None:
        self.db.executemany("INSERT INTO w (rowid, bucket, key, psize, petag) VALUES (?, ?, ?, ?, ?)", rows)

    def mark(self, bucket: str, page: list[Listed]) -> None:
        """Record what the listing found at each key (every row with that key: a key may be two places)."""
        self.db.executemany(
            "UPDATE w SET size = ?, etag = ? WHERE bucket = ? AND key = ?",
            [(o.size, o.etag, bucket, o.key) for o in page],
        )

    def pairs(self) -> Iterator[tuple[Move, Seen, Seen]]:
        """Each move (rebuilt from its two rows) with what the listing found at its source and destination."""
        rows = self.db.execute("SELECT rowid, bucket, key, psize, petag, size, etag FROM w ORDER BY rowid")
        for src, dst in zip(rows, rows, strict=True):
            move = Move(
                id=(src[0] + 1) // 2, src_bucket=src[1], src_key=src[2], dst_bucket=dst[1], dst_key=dst[2],
                size=src[3], etag=src[4],
            )  # fmt: skip
            yield move, (src[5], src[6]), (dst[5], dst[6])

    def close(self) -> None:
        self.db.close()
        os.unlink(self.path)


def _entries(path: str) -> Iterator[dict[str, Any]]:
    lines = read_lines(path)  # plain or gzip
    next(lines, None)  # header
    for raw in lines:
        data = json.loads(raw)
        if data.get("type") == "trailer":
            return
        yield data


# -- the audit --------------------------------------------------------------------------------------------------
def audit(
    storage: Lister,
    manifest: Manifest,
    *,
    etags: AcceptedEtags | None = None,
    journal: str | None = None,
    list_workers: int = 1,
    samples: int = DEFAULT_SAMPLES,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> VerifyReport:
    """Classify every move of ``manifest`` by what the listing shows at its two keys (verifies it first)."""
    started = time.monotonic()
    info = manifest.info
    etags = etags or AcceptedEtags()
    report = VerifyReport(manifest=manifest.path, entries=info.entries, journal=journal)
    prefixes = prefixes_for(info.header)
    index = _Index()
    try:
        index.load(manifest.path, prefixes)
        for bucket, bucket_prefixes in sorted(prefixes.items()):
            for prefix in bucket_prefixes:
                report.prefixes.append(f"s3://{bucket}/{prefix}")
                for page in list_pages(storage, bucket, prefix, page_size=1000, workers=list_workers):
                    report.listed += len(page)
                    index.mark(bucket, page)
        log.info("verify: listed %d objects under %s", report.listed, ", ".join(report.prefixes))
        for move, src, dst in index.pairs():
            _classify(report, move, src, dst, etags, samples, max_items)
    finally:
        index.close()
    report.elapsed = time.monotonic() - started
    return report


def _place(seen: Seen, size: int, accepted: set[str]) -> Place:
    seen_size, seen_etag = seen
    if seen_size is None:
        return Place.ABSENT
    return Place.PLANNED if seen_size == size and seen_etag in accepted else Place.OTHER


def _classify(
    report: VerifyReport,
    m: Move,
    src: Seen,
    dst: Seen,
    etags: AcceptedEtags,
    samples: int,
    max_items: int,
) -> None:
    at_src = _place(src, m.size, {m.etag, *etags.source.get(m.id, ())})
    at_dst = _place(dst, m.size, {m.etag, *etags.destination.get(m.id, ())})
    category = _VERDICT[(at_src, at_dst)]
    report.counts[category] += 1
    source, destination = f"s3://{m.src_bucket}/{m.src_key}", f"s3://{m.dst_bucket}/{m.dst_key}"
    shown = report.samples.setdefault(category, [])
    if len(shown) < samples:
        if category == AT_SOURCE:
            shown.append(source)
        elif category == AT_DESTINATION:
            shown.append(destination)
        else:
            shown.append(f"move {m.id}: {source} -> {destination}")
    if category in ACCOUNTED:
        return
    if len(report.items) >= max_items:
        report.items_complete = False
        return
    report.items.append(
        {
            "id": m.id,
            "category": category,
            "source": source,
            "destination": destination,
            "planned": {"size": m.size, "etag": m.etag},
            "at_source": _seen(src),
            "at_destination": _seen(dst),
        }
    )


def _seen(seen: Seen) -> dict[str, Any] | None:
    return None if seen[0] is None else {"size": seen[0], "etag": seen[1]}


def summary(report: VerifyReport) -> dict[str, Any]:
    """The JSON form: counts per category, samples, and every discrepancy (or ``discrepancies_complete`` false)."""
    return {
        "manifest": report.manifest,
        "entries": report.entries,
        "journal": report.journal,
        "listed_prefixes": report.prefixes,
        "listed_objects": report.listed,
        "ok": report.ok,
        "accounted_for": sum(report.counts[c] for c in ACCOUNTED),
        "discrepancy_count": report.discrepancies,
        "counts": {c: report.counts[c] for c in CATEGORIES},
        "samples": {c: report.samples[c] for c in CATEGORIES if c in report.samples},
        "discrepancies": report.items,
        "discrepancies_complete": report.items_complete,
        "elapsed_s": round(report.elapsed, 3),
    }


def render(report: VerifyReport) -> list[str]:
    """The human summary, line by line."""
    lines = [f"verify: {report.manifest} ({report.entries} moves)"]
    lines.append(
        f"journal: {report.journal} (only the ETags its copies recorded are read)"
        if report.journal
        else "journal: none (planned ETags only)"
    )
    lines.append(
        f"listed {report.listed} objects under {', '.join(report.prefixes) or '(nothing)'} ({report.elapsed:.1f}s)"
    )
    width = max(len(c) for c in CATEGORIES)
    for c in CATEGORIES:
        n = report.counts[c]
        if n or c in ACCOUNTED:
            mark = "" if c in ACCOUNTED else "  <- discrepancy"
            lines.append(f"  {c:<{width}}  {n:>8}{mark}")
    for c in CATEGORIES:
        if report.counts[c] and c not in ACCOUNTED:
            lines.append(f"{c}: {DESCRIPTIONS[c]}; e.g.")
            lines.extend(f"  {s}" for s in report.samples.get(c, ()))
    if report.ok:
        lines.append(f"OK: all {report.entries} planned objects are accounted for, each at exactly one of its keys")
    else:
        lines.append(f"DISCREPANCIES: {report.discrepancies} of {report.entries} moves (see above; --json lists them)")
    return lines
