"""Issue 14: the operator's day. Runs end (timeouts, circuit breaker), preflight refusals, clear one-line errors.

Each test runs the CLI as a subprocess against the moto server (or a stub that never answers) and asserts the
exit code and the bucket state, not log text alone.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from advlab import Lab, Run, assert_same, cdr_name

from s3seg.errors import ExitCode

pytestmark = pytest.mark.integration


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers a byte."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    done.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("verb", ["plan", "run"])
def test_an_endpoint_that_never_answers_ends_the_run_with_exit_4_naming_it(
    moto_lab: Lab, silent_endpoint: str, verb: str
) -> None:
    lab = moto_lab
    config = lab.config(endpoint=silent_endpoint, connect_timeout=1, read_timeout=1, max_attempts=8)
    args = [verb, "-c", str(config), *(["-o", str(lab.tmp / "p.jsonl")] if verb == "plan" else ["--no-progress"])]
    started = time.monotonic()
    run = lab.cli(*args, timeout=60)
    elapsed = time.monotonic() - started
    assert run.code == ExitCode.STORE_REFUSED, run
    assert elapsed < 20, f"took {elapsed:.1f} s with read_timeout 1 s"
    assert silent_endpoint.removeprefix("http://") in run.err, run
    assert "Traceback" not in run.err
    assert not list(lab.tmp.glob("*.jsonl"))


def test_the_default_timeouts_bound_a_silent_endpoint_to_about_a_minute() -> None:
    from s3seg.commands import Target, client_spec
    from s3seg.config import Settings

    spec = client_spec({}, Target(endpoint_url="http://127.0.0.1:9"))
    # the preflight makes 2 attempts: connect + read per attempt, botocore's backoff between (< 1 s at first)
    assert 2 * (spec.connect_timeout + spec.read_timeout) + 2 <= 120
    assert Settings.__dataclass_fields__["read_timeout"].default == spec.read_timeout


def test_every_copy_answered_500_trips_the_circuit_breaker_and_loses_nothing(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(120, errors=0)
    lab.plan(circuit_breaker=20, item_retries=1, max_attempts=2, batch_size=10)
    lab.proxy.refuse = (500, "InternalError", frozenset({"CopyObject"}))  # SeaweedFS, destination bucket gone
    started = time.monotonic()
    run = lab.apply("--processes", "1", timeout=120)
    elapsed = time.monotonic() - started
    assert run.code == ExitCode.ITEMS_FAILED, run
    why = run.summary["aborted"]
    assert "circuit breaker" in why and "InternalError" in why and "CopyObject" in why, run
    assert run.summary["finished"] < 120, run  # stopped early: not every item was tried
    assert elapsed < 60
    lab.proxy.heal()
    assert_same(lab.state(), lab.seeded)  # nothing lost, nothing moved
    # the cause is fixed: a re-run finishes the job
    run = lab.apply(timeout=120)
    assert run.code == ExitCode.OK, run
    assert not any(k.startswith("incoming/") for k in lab.state())


def test_refused_credentials_say_credentials_refused_and_change_nothing(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(3, errors=0)
    lab.plan()
    # moto accepts any key; the proxy answers as AWS does for an unknown access key
    lab.proxy.refuse = (403, "InvalidAccessKeyId", None)
    run = lab.apply(timeout=60)
    assert run.code == ExitCode.STORE_REFUSED, run
    assert "credentials refused" in run.err, run
    assert lab.proxy.total("forwarded") == 0
    lab.proxy.heal()
    assert_same(lab.state(), lab.seeded)


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--profile", "nosuch"], {}, "profile 'nosuch'"),
        ([], {"AWS_PROFILE": "nosuch"}, "profile 'nosuch'"),
        (["--region", "bad region"], {}, "region 'bad region'"),
    ],
)
def test_a_bad_profile_or_region_is_a_one_line_usage_error(
    moto_lab: Lab, args: list[str], env: dict[str, str], words: str
) -> None:
    lab = moto_lab
    lab.seed(2, errors=0)
    config = lab.config()
    run = lab.cli("plan", "-c", str(config), "-o", str(lab.tmp / "p.jsonl"), *args, timeout=60, **env)
    assert run.code == ExitCode.USAGE, run
    assert words in run.err and "Traceback" not in run.err, run
    assert not (lab.tmp / "p.jsonl").exists()


# -- warnings where a plan does nothing or the wrong thing (item 3) ------------------------------------------------
def _plan_json(lab: Lab, *extra: str, **config: object) -> tuple[Run, dict[str, object]]:
    path = lab.config(**config)
    run = lab.cli("plan", "-c", str(path), "-o", str(lab.tmp / "p.jsonl"), "--json", *extra, timeout=60)
    assert run.code == ExitCode.OK, run
    return run, run.summary


def test_keys_only_below_sub_folders_warn_about_recursive(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.put("incoming/2022/" + cdr_name(1), b"x")
    run, s = _plan_json(lab)
    assert s["outcome"] == "nothing-listed" and s["planned"] == 0
    assert any("--recursive" in w and "incoming/2022/" in w for w in s["warnings"]), run  # type: ignore[attr-defined]
    assert_same(lab.state(), lab.seeded)
    text = lab.cli("plan", "-c", str(lab.config()), "-o", str(lab.tmp / "q.jsonl"), timeout=60)
    assert "WARNING:" in text.out and "--recursive" in text.out


@pytest.mark.parametrize(("s3_dir", "words"), [("incomming/", "typo"), ("incom*/", "glob")])
def test_a_prefix_typo_or_glob_warns_and_says_nothing_listed(moto_lab: Lab, s3_dir: str, words: str) -> None:
    lab = moto_lab
    lab.seed(3, errors=0)
    run, s = _plan_json(lab, s3_dir=f"s3://{lab.bucket}/{s3_dir}")
    assert s["outcome"] == "nothing-listed", run
    assert any(words in w for w in s["warnings"]), run  # type: ignore[attr-defined]
    assert_same(lab.state(), lab.seeded)


def test_a_datetime_format_that_matches_nothing_is_the_all_to_error_outcome(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(4, errors=0)
    run, s = _plan_json(lab, datetime_format="%d%m%Y%H")
    assert s["outcome"] == "all-to-error" and s["to_error_dir"] == 4, run
    assert any("datetime_format" in w and "error folder" in w for w in s["warnings"]), run  # type: ignore[attr-defined]
    run, s = _plan_json(lab)  # the right format: no warning
    assert s["outcome"] == "planned" and s["warnings"] == [], run


def test_d_with_match_pattern_and_minutes_for_months_warn(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(2, errors=0)
    run, s = _plan_json(lab, "-d", "2023-01-01T00:00:00")
    assert any("-d/--datetime is ignored" in w for w in s["warnings"]), run  # type: ignore[attr-defined]
    run, s = _plan_json(lab, s3_segregated_dir=f"s3://{lab.bucket}/segregated/%Y/%M/%d/")
    assert any("did you mean %m" in w for w in s["warnings"]), run  # type: ignore[attr-defined]
    assert s["outcome"] == "planned"


def test_run_json_carries_the_outcome_for_cron(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(3, errors=0)
    run = lab.cli("run", "-c", str(lab.config(datetime_format="%d%m%Y%H")), "--no-progress", "--json", timeout=120)
    assert run.code == ExitCode.OK, run
    assert run.summary["plan"]["outcome"] == "all-to-error"
    assert {k for k in lab.state() if k.startswith("error/")} == {"error/" + cdr_name(i, hour=i % 4) for i in range(3)}


# -- status: failures with their keys, operator words, exit 1 while failures remain (item 6) ----------------------
def test_status_failed_lists_conflicts_with_keys_and_exits_1_until_resolved(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(4, errors=0)
    name = cdr_name(1, hour=1)
    blocker = f"segregated/2022/12/31/01/{name}"
    lab.s3.put_object(Bucket=lab.bucket, Key=blocker, Body=b"someone else's file")
    lab.plan()
    run = lab.apply(timeout=120)
    assert run.code == ExitCode.ITEMS_FAILED, run
    [failure] = run.summary["failures"]
    assert failure["key"] == f"s3://{lab.bucket}/incoming/{name}" and not run.summary["failures_cut"]
    text = lab.cli("status", lab.manifest, "--failed")
    assert text.code == ExitCode.ITEMS_FAILED, text
    assert f"incoming/{name}" in text.out and "conflict: another file at the destination" in text.out
    assert "intent" not in text.out and "moved" in text.out
    status = lab.cli("status", lab.manifest, "--failed", "--json")
    assert status.code == ExitCode.ITEMS_FAILED
    assert [f["source"] for f in status.summary["failed"]] == [f"s3://{lab.bucket}/incoming/{name}"]
    assert status.summary["problems"] == 1 and status.summary["recent_errors_cut"] is False
    assert lab.s3.get_object(Bucket=lab.bucket, Key=blocker)["Body"].read() == b"someone else's file"
    assert f"incoming/{name}" in lab.state()  # the conflicted file stayed where it was
    lab.s3.delete_object(Bucket=lab.bucket, Key=blocker)
    assert lab.apply(timeout=120).code == ExitCode.OK
    assert lab.cli("status", lab.manifest).code == ExitCode.OK


# -- filters: include / exclude / min_age (item 4) ----------------------------------------------------------------
def test_exclude_and_include_globs_skip_keys_and_are_recorded_in_the_manifest(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(3, errors=0)
    lab.put("incoming/.tmp_upload1.part", b"half")
    lab.put("incoming/notes.txt", b"n")
    config = lab.config(exclude=".tmp_*.part")
    out = lab.tmp / "p.jsonl"
    run = lab.cli("plan", "-c", str(config), "-o", str(out), "--json", "--exclude", "*.txt", timeout=60)
    assert run.code == ExitCode.OK, run
    assert run.summary["skipped"] == {"excluded": 2} and run.summary["planned"] == 3, run
    header = json.loads(out.read_text().splitlines()[0])
    assert header["config"]["exclude"] == [".tmp_*.part", "*.txt"]
    planned = [json.loads(line)["src_key"] for line in out.read_text().splitlines()[1:-1]]
    assert not any(".tmp_" in k or k.endswith(".txt") for k in planned)
    run = lab.cli("run", "-c", str(lab.config(include="CHARGINGCDR_*-0001-*")), "--no-progress", "--json", timeout=120)
    assert run.code == ExitCode.OK, run
    state = lab.state()
    assert "incoming/.tmp_upload1.part" in state and "incoming/notes.txt" in state
    assert [k for k in state if k.startswith("incoming/CHARGING")] == sorted(
        f"incoming/{cdr_name(i, hour=i % 4)}" for i in (0, 2)
    )


def test_min_age_skips_files_just_written(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(2, errors=0)
    run, s = _plan_json(lab, "--min-age", "1h")
    assert s["skipped"] == {"too-new": 2} and s["planned"] == 0 and s["outcome"] == "nothing-planned", run
    run, s = _plan_json(lab, min_age="0s")
    assert s["planned"] == 2
    bad = lab.cli("plan", "-c", str(lab.config()), "--min-age", "soon", timeout=60)
    assert bad.code == ExitCode.USAGE and "--min-age" in bad.err
    bad = lab.cli("plan", "-c", str(lab.config(min_age="ten minutes")), timeout=60)
    assert bad.code == ExitCode.USAGE and "min_age" in bad.err


# -- CLI hygiene (item 5) -----------------------------------------------------------------------------------------
def test_a_mistyped_command_is_answered_as_one(moto_lab: Lab) -> None:
    run = moto_lab.cli("aply", "x.jsonl", timeout=60)
    assert run.code == ExitCode.USAGE and "unknown command 'aply'" in run.err and "s3seg apply" in run.err, run


def test_options_before_the_command_are_accepted(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(2, errors=0)
    config = lab.config(endpoint=None)
    config.write_text(config.read_text().replace(f"  <endpoint_url>{lab.proxy.url}</endpoint_url>\n", ""))
    out = lab.tmp / "p.jsonl"
    run = lab.cli("--endpoint-url", lab.proxy.url, "plan", "-c", str(config), "-o", str(out), "--json", timeout=60)
    assert run.code == ExitCode.OK and run.summary["planned"] == 2, run
    assert json.loads(out.read_text().splitlines()[0])["endpoint"] == lab.proxy.url


@pytest.mark.parametrize("verb", ["apply", "rollback", "status"])
def test_a_missing_manifest_is_a_usage_error(moto_lab: Lab, verb: str) -> None:
    run = moto_lab.cli(verb, str(moto_lab.tmp / "nosuch.jsonl"), timeout=60)
    assert run.code == ExitCode.USAGE and "does not exist" in run.err, run


def test_run_dry_run_moves_nothing_and_a_finished_plan_would_attempt_0(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(3, errors=0)
    run = lab.cli("run", "-c", str(lab.config()), "--no-progress", "--dry-run", timeout=60)
    assert run.code == ExitCode.OK and "dry run: 3 of 3 moves would be attempted" in run.out, run
    assert_same(lab.state(), lab.seeded)
    lab.plan()
    assert lab.apply().code == ExitCode.OK
    run = lab.cli("apply", lab.manifest, "--dry-run", timeout=60)
    assert run.code == ExitCode.OK and "dry run: 0 of 3 moves would be attempted" in run.out, run


# -- state_dir hygiene (item 7) -----------------------------------------------------------------------------------
def test_a_run_that_plans_nothing_leaves_nothing_in_state_dir(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.put("incoming/notes/readme.txt", b"x")  # below a sub-folder: nothing planned
    run = lab.cli("run", "-c", str(lab.config()), "--no-progress", "--json", timeout=60)
    assert run.code == ExitCode.OK and run.summary["plan"]["planned"] == 0, run
    assert not list(lab.tmp.glob("*.jsonl*"))


def test_prune_removes_finished_runs_only(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(3, errors=0)
    finished = lab.plan("done.jsonl")
    assert lab.apply().code == ExitCode.OK
    lab.put("incoming/" + cdr_name(50), b"new")
    lab.s3.put_object(Bucket=lab.bucket, Key="segregated/2022/12/31/10/" + cdr_name(50), Body=b"in the way")
    conflicted = lab.plan("conflict.jsonl")
    assert lab.apply().code == ExitCode.ITEMS_FAILED
    lab.put("incoming/" + cdr_name(51), b"new2")
    waiting = lab.plan("waiting.jsonl")  # never applied
    old = time.time() - 40 * 86400
    for path in lab.tmp.glob("*.jsonl*"):
        os.utime(path, (old, old))
    dry = lab.cli("prune", "--state-dir", str(lab.tmp), "--older-than", "30d", "--dry-run", "--json", timeout=60)
    assert dry.code == ExitCode.OK and dry.summary["removed"] == [finished], dry
    assert Path(finished).exists()
    run = lab.cli("prune", "--state-dir", str(lab.tmp), "--older-than", "30d", "--json", timeout=60)
    assert run.code == ExitCode.OK and run.summary["removed"] == [finished], run
    assert set(run.summary["kept"]) == {conflicted, waiting}
    assert not Path(finished).exists() and not Path(finished + ".journal").exists()
    assert Path(conflicted).exists() and Path(conflicted + ".journal").exists() and Path(waiting).exists()
    young = lab.cli("prune", "--state-dir", str(lab.tmp), "--older-than", "60d", "--json", timeout=60)
    assert young.summary["removed"] == [] and young.summary["kept"] == {}


def test_quiet_prints_nothing_on_success_and_the_summary_on_failure(moto_lab: Lab) -> None:
    lab = moto_lab
    lab.seed(2, errors=0)
    run = lab.cli("plan", "-c", str(lab.config()), "-o", str(lab.tmp / "p.jsonl"), "-q", timeout=60)
    assert run.code == ExitCode.OK and run.out == "", run
    lab.manifest = str(lab.tmp / "p.jsonl")
    lab.s3.put_object(Bucket=lab.bucket, Key="segregated/2022/12/31/00/" + cdr_name(0, hour=0), Body=b"in the way")
    run = lab.cli("apply", lab.manifest, "-q", "--no-progress", timeout=60)
    assert run.code == ExitCode.ITEMS_FAILED and "conflict" in run.out, run
