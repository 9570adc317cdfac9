"""Issue 11, point 7: years below 1000, exit codes of a refusing store, runaway regexes, ``-d ''``, nested folders.

Each test asserts the exit code and the final bucket state / the files left behind (not log text alone).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from advlab import Lab, assert_same, body_for, cdr_name
from hypothesis import given, settings
from hypothesis import strategies as st

from s3seg.config import S3Location, Settings
from s3seg.errors import ExitCode
from s3seg.naming import Rule, Skip, destination, skip_reason

pytestmark = pytest.mark.integration


def _args(verb: str, config: Path) -> list[str]:
    return [verb, "-c", str(config), *(["--no-progress"] if verb == "run" else [])]


def _manifests(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("*.jsonl"))


# -- years below 1000 ----------------------------------------------------------------------------------------------
TEMPLATES = [
    "segregated/%Y/%m/%d/%H/",
    "segregated/%Y%m%d/",
    "%Y/%j/",
    "w/%G-W%V/",
    "t/%Y-%m-%dT%H%M/",
    "s/%F/%R/",
    "s/%C%g/%e/%h/",
    "s/%Y%m%d%H%M%S.%f/",
    "s/%c/",
]


def _rule(template: str, date: datetime) -> Rule:
    s = Settings(
        log_file="s3seg.log",
        match_pattern=None,
        datetime_format="%Y%m%d%H",
        source=S3Location(bucket="bkt", prefix="incoming/"),
        segregated=S3Location(bucket="bkt", prefix="incoming/" + template),
        error=S3Location(bucket="bkt", prefix="incoming/error/"),
        recursive=True,
    )
    return Rule.from_settings(s, now=datetime(2023, 1, 2), override=date)


@settings(max_examples=300, deadline=None)
@given(
    date=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    template=st.sampled_from(TEMPLATES),
    name=st.text(st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), min_size=1, max_size=20),
)
def test_a_segregated_key_of_any_year_is_never_planned_again(date: datetime, template: str, name: str) -> None:
    rule = _rule(template, date)
    target = destination("incoming/" + name, rule)
    assert skip_reason("bkt", target.key, rule) == Skip.ALREADY_SEGREGATED, target.key


def test_a_file_dated_in_year_999_is_planned_once(moto_lab: Lab) -> None:
    lab = moto_lab
    key = "incoming/" + cdr_name(1, date="09991231")
    lab.put(key, body_for(key, 1))
    extra = {
        "recursive": "true",
        "s3_segregated_dir": f"s3://{lab.bucket}/incoming/segregated/%Y/%m/%d/%H/",
        "s3_error_dir": f"s3://{lab.bucket}/incoming/error/",
    }
    lab.plan("first.jsonl", **extra)
    assert len(lab.moves()) == 1
    assert lab.run("apply").code == 0
    expected = {"incoming/segregated/999/12/31/10/" + cdr_name(1, date="09991231"): lab.seeded[key]}
    assert_same(lab.state(), expected)
    lab.plan("second.jsonl", **extra)
    assert lab.moves() == []  # already in place: nothing new, no deeper nesting
    assert lab.run("apply").code == 0
    assert_same(lab.state(), expected)


# -- exit codes of a refusing store -------------------------------------------------------------------------------
class _Refusing(BaseHTTPRequestHandler):
    code = "AccessDenied"
    status = 403

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = f"<?xml version='1.0'?><Error><Code>{self.code}</Code><Message>refused</Message></Error>".encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _refuse


@pytest.fixture
def refusing() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(code: str, status: int = 403) -> str:
        handler = type("Handler", (_Refusing,), {"code": code, "status": status})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.mark.parametrize("verb", ["plan", "run"])
def test_a_missing_bucket_exits_4_and_writes_no_manifest(moto_lab: Lab, verb: str) -> None:
    lab = moto_lab
    config = lab.config(s3_dir="s3://no-such-bucket-s3seg/incoming/")
    run = lab.cli(*_args(verb, config))
    assert run.code == ExitCode.STORE_REFUSED == 4, run
    assert "NoSuchBucket" in run.err and "nothing was changed" in run.err
    assert not _manifests(lab.tmp) and not list(lab.tmp.glob("*.tmp"))


@pytest.mark.parametrize("code", ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"])
@pytest.mark.parametrize("verb", ["plan", "run"])
def test_a_refused_listing_exits_4(moto_lab: Lab, refusing: Any, verb: str, code: str) -> None:
    lab = moto_lab
    config = lab.config(endpoint=refusing(code))
    run = lab.cli(*_args(verb, config))
    assert run.code == ExitCode.STORE_REFUSED, run
    assert code in run.err
    assert not _manifests(lab.tmp)


def test_apply_whose_bucket_is_gone_exits_4(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(3, errors=0)
    lab.plan()
    for key in lab.seeded:
        lab.s3.delete_object(Bucket=lab.bucket, Key=key)
    lab.s3.delete_bucket(Bucket=lab.bucket)
    run = lab.run("apply")
    assert run.code == ExitCode.STORE_REFUSED, run
    assert "NoSuchBucket" in run.err


@pytest.mark.seaweedfs
def test_wrong_credentials_exit_4_on_plan_and_apply_and_move_nothing(seaweedfs_lab: Lab) -> None:
    lab = seaweedfs_lab
    lab.seed(4, errors=0)
    config = lab.config()
    for wrong in ({"AWS_SECRET_ACCESS_KEY": "wrong-secret"}, {"AWS_ACCESS_KEY_ID": "NOSUCHKEY"}):
        run = lab.cli("plan", "-c", str(config), "-o", str(lab.tmp / "p.jsonl"), **wrong)
        assert run.code == ExitCode.STORE_REFUSED, run
        assert not (lab.tmp / "p.jsonl").exists()
    lab.plan()
    for wrong in ({"AWS_SECRET_ACCESS_KEY": "wrong-secret"}, {"AWS_ACCESS_KEY_ID": "NOSUCHKEY"}):
        run = lab.apply(**wrong)
        assert run.code == ExitCode.STORE_REFUSED, run
    assert_same(lab.state(), lab.seeded)


# -- a runaway match_pattern --------------------------------------------------------------------------------------
@pytest.mark.parametrize("verb", ["plan", "run"])
def test_a_catastrophic_match_pattern_stops_with_exit_2_naming_the_key(moto_lab: Lab, verb: str) -> None:
    lab = moto_lab
    lab.put("incoming/fine-name.txt", b"x")
    bad = "incoming/" + "a" * 40 + "!"
    lab.put(bad, b"y")
    config = lab.config(match_pattern="^(a+)+$", datetime_format="%Y")
    started = time.monotonic()
    run = lab.cli(*_args(verb, config), timeout=60)
    assert time.monotonic() - started < 30
    assert run.code == ExitCode.USAGE, run
    assert bad in run.err and "match_pattern" in run.err
    assert not _manifests(lab.tmp) and not list(lab.tmp.glob("*.tmp"))
    assert_same(lab.state(), lab.seeded)


# -- -d '' ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_datetime_is_a_usage_error(moto_lab: Lab, value: str) -> None:
    lab = moto_lab
    lab.put("incoming/x.txt", b"x")
    config = lab.config(match_pattern=None)
    run = lab.cli("run", "-c", str(config), "-d", value, "--no-progress")
    assert run.code == ExitCode.USAGE, run
    assert "--datetime" in run.err
    assert not _manifests(lab.tmp)
    assert_same(lab.state(), lab.seeded)


# -- nested folders -------------------------------------------------------------------------------------------------
def _line_of(config: Path, element: str) -> int:
    for n, line in enumerate(config.read_text().splitlines(), start=1):
        if f"<{element}>" in line:
            return n
    raise AssertionError(element)


@pytest.mark.parametrize(
    ("s3_dir", "error_dir", "segregated"),
    [
        ("data/incoming/", "data/", "seg/%Y/"),  # s3_dir inside the error folder
        ("data/error/incoming/", "data/error/", "seg/%Y/"),
        ("seg/2024/", "err/", "seg/%Y/"),  # s3_dir inside a date folder the template produces
        ("archive/incoming/", "err/", "%B/"),  # a month-name folder matches "archive/" too
    ],
)
def test_s3_dir_inside_a_destination_is_refused_naming_its_line(
    moto_lab: Lab, s3_dir: str, error_dir: str, segregated: str
) -> None:
    lab = moto_lab
    b = lab.bucket
    config = lab.config(
        s3_dir=f"s3://{b}/{s3_dir}", s3_error_dir=f"s3://{b}/{error_dir}", s3_segregated_dir=f"s3://{b}/{segregated}"
    )
    run = lab.cli(*_args("plan", config))
    assert run.code == ExitCode.USAGE, run
    assert f"{config}:{_line_of(config, 's3_dir')}: <s3_dir>" in run.err
    assert lab.proxy.requests() == 0
    assert not _manifests(lab.tmp)


@pytest.mark.parametrize(
    ("recursive", "error_dir", "segregated"),
    [
        ("false", "incoming/error/", "segregated/%Y/%m/%d/%H/"),  # error dir inside s3_dir, not recursive
        ("true", "incoming/error/", "incoming/segregated/%Y/%m/%d/%H/"),  # both inside, recursive
        ("false", "error/", "error/%Y/%m/%d/%H/"),  # date folders inside the error folder
    ],
)
def test_destinations_inside_s3_dir_or_each_other_are_accepted_and_move_once(
    moto_lab: Lab, recursive: str, error_dir: str, segregated: str
) -> None:
    lab = moto_lab
    lab.seed(4, errors=2)
    b = lab.bucket
    extra = {
        "recursive": recursive,
        "s3_error_dir": f"s3://{b}/{error_dir}",
        "s3_segregated_dir": f"s3://{b}/{segregated}",
    }
    lab.plan("first.jsonl", **extra)
    assert len(lab.moves()) == 6
    assert lab.run("apply").code == 0
    lab.assert_applied()
    applied = lab.state()
    lab.plan("second.jsonl", **extra)
    assert lab.moves() == []
    assert_same(lab.state(), applied)
    assert all(re.match(rf"({re.escape(error_dir)}|{segregated.split('%')[0]})", k) for k in applied)
