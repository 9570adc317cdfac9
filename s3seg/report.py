"""Plan review as a picture: a day x hour heatmap of planned moves (terminal) and a self-contained HTML page.

``collect`` streams a manifest once (and its journal, when there is one) into a ``Picture``: moves per
destination day and hour, the reasons that sent objects to the error folder with sample keys, the top
destination folders, and after apply the outcomes per status and per destination day/hour. The destination
date of a move is recomputed with the naming rule recorded in the manifest header (the date groups of
``match_pattern`` read with ``datetime_format``, or the recorded fallback date); error-folder moves have none.

The journal has no timestamps per record, so "outcomes over time" are shown over the files' own time (their
destination day and hour), which is what an operator reviews anyway.

``html`` renders one page with inline CSS and SVG only: no scripts, no fonts, no network. Every key and
message is HTML-escaped.

Must not: talk to S3, or change the manifest or the journal.
"""

from __future__ import annotations

import html
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from s3seg.config import Settings
from s3seg.errors import ManifestError
from s3seg.journal import JournalState, Status, replay
from s3seg.manifest import Manifest
from s3seg.naming import Reason, extract_date

MAX_FOLDERS = 10_000  # distinct folders tracked; the rest count as "(other folders)"
MAX_ROWS = 62  # heatmap rows before days are grouped into weeks, then months
ERROR_REASONS = (Reason.NO_MATCH, Reason.BAD_DATE)

# Journal statuses in the operator's words.
GROUPS: dict[str, frozenset[Status]] = {
    "moved": frozenset({Status.DONE, Status.DEDUPED, Status.ALREADY_DONE}),
    "not attempted": frozenset({Status.PENDING}),
    "in progress": frozenset({Status.INTENT, Status.COPIED, Status.R_INTENT, Status.R_COPIED}),
    "conflict": frozenset(
        {
            Status.CONFLICT_SOURCE_CHANGED,
            Status.CONFLICT_DEST_DIFFERS,
            Status.R_CONFLICT_DEST_MODIFIED,
            Status.R_CONFLICT_SOURCE_RECREATED,
        }
    ),
    "failed": frozenset(
        {Status.FAILED, Status.FAILED_MISSING, Status.SKIPPED_ARCHIVED, Status.R_FAILED, Status.R_FAILED_MISSING}
    ),
    "rolled back": frozenset({Status.ROLLED_BACK, Status.R_NOT_MOVED}),
}
_GROUP_OF = {s: g for g, members in GROUPS.items() for s in members}
PROBLEMS = ("conflict", "failed", "in progress")

Cell = tuple[date | None, int | None]  # (destination day, hour); (None, None) for the error folder


@dataclass(slots=True)
class Picture:
    manifest: str
    header: dict[str, Any]
    entries: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    cells: Counter[Cell] = field(default_factory=Counter)
    folders: Counter[str] = field(default_factory=Counter)
    error_samples: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # reason -> (key, detail)
    journal: str | None = None
    statuses: Counter[str] = field(default_factory=Counter)  # status label -> moves
    outcomes: Counter[tuple[date | None, int | None, str]] = field(default_factory=Counter)  # (day, hour, group)
    problem_samples: list[tuple[str, str, str]] = field(default_factory=list)  # (status, key, last error)

    @property
    def to_error(self) -> int:
        return sum(self.reasons[r] for r in ERROR_REASONS)

    @property
    def dated(self) -> int:
        return sum(n for (day, _), n in self.cells.items() if day is not None)


# -- collecting -------------------------------------------------------------------------------------------------
def _date_rule(header: dict[str, Any], config: Settings) -> tuple[re.Pattern[str] | None, str, datetime | None]:
    fallback = header.get("fallback_date")
    return (
        re.compile(config.match_pattern) if config.match_pattern else None,
        config.datetime_format,
        datetime.fromisoformat(fallback) if fallback else None,
    )


def collect(manifest_path: str, journal_path: str | None = None, *, samples: int = 10) -> Picture:
    """Stream the manifest (and its journal when ``journal_path`` exists) into a ``Picture``."""
    manifest = Manifest(manifest_path)
    info = manifest.verify()
    pic = Picture(manifest=manifest_path, header=info.header, entries=info.entries)
    state: JournalState | None = None
    if journal_path and os.path.exists(journal_path):
        state, _ = replay(journal_path, manifest_sha256=info.sha256, entries=info.entries)
        pic.journal = journal_path
        pic.statuses = Counter({s.label: n for s, n in state.counts().items()})
    try:
        config = Settings.from_header(info.header.get("config"))
    except ValueError as exc:
        raise ManifestError(manifest_path, 1, str(exc)) from None
    pattern, fmt, fallback = _date_rule(info.header, config)
    source_prefix = config.source.prefix
    for m in manifest.moves():
        pic.reasons[m.reason] += 1
        when: datetime | None = None
        if m.reason == Reason.FALLBACK:
            when = fallback
        elif m.reason == Reason.MATCHED and pattern is not None:
            when, _ = extract_date(m.src_key.rsplit("/", 1)[-1], pattern, fmt)
        cell: Cell = (when.date(), when.hour) if when is not None else (None, None)
        pic.cells[cell] += 1
        relative = m.src_key[len(source_prefix) :] if m.src_key.startswith(source_prefix) else m.src_key
        folder = f"s3://{m.dst_bucket}/{m.dst_key[: len(m.dst_key) - len(relative)]}"
        if folder in pic.folders or len(pic.folders) < MAX_FOLDERS:
            pic.folders[folder] += 1
        else:
            pic.folders["(other folders)"] += 1
        if m.reason in ERROR_REASONS:
            shown = pic.error_samples.setdefault(m.reason, [])
            if len(shown) < samples:
                shown.append((m.src_key, m.detail))
        if state is not None:
            status = state.status_of(m.id)
            group = _GROUP_OF[status]
            pic.outcomes[(cell[0], cell[1], group)] += 1
            if group in PROBLEMS and len(pic.problem_samples) < 5 * samples:
                pic.problem_samples.append((status.label, m.src_key, state.last_error.get(m.id, "")))
    return pic


# -- rows of the heatmap ------------------------------------------------------------------------------------------
def rows(cells: Iterable[tuple[Cell, int]]) -> tuple[str, list[tuple[str, list[int]]]]:
    """(granularity, [(row label, 24 counts per hour)]): days, or weeks / months when there are too many days."""
    dated = [(d, h, n) for (d, h), n in cells if d is not None and h is not None]
    if not dated:
        return "day", []
    first = min(d for d, _, _ in dated)
    last = max(d for d, _, _ in dated)
    span = (last - first).days + 1
    if span <= MAX_ROWS:
        grain, key = "day", _day
    elif span <= 7 * MAX_ROWS:
        grain, key = "week", _week
    else:
        grain, key = "month", _month
    table: dict[str, list[int]] = {}
    if grain == "day":  # every day of the span, empty ones included: gaps are worth seeing
        for i in range(span):
            table[_day(first + timedelta(days=i))] = [0] * 24
    for d, h, n in dated:
        table.setdefault(key(d), [0] * 24)[h] += n
    return grain, sorted(table.items())


def _day(d: date) -> str:
    return d.isoformat()


def _week(d: date) -> str:
    return "week of " + (d - timedelta(days=d.weekday())).isoformat()


def _month(d: date) -> str:
    return d.strftime("%Y-%m")


# -- terminal ------------------------------------------------------------------------------------------------------
def heatmap_text(pic: Picture, *, unicode: bool = True) -> list[str]:
    """The day x hour heatmap as text lines (no colours, no escape sequences)."""
    shades = " ░▒▓█" if unicode else " .:*#"
    grain, table = rows(pic.cells.items())
    if not table:
        return [f"heatmap: no dated moves ({pic.to_error} to the error folder)"]
    peak = max(max(counts) for _, counts in table)
    width = max(len(label) for label, _ in table)
    lines = [f"planned moves per {grain} (rows) and hour (columns); darkest = {peak} moves"]
    lines.append(" " * (width + 2) + "".join(f"{h:<3d}" if h % 3 == 0 else "   " for h in range(24)).rstrip())
    for label, counts in table:
        cells = "".join(_shade(n, peak, shades) * 3 for n in counts)
        lines.append(f"{label:>{width}}  {cells}  {sum(counts)}")
    if pic.to_error:
        lines.append(f"(+ {pic.to_error} moves to the error folder, no date)")
    return lines


def _shade(n: int, peak: int, shades: str) -> str:
    if n == 0:
        return shades[0]
    steps = len(shades) - 1
    return shades[max(1, min(steps, -(-n * steps // peak)))]


# -- HTML ----------------------------------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}
dt{color:#555}dd{margin:0;font-weight:600}code{font-size:12px;word-break:break-all}
.bar{display:inline-block;height:10px;background:#4a78c2}.muted{color:#777}
"""


# No network at all: nothing but the inline style may load (a key that slipped through escaping could not fetch).
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _color(n: int, peak: int) -> str:
    if n == 0 or peak == 0:
        return "#f2f2f2"
    t = n / peak
    r, g, b = (int(a + (z - a) * t) for a, z in ((222, 8), (235, 48), (247, 107)))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap_svg(table: list[tuple[str, list[int]]], *, title: str) -> str:
    """An inline SVG grid: one row per label, 24 hour columns, each cell's count in its tooltip."""
    if not table:
        return '<p class="muted">no dated moves</p>'
    peak = max(max(c) for _, c in table)
    lw, cw, ch, top = 150, 26, 16, 20
    width, height = lw + 24 * cw + 70, top + ch * len(table) + 4
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{_esc(title)}" font-size="11" font-family="sans-serif">'
    ]
    for h in range(24):
        out.append(f'<text x="{lw + h * cw + cw // 2}" y="14" text-anchor="middle">{h:02d}</text>')
    for i, (label, counts) in enumerate(table):
        y = top + i * ch
        out.append(f'<text x="{lw - 6}" y="{y + 12}" text-anchor="end">{_esc(label)}</text>')
        for h, n in enumerate(counts):
            out.append(
                f'<rect x="{lw + h * cw}" y="{y}" width="{cw - 1}" height="{ch - 1}" fill="{_color(n, peak)}" '
                f'data-count="{n}"><title>{_esc(label)} {h:02d}:00: {n}</title></rect>'
            )
        out.append(f'<text x="{lw + 24 * cw + 6}" y="{y + 12}">{sum(counts)}</text>')
    out.append("</svg>")
    return "".join(out)


def html_page(pic: Picture, *, top: int = 20) -> str:
    """One self-contained HTML page (inline CSS and SVG; no scripts, fonts or network)."""
    grain, table = rows(pic.cells.items())
    header = pic.header
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="' + _CSP + '">',
        f"<title>s3seg plan {_esc(os.path.basename(pic.manifest))}</title><style>{_CSS}</style></head><body>",
        f"<h1>s3seg plan review: <code>{_esc(os.path.basename(pic.manifest))}</code></h1>",
        "<dl>",
        _dd("source", "source", header.get("source", "")),
        _dd("created", "planned at", header.get("created", "")),
        _dd("entries", "planned moves", pic.entries),
        _dd("dated", "to date folders", pic.dated),
        _dd("to-error", "to the error folder", pic.to_error),
        _dd("folders", "destination folders", len(pic.folders)),
        "</dl>",
        "<h2>Reasons</h2><table><tr><th>reason</th><th>moves</th></tr>",
        *(
            f'<tr><td>{_esc(r)}</td><td class="n" id="reason-{_esc(r)}">{n}</td></tr>'
            for r, n in sorted(pic.reasons.items())
        ),
        "</table>",
        f"<h2>Planned moves per {grain} and hour</h2>",
        heatmap_svg(table, title=f"planned moves per {grain} and hour"),
        *_error_section(pic),
        *_folders_section(pic, top),
        *_outcomes_section(pic, grain),
        f'<p class="muted">s3seg {_esc(header.get("version", ""))}; manifest {_esc(pic.manifest)}</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _dd(ident: str, label: str, value: object) -> str:
    return f'<dt>{_esc(label)}</dt><dd id="{ident}">{_esc(value)}</dd>'


def _error_section(pic: Picture) -> list[str]:
    out = ["<h2>Sent to the error folder</h2>"]
    if not pic.to_error:
        return [*out, '<p class="muted">none: every planned file has a date</p>']
    for reason in ERROR_REASONS:
        if not pic.reasons[reason]:
            continue
        out.append(f"<h3>{_esc(reason)}: {pic.reasons[reason]}</h3><ul>")
        for key, detail in pic.error_samples.get(reason, ()):
            extra = f' <span class="muted">{_esc(detail)}</span>' if detail else ""
            out.append(f'<li><code class="sample">{_esc(key)}</code>{extra}</li>')
        out.append("</ul>")
    return out


def _folders_section(pic: Picture, top: int) -> list[str]:
    out = [f"<h2>Top destination folders (of {len(pic.folders)})</h2><table>"]
    best = pic.folders.most_common(top)
    peak = best[0][1] if best else 1
    for folder, n in best:
        bar = f'<span class="bar" style="width:{max(1, 200 * n // peak)}px"></span>'
        out.append(f'<tr><td><code>{_esc(folder)}</code></td><td class="n folder-count">{n}</td><td>{bar}</td></tr>')
    out.append("</table>")
    return out


def _outcomes_section(pic: Picture, grain: str) -> list[str]:
    if pic.journal is None:
        return ['<h2>Outcomes</h2><p class="muted">no journal yet: nothing has been applied</p>']
    out = [
        "<h2>Outcomes (from the journal)</h2><table><tr><th>status</th><th>moves</th></tr>",
        *(
            f'<tr><td>{_esc(s)}</td><td class="n" id="status-{_esc(s)}">{n}</td></tr>'
            for s, n in sorted(pic.statuses.items())
        ),
        "</table>",
        f"<h3>Per destination {grain}</h3><table><tr><th>{grain}</th>",
        *(f"<th>{_esc(g)}</th>" for g in GROUPS),
        "</tr>",
    ]
    by_row: dict[str, Counter[str]] = {}
    key = {"day": _day, "week": _week, "month": _month}[grain]
    for (d, _h, group), n in pic.outcomes.items():
        by_row.setdefault(key(d) if d is not None else "(error folder)", Counter())[group] += n
    for label in sorted(by_row):
        cells = "".join(f'<td class="n">{by_row[label][g]}</td>' for g in GROUPS)
        out.append(f"<tr><td>{_esc(label)}</td>{cells}</tr>")
    out.append("</table>")
    problems: Counter[Cell] = Counter()
    for (d, h, group), n in pic.outcomes.items():
        if group in PROBLEMS:
            problems[(d, h)] += n
    out.append(f"<h3>Not moved because of a conflict or failure, per {grain} and hour</h3>")
    _, ptable = rows(problems.items())
    out.append(heatmap_svg(ptable, title="problems per hour") if ptable else '<p class="muted">none</p>')
    if pic.problem_samples:
        out.append("<ul>")
        for status, k, err in pic.problem_samples:
            out.append(
                f'<li>{_esc(status)}: <code class="sample">{_esc(k)}</code> <span class="muted">{_esc(err)}</span></li>'
            )
        out.append("</ul>")
    return out


def write_html(pic: Picture, path: str) -> None:
    """Write the page atomically (a temporary file renamed into place)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(html_page(pic))
    os.replace(tmp, path)
