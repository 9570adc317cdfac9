"""s3seg.config: the XML config file -> Settings, and every way a file is refused (with its line)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import MISSING
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

import s3seg.config as config
from s3seg.config import S3Location, Settings, load, parse_s3_url, resolve_log_file
from s3seg.errors import ConfigError, ExitCode

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.xml.example"

# The base document used by most tests: <config> on line 1, one element per line, </config> last.
# Replaced elements keep their line; extra elements start at line EXTRA.
LOG_FILE, MATCH_PATTERN, DATETIME_FORMAT, S3_DIR, SEGREGATED, ERROR_DIR, EXTRA = 2, 3, 4, 5, 6, 7, 8
BASE = {
    "log_file": "{tmp}/s3seg.log",
    "match_pattern": r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*",
    "datetime_format": "%Y%m%d%H",
    "s3_dir": "s3://my-bucket/incoming/",
    "s3_segregated_dir": "s3://my-bucket/segregated/%Y/%m/%d/%H/",
    "s3_error_dir": "s3://my-bucket/error/",
}


def write(tmp_path: Path, text: str, name: str = "config.xml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def fill(value: str, tmp_path: Path) -> str:
    return value.replace("{tmp}", str(tmp_path))


def write_config(
    tmp_path: Path, replace: Mapping[str, str | None] | None = None, extra: str = "", name: str = "config.xml"
) -> Path:
    """BASE with some values replaced (None drops the element) and raw XML lines appended before </config>."""
    values = {**BASE, **(replace or {})}
    body = "".join(f"  <{k}>{fill(v, tmp_path)}</{k}>\n" for k, v in values.items() if v is not None)
    return write(tmp_path, f"<config>\n{body}{extra}</config>\n", name)


def rejected(path: Path, line: int | None) -> ConfigError:
    """load() must refuse the file at exactly this line, and say so as 'path:line:'."""
    with pytest.raises(ConfigError) as info:
        load(str(path))
    err = info.value
    assert err.line == line, str(err)
    if line is not None:
        assert f"{path}:{line}: " in str(err)
    assert err.exit_code == ExitCode.USAGE
    return err


def xsd_element_names() -> set[str]:
    xsd = etree.parse(str(REPO / "s3seg" / "config.xsd"))
    xs = "{http://www.w3.org/2001/XMLSchema}"
    return {e.get("name", "") for e in xsd.iterfind(f"{xs}element/{xs}complexType/{xs}all/{xs}element")}


# --- what loads ------------------------------------------------------------------------------------------


def test_example_loads_with_its_documented_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # log_file is ./s3seg.log
    settings = load(str(EXAMPLE))
    assert settings.config_path == str(EXAMPLE)
    assert settings.log_file == "./s3seg.log"
    assert settings.match_pattern == r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*"
    assert settings.datetime_format == "%Y%m%d%H"
    assert settings.time_delay == 86400
    assert settings.source == S3Location(bucket="my-bucket", prefix="incoming/")
    assert settings.segregated == S3Location(bucket="my-bucket", prefix="segregated/%Y/%m/%d/%H/")
    assert settings.error == S3Location(bucket="my-bucket", prefix="error/")
    assert (settings.n_keys, settings.n_loops, settings.n_workers) == (500, 10, 512)
    assert (settings.concurrency, settings.max_requests_per_second) == ("adaptive", 0.0)
    assert settings.processes == (os.cpu_count() or 1)  # the example leaves <processes/> empty: the default
    assert settings.recursive is False
    assert (settings.endpoint_url, settings.region, settings.profile) == (None, None, None)
    assert (settings.conditional_writes, settings.copy_encryption) == ("auto", "bucket-default")
    assert (settings.multipart_threshold, settings.multipart_chunksize) == (5 * 1024**3, 512 * 1024**2)
    assert (settings.max_attempts, settings.retry_mode, settings.item_retries) == (8, "standard", 5)
    assert (settings.batch_size, settings.state_dir) == (1000, ".")


def test_example_documents_every_parameter_of_the_schema() -> None:
    example = etree.parse(str(EXAMPLE)).getroot()
    assert {child.tag for child in example if isinstance(child.tag, str)} == xsd_element_names()


def test_every_schema_element_maps_to_a_settings_field() -> None:
    assert set(config._PARAMETERS) == xsd_element_names()
    fields = set(Settings.__dataclass_fields__)
    assert {name for name, _ in config._PARAMETERS.values()} <= fields
    assert "config_path" not in xsd_element_names()


def test_schema_ships_inside_the_package() -> None:
    from importlib.resources import files

    assert files("s3seg").joinpath("config.xsd").is_file()


def test_defaults_apply_when_optional_elements_are_absent(tmp_path: Path) -> None:
    settings = load(str(write_config(tmp_path, {"match_pattern": None})))
    assert settings.match_pattern is None and settings.pattern is None
    for item in dataclasses.fields(Settings):
        if item.name == "config_path" or (item.default is MISSING and item.default_factory is MISSING):
            continue
        default = item.default if item.default is not MISSING else item.default_factory()  # type: ignore[operator]
        assert getattr(settings, item.name) == default, item.name


def test_empty_optional_elements_mean_their_default_as_in_the_original(tmp_path: Path) -> None:
    extra = "  <n_keys/>\n  <time_delay> </time_delay>\n  <recursive></recursive>\n  <endpoint_url/>\n"
    settings = load(str(write_config(tmp_path, {"match_pattern": ""}, extra)))
    assert settings.match_pattern is None
    assert (settings.n_keys, settings.time_delay, settings.recursive, settings.endpoint_url) == (
        500,
        86400,
        False,
        None,
    )


def test_original_tools_example_config_still_loads(tmp_path: Path) -> None:
    """The original's example, verbatim but for a log directory that exists here."""
    (tmp_path / "logs").mkdir()
    text = f"""<config>
    <log_file>{tmp_path}/logs/%Y%m%d.log</log_file>
    <match_pattern>^CHARGINGCDR_.*-.*-([0-9]{{8}})-.*-.*\\.ber$</match_pattern>
    <datetime_format>%Y%m%d</datetime_format>
    <time_delay>86400</time_delay>
    <s3_dir>s3://bucket/dir</s3_dir>
    <s3_segregated_dir>s3://bucket/segregated/dir/%Y%m%d</s3_segregated_dir>
    <s3_error_dir>s3://bucket/segregated/dir/error</s3_error_dir>
    <n_keys>20</n_keys>
    <n_loops>10</n_loops>
    <n_workers>10</n_workers>
</config>"""
    settings = load(str(write(tmp_path, text)))
    # the original joined the file name with os.path.join: every location is a folder
    assert settings.source == S3Location(bucket="bucket", prefix="dir/")
    assert settings.segregated == S3Location(bucket="bucket", prefix="segregated/dir/%Y%m%d/")
    assert settings.error == S3Location(bucket="bucket", prefix="segregated/dir/error/")
    assert settings.log_file == f"{tmp_path}/logs/%Y%m%d.log"
    assert (settings.n_keys, settings.n_loops, settings.n_workers, settings.time_delay) == (20, 10, 10, 86400)


def test_original_style_minimal_config_loads(tmp_path: Path) -> None:
    settings = load(str(write_config(tmp_path)))
    assert settings.config_path == str(tmp_path / "config.xml")
    assert settings.pattern is not None
    match = settings.pattern.search("CHARGINGCDR_4008-BRCCNH-CCNCDR44-01-Blk0Blk-8421-20221231-100511-78.ccn")
    assert match is not None and "".join(match.groups()) == "2022123110"


def test_whitespace_around_values_is_ignored(tmp_path: Path) -> None:
    extra = "  <n_keys>\n    20\n  </n_keys>\n  <retry_mode> adaptive </retry_mode>\n"
    extra += "  <recursive> 1 </recursive>\n"
    replace = {"s3_dir": "\n   s3://my-bucket/in  \n", "datetime_format": " %Y%m%d%H "}
    path = write_config(tmp_path, replace, extra)
    settings = load(str(path))
    assert settings.source == S3Location(bucket="my-bucket", prefix="in/")
    assert settings.datetime_format == "%Y%m%d%H"
    assert (settings.n_keys, settings.retry_mode, settings.recursive) == (20, "adaptive", True)


def test_comments_declaration_and_cdata_are_fine(tmp_path: Path) -> None:
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!-- a comment -->\n<config>\n'
        f"  <log_file>{tmp_path}/x.log</log_file><!-- inline -->\n"
        "  <match_pattern><![CDATA[^a<b_(\\d{8})]]></match_pattern>\n"
        "  <datetime_format>%Y%m%d</datetime_format>\n"
        "  <s3_dir>s3://b-1/in/</s3_dir>\n  <s3_segregated_dir>s3://b-1/out/%Y/</s3_segregated_dir>\n"
        "  <s3_error_dir>s3://b-1/err/</s3_error_dir>\n</config>\n"
    )
    assert load(str(write(tmp_path, text))).match_pattern == r"^a<b_(\d{8})"


def test_elements_may_come_in_any_order(tmp_path: Path) -> None:
    body = "".join(f"<{k}>{fill(v, tmp_path)}</{k}>" for k, v in reversed(BASE.items()))
    assert load(str(write(tmp_path, f"<config><n_keys>7</n_keys>{body}</config>"))).n_keys == 7


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("1", True), ("false", False), ("0", False)])
def test_recursive_accepts_true_false_1_0(tmp_path: Path, text: str, expected: bool) -> None:
    path = write_config(tmp_path, extra=f"  <recursive>{text}</recursive>\n")
    assert load(str(path)).recursive is expected


def test_match_pattern_without_groups_is_accepted(tmp_path: Path) -> None:
    """Zero groups: the whole match is the date string (documented in the module docstring)."""
    path = write_config(tmp_path, {"match_pattern": r"\d{8}", "datetime_format": "%Y%m%d"})
    assert load(str(path)).match_pattern == r"\d{8}"


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://my-bucket/incoming", "my-bucket", "incoming/"),
        ("s3://my-bucket/incoming/", "my-bucket", "incoming/"),
        ("s3://my-bucket/a/b", "my-bucket", "a/b/"),
        ("s3://my-bucket", "my-bucket", ""),
        ("s3://my-bucket/", "my-bucket", ""),
        ("s3://my_minio.bucket-1/x", "my_minio.bucket-1", "x/"),
    ],
)
def test_s3_urls_are_normalised_to_folders(url: str, bucket: str, prefix: str) -> None:
    assert parse_s3_url(url) == S3Location(bucket=bucket, prefix=prefix)


def test_segregated_template_gets_a_trailing_slash_and_accepts_posix_directives(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"s3_segregated_dir": "s3://my-bucket/out/%F/%Y%m%d"})
    assert load(str(path)).segregated == S3Location(bucket="my-bucket", prefix="out/%F/%Y%m%d/")


def test_error_dir_inside_source_is_allowed(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"s3_error_dir": "s3://my-bucket/incoming/error/"})
    assert load(str(path)).error == S3Location(bucket="my-bucket", prefix="incoming/error/")


def test_endpoint_region_profile_and_state_dir(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    extra = (
        "  <endpoint_url>http://127.0.0.1:9000</endpoint_url>\n  <region>us-east-1</region>\n"
        f"  <profile>minio</profile>\n  <state_dir>{tmp_path}/state</state_dir>\n"
    )
    settings = load(str(write_config(tmp_path, extra=extra)))
    assert (settings.endpoint_url, settings.region, settings.profile) == (
        "http://127.0.0.1:9000",
        "us-east-1",
        "minio",
    )
    assert settings.state_dir == f"{tmp_path}/state"


def test_log_file_template_is_kept_and_resolved_per_run(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"log_file": "{tmp}/s3seg-%Y%m%d.log"})
    settings = load(str(path))
    assert settings.log_file == f"{tmp_path}/s3seg-%Y%m%d.log"
    assert resolve_log_file(settings.log_file, datetime(2024, 2, 29)) == f"{tmp_path}/s3seg-20240229.log"
    assert resolve_log_file("~/x.log", datetime(2024, 1, 1)) == os.path.expanduser("~/x.log")


def test_settings_are_json_able(tmp_path: Path) -> None:
    data = load(str(write_config(tmp_path))).to_dict()
    assert data["source"] == {"bucket": "my-bucket", "prefix": "incoming/"}


def test_load_never_imports_boto3(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    code = (
        "import sys; from s3seg.config import load; load(sys.argv[1]); "
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# --- what is refused, and where ---------------------------------------------------------------------------


def test_missing_file_is_refused_naming_the_path(tmp_path: Path) -> None:
    err = rejected(tmp_path / "nope.xml", None)
    assert str(err).startswith(f"{tmp_path / 'nope.xml'}: cannot read the config file")


def test_malformed_xml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "<config>\n  <n_keys>5\n  <n_loops>1</n_loops>\n</config>\n")
    err = rejected(path, 4)
    assert "malformed XML" in err.message and "n_keys" in err.message


def test_empty_file_is_malformed(tmp_path: Path) -> None:
    assert "malformed XML" in rejected(write(tmp_path, ""), 1).message


def test_xxe_is_refused_without_reading_or_echoing_the_entity(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-4711\n")
    text = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE config [ <!ENTITY xxe SYSTEM "file://{secret}"> ]>\n'
        "<config>\n"
        "  <log_file>&xxe;</log_file>\n"
        "</config>\n"
    )
    err = rejected(write(tmp_path, text), 2)
    assert "DOCTYPE" in err.message
    assert "TOP-SECRET" not in str(err)
    assert str(secret) not in str(err)


def test_plain_doctype_is_refused_too(tmp_path: Path) -> None:
    text = "\n".join(["<?xml version='1.0'?>", "<!-- x -->", "<!DOCTYPE config>", "<config/>"])
    rejected(write(tmp_path, text), 3)


def test_doctype_hidden_in_utf16_without_bom_is_still_refused(tmp_path: Path) -> None:
    """The byte search cannot read it; the parsed document's DOCTYPE is checked as well."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-4711\n")
    text = (
        '<?xml version="1.0" encoding="UTF-16"?>\n\n'
        f'<!DOCTYPE config [ <!ENTITY xxe SYSTEM "file://{secret}"> ]>\n'
        "<config><log_file>&xxe;</log_file></config>\n"
    )
    path = tmp_path / "utf16.xml"
    path.write_bytes(text.encode("utf-16-le"))
    err = rejected(path, 3)
    assert "TOP-SECRET" not in str(err)


def test_billion_laughs_is_refused_at_the_doctype(tmp_path: Path) -> None:
    entities = "".join(f'  <!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">\n' for i in range(1, 10))
    text = (
        '<?xml version="1.0"?>\n'
        "<!-- harmless -->\n"
        '<!DOCTYPE config [\n  <!ENTITY lol0 "lol">\n'
        f"{entities}]>\n"
        "<config><log_file>&lol9;</log_file></config>\n"
    )
    err = rejected(write(tmp_path, text), 3)
    assert "lol" not in err.message


def test_unknown_element_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, extra="  <n_key>5</n_key>\n"), EXTRA)
    assert err.message.startswith("unknown element <n_key>; did you mean <n_keys>?")


def test_unrelated_unknown_element_lists_the_known_ones(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, extra="  <colour>blue</colour>\n"), EXTRA)
    assert "unknown element <colour>" in err.message and "s3_segregated_dir" in err.message


def test_duplicate_element_is_refused(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, extra="  <s3_dir>s3://my-bucket/other/</s3_dir>\n"), EXTRA)
    assert "<s3_dir> appears more than once" in err.message


def test_missing_required_elements_are_named(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, {"s3_error_dir": None, "log_file": None}), 1)
    assert err.message == "<config> lacks required element(s): <log_file>, <s3_error_dir>"


def test_empty_required_element_is_refused(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, {"datetime_format": "  "}), DATETIME_FORMAT)
    assert err.message.startswith("<datetime_format> must be a strftime format")


def test_wrong_root_element_is_refused(tmp_path: Path) -> None:
    assert "root element must be <config>" in rejected(write(tmp_path, "<settings/>"), 1).message


@pytest.mark.parametrize(
    ("element", "low", "high"),
    [
        ("n_keys", 1, 1000),
        ("n_loops", 0, None),
        ("n_workers", 1, 1024),
        ("processes", 1, 256),
        ("time_delay", 0, None),
        ("item_retries", 0, 100),
        ("max_attempts", 1, 100),
        ("batch_size", 1, 1000),
        ("multipart_threshold", 5 * 1024**2, 5 * 1024**3),
        ("multipart_chunksize", 5 * 1024**2, 5 * 1024**3),
    ],
)
def test_integer_ranges(tmp_path: Path, element: str, low: int, high: int | None) -> None:
    for value in (low, high):
        if value is not None:
            path = write_config(tmp_path, extra=f"  <{element}>{value}</{element}>\n")
            assert getattr(load(str(path)), element) == value
    for value in (low - 1, None if high is None else high + 1):
        if value is not None:
            path = write_config(tmp_path, extra=f"  <{element}>{value}</{element}>\n")
            err = rejected(path, EXTRA)
            assert err.message.startswith(f"<{element}> must be ") and f"(got '{value}')" in err.message


def test_n_keys_zero_and_1001_are_refused(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, extra="  <n_keys>0</n_keys>\n"), EXTRA)
    assert err.message == "<n_keys> must be an integer from 1 to 1000 (got '0')"
    err = rejected(write_config(tmp_path, extra="\n  <n_keys>1001</n_keys>\n"), EXTRA + 1)
    assert err.message == "<n_keys> must be an integer from 1 to 1000 (got '1001')"


@pytest.mark.parametrize("value", ["four", "4.0", "1e3", "0x10", "1 2"])
def test_non_integer_n_workers_is_refused(tmp_path: Path, value: str) -> None:
    err = rejected(write_config(tmp_path, extra=f"  <n_workers>{value}</n_workers>\n"), EXTRA)
    assert err.message == f"<n_workers> must be an integer from 1 to 1024 (got '{value}')"


def test_every_schema_error_is_reported_first_line_leading(tmp_path: Path) -> None:
    extra = "  <n_keys>0</n_keys>\n  <n_workers>x</n_workers>\n"
    err = rejected(write_config(tmp_path, extra=extra), EXTRA)
    assert f"\n{tmp_path / 'config.xml'}:{EXTRA + 1}: <n_workers> must be" in str(err)


def test_bad_regex_is_refused_with_res_explanation(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, {"match_pattern": "^CDR_(\\d{8}"}), MATCH_PATTERN)
    assert "not a valid regular expression" in err.message and "missing )" in err.message


def test_unknown_strftime_directive_is_refused(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, {"datetime_format": "%Y%m%Q"}), DATETIME_FORMAT)
    assert "unknown strftime directive '%Q'" in err.message


def test_datetime_format_without_directives_is_refused(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, {"datetime_format": "YYYYmmdd%%"}), DATETIME_FORMAT)
    assert "no strftime directive" in err.message


@pytest.mark.parametrize("fmt", ["%Y%m%d%", "%Y%Y", "%G%m%d"])
def test_datetime_format_that_cannot_read_back_is_refused(tmp_path: Path, fmt: str) -> None:
    rejected(write_config(tmp_path, {"datetime_format": fmt}), DATETIME_FORMAT)


@pytest.mark.parametrize("fmt", ["%Y%m%d%H", "%Y-%m-%dT%H:%M:%S.%f%z", "%d%b%Y", "%G%V%u", "%y%j", "%c"])
def test_datetime_formats_that_round_trip_are_accepted(tmp_path: Path, fmt: str) -> None:
    assert load(str(write_config(tmp_path, {"datetime_format": fmt}))).datetime_format == fmt


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://x", "must be an s3://bucket/prefix/ URL"),
        ("s3://", "has no bucket name"),
        ("s3:///prefix/", "has no bucket name"),
        ("s3://Bad Bucket/x", "invalid bucket name 'Bad Bucket'"),
        ("s3://ab/x", "invalid bucket name"),
        ("s3://-bucket/x", "invalid bucket name"),
        ("s3://my..bucket/x", "invalid bucket name"),
        ("s3://my-bucket/a//b/", "empty path segment"),
        ("s3://my-bucket//a/", "empty path segment"),
        ("s3://my-bucket/" + "k" * 1100 + "/", "S3 keys are at most 1024 bytes"),
    ],
)
def test_bad_s3_url_is_refused(tmp_path: Path, url: str, words: str) -> None:
    err = rejected(write_config(tmp_path, {"s3_dir": url}), S3_DIR)
    assert err.message.startswith("<s3_dir> ") and words in err.message


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("s3://bucket-%Y/x/", "invalid bucket name"),
        ("s3://my-bucket/x/%Q/", "unknown strftime directive '%Q'"),
        ("s3://my-bucket/x/%", "lone '%'"),
        ("s3://my-bucket/x/%Z/", "empty path segment"),  # %Z is '' for the naive dates strptime returns
        ("s3://my-bucket/%Y" + "%A" * 120, "S3 keys are at most 1024 bytes"),
    ],
)
def test_bad_segregated_template_is_refused(tmp_path: Path, url: str, words: str) -> None:
    err = rejected(write_config(tmp_path, {"s3_segregated_dir": url}), SEGREGATED)
    assert err.message.startswith("<s3_segregated_dir> ") and words in err.message


def test_error_dir_equal_to_source_is_refused(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, {"s3_error_dir": "s3://my-bucket/incoming"}), ERROR_DIR)
    assert "same folder as <s3_dir>" in err.message


def test_segregated_dir_without_directives_equal_to_source_is_refused(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, {"s3_segregated_dir": "s3://my-bucket/incoming/"}), SEGREGATED)
    assert "same folder as <s3_dir>" in err.message


def test_log_file_in_missing_directory_is_refused(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, {"log_file": "{tmp}/no/such/dir/s3seg.log"}), LOG_FILE)
    assert "directory that does not exist" in err.message


def test_log_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "logdir").mkdir()
    err = rejected(write_config(tmp_path, {"log_file": "{tmp}/logdir"}), LOG_FILE)
    assert "not a regular file" in err.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: os.access says writable")
def test_log_file_in_read_only_directory_is_refused(tmp_path: Path) -> None:
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        err = rejected(write_config(tmp_path, {"log_file": "{tmp}/ro/s3seg.log"}), LOG_FILE)
        assert "cannot write" in err.message
    finally:
        read_only.chmod(0o755)


def test_log_file_access_check_is_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same refusal, simulated, so it is exercised when the suite runs as root."""
    (tmp_path / "ro").mkdir()
    real_access = os.access

    def access(path: str, mode: int) -> bool:
        return False if str(path).endswith("/ro") else real_access(path, mode)

    monkeypatch.setattr(os, "access", access)
    err = rejected(write_config(tmp_path, {"log_file": "{tmp}/ro/s3seg.log"}), LOG_FILE)
    assert "cannot write" in err.message


def test_log_file_with_unknown_directive_is_refused(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, {"log_file": "{tmp}/s3seg-%Q.log"}), LOG_FILE)
    assert "unknown strftime directive '%Q'" in err.message


@pytest.mark.parametrize(
    ("element", "value"),
    [
        ("conditional_writes", "always"),
        ("copy_encryption", "kms"),
        ("retry_mode", "Standard"),
        ("recursive", "yes"),
        ("recursive", "True"),
    ],
)
def test_bad_enum_value_is_refused(tmp_path: Path, element: str, value: str) -> None:
    err = rejected(write_config(tmp_path, extra=f"  <{element}>{value}</{element}>\n"), EXTRA)
    assert err.message.startswith(f"<{element}> must be one of ") and f"(got '{value}')" in err.message


@pytest.mark.parametrize("url", ["ftp://host", "localhost:9000", "http://", "http://host name"])
def test_bad_endpoint_url_is_refused(tmp_path: Path, url: str) -> None:
    err = rejected(write_config(tmp_path, extra=f"  <endpoint_url>{url}</endpoint_url>\n"), EXTRA)
    assert "http:// or https://" in err.message


def test_missing_state_dir_is_refused(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, extra=f"  <state_dir>{tmp_path}/nope</state_dir>\n"), EXTRA)
    assert "not an existing directory" in err.message


def test_child_elements_and_attributes_are_refused(tmp_path: Path) -> None:
    err = rejected(write_config(tmp_path, extra="  <n_keys><value>5</value></n_keys>\n"), EXTRA)
    assert "must contain only text" in err.message
    err = rejected(write_config(tmp_path, extra='  <n_keys unit="keys">5</n_keys>\n'), EXTRA)
    assert "takes no attributes" in err.message


# --- the manifest header's config, read back -----------------------------------------------------------------


def test_settings_read_back_from_a_header_are_the_settings_planned(tmp_path: Path) -> None:
    import json

    settings = load(str(write_config(tmp_path, {"include": "*.ccn *.cdr", "min_age": "10m"})))
    assert Settings.from_header(json.loads(json.dumps(settings.to_dict()))) == settings


def test_a_header_without_a_field_means_its_default_and_processes_means_one() -> None:
    """Manifests from before a field existed: Settings' default, except processes (recorded since it was
    added; before that apply ran one process)."""
    old = Settings.from_header({"n_workers": 16, "source": {"bucket": "b", "prefix": "in/"}})
    assert (old.n_workers, old.processes, old.batch_size, old.connect_timeout) == (16, 1, 1000, 5.0)
    assert old.source == S3Location(bucket="b", prefix="in/")
    assert Settings.from_header(None).error == S3Location(bucket="", prefix="")
    assert Settings.from_header({"unknown_future_field": 1}).n_keys == 500


@pytest.mark.parametrize(
    "config",
    [{"processes": "many"}, {"batch_size": [1]}, {"recursive": "yes"}, {"source": "s3://b/"}, {"include": "*"}, []],
)
def test_a_header_value_of_the_wrong_type_is_refused_naming_the_field(config: Any) -> None:
    with pytest.raises(ValueError, match="manifest header's config"):
        Settings.from_header(config)


def test_relative_log_and_metrics_paths_are_made_absolute_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load(str(write_config(tmp_path, {"log_file": "logs-%Y.log", "metrics_file": "s3seg.prom"})))
    assert settings.log_file == "logs-%Y.log"  # as written: the template
    resolved = settings.resolved()
    assert (resolved.log_file, resolved.metrics_file) == (f"{tmp_path}/logs-%Y.log", f"{tmp_path}/s3seg.prom")
    assert resolved.resolved() == resolved
