"""Properties of s3seg.naming: dates embedded in names land in their folder; naming is deterministic and
never plans an already segregated key again; ``--datetime`` never silently reads another date."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from s3seg.config import S3Location, Settings
from s3seg.naming import Reason, Rule, Skip, destination, parse_datetime_arg, skip_reason

SETTINGS = settings(max_examples=150, deadline=None)


def _hour(d: datetime) -> datetime:
    return d.replace(minute=0, second=0, microsecond=0)


def _minute(d: datetime) -> datetime:
    return d.replace(second=0, microsecond=0)


def _second(d: datetime) -> datetime:
    return d.replace(microsecond=0)


def _day(d: datetime) -> datetime:
    return d.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Format:
    fmt: str
    truncate: Callable[[datetime], datetime]  # what the format keeps of a date
    aware: bool = False  # carries a UTC offset (%z)
    two_digit_year: bool = False  # %y reads 69..99 as 19xx and 00..68 as 20xx


# A representative set of datetime_format values seen in file names.
FORMATS = [
    Format("%Y%m%d%H", _hour),  # the original's example
    Format("%Y-%m-%dT%H:%M:%S", _second),
    Format("%Y%m%d", _day),
    Format("%d.%m.%Y %H%M", _minute),
    Format("%y%m%d%H%M", _minute, two_digit_year=True),
    Format("%y%m%d%H", _hour, two_digit_year=True),  # eight digits, like ISO 8601 basic YYYYMMDD
    Format("%Y%j", _day),
    Format("%Y-%m-%d_%H-%M-%S.%f", lambda d: d),
    Format("%d-%b-%Y", _day),
    Format("%G-W%V-%u", _day),
    Format("%I%p_%Y%m%d", _hour),
    Format("%Y%m%d%H%M%S%z", _second, aware=True),
]
# Destination templates (the prefix part of s3_segregated_dir).
TEMPLATES = [
    "segregated/%Y/%m/%d/%H/",
    "segregated/%Y%m%d/",
    "%Y/%j/",
    "w/%G-W%V/",
    "t/%Y-%m-%dT%H%M/",
    "x/%y/%b/%d/",
]
# Templates for "already segregated" recognition: every directive the config admits for templates.
ALL_TEMPLATES = [
    *TEMPLATES,
    "s/%Y%m%d%H%M%S.%f/",
    "s/%A/%B/%p/%I/",
    "s/%a-%b/%U-%W-%w/",
    "s/%Y%z/",
    "s/%Y_%Z/",
    "s/%c/",
    "s/%x/%X/",
    "s/%D/%T/",
    "s/%F/%R/",
    "s/%C%g/%e/%h/",
    "s/100%%/%Y/",
]

offsets = st.integers(min_value=-(24 * 3600 - 1), max_value=24 * 3600 - 1).map(lambda s: timedelta(seconds=s))
minute_offsets = st.integers(min_value=-1439, max_value=1439).map(lambda m: timedelta(minutes=m))
# Years below 1000 are left out: glibc's strftime writes %Y without zero padding there.
datetimes = st.datetimes(min_value=datetime(1001, 1, 1), max_value=datetime(9998, 12, 31))
two_digit_year_datetimes = st.datetimes(min_value=datetime(1969, 1, 1), max_value=datetime(2068, 12, 31))
# Name parts: anything but '/', control characters included.
name_text = st.text(st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), max_size=12)
segments = st.lists(
    st.text(st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), min_size=1, max_size=6), max_size=3
)


@st.composite
def dated(draw: st.DrawFn) -> tuple[Format, datetime]:
    f = draw(st.sampled_from(FORMATS))
    date = draw(two_digit_year_datetimes if f.two_digit_year else datetimes)
    if f.aware:
        date = date.replace(tzinfo=timezone(draw(minute_offsets)))
    return f, date


def make_rule(
    *,
    pattern: str | None,
    datetime_format: str = "%Y%m%d%H",
    template: str = "segregated/%Y/%m/%d/%H/",
    source: str = "incoming/",
    error: str = "error/",
    recursive: bool = True,
    now: datetime = datetime(2023, 1, 2, 3, 4, 5),
    override: datetime | None = None,
    time_delay: int = 86400,
) -> Rule:
    s = Settings(
        log_file="s3seg.log",
        match_pattern=pattern,
        datetime_format=datetime_format,
        time_delay=time_delay,
        source=S3Location(bucket="bkt", prefix=source),
        segregated=S3Location(bucket="bkt", prefix=template),
        error=S3Location(bucket="bkt", prefix=error),
        recursive=recursive,
    )
    return Rule.from_settings(s, now=now, override=override)


@SETTINGS
@given(case=dated(), template=st.sampled_from(TEMPLATES), pre=name_text, post=name_text, sub=segments)
def test_key_embedding_a_formatted_date_goes_to_that_dates_folder(
    case: tuple[Format, datetime], template: str, pre: str, post: str, sub: list[str]
) -> None:
    f, date = case
    name = pre + date.strftime(f.fmt) + post
    pattern = "^" + re.escape(pre) + "(.+)" + re.escape(post) + r"\Z"
    rule = make_rule(pattern=pattern, datetime_format=f.fmt, template=template)
    relative = "".join(s + "/" for s in sub) + name
    target = destination("incoming/" + relative, rule)
    expected = f.truncate(date)
    assert target.reason == Reason.MATCHED, target.detail
    assert target.date == expected
    assert target.folder == expected.strftime(template)
    assert (target.bucket, target.key) == ("bkt", target.folder + relative)


@SETTINGS
@given(n=st.integers(0, 9999), date=st.datetimes(datetime(1001, 1, 1), datetime(9998, 12, 31)), sub=segments)
def test_original_example_names_go_to_their_hour_folder(n: int, date: datetime, sub: list[str]) -> None:
    name = f"CHARGINGCDR_4008-BRCCNH-CCNCDR44-01-Blk0Blk-{n:04d}-{date:%Y%m%d-%H%M%S}-78.ccn"
    rule = make_rule(pattern=r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*")
    relative = "".join(s + "/" for s in sub) + name
    target = destination("incoming/" + relative, rule)
    assert target.key == f"segregated/{date:%Y/%m/%d/%H}/" + relative
    assert target.reason == Reason.MATCHED


@SETTINGS
@given(
    relative=st.text(max_size=40).filter(lambda k: not k.endswith("/")),
    pattern=st.sampled_from([None, r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*", r"(\d{4})(\d{2})", r"\d{8}"]),
    now=datetimes,
    delay=st.integers(0, 10 * 365 * 86400),
)
def test_naming_is_deterministic(relative: str, pattern: str | None, now: datetime, delay: int) -> None:
    fmt = "%Y%m%d" if pattern == r"\d{8}" else "%Y%m" if pattern == r"(\d{4})(\d{2})" else "%Y%m%d%H"
    first = make_rule(pattern=pattern, datetime_format=fmt, now=now, time_delay=delay)
    again = make_rule(pattern=pattern, datetime_format=fmt, now=now, time_delay=delay)
    key = "incoming/" + relative
    assert destination(key, first) == destination(key, again) == destination(key, first)
    assert skip_reason("bkt", key, first) == skip_reason("bkt", key, again)


@SETTINGS
@given(
    relative=st.text(max_size=40).filter(lambda k: not k.endswith("/")),
    pattern=st.sampled_from([r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*", r"(\d{4})(\d{2})", r"x"]),
)
def test_every_key_goes_somewhere_with_its_relative_path(relative: str, pattern: str) -> None:
    target = destination("incoming/" + relative, make_rule(pattern=pattern, datetime_format="%Y%m%d%H"))
    assert target.key == target.folder + relative
    if target.reason == Reason.MATCHED:
        assert target.date is not None
        assert target.folder == target.date.strftime("segregated/%Y/%m/%d/%H/")
    else:
        assert target.reason in (Reason.NO_MATCH, Reason.BAD_DATE)
        assert (target.folder, target.date) == ("error/", None)


@SETTINGS
@given(
    date=datetimes,
    offset=st.none() | offsets,
    template=st.sampled_from(ALL_TEMPLATES),
    sub=segments,
    name=name_text.filter(bool),
)
def test_a_destination_inside_s3_dir_is_never_planned_again(
    date: datetime, offset: timedelta | None, template: str, sub: list[str], name: str
) -> None:
    if offset is not None:
        date = date.replace(tzinfo=timezone(offset))
    rule = make_rule(pattern=None, template="incoming/" + template, error="incoming/error/", override=date)
    relative = "".join(s + "/" for s in sub) + name
    key = "incoming/" + relative
    target = destination(key, rule)
    assert target.key == date.strftime("incoming/" + template) + relative
    assert skip_reason("bkt", target.key, rule) == Skip.ALREADY_SEGREGATED, (template, target.key)
    # A direct child of s3_dir is never mistaken for a segregated key.
    assert skip_reason("bkt", "incoming/" + name, rule) is None


@SETTINGS
@given(sub=segments, name=name_text.filter(bool))
def test_an_error_destination_inside_s3_dir_is_never_planned_again(sub: list[str], name: str) -> None:
    rule = make_rule(pattern=r"\A(?!)", template="incoming/%Y/", error="incoming/error/")  # matches nothing
    key = "incoming/" + "".join(s + "/" for s in sub) + name
    target = destination(key, rule)
    assert target.reason == Reason.NO_MATCH
    assert skip_reason("bkt", target.key, rule) == Skip.ALREADY_SEGREGATED


@SETTINGS
@given(
    now=datetimes,
    delay=st.integers(0, 10 * 365 * 86400),
    override=st.none() | datetimes,
    template=st.sampled_from(TEMPLATES),
)
def test_without_pattern_the_folder_is_that_of_now_minus_delay_or_the_override(
    now: datetime, delay: int, override: datetime | None, template: str
) -> None:
    rule = make_rule(pattern=None, template=template, now=now, time_delay=delay, override=override)
    target = destination("incoming/f", rule)
    expected = override if override is not None else now - timedelta(seconds=delay)
    assert target.reason == Reason.FALLBACK
    assert target.date == expected
    assert target.key == expected.strftime(template) + "f"


@SETTINGS
@given(case=dated())
def test_datetime_argument_in_the_config_format_is_read_right_or_refused_as_ambiguous(
    case: tuple[Format, datetime],
) -> None:
    f, date = case
    text = date.strftime(f.fmt)
    try:
        got = parse_datetime_arg(text, f.fmt)
    except ValueError as exc:
        assert "ambiguous" in str(exc)
        assert datetime.fromisoformat(text) != f.truncate(date)
    else:
        assert got == f.truncate(date)


@SETTINGS
@given(date=datetimes, offset=st.none() | minute_offsets, fmt=st.sampled_from([f.fmt for f in FORMATS]))
def test_datetime_argument_in_iso_8601_is_read_exactly(date: datetime, offset: timedelta | None, fmt: str) -> None:
    if offset is not None:
        date = date.replace(tzinfo=timezone(offset))
    for text in (date.isoformat(), date.isoformat(sep=" ")):
        assert parse_datetime_arg(text, fmt) == date
