"""Manifests for the manifest unit tests: a header, moves, a writer, and the check of a refusal (shared by
test_manifest, test_manifest_gzip and test_fast_paths; a kit module, not a test module).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from s3seg.errors import ExitCode, ManifestError
from s3seg.manifest import Manifest, ManifestWriter, Move

HEADER: dict[str, Any] = {"tool": "s3seg", "version": "0.1.0", "now": "2023-01-02T03:04:05", "config": {"n": 1}}


def move(i: int, **kw: Any) -> Move:
    values: dict[str, Any] = {
        "id": i,
        "src_bucket": "src",
        "src_key": f"incoming/f{i}.ccn",
        "dst_bucket": "dst",
        "dst_key": f"seg/2022/f{i}.ccn",
        "size": i * 10,
        "etag": f'"{i:032x}"',
        "storage_class": "STANDARD",
        "last_modified": "2022-12-31T10:00:00+00:00",
        "reason": "matched",
    }
    values.update(kw)
    return Move(**values)


def write(path: Path, moves: list[Move], header: dict[str, Any] | None = None) -> str:
    writer = ManifestWriter(str(path), HEADER if header is None else header)
    for m in moves:
        writer.add(m)
    return writer.close()


def refused(path: Path, line: int | None, words: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        Manifest(str(path)).verify()
    err = info.value
    assert err.line == line, str(err)
    assert words in str(err), str(err)
    assert err.exit_code == ExitCode.REFUSED
    assert str(path) in str(err)
    return err
