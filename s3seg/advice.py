"""Warnings for a plan that does nothing, or probably not what was meant, and the plan's outcome word.

Pure: settings + what the plan saw -> sentences. No I/O. The planner attaches them to its ``PlanReport``; the CLI
prints them and puts them in the JSON summary (``warnings``, ``outcome``) for cron and monitoring to read.

Outcomes (``outcome``):

* ``nothing-listed``: ``s3_dir`` holds no object at all (within the listing): a typo in the prefix, a wrong
  bucket or endpoint, or simply no new files.
* ``nothing-planned``: objects were listed but every one was skipped (below a sub-folder without
  ``recursive``, already segregated, excluded by a filter, ...).
* ``all-to-error``: every planned move goes to the error folder (``match_pattern`` or ``datetime_format``
  matches none of the names).
* ``planned``: anything else (some moves to date folders).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from s3seg.config import Settings
from s3seg.naming import Reason, Skip

NOTHING_LISTED = "nothing-listed"
NOTHING_PLANNED = "nothing-planned"
ALL_TO_ERROR = "all-to-error"
PLANNED = "planned"

_GLOB = re.compile(r"[*?\[\]{}]")


def outcome(listed: int, planned: int, to_error: int) -> str:
    if not listed:
        return NOTHING_LISTED
    if not planned:
        return NOTHING_PLANNED
    if to_error == planned:
        return ALL_TO_ERROR
    return PLANNED


def plan_warnings(
    settings: Settings,
    *,
    listed: int,
    planned: int,
    reasons: Mapping[str, int],
    skipped: Mapping[str, int],
    nested: int = 0,
    nested_sample: str = "",
    override: datetime | None = None,
) -> list[str]:
    """Every warning that applies, most important first. ``nested``: keys seen below sub-folders of ``s3_dir``
    by a look without delimiter (only done when nothing was planned); ``override``: ``-d/--datetime``."""
    out: list[str] = []
    source = settings.source
    glob = _GLOB.search(source.prefix)
    if glob:
        out.append(
            f"s3_dir {source.url} contains {glob.group()!r}: S3 prefixes are literal, not glob patterns; use the "
            "folder itself as s3_dir (and --include/--exclude to pick names, where available)"
        )
    nested_total = nested + skipped.get(Skip.NOT_DIRECT_CHILD, 0)
    if nested_total and not settings.recursive and not planned:
        example = f" (e.g. {nested_sample})" if nested_sample else ""
        out.append(
            f"nothing planned, but objects lie below sub-folders of {source.url}{example}: they are planned only "
            "with <recursive>true</recursive> or --recursive"
        )
    elif not listed:
        out.append(
            f"nothing listed under {source.url}: check s3_dir for a typo (prefixes are case-sensitive and must "
            "end with '/' to name a folder), the bucket, the endpoint and the region"
        )
    to_error = reasons.get(Reason.NO_MATCH, 0) + reasons.get(Reason.BAD_DATE, 0)
    if planned and to_error == planned:
        out.append(_all_to_error(settings, reasons, planned))
    if override is not None and settings.match_pattern is not None:
        out.append(
            "-d/--datetime is ignored: match_pattern is set, so every date comes from the file name "
            "(-d only replaces the date of runs without match_pattern)"
        )
    out.extend(_template_warnings(settings.segregated.prefix))
    return out


def _all_to_error(settings: Settings, reasons: Mapping[str, int], planned: int) -> str:
    bad_date = reasons.get(Reason.BAD_DATE, 0)
    if bad_date:
        why = (
            f"datetime_format {settings.datetime_format!r} parses none of the dates match_pattern found "
            f"({bad_date} bad dates)"
        )
    else:
        why = f"match_pattern {settings.match_pattern!r} matches none of the names"
    return f"all {planned} planned moves go to the error folder {settings.error.url}: {why}; check the config"


def _template_warnings(template: str) -> list[str]:
    """``%M`` (minutes) where ``%m`` (month) was obviously meant: a date path with a year and a day but no month
    and no hour (``%Y/%M/%d``)."""
    directives = set(re.findall(r"%(.)", template.replace("%%", "")))
    if {"M", "Y", "d"} <= directives and not {"m", "H"} & directives:
        return [
            f"s3_segregated_dir {template!r} uses %M (minutes) with no hour: did you mean %m (month)? "
            "Folders would be named after the minute of each file"
        ]
    return []
