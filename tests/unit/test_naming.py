"""s3seg.naming: key (+ now) + rule -> destination, why, and which listed keys are never planned."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from s3seg.config import S3Location, Settings
from s3seg.naming import (
    MAX_KEY_BYTES,
    Reason,
    Rule,
    Skip,
    destination,
    extract_date,
    fallback_date,
    parse_datetime_arg,
    skip_reason,
    template_regex,
)

ORIGINAL_NAME = "CHARGINGCDR_4008-BRCCNH-CCNCDR44-01-Blk0Blk-8421-20221231-100511-78.ccn"
ORIGINAL_PATTERN = r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*"
NOW = datetime(2023, 1, 2, 3, 4, 5)


def settings(
    *,
    pattern: str | None = ORIGINAL_PATTERN,
    datetime_format: str = "%Y%m%d%H",
    source: str = "incoming/",
    segregated: str = "segregated/%Y/%m/%d/%H/",
    error: str = "error/",
    bucket: str = "bkt",
    segregated_bucket: str | None = None,
    error_bucket: str | None = None,
    time_delay: int = 86400,
    recursive: bool = False,
) -> Settings:
    """Settings built directly (naming trusts config to have validated them)."""
    return Settings(
        log_file="s3seg.log",
        match_pattern=pattern,
        datetime_format=datetime_format,
        time_delay=time_delay,
        source=S3Location(bucket=bucket, prefix=source),
        segregated=S3Location(bucket=segregated_bucket or bucket, prefix=segregated),
        error=S3Location(bucket=error_bucket or bucket, prefix=error),
        recursive=recursive,
    )


def rule(now: datetime = NOW, override: datetime | None = None, **kw: object) -> Rule:
    return Rule.from_settings(settings(**kw), now=now, override=override)  # type: ignore[arg-type]


# --- date rules: the original's example ---------------------------------------------------------------------


def test_original_example_name_is_dated_2022_12_31_10h() -> None:
    date, why = extract_date(ORIGINAL_NAME, re.compile(ORIGINAL_PATTERN), "%Y%m%d%H")
    assert (date, why) == (datetime(2022, 12, 31, 10, 0), "")


def test_original_example_goes_to_its_hour_folder_with_its_name() -> None:
    target = destination("incoming/" + ORIGINAL_NAME, rule())
    assert target.bucket == "bkt"
    assert target.key == "segregated/2022/12/31/10/" + ORIGINAL_NAME
    assert target.folder == "segregated/2022/12/31/10/"
    assert target.reason == Reason.MATCHED
    assert target.date == datetime(2022, 12, 31, 10)
    assert target.detail == ""


def test_original_pattern_accepts_the_hour_without_a_dash() -> None:
    name = "CHARGINGCDR_4008-BRCCNH-CCNCDR44-01-Blk0Blk-8421-2022123123-0511-78.ccn"
    assert destination("incoming/" + name, rule()).key == "segregated/2022/12/31/23/" + name


def test_groups_are_concatenated_in_order() -> None:
    pattern = re.compile(r"^(\d{2})_(\d{4})_(\d{2})")  # day, year, month in the name
    assert extract_date("31_2022_12.log", pattern, "%d%Y%m") == (datetime(2022, 12, 31), "")


def test_group_that_did_not_participate_counts_as_empty() -> None:
    pattern = re.compile(r"^f(\d{8})(T\d{2})?")
    assert extract_date("f20221231.log", pattern, "%Y%m%d") == (datetime(2022, 12, 31), "")


def test_pattern_without_groups_uses_the_whole_match() -> None:
    pattern = re.compile(r"\d{4}-\d{2}-\d{2}")
    assert extract_date("dump_2022-12-31_x.gz", pattern, "%Y-%m-%d") == (datetime(2022, 12, 31), "")


def test_pattern_is_searched_in_the_file_name_not_the_folders() -> None:
    r = rule(recursive=True)
    # The folder looks like a CDR but the file name does not: that is a no-match.
    target = destination("incoming/CHARGINGCDR_x-20221231-10/readme.txt", r)
    assert target.reason == Reason.NO_MATCH
    assert target.key == "error/CHARGINGCDR_x-20221231-10/readme.txt"


# --- date rules: to the error folder -----------------------------------------------------------------------


def test_name_that_does_not_match_goes_to_the_error_folder_as_no_match() -> None:
    target = destination("incoming/README.txt", rule())
    assert (target.bucket, target.key, target.folder) == ("bkt", "error/README.txt", "error/")
    assert target.reason == Reason.NO_MATCH
    assert target.date is None
    assert target.detail == ""


def test_match_that_is_not_a_date_goes_to_the_error_folder_as_bad_date_with_the_text() -> None:
    name = "CHARGINGCDR_4008-BRCCNH-CCNCDR44-01-Blk0Blk-8421-20221332-100511-78.ccn"  # month 13
    target = destination("incoming/" + name, rule())
    assert target.key == "error/" + name
    assert target.reason == Reason.BAD_DATE
    assert "2022133210" in target.detail
    assert "%Y%m%d%H" in target.detail


def test_hour_25_is_a_bad_date() -> None:
    name = "CHARGINGCDR_x-20221231-25.ccn"
    assert destination("incoming/" + name, rule()).reason == Reason.BAD_DATE


def test_error_folder_may_be_in_another_bucket() -> None:
    target = destination("incoming/README.txt", rule(error_bucket="errors-bkt", error="rejected/"))
    assert (target.bucket, target.key) == ("errors-bkt", "rejected/README.txt")


def test_segregated_folder_may_be_in_another_bucket() -> None:
    target = destination("incoming/" + ORIGINAL_NAME, rule(segregated_bucket="archive", segregated="%Y/%m/"))
    assert (target.bucket, target.key) == ("archive", "2022/12/" + ORIGINAL_NAME)


def test_error_folder_at_the_bucket_root_keeps_the_relative_path() -> None:
    target = destination("incoming/README.txt", rule(error_bucket="errors-bkt", error=""))
    assert (target.bucket, target.key, target.folder) == ("errors-bkt", "README.txt", "")


# --- date rules: no match_pattern -------------------------------------------------------------------------


def test_without_pattern_the_date_is_now_minus_time_delay() -> None:
    target = destination("incoming/anything.bin", rule(pattern=None))
    assert target.reason == Reason.FALLBACK
    assert target.date == NOW - timedelta(days=1)
    assert target.key == "segregated/2023/01/01/03/anything.bin"


def test_without_pattern_time_delay_is_in_seconds() -> None:
    target = destination("incoming/a", rule(pattern=None, time_delay=3 * 3600 + 1))
    assert target.date == datetime(2023, 1, 2, 0, 4, 4)
    assert target.key == "segregated/2023/01/02/00/a"


def test_without_pattern_every_key_gets_the_same_date_even_if_its_name_has_one() -> None:
    r = rule(pattern=None)
    assert destination("incoming/" + ORIGINAL_NAME, r).folder == destination("incoming/x", r).folder


def test_datetime_override_replaces_now_minus_time_delay() -> None:
    r = rule(pattern=None, override=datetime(2021, 6, 15, 8, 30))
    target = destination("incoming/a.bin", r)
    assert target.key == "segregated/2021/06/15/08/a.bin"
    assert target.reason == Reason.FALLBACK


def test_datetime_override_does_not_change_dates_read_from_names() -> None:
    r = rule(override=datetime(2021, 6, 15, 8, 30))
    assert destination("incoming/" + ORIGINAL_NAME, r).key == "segregated/2022/12/31/10/" + ORIGINAL_NAME


def test_fallback_date() -> None:
    assert fallback_date(NOW, 0) == NOW
    assert fallback_date(NOW, 60) == NOW - timedelta(minutes=1)
    assert fallback_date(NOW, 86400, datetime(2020, 1, 1)) == datetime(2020, 1, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022-12-31", datetime(2022, 12, 31)),
        ("2022-12-31T10:00", datetime(2022, 12, 31, 10)),
        ("2022-12-31 10:05:11", datetime(2022, 12, 31, 10, 5, 11)),
        ("20221231T100511", datetime(2022, 12, 31, 10, 5, 11)),  # ISO basic format
        ("2022-12-31T10:00:00+00:00", datetime(2022, 12, 31, 10, tzinfo=UTC)),
        ("2022-12-31T10:00Z", datetime(2022, 12, 31, 10, tzinfo=UTC)),
        ("  2022-12-31  ", datetime(2022, 12, 31)),
        ("2022123110", datetime(2022, 12, 31, 10)),  # the config's datetime_format
    ],
)
def test_datetime_argument_accepts_iso_8601_and_the_config_format(text: str, expected: datetime) -> None:
    assert parse_datetime_arg(text, "%Y%m%d%H") == expected


def test_datetime_argument_in_a_non_iso_config_format() -> None:
    assert parse_datetime_arg("31/12/2022 10h", "%d/%m/%Y %Hh") == datetime(2022, 12, 31, 10)


@pytest.mark.parametrize("text", ["yesterday", "2022-13-01", "31/12/2022", ""])
def test_datetime_argument_that_is_neither_form_is_refused_naming_both(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_datetime_arg(text, "%Y%m%d%H")
    assert "ISO 8601" in str(info.value)
    assert "%Y%m%d%H" in str(info.value)


def test_datetime_argument_read_differently_by_iso_and_the_config_format_is_refused() -> None:
    # %y%m%d%H reads 2020-01-02 03:00; ISO 8601 basic reads 2001-02-03.
    with pytest.raises(ValueError, match="ambiguous"):
        parse_datetime_arg("20010203", "%y%m%d%H")


def test_datetime_argument_read_the_same_by_both_forms_is_accepted() -> None:
    assert parse_datetime_arg("20221231", "%Y%m%d") == datetime(2022, 12, 31)


def test_aware_datetime_override_fills_percent_z_in_the_template() -> None:
    tz = timezone(timedelta(hours=5, minutes=30))
    r = rule(pattern=None, segregated="by-offset/%Y%z/", override=datetime(2022, 1, 1, tzinfo=tz))
    assert destination("incoming/a", r).key == "by-offset/2022+0530/a"


# --- destination ------------------------------------------------------------------------------------------


def test_recursive_keys_keep_their_path_relative_to_s3_dir() -> None:
    r = rule(recursive=True)
    assert destination("incoming/a/b/" + ORIGINAL_NAME, r).key == "segregated/2022/12/31/10/a/b/" + ORIGINAL_NAME
    assert destination("incoming/a/b/README", r).key == "error/a/b/README"


def test_source_at_the_bucket_root() -> None:
    r = rule(source="", segregated="by-date/%Y%m%d/", error="unsorted/")
    assert destination(ORIGINAL_NAME, r).key == "by-date/20221231/" + ORIGINAL_NAME


def test_template_directives_beyond_the_basic_ones() -> None:
    r = rule(segregated="s/%Y-%j/%A/%%literal/")
    assert destination("incoming/" + ORIGINAL_NAME, r).folder == "s/2022-365/Saturday/%literal/"


def test_unicode_and_control_characters_in_names_are_kept_byte_for_byte() -> None:
    name = "CHARGINGCDR_é\x01 +%2B-20221231-10-日本.ccn"
    assert destination("incoming/" + name, rule()).key == "segregated/2022/12/31/10/" + name


def test_naming_is_deterministic_and_reads_no_clock() -> None:
    a = destination("incoming/x", rule(pattern=None))
    b = destination("incoming/x", rule(pattern=None))
    assert a == b
    assert destination("incoming/x", rule(pattern=None, now=NOW + timedelta(hours=1))).folder != a.folder


def test_max_key_bytes_is_s3s_limit() -> None:
    assert MAX_KEY_BYTES == 1024


# --- what is never planned -----------------------------------------------------------------------------------


def test_folder_markers_are_skipped() -> None:
    r = rule(recursive=True)
    assert skip_reason("bkt", "incoming/", r) == Skip.FOLDER_MARKER
    assert skip_reason("bkt", "incoming/sub/", r) == Skip.FOLDER_MARKER


def test_only_direct_children_unless_recursive() -> None:
    assert skip_reason("bkt", "incoming/a.ccn", rule()) is None
    assert skip_reason("bkt", "incoming/sub/a.ccn", rule()) == Skip.NOT_DIRECT_CHILD
    assert skip_reason("bkt", "incoming/sub/a.ccn", rule(recursive=True)) is None


def test_keys_outside_the_source_prefix_are_skipped() -> None:
    assert skip_reason("bkt", "other/a.ccn", rule()) == Skip.OUTSIDE_SOURCE


def test_segregated_keys_inside_s3_dir_are_already_segregated() -> None:
    r = rule(segregated="incoming/%Y/%m/%d/%H/", recursive=True)
    assert skip_reason("bkt", "incoming/2022/12/31/10/" + ORIGINAL_NAME, r) == Skip.ALREADY_SEGREGATED
    assert skip_reason("bkt", "incoming/2022/12/31/10/deeper/x", r) == Skip.ALREADY_SEGREGATED
    # A sub-folder that is not a date expansion is planned.
    assert skip_reason("bkt", "incoming/2022/not/a/date", r) is None
    assert skip_reason("bkt", "incoming/sub/" + ORIGINAL_NAME, r) is None


def test_error_keys_inside_s3_dir_are_already_segregated() -> None:
    r = rule(error="incoming/error/", recursive=True)
    assert skip_reason("bkt", "incoming/error/README", r) == Skip.ALREADY_SEGREGATED
    assert skip_reason("bkt", "incoming/errors.txt", r) is None


def test_segregated_lookalikes_in_another_bucket_are_planned() -> None:
    r = rule(segregated="incoming/%Y/", segregated_bucket="archive", recursive=True)
    assert skip_reason("bkt", "incoming/2022/x", r) is None


def test_a_planned_destination_inside_s3_dir_is_never_planned_again() -> None:
    r = rule(segregated="incoming/%Y/%m/%d/%H/", error="incoming/error/", recursive=True)
    for key in ("incoming/" + ORIGINAL_NAME, "incoming/README", "incoming/sub/" + ORIGINAL_NAME):
        assert skip_reason("bkt", key, r) is None
        moved = destination(key, r)
        assert skip_reason("bkt", moved.key, r) == Skip.ALREADY_SEGREGATED, moved.key


@pytest.mark.parametrize(
    ("template", "date"),
    [
        ("s/%Y/%m/%d/%H/", datetime(2022, 12, 31, 10)),
        ("s/%Y%m%d/", datetime(2024, 2, 29)),
        ("s/%y-%j/", datetime(2001, 9, 5)),
        ("s/%G-W%V-%u/", datetime(2021, 1, 3)),
        ("s/%A/%B/%p/", datetime(2022, 12, 31, 23)),
        ("s/%Y%m%d%H%M%S.%f/", datetime(2022, 12, 31, 10, 5, 11, 780000)),
        ("s/%Y%z/", datetime(2022, 12, 31, tzinfo=timezone(timedelta(hours=-3)))),
        ("s/%Y%z/", datetime(2022, 12, 31)),  # naive: %z expands to ''
        # strptime's %z and ISO 8601 accept offsets with seconds; strftime writes them as +HHMMSS[.ffffff]
        ("s/%Y%z/", datetime(2022, 12, 31, tzinfo=timezone(timedelta(hours=5, minutes=30, seconds=15)))),
        ("s/%Y%z/", datetime(2022, 12, 31, tzinfo=timezone(-timedelta(hours=1, microseconds=5)))),
        ("s/%Y_%Z/", datetime(2022, 12, 31, tzinfo=UTC)),
        ("s/%F/%T/", datetime(2022, 12, 31, 10, 5, 11)),
        ("s/%D/", datetime(2022, 12, 31)),  # expands with slashes
        ("s/100%%/%Y/", datetime(2022, 12, 31)),
    ],
)
def test_template_regex_matches_every_expansion(template: str, date: datetime) -> None:
    expanded = date.strftime(template)
    assert template_regex(template).match(expanded + "file"), (template, expanded)


def test_template_regex_escapes_literal_text() -> None:
    regex = template_regex("s.x+/%Y/")
    assert regex.match("s.x+/2022/")
    assert not regex.match("sAxx/2022/")


def test_rule_from_settings_compiles_once_and_keeps_the_inputs() -> None:
    s = dataclasses.replace(settings(), recursive=True)
    r = Rule.from_settings(s, now=NOW)
    assert r.pattern is not None and r.pattern.pattern == ORIGINAL_PATTERN
    assert r.fallback == NOW - timedelta(seconds=86400)
    assert r.recursive is True
    assert r.source == s.source and r.segregated == s.segregated and r.error == s.error
