"""Fast paths of resume and status: ``Manifest.moves(skip=...)``, the light ``verify``, the journal masks."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from manifestkit import move, write

from s3seg.errors import ManifestError
from s3seg.journal import APPLY_DONE, DST_MAYBE, DST_OURS, SRC_DELETED, JournalState, Status
from s3seg.manifest import Manifest

MOVES = [move(i) for i in range(1, 301)]


@pytest.fixture(params=["plan.jsonl", "plan.jsonl.gz"])
def path(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    p = tmp_path / request.param
    write(p, MOVES)
    return p


def test_skipped_entries_are_not_yielded(path: Path) -> None:
    skip = bytes(random.Random(1).choice([0, 1]) for _ in range(301))
    got = list(Manifest(str(path)).moves(skip=skip))
    assert got == [m for m in MOVES if not skip[m.id]]


def test_a_skipped_entry_edited_after_verify_is_still_detected(tmp_path: Path) -> None:
    p = tmp_path / "plan.jsonl"
    write(p, MOVES)
    m = Manifest(str(p))
    m.verify()
    data = p.read_bytes().replace(b"f7.ccn", b"f9.ccn", 1)
    with open(p, "r+b") as f:  # in place, same size; mtime forced back to what verify saw
        st_ = p.stat()
        f.write(data)
    os_utime(p, st_.st_mtime_ns)
    with pytest.raises(ManifestError, match="changed after it was verified"):
        list(m.moves(skip=bytes([0] + [1] * 300)))


def os_utime(p: Path, ns: int) -> None:
    import os

    os.utime(p, ns=(ns, ns))


def test_light_verify_gives_the_same_info_and_refuses_edits(path: Path, tmp_path: Path) -> None:
    full = Manifest(str(path)).verify()
    light = Manifest(str(path)).verify(entries_checked=False)
    assert (light.entries, light.sha256, light.header) == (full.entries, full.sha256, full.header)
    assert full.buckets == {("src", "dst")}
    p = tmp_path / "edited.jsonl"
    p.write_bytes(_plain(path).replace(b"f7.ccn", b"f8.ccn", 1))
    with pytest.raises(ManifestError, match="edited"):
        Manifest(str(p)).verify(entries_checked=False)


def _plain(path: Path) -> bytes:
    import gzip

    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@given(st.lists(st.tuples(st.sampled_from(list(Status)), st.integers(0, 7)), min_size=1, max_size=50))
def test_masks_equal_the_per_id_predicates(values: list[tuple[Status, int]]) -> None:
    state = JournalState(len(values))
    for i, (status, bits) in enumerate(values, start=1):
        state.states[i] = status
        state.own[i] = bits & (DST_OURS | DST_MAYBE | SRC_DELETED)
    done = state.mask(APPLY_DONE)
    wanted = state.rollback_mask()
    assert done[0] == 0 and wanted[0] == 0
    for i in range(1, len(values) + 1):
        assert done[i] == (state.status_of(i) in APPLY_DONE)
        assert wanted[i] == state.rollback_wanted(i)
