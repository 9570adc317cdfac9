"""s3seg.manifest: gzip-compressed manifests (a ``.gz`` path): written, verified and streamed transparently, with
every digest over the uncompressed lines; every damage to the compressed file is refused."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
from manifestkit import HEADER, move, refused, write

from s3seg.manifest import Manifest, ManifestWriter, content_sha256, read_chunks, read_lines

MOVES = [move(i) for i in range(1, 2001)]


@pytest.fixture
def gz(tmp_path: Path) -> Path:
    path = tmp_path / "plan.jsonl.gz"
    write(path, MOVES)
    return path


def test_a_gz_path_is_written_compressed_and_read_back(gz: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plan.jsonl"
    plain_sha = write(plain, MOVES)
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    assert gz.stat().st_size * 5 < plain.stat().st_size
    assert gzip.decompress(gz.read_bytes()) == plain.read_bytes()  # the same lines
    m = Manifest(str(gz))
    info = m.verify()
    assert info.entries == 2000 and info.header["tool"] == "s3seg"
    assert list(m.moves()) == MOVES
    # the journal binds to the digest of the uncompressed content: the same as the plain manifest's
    assert info.sha256 == plain_sha == Manifest(str(plain)).verify().sha256 == content_sha256(str(gz))
    assert info.sha256 == hashlib.sha256(plain.read_bytes()).hexdigest()


def test_writer_close_returns_the_uncompressed_digest(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl.gz"
    sha = write(path, MOVES[:3])
    assert sha == hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


def test_gunzip_of_a_plan_keeps_the_same_digest(gz: Path, tmp_path: Path) -> None:
    out = tmp_path / "gunzipped.jsonl"
    out.write_bytes(gzip.decompress(gz.read_bytes()))
    assert Manifest(str(out)).verify().sha256 == Manifest(str(gz)).verify().sha256


def test_recompressed_in_several_members_reads_the_same(gz: Path) -> None:
    data = gzip.decompress(gz.read_bytes())
    cut = data.index(b"\n", len(data) // 2) + 1
    gz.write_bytes(gzip.compress(data[:cut], 1) + gzip.compress(data[cut:], 9))
    assert list(Manifest(str(gz)).moves()) == MOVES


@pytest.mark.parametrize("keep", [10, 100, 0.5, -9])
def test_a_truncated_gz_is_refused(gz: Path, keep: float) -> None:
    data = gz.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    gz.write_bytes(data[:n])
    err = refused(gz, None, "")
    assert "truncated" in str(err)


def test_a_corrupt_gz_is_refused(gz: Path) -> None:
    data = bytearray(gz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    gz.write_bytes(bytes(data))
    with pytest.raises(Exception) as info:  # a deflate error, or a CRC/length mismatch
        Manifest(str(gz)).verify()
    assert "corrupt" in str(info.value) or "truncated" in str(info.value)


def test_garbage_after_the_gzip_stream_is_refused(gz: Path) -> None:
    gz.write_bytes(gz.read_bytes() + b"{not gzip}\n")
    refused(gz, None, "corrupt")


def test_an_edited_and_recompressed_manifest_is_refused(gz: Path) -> None:
    data = gzip.decompress(gz.read_bytes()).replace(b"f7.ccn", b"f8.ccn", 1)
    gz.write_bytes(gzip.compress(data))
    refused(gz, None, "edited")


def test_a_gzip_written_under_a_plain_name_is_read_too(gz: Path, tmp_path: Path) -> None:
    other = tmp_path / "plan.jsonl"
    other.write_bytes(gz.read_bytes())
    assert list(Manifest(str(other)).moves()) == MOVES


def test_a_decompression_bomb_costs_no_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jsonl.gz"
    path.write_bytes(gzip.compress(b"{" + b" " * (32 << 20)))  # 32 MiB of one line, 32 KiB compressed
    chunks = read_chunks(str(path))
    assert max(len(next(chunks)) for _ in range(20)) <= 1 << 20


def test_a_flushed_partial_gzip_is_readable(tmp_path: Path) -> None:
    writer = ManifestWriter(str(tmp_path / "p.jsonl.gz"), HEADER)
    for m in MOVES[:5]:
        writer.add(m)
    writer.flush()
    got = list(read_lines(writer.partial_path, partial=True))
    assert len(got) == 6 and all(line.endswith(b"\n") for line in got)
    writer.abort()
    assert not Path(writer.partial_path).exists()
