"""`s3seg plan` (and the original's sub-command-less invocation) as a real subprocess against the moto server."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from helpers import cdr_key, run_cli, snapshot, write_config

from s3seg import __version__
from s3seg.manifest import Manifest

pytestmark = pytest.mark.integration


class _Counter(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def _any(self) -> None:
        type(self).requests.append(f"{self.command} {self.path}")
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def counting_endpoint() -> Iterator[tuple[str, list[str]]]:
    """An endpoint that records every HTTP request it receives (and fails it)."""
    requests: list[str] = []
    handler = type("Counter", (_Counter,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def seed(s3: Any, bucket: str) -> dict[str, bytes]:
    bodies = {
        cdr_key(1, "20221231", 10): b"first",
        cdr_key(2, "20221231", 11): b"second",
        cdr_key(3, "20230101", 0): b"third",
        "incoming/README.txt": b"no date",
        "incoming/sub/" + cdr_key(4, prefix=""): b"not a direct child",
    }
    for key, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    s3.put_object(Bucket=bucket, Key="incoming/", Body=b"")
    return bodies


def test_plan_writes_the_exact_manifest_and_prints_the_summary(
    s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    bodies = seed(s3, bucket)
    before = snapshot(s3, bucket)
    config = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=moto_endpoint)
    out = tmp_path / "plan.jsonl"

    done = run_cli("plan", "-c", str(config), "-o", str(out))

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("listed 5 objects in 1 pages (")  # then the elapsed time
    assert [lines[0], *lines[2:]] == [
        f"manifest: {out}",
        "planned 4 moves, 1 of them to the error dir",
        "skipped: folder-marker 1",
        "destination folders: 4 (top 4):",
        f"  1  s3://{bucket}/segregated/2022/12/31/10/",
        f"  1  s3://{bucket}/segregated/2022/12/31/11/",
        f"  1  s3://{bucket}/segregated/2023/01/01/00/",
        f"  1  s3://{bucket}/error/",
        "  4  total",
        f"review it, then: s3seg apply {out}",
    ]

    raw = out.read_bytes().splitlines(keepends=True)
    header = json.loads(raw[0])
    assert {k: header[k] for k in ("type", "format", "tool", "version", "endpoint", "source", "datetime")} == {
        "type": "header",
        "format": 1,
        "tool": "s3seg",
        "version": __version__,
        "endpoint": moto_endpoint,
        "source": f"s3://{bucket}/incoming/",
        "datetime": None,
    }
    assert header["config"]["endpoint_url"] == moto_endpoint
    assert header["config"]["config_path"] == str(config)
    listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    expected = []
    for i, (src, dst, reason) in enumerate(
        [
            (cdr_key(1, "20221231", 10), "segregated/2022/12/31/10/", "matched"),
            (cdr_key(2, "20221231", 11), "segregated/2022/12/31/11/", "matched"),
            (cdr_key(3, "20230101", 0), "segregated/2023/01/01/00/", "matched"),
            ("incoming/README.txt", "error/", "no-match"),
        ],
        start=1,
    ):
        entry = {
            "id": i,
            "src_bucket": bucket,
            "src_key": src,
            "dst_bucket": bucket,
            "dst_key": dst + src.removeprefix("incoming/"),
            "size": len(bodies[src]),
            "etag": '"' + hashlib.md5(bodies[src]).hexdigest() + '"',
            "storage_class": "STANDARD",
            "last_modified": listed[src]["LastModified"].isoformat(),
            "reason": reason,
        }
        expected.append(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
    assert raw[1:-1] == expected
    assert json.loads(raw[-1]) == {
        "type": "trailer",
        "entries": 4,
        "sha256": hashlib.sha256(b"".join(expected)).hexdigest(),
        "header_sha256": hashlib.sha256(raw[0]).hexdigest(),
    }
    assert Manifest(str(out)).verify().entries == 4
    assert snapshot(s3, bucket) == before  # plan is read-only


def test_plan_json_summary_and_endpoint_from_the_command_line(
    s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    seed(s3, bucket)
    config = write_config(tmp_path / "config.xml", bucket=bucket)  # no endpoint in the file
    out = tmp_path / "plan.jsonl"
    done = run_cli("plan", "-c", str(config), "-o", str(out), "--json", "--endpoint-url", moto_endpoint)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert {k: summary[k] for k in ("listed", "planned", "to_error_dir", "skipped", "cap_hit", "folders")} == {
        "listed": 5,
        "planned": 4,
        "to_error_dir": 1,
        "skipped": {"folder-marker": 1},
        "cap_hit": False,
        "folders": 4,
    }
    assert summary["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert Manifest(str(out)).verify().header["endpoint"] == moto_endpoint


def test_aws_endpoint_url_environment_variable_is_honoured(
    s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    seed(s3, bucket)
    config = write_config(tmp_path / "config.xml", bucket=bucket)
    out = tmp_path / "plan.jsonl"
    done = run_cli("plan", "-c", str(config), "-o", str(out), env={"AWS_ENDPOINT_URL": moto_endpoint})
    assert done.returncode == 0, done.stderr
    assert Manifest(str(out)).verify().header["endpoint"] == moto_endpoint


def test_recursive_and_datetime_flags(s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path) -> None:
    seed(s3, bucket)
    config = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=moto_endpoint, match_pattern=None)
    out = tmp_path / "plan.jsonl"
    done = run_cli("plan", "-c", str(config), "-o", str(out), "--recursive", "-d", "2021-06-15T08:00")
    assert done.returncode == 0, done.stderr
    moves = {m.src_key: m.dst_key for m in Manifest(str(out)).moves()}
    assert moves["incoming/sub/" + cdr_key(4, prefix="")] == "segregated/2021/06/15/08/sub/" + cdr_key(4, prefix="")
    assert set(moves.values()) == {"segregated/2021/06/15/08/" + k.removeprefix("incoming/") for k in moves}
    assert len(moves) == 5


def test_cap_is_reported_and_lifted_by_all(s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path) -> None:
    for n in range(5):
        s3.put_object(Bucket=bucket, Key=cdr_key(n), Body=b"x")
    config = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=moto_endpoint, n_keys=2, n_loops=1)
    capped = run_cli("plan", "-c", str(config), "-o", str(tmp_path / "capped.jsonl"))
    assert capped.returncode == 0, capped.stderr
    assert "planned 2 moves" in capped.stdout
    assert "n_loops cap reached" in capped.stdout
    assert "--all" in capped.stderr  # the warning says how to lift it
    full = run_cli("plan", "-c", str(config), "-o", str(tmp_path / "full.jsonl"), "--all")
    assert full.returncode == 0, full.stderr
    assert "planned 5 moves" in full.stdout
    assert "n_loops cap" not in full.stdout


# --- refused before any S3 request: exit code 2 --------------------------------------------------------------


@pytest.mark.parametrize(
    ("element", "value", "words"),
    [
        ("match_pattern", "^CHARGINGCDR_(\\d{8}", "regular expression"),
        ("n_keys", "1001", "n_keys"),
        ("datetime_format", "%Y%m%d%Q", "%Q"),
        ("s3_dir", "https://not-s3/x/", "s3://"),
    ],
)
def test_bad_config_exits_2_with_file_and_line_and_sends_nothing(
    tmp_path: Path, counting_endpoint: tuple[str, list[str]], element: str, value: str, words: str
) -> None:
    endpoint, requests = counting_endpoint
    config = write_config(tmp_path / "config.xml", bucket="some-bucket", endpoint=endpoint, **{element: value})
    line = next(i for i, text in enumerate(config.read_text().splitlines(), start=1) if f"<{element}>" in text)
    out = tmp_path / "plan.jsonl"
    done = run_cli("plan", "-c", str(config), "-o", str(out), "--endpoint-url", endpoint)
    assert done.returncode == 2
    assert f"{config}:{line}:" in done.stderr
    assert words in done.stderr
    assert done.stdout == ""
    assert requests == []
    assert not out.exists()


def test_config_with_a_doctype_is_refused_before_any_request(
    tmp_path: Path, counting_endpoint: tuple[str, list[str]]
) -> None:
    endpoint, requests = counting_endpoint
    config = write_config(tmp_path / "config.xml", bucket="some-bucket", endpoint=endpoint)
    config.write_text('<!DOCTYPE config [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n' + config.read_text())
    done = run_cli("plan", "-c", str(config), "-o", str(tmp_path / "plan.jsonl"))
    assert done.returncode == 2
    assert f"{config}:1:" in done.stderr
    assert "root:" not in done.stderr
    assert requests == []


def test_bad_datetime_exits_2_before_any_request(tmp_path: Path, counting_endpoint: tuple[str, list[str]]) -> None:
    endpoint, requests = counting_endpoint
    config = write_config(tmp_path / "config.xml", bucket="some-bucket", endpoint=endpoint, match_pattern=None)
    done = run_cli("plan", "-c", str(config), "-o", str(tmp_path / "plan.jsonl"), "-d", "yesterday")
    assert done.returncode == 2
    assert "ISO 8601" in done.stderr
    assert requests == []


def test_missing_config_file_exits_2(tmp_path: Path, counting_endpoint: tuple[str, list[str]]) -> None:
    endpoint, requests = counting_endpoint
    done = run_cli("plan", "-c", str(tmp_path / "absent.xml"), "--endpoint-url", endpoint)
    assert done.returncode == 2
    assert "absent.xml" in done.stderr
    assert requests == []


def test_manifest_in_a_missing_directory_exits_2_before_any_request(
    tmp_path: Path, counting_endpoint: tuple[str, list[str]]
) -> None:
    endpoint, requests = counting_endpoint
    config = write_config(tmp_path / "config.xml", bucket="some-bucket", endpoint=endpoint)
    done = run_cli("plan", "-c", str(config), "-o", str(tmp_path / "missing" / "plan.jsonl"))
    assert done.returncode == 2, done.stderr
    assert "cannot write the manifest" in done.stderr
    assert "Traceback" not in done.stderr
    assert requests == []


def test_unsafe_plan_exits_2_and_leaves_no_manifest(s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path) -> None:
    name = cdr_key(1, prefix="")
    s3.put_object(Bucket=bucket, Key="incoming/" + name[:-4] + "x" * 1000 + ".ccn", Body=b"x")
    config = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=moto_endpoint)
    out = tmp_path / "plan.jsonl"
    done = run_cli("plan", "-c", str(config), "-o", str(out))
    assert done.returncode == 2
    assert "1024-byte limit" in done.stderr
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


# --- the original tool's invocation ---------------------------------------------------------------------------


def test_no_sub_command_means_run(s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path) -> None:
    bodies = seed(s3, bucket)
    state = tmp_path / "state"
    state.mkdir()
    config = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=moto_endpoint, state_dir=str(state))

    done = run_cli("-c", str(config))

    assert done.returncode == 0, done.stderr
    assert "planned 4 moves" in done.stdout
    assert "apply: 4 of 4 finished" in done.stdout
    after = snapshot(s3, bucket, full=False)
    assert after == {
        "incoming/": b"",
        "incoming/sub/" + cdr_key(4, prefix=""): bodies["incoming/sub/" + cdr_key(4, prefix="")],
        "segregated/2022/12/31/10/" + cdr_key(1, "20221231", 10, prefix=""): bodies[cdr_key(1, "20221231", 10)],
        "segregated/2022/12/31/11/" + cdr_key(2, "20221231", 11, prefix=""): bodies[cdr_key(2, "20221231", 11)],
        "segregated/2023/01/01/00/" + cdr_key(3, "20230101", 0, prefix=""): bodies[cdr_key(3, "20230101", 0)],
        "error/README.txt": bodies["incoming/README.txt"],
    }
    manifests = sorted(p.name for p in state.iterdir() if p.name.endswith(".jsonl"))
    assert len(manifests) == 1
    assert (state / (manifests[0] + ".journal")).exists()
    assert (tmp_path / "s3seg.log").read_text()  # log_file is honoured

    # Run again (as cron would): nothing left to move.
    again = run_cli("-c", str(config))
    assert again.returncode == 0, again.stderr
    assert "planned 0 moves" in again.stdout
    assert snapshot(s3, bucket, full=False) == after
