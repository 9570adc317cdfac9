"""The plan as a picture, in process (in-process moto): the HTML page's numbers equal the plan's, keys are
escaped, nothing is fetched from a network, the terminal heatmap, and outcomes after apply."""

from __future__ import annotations

import html.parser
import re
from datetime import date
from pathlib import Path
from typing import Any

from applykit import NOW, cli_run, endpoint_of, opts, put
from helpers import cdr_key, write_config

from s3seg import commands, config, report
from s3seg.planner import PlanReport

HOSTILE = "<script>alert(1)<b>&amp;'\".txt"


class Page(html.parser.HTMLParser):
    """Element ids -> text, every start tag, the rect counts of each SVG, and attributes that could fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.tags: list[str] = []
        self.svgs: list[list[int]] = []
        self.fetching: list[tuple[str, str]] = []
        self.samples: list[str] = []
        self.folder_counts: list[int] = []
        self._open: list[tuple[str, str | None, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "svg":
            self.svgs.append([])
        if tag == "rect" and a.get("data-count") is not None:
            self.svgs[-1].append(int(str(a["data-count"])))
        for name in ("src", "href", "xlink:href", "action", "srcset"):
            if name in a:
                self.fetching.append((tag, name))
        self._open.append((tag, a.get("id"), str(a.get("class") or "")))
        self._text = ""

    def handle_data(self, data: str) -> None:
        self._text = getattr(self, "_text", "") + data

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            t, ident, cls = self._open.pop()
            if ident:
                self.by_id[ident] = self._text.strip()
            if "sample" in cls:
                self.samples.append(self._text)
            if "folder-count" in cls:
                self.folder_counts.append(int(self._text))
            if t == tag:
                break


def seed(s3: Any, bucket: str) -> None:
    for i in range(40):
        put(s3, bucket, cdr_key(i, date=f"2022122{i % 5}", hour=(i * 5) % 24), b"x" * i)
    for name in ("README.txt", "CHARGINGCDR_x-2022XX31-10.ccn", HOSTILE):
        put(s3, bucket, "incoming/" + name, b"e")


def plan(s3: Any, bucket: str, tmp_path: Path) -> tuple[str, PlanReport]:
    seed(s3, bucket)
    cfg = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=endpoint_of(s3))
    manifest = str(tmp_path / "plan.jsonl")
    return manifest, commands.plan(config.load(cfg), manifest, now=NOW)


def parse(path: Path) -> tuple[str, Page]:
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    return text, page


def test_html_report_numbers_equal_the_plans_counts(s3: Any, bucket: str, tmp_path: Path) -> None:
    manifest, planned = plan(s3, bucket, tmp_path)
    out = tmp_path / "report.html"

    report.write_html(report.collect(manifest), str(out))

    text, page = parse(out)
    assert page.by_id["entries"] == str(planned.planned) == "43"
    assert page.by_id["to-error"] == str(planned.to_error) == "3"
    assert page.by_id["dated"] == str(planned.planned - planned.to_error)
    assert page.by_id["folders"] == str(len(planned.folders))
    for reason, n in planned.reasons.items():
        assert page.by_id[f"reason-{reason}"] == str(n)
    heat = page.svgs[0]
    assert sum(heat) == planned.planned - planned.to_error
    assert len(heat) == 5 * 24  # five days x 24 hours, empty cells included
    assert page.folder_counts == [n for _, n in planned.folders.most_common(20)]
    assert "no journal yet" in text


def test_keys_are_escaped_and_the_page_fetches_nothing(s3: Any, bucket: str, tmp_path: Path) -> None:
    manifest, _ = plan(s3, bucket, tmp_path)
    out = tmp_path / "report.html"

    code, printed = cli_run("report", manifest, "-o", str(out))

    assert code == 0 and f"report: {out}" in printed
    text, page = parse(out)
    assert "script" not in page.tags and "b" not in page.tags  # the key did not become markup
    assert "incoming/" + HOSTILE in page.samples  # ... it is shown as text, exactly
    assert "<script>" not in text
    assert page.fetching == []
    assert not re.search(r"url\(|@import|<link|<img|<iframe|<object", text, re.IGNORECASE)
    assert re.findall(r"https?://[^\s\"'<>]+", text) == ["http://www.w3.org/2000/svg"] * len(page.svgs)
    assert "default-src 'none'" in text  # and a Content-Security-Policy forbids loading anything anyway


def test_plan_heatmap_and_report_flags(s3: Any, bucket: str, tmp_path: Path) -> None:
    seed(s3, bucket)
    cfg = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=endpoint_of(s3))
    manifest, html_path = tmp_path / "p.jsonl", tmp_path / "r.html"

    code, printed = cli_run("plan", "-c", str(cfg), "-o", str(manifest), "--heatmap", "--report", str(html_path))

    assert code == 0
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("planned moves per day"))
    rows = lines[start + 2 : start + 7]
    assert [r.split()[0] for r in rows] == [f"2022-12-2{d}" for d in range(5)]
    assert sum(int(r.split()[-1]) for r in rows) == 40
    assert lines[start + 7] == "(+ 3 moves to the error folder, no date)"
    assert all(line.isascii() for line in rows)  # not a UTF-8 stream: ASCII shades
    assert html_path.exists() and f"report: {html_path}" in printed


def test_outcomes_after_apply_per_status_and_destination_day(s3: Any, bucket: str, tmp_path: Path) -> None:
    manifest, planned = plan(s3, bucket, tmp_path)
    blocked = "segregated/2022/12/20/00/" + cdr_key(0, date="20221220", hour=0).removeprefix("incoming/")
    put(s3, bucket, blocked, b"someone else's")  # one conflict
    commands.apply(manifest, opts())

    pic = report.collect(manifest, manifest + ".journal")
    out = tmp_path / "after.html"
    report.write_html(pic, str(out))

    _, page = parse(out)
    assert page.by_id["status-done"] == str(planned.planned - 1)
    assert page.by_id["status-conflict-dest-differs"] == "1"
    assert sum(page.svgs[1]) == 1  # the problems heatmap holds exactly the conflict
    ((status, key, why),) = pic.problem_samples
    assert (status, key) == ("conflict-dest-differs", cdr_key(0, date="20221220", hour=0))
    assert "destination exists" in why
    assert pic.outcomes[(date(2022, 12, 20), 0, "conflict")] == 1
    assert sum(n for (_, _, g), n in pic.outcomes.items() if g == "moved") == planned.planned - 1

    code, printed = cli_run("report", manifest)
    assert code == 0 and "conflict-dest-differs" in printed


def test_heatmap_rows_group_days_into_weeks_then_months() -> None:
    def cells(days: list[date]) -> list[tuple[tuple[date | None, int | None], int]]:
        return [((d, 3), 1) for d in days] + [((None, None), 7)]

    grain, table = report.rows(cells([date(2022, 1, 1), date(2022, 1, 3)]))
    assert grain == "day" and [label for label, _ in table] == ["2022-01-01", "2022-01-02", "2022-01-03"]
    assert table[0][1][3] == 1 and sum(table[1][1]) == 0
    grain, table = report.rows(cells([date(2022, 1, 3), date(2022, 1, 4), date(2022, 4, 1)]))
    assert grain == "week" and table == [("week of 2022-01-03", [0, 0, 0, 2] + [0] * 20),
                                         ("week of 2022-03-28", [0, 0, 0, 1] + [0] * 20)]  # fmt: skip
    grain, table = report.rows(cells([date(2020, 1, 5), date(2022, 6, 1)]))
    assert grain == "month" and [label for label, _ in table] == ["2020-01", "2022-06"]
