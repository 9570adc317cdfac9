"""Pure naming rules: an S3 key (plus a reference time) -> where it goes, and why.

Owns: date extraction (regex groups concatenated, parsed with strptime), the fallback date
(now - time_delay, or an explicit ``--datetime``), strftime expansion of the destination template, and
recognising keys that are already segregated so a re-plan never moves them twice.

Must not: do I/O or read the clock. ``now`` and every input are passed in, so the same inputs always give the
same destination (the property tests rely on it).
"""

from __future__ import annotations

import enum
import fnmatch
import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from s3seg.config import S3Location, Settings

MAX_KEY_BYTES = 1024


class Reason(enum.StrEnum):
    """Why an object goes where it goes (written into every manifest entry)."""

    MATCHED = "matched"  # the regex matched and its groups parsed as a date
    NO_MATCH = "no-match"  # the regex did not match the file name -> error dir
    BAD_DATE = "bad-date"  # the regex matched but the groups are not a date in datetime_format -> error dir
    FALLBACK = "fallback-date"  # no match_pattern: now - time_delay (or --datetime)


class Skip(enum.StrEnum):
    """Why a listed key is not planned at all."""

    FOLDER_MARKER = "folder-marker"  # key ends with '/'
    NOT_DIRECT_CHILD = "not-direct-child"  # below a sub-folder of s3_dir and --recursive is off
    ALREADY_SEGREGATED = "already-segregated"  # lies in the segregated or error location inside s3_dir
    OUTSIDE_SOURCE = "outside-source"  # does not start with the source prefix (defensive)
    S3SEG_INTERNAL = "s3seg-internal"  # s3seg's own lease or probe scratch object at the bucket root
    EXCLUDED = "excluded"  # matches an <exclude> glob, or no <include> glob (relative to s3_dir)
    TOO_NEW = "too-new"  # modified less than <min_age> before the plan


@dataclass(frozen=True, slots=True)
class Filters:
    """``include`` / ``exclude`` globs on the key relative to s3_dir and ``min_age`` (seconds). Pure.

    Unlike aws-cli (where the last matching filter wins, and everything is included to begin with), the rule is
    order-free: with any ``include``, a key must match one of them; a key matching any ``exclude`` is skipped.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    min_age: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Filters:
        return cls(tuple(settings.include), tuple(settings.exclude), int(settings.min_age))

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude or self.min_age)

    def skip(self, relative: str, last_modified: str, now_utc: datetime) -> Skip | None:
        """Why a key (``relative`` to s3_dir, ``last_modified`` ISO 8601) is filtered out, or None."""
        if self.include and not any(fnmatch.fnmatchcase(relative, g) for g in self.include):
            return Skip.EXCLUDED
        if any(fnmatch.fnmatchcase(relative, g) for g in self.exclude):
            return Skip.EXCLUDED
        if self.min_age and last_modified:
            modified = datetime.fromisoformat(last_modified)
            if modified.tzinfo is None:
                modified = modified.replace(tzinfo=UTC)
            if now_utc - modified < timedelta(seconds=self.min_age):
                return Skip.TOO_NEW
        return None


# Keys s3seg itself writes at a bucket's root (``lease.LEASE_KEY``, the capability probe's scratch prefix).
INTERNAL_PREFIXES = (".s3seg-lease", ".s3seg-probe/")


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """Where one source object goes."""

    bucket: str
    key: str
    folder: str  # the destination prefix the key was put under (for the plan's histogram)
    reason: Reason
    date: datetime | None
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """Everything naming needs, resolved once per plan (compiling regexes once, not per key)."""

    source: S3Location
    segregated: S3Location  # prefix is a strftime template
    error: S3Location
    pattern: re.Pattern[str] | None
    datetime_format: str
    fallback: datetime  # used when pattern is None
    recursive: bool
    segregated_regex: re.Pattern[str]  # matches any expansion of the segregated template

    @classmethod
    def from_settings(cls, settings: Settings, *, now: datetime, override: datetime | None = None) -> Rule:
        return cls(
            source=settings.source,
            segregated=settings.segregated,
            error=settings.error,
            pattern=settings.pattern,
            datetime_format=settings.datetime_format,
            fallback=fallback_date(now, settings.time_delay, override),
            recursive=settings.recursive,
            segregated_regex=template_regex(settings.segregated.prefix),
        )


def fallback_date(now: datetime, time_delay: int, override: datetime | None = None) -> datetime:
    """The date used when there is no match_pattern: ``--datetime`` if given, else ``now - time_delay``."""
    return override if override is not None else now - timedelta(seconds=time_delay)


def parse_datetime_arg(value: str, datetime_format: str) -> datetime:
    """Parse ``-d/--datetime``: ISO 8601 (``2022-12-31``, ``2022-12-31T10:00``) or the config's format.

    Raises ``ValueError`` naming both accepted forms, or when the two forms read different dates (with
    ``%y%m%d%H``, ``20010203`` is 2020-01-02 03:00, but ISO 8601 basic reads 2001-02-03): guessing would
    plan every file into the wrong folder.
    """
    text = value.strip()
    try:
        iso: datetime | None = datetime.fromisoformat(text)
    except ValueError:
        iso = None
    try:
        own: datetime | None = datetime.strptime(text, datetime_format)
    except ValueError:
        own = None
    if own is None:
        if iso is None:
            raise ValueError(
                f"--datetime {value!r} is neither ISO 8601 (e.g. 2022-12-31T10:00) "
                f"nor in the config's datetime_format {datetime_format!r}"
            )
        return iso
    if iso is not None and iso != own:
        raise ValueError(
            f"--datetime {value!r} is ambiguous: ISO 8601 reads {iso.isoformat()}, the config's "
            f"datetime_format {datetime_format!r} reads {own.isoformat()}; write it as extended ISO 8601 "
            "(e.g. 2022-12-31T10:00)"
        )
    return own


def extract_date(name: str, pattern: re.Pattern[str], datetime_format: str) -> tuple[datetime | None, str]:
    """Date embedded in a file name: the regex's groups concatenated, parsed with ``datetime_format``.

    The pattern is searched in the file name (the key's last path segment), so anchor it with ``^`` to match
    from the start. Returns ``(date, "")`` or ``(None, why)``. A pattern without groups uses the whole match.
    Groups that did not participate in the match count as empty strings.
    """
    m = pattern.search(name)
    if m is None:
        return None, "no-match"
    text = "".join(m.groups("")) if pattern.groups else m.group(0)
    date = _strptime(text, datetime_format)
    if date is None:
        return None, f"{text!r} does not parse with {datetime_format!r}"
    return date, ""


@functools.lru_cache(maxsize=8192)
def _strptime(text: str, datetime_format: str) -> datetime | None:
    # Cached: thousands of keys share one date string (an hour's files), and strptime is the costliest
    # step of naming a key.
    try:
        return datetime.strptime(text, datetime_format)
    except ValueError:
        return None


@functools.lru_cache(maxsize=8192)
def _expand(template: str, date: datetime) -> str:
    return date.strftime(template)


# Regex for each strftime directive, to recognise keys that an earlier run already put in place. %Y and %G take
# 1 to 4 digits: strftime does not pad years below 1000 (year 999 is written "999"; some C libraries write
# "0999"), and a folder of such a year must still be recognised, or every plan would nest it one level deeper.
_DIRECTIVE_REGEX = {
    "Y": r"\d{1,4}", "G": r"\d{1,4}", "y": r"\d{2}", "m": r"\d{2}", "d": r"\d{2}", "H": r"\d{2}",
    "I": r"\d{2}", "M": r"\d{2}", "S": r"\d{2}", "j": r"\d{3}", "U": r"\d{2}", "W": r"\d{2}",
    "V": r"\d{2}", "w": r"\d", "u": r"\d", "f": r"\d{6}", "a": r"[^/]+?", "A": r"[^/]+?",
    "b": r"[^/]+?", "B": r"[^/]+?", "p": r"[^/]+?", "z": r"(?:[+-]\d{4}(?:\d{2}(?:\.\d{6})?)?)?", "Z": r"[^/]*?",
    "c": r".+?", "x": r".+?", "X": r".+?", "%": "%",
}  # fmt: skip


def template_regex(template: str) -> re.Pattern[str]:
    """A regex matching the start of any key the strftime ``template`` can expand to."""
    out = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == "%" and i + 1 < len(template):
            out.append(_DIRECTIVE_REGEX.get(template[i + 1], r"[^/]*?"))
            i += 2
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("".join(out))


def skip_reason(bucket: str, key: str, rule: Rule) -> Skip | None:
    """Why this listed key must not be planned, or None if it should be."""
    if key.endswith("/"):
        return Skip.FOLDER_MARKER
    if key.startswith(INTERNAL_PREFIXES):
        return Skip.S3SEG_INTERNAL
    if not key.startswith(rule.source.prefix):
        return Skip.OUTSIDE_SOURCE
    if bucket == rule.error.bucket and rule.error.prefix and key.startswith(rule.error.prefix):
        return Skip.ALREADY_SEGREGATED
    if bucket == rule.segregated.bucket and rule.segregated_regex.match(key):
        return Skip.ALREADY_SEGREGATED
    if not rule.recursive and "/" in key[len(rule.source.prefix) :]:
        return Skip.NOT_DIRECT_CHILD
    return None


def destination(key: str, rule: Rule) -> Destination:
    """Where ``key`` (a planned key under the source prefix) goes: date folder + its path relative to s3_dir."""
    relative = key[len(rule.source.prefix) :]
    if rule.pattern is None:
        date: datetime | None = rule.fallback
        reason, detail = Reason.FALLBACK, ""
    else:
        name = relative.rsplit("/", 1)[-1]
        date, why = extract_date(name, rule.pattern, rule.datetime_format)
        if date is None:
            reason = Reason.NO_MATCH if why == "no-match" else Reason.BAD_DATE
            detail = "" if why == "no-match" else why
        else:
            reason, detail = Reason.MATCHED, ""
    if date is None:
        return Destination(
            bucket=rule.error.bucket,
            key=rule.error.prefix + relative,
            folder=rule.error.prefix,
            reason=reason,
            date=None,
            detail=detail,
        )
    folder = _expand(rule.segregated.prefix, date)
    return Destination(
        bucket=rule.segregated.bucket,
        key=folder + relative,
        folder=folder,
        reason=reason,
        date=date,
        detail=detail,
    )
