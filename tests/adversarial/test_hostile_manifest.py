"""Tampered, truncated and foreign manifests: refused with exit 3 before a single S3 request.

A valid manifest is planned against the moto server (through this test's proxy), then damaged; ``apply``,
``rollback`` and ``status`` run in-process (``cli.run_cli``) with every botocore client counted, and the proxy
counts anything that would still reach the store. The bucket and the journal must be exactly as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from advlab import Lab

from s3seg.cli import run_cli

pytestmark = pytest.mark.integration


def _lines(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        return f.readlines()


def _write(path: str, lines: list[bytes]) -> None:
    with open(path, "wb") as f:
        f.writelines(lines)


def _edit_entry(field: str, value: Any) -> Callable[[list[bytes]], list[bytes]]:
    def edit(lines: list[bytes]) -> list[bytes]:
        entry = json.loads(lines[3])
        entry[field] = value
        lines[3] = json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        return lines

    return edit


def _edit_trailer(field: str, value: Any) -> Callable[[list[bytes]], list[bytes]]:
    def edit(lines: list[bytes]) -> list[bytes]:
        trailer = json.loads(lines[-1])
        trailer[field] = value
        lines[-1] = json.dumps(trailer).encode() + b"\n"
        return lines

    return edit


def _header(field: str, value: Any) -> Callable[[list[bytes]], list[bytes]]:
    def edit(lines: list[bytes]) -> list[bytes]:
        header = json.loads(lines[0])
        header[field] = value
        lines[0] = json.dumps(header).encode() + b"\n"
        return lines

    return edit


def _cut_bytes(lines: list[bytes]) -> list[bytes]:
    raw = b"".join(lines)
    return [raw[: int(len(raw) * 0.6)]]


TAMPERING: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "truncated-mid-line": _cut_bytes,
    "truncated-at-a-line-boundary": lambda lines: lines[:-3],
    "trailer-missing": lambda lines: lines[:-1],
    "entry-destination-edited": _edit_entry("dst_key", "elsewhere/evil.bin"),
    "entry-source-bucket-edited": _edit_entry("src_bucket", "another-bucket"),
    "entry-etag-edited": _edit_entry("etag", '"00000000000000000000000000000000"'),
    "entry-field-missing": _edit_entry("etag", None),
    "trailer-count-mismatch": _edit_trailer("entries", 3),
    "trailer-digest-mismatch": _edit_trailer("sha256", "0" * 64),
    "duplicated-line": lambda lines: [*lines[:4], lines[3], *lines[4:]],
    "reordered-lines": lambda lines: [lines[0], lines[2], lines[1], *lines[3:]],
    "line-deleted": lambda lines: [*lines[:3], *lines[4:]],
    "data-after-the-trailer": lambda lines: [*lines, lines[1]],
    "two-manifests-concatenated": lambda lines: [*lines, *lines],
    "header-garbage": lambda lines: [b"{not json\n", *lines[1:]],
    "header-format-99": _header("format", 99),
    "no-header": lambda lines: lines[1:],
    "empty-file": lambda lines: [],
    "binary-garbage": lambda lines: [bytes(range(256))],
    "crlf-line-endings": lambda lines: [line.replace(b"\n", b"\r\n") for line in lines],
}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """[clients created, requests about to be sent] by any botocore client in this process."""
    counts = [0, 0]
    real = botocore.session.Session.create_client

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts[0] += 1
        client = real(self, *args, **kwargs)
        client.meta.events.register("before-send", lambda **kw: counts.__setitem__(1, counts[1] + 1))
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", create_client)
    yield counts


@pytest.fixture
def planned(moto_lab: Lab) -> Lab:
    moto_lab.seed(6)
    moto_lab.plan()
    return moto_lab


def _refused(lab: Lab, counted: list[int], capsys: Any, *argv: str, needle: str | None = None) -> None:
    before = lab.state(bodies=False)
    journal = Path(lab.manifest + ".journal")
    existed = journal.read_bytes() if journal.exists() else None
    lab.proxy.reset_counts()
    code = run_cli(list(argv))
    err = capsys.readouterr().err
    assert code == 3, (argv, err)
    assert (needle or lab.manifest) in err, err
    assert counted == [0, 0], f"S3 clients/requests: {counted}"
    assert lab.proxy.requests() == 0
    assert lab.state(bodies=False) == before
    assert (journal.read_bytes() if journal.exists() else None) == existed


@pytest.mark.parametrize("how", TAMPERING)
def test_a_tampered_manifest_is_refused_by_apply_rollback_and_status_with_no_s3_request(
    planned: Lab, how: str, counted: list[int], capsys: Any
) -> None:
    lab = planned
    _write(lab.manifest, TAMPERING[how](_lines(lab.manifest)))
    for verb in ("apply", "rollback"):
        _refused(lab, counted, capsys, verb, lab.manifest, "--no-progress")
    _refused(lab, counted, capsys, "status", lab.manifest)
    _refused(lab, counted, capsys, "apply", lab.manifest, "--dry-run")


def test_a_manifest_tampered_after_a_partial_apply_is_refused(planned: Lab, counted: list[int], capsys: Any) -> None:
    lab = planned
    assert lab.apply("--processes", "0", crash_at="after-copied-record:1").code == -9
    _write(lab.manifest, _edit_entry("dst_key", "elsewhere/evil.bin")(_lines(lab.manifest)))
    _refused(lab, counted, capsys, "apply", lab.manifest, "--no-progress")
    _refused(lab, counted, capsys, "rollback", lab.manifest, "--no-progress")


def test_a_manifest_for_another_endpoint_is_refused(
    planned: Lab, counted: list[int], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = planned
    other = "http://127.0.0.1:9"
    for verb in ("apply", "rollback"):
        _refused(lab, counted, capsys, verb, lab.manifest, "--endpoint-url", other, needle=other)
    monkeypatch.setenv("AWS_ENDPOINT_URL", other)
    _refused(lab, counted, capsys, "apply", lab.manifest, needle=other)


def _edit_config(field: str, value: Any) -> Callable[[list[bytes]], list[bytes]]:
    def edit(lines: list[bytes]) -> list[bytes]:
        header = json.loads(lines[0])
        header["config"][field] = value
        lines[0] = json.dumps(header).encode() + b"\n"
        return lines

    return edit


HEADER_EDITS = {
    "endpoint": _header("endpoint", "http://127.0.0.1:9"),
    "conditional-writes-trusted": _edit_config("conditional_writes", "server"),
    "source": _header("source", "s3://another-bucket/incoming/"),
}


@pytest.mark.parametrize("how", HEADER_EDITS)
def test_an_edited_manifest_header_is_refused(planned: Lab, how: str, counted: list[int], capsys: Any) -> None:
    """The header says where requests go (endpoint) and how (config): the trailer's header digest covers it."""
    lab = planned
    _write(lab.manifest, HEADER_EDITS[how](_lines(lab.manifest)))
    _refused(lab, counted, capsys, "apply", lab.manifest, "--no-progress")
    _refused(lab, counted, capsys, "rollback", lab.manifest, "--no-progress")
