"""Properties of s3seg.manifest: any move round-trips; any single-byte edit or truncation is detected."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3seg.errors import ManifestError
from s3seg.manifest import Manifest, ManifestWriter, Move

SETTINGS = settings(max_examples=100, deadline=None)

# S3 keys are any UTF-8 text (surrogates cannot be encoded); control characters, quotes, backslashes,
# U+2028 and NEL included.
keys = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60)
tricky_keys = st.sampled_from(["a\nb", "a\rb", "\x00", '"\\', "\u2028\u2029\x85", "日本/é", "k?versionId=1", " "])
buckets = st.from_regex(r"[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]", fullmatch=True)
etags = st.text("0123456789abcdef", min_size=32, max_size=32).map(lambda h: f'"{h}"') | st.just('"abc-2"')
headers = st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text(max_size=20), max_size=4).map(
    lambda d: {k: v for k, v in d.items() if k not in ("type", "format")}
)


@st.composite
def move_lists(draw: st.DrawFn, min_size: int = 0, max_size: int = 6) -> list[Move]:
    n = draw(st.integers(min_size, max_size))
    return [
        Move(
            id=i,
            src_bucket=draw(buckets),
            src_key=draw(keys | tricky_keys),
            dst_bucket=draw(buckets),
            dst_key=draw(keys | tricky_keys),
            size=draw(st.integers(0, 5 * 1024**4)),
            etag=draw(etags),
            storage_class=draw(st.sampled_from(["STANDARD", "GLACIER", "STANDARD_IA", "INTELLIGENT_TIERING"])),
            last_modified=draw(st.just("") | st.text(max_size=30)),
            reason=draw(st.sampled_from(["matched", "no-match", "bad-date", "fallback-date"])),
            detail=draw(st.just("") | st.text(max_size=30)),
        )
        for i in range(1, n + 1)
    ]


# Hundreds of small files per test: on a busy disk each write costs milliseconds, so use tmpfs where there is one.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def scratch() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(dir=SCRATCH)


def write(directory: str, moves: list[Move], header: dict[str, Any]) -> Path:
    path = Path(directory) / "plan.jsonl"
    writer = ManifestWriter(str(path), header)
    for m in moves:
        writer.add(m)
    writer.close()
    return path


@SETTINGS
@given(moves=move_lists(min_size=1, max_size=1))
def test_a_move_round_trips_through_its_json_line(moves: list[Move]) -> None:
    (m,) = moves
    line = m.to_json()
    assert "\n" not in line and "\r" not in line
    assert Move.from_dict(json.loads(line)) == m


@SETTINGS
@given(moves=move_lists(), header=headers)
def test_a_manifest_round_trips(moves: list[Move], header: dict[str, Any]) -> None:
    with scratch() as d:
        path = write(d, moves, header)
        assert path.read_bytes().count(b"\n") == len(moves) + 2  # one line per record, whatever the keys hold
        manifest = Manifest(str(path))
        info = manifest.verify()
        assert info.entries == len(moves)
        assert info.header == {"type": "header", "format": 1, **header}
        assert list(manifest.moves()) == moves


@st.composite
def damaged(draw: st.DrawFn) -> tuple[list[Move], dict[str, Any], str, int, int]:
    moves = draw(move_lists(max_size=3))
    header = draw(headers)
    kind = draw(st.sampled_from(["substitute", "delete", "truncate"]))
    position = draw(st.integers(0, 10**9))
    byte = draw(st.integers(0, 255))
    return moves, header, kind, position, byte


def _damage(data: bytes, kind: str, position: int, byte: int) -> bytes:
    i = position % len(data)
    if kind == "substitute":
        if data[i] == byte:
            byte = (byte + 1) % 256
        return data[:i] + bytes([byte]) + data[i + 1 :]
    if kind == "delete":
        return data[:i] + data[i + 1 :]
    return data[:i]  # truncate: keep the first i bytes (i < len)


@settings(max_examples=250, deadline=None)
@given(case=damaged())
def test_any_single_byte_edit_or_truncation_is_detected(case: tuple[list[Move], dict[str, Any], str, int, int]) -> None:
    moves, header, kind, position, byte = case
    with scratch() as d:
        path = write(d, moves, header)
        damaged_bytes = _damage(path.read_bytes(), kind, position, byte)
        path.write_bytes(damaged_bytes)
        with pytest.raises(ManifestError):
            Manifest(str(path)).verify()


@settings(max_examples=10, deadline=None)
@given(moves=move_lists(min_size=1, max_size=2))
def test_every_byte_of_a_manifest_is_protected(moves: list[Move]) -> None:
    # Exhaustive over positions for one small manifest: flipping the low bit of any byte is detected.
    with scratch() as d:
        path = write(d, moves, {"tool": "s3seg", "endpoint": None})
        data = path.read_bytes()
        for i in range(len(data)):
            path.write_bytes(data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :])
            with pytest.raises(ManifestError):
                Manifest(str(path)).verify()
