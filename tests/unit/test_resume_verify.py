"""A resume verifies its manifest lightly (``commands.verify_for_run``), and ``Manifest.moves(skip=...)`` skips
done entries block by block: what a resume reads, what it parses, and what it still refuses."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from manifestkit import HEADER, move, write

import s3seg.manifest as manifest_mod
from s3seg import commands
from s3seg.commands import verify_for_run
from s3seg.errors import JournalError, ManifestError
from s3seg.journal import Journal, header_buckets
from s3seg.manifest import Manifest

MOVES = [move(i, src_bucket=f"src{i % 2}") for i in range(1, 201)]
PAIRS = frozenset({("src0", "dst"), ("src1", "dst")})


@pytest.fixture(params=["plan.jsonl", "plan.jsonl.gz"])
def path(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    p = tmp_path / request.param
    write(p, MOVES)
    return p


def _journal(manifest: Path, buckets: Any = PAIRS, sha256: str | None = None) -> str:
    jpath = str(manifest) + ".journal"
    digest = sha256 or manifest_mod.content_sha256(str(manifest))
    Journal(jpath, manifest_sha256=digest, manifest_name="plan", entries=len(MOVES), buckets=buckets).close()
    return jpath


def _count_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = Manifest._parse

    def counting(self: Manifest, raw: bytes, lineno: int) -> dict[str, Any]:
        calls.append(lineno)
        return real(self, raw, lineno)

    monkeypatch.setattr(Manifest, "_parse", counting)
    return calls


def test_a_new_journal_records_the_bucket_pairs(path: Path) -> None:
    jpath = _journal(path)
    assert header_buckets(jpath) == (manifest_mod.content_sha256(str(path)), PAIRS)
    header = json.loads(Path(jpath).read_text().splitlines()[0])
    assert header["buckets"] == [["src0", "dst"], ["src1", "dst"]]


def test_a_resume_does_not_parse_done_entries(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jpath = _journal(path)
    calls = _count_parses(monkeypatch)
    m = Manifest(str(path))
    info = verify_for_run(m, jpath)
    assert info.buckets == PAIRS and info.entries == len(MOVES)
    assert calls == [1, len(MOVES) + 2]  # the header and the trailer only
    skip = bytearray(len(MOVES) + 1)
    skip[1:191] = b"\x01" * 190  # 190 done
    calls.clear()
    assert [x.id for x in m.moves(skip=skip)] == list(range(191, 201))
    assert calls == [i + 1 for i in range(191, 201)]  # only the pending entries are parsed


def test_a_first_run_does_the_full_verify(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_parses(monkeypatch)
    info = verify_for_run(Manifest(str(path)), str(path) + ".journal")  # no journal
    assert len(calls) == len(MOVES) + 2
    assert info.buckets == PAIRS


def test_a_journal_without_bucket_pairs_means_a_full_verify(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jpath = _journal(path, buckets=())  # as journals written before the field existed
    assert "buckets" not in json.loads(Path(jpath).read_text().splitlines()[0])
    assert header_buckets(jpath) is None
    calls = _count_parses(monkeypatch)
    assert verify_for_run(Manifest(str(path)), jpath).buckets == PAIRS
    assert len(calls) == len(MOVES) + 2


@pytest.mark.parametrize(
    "first",
    [b"", b"garbage\n", b'{"type":"header","manifest_sha256":"x","buckets":[["a"]]}\n', b'{"type":"header"'],
    ids=repr,
)
def test_unusable_journal_headers_give_none(tmp_path: Path, first: bytes) -> None:
    j = tmp_path / "j"
    j.write_bytes(first)
    assert header_buckets(str(j)) is None
    assert header_buckets(str(tmp_path / "absent")) is None


def test_a_journal_of_another_manifest_is_still_refused(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.jsonl"
    write(other, MOVES[:5])
    jpath = str(path) + ".journal"
    digest = manifest_mod.content_sha256(str(other))
    Journal(jpath, manifest_sha256=digest, manifest_name="other", entries=5, buckets=PAIRS).close()
    calls = _count_parses(monkeypatch)
    info = verify_for_run(Manifest(str(path)), jpath)
    assert len(calls) > len(MOVES)  # the digest differs: the full verify ran
    with pytest.raises(JournalError, match="another manifest"):
        Journal(jpath, manifest_sha256=info.sha256, manifest_name="plan", entries=info.entries)


def _forged(p: Path, entries: list[dict[str, Any]]) -> None:
    """A manifest whose trailer was recomputed over hand-edited entries: only a full parse can refuse it."""
    head = manifest_mod._encode(manifest_mod.compact_json({"type": "header", "format": 1, **HEADER}))
    lines = [manifest_mod._encode(manifest_mod.compact_json(e)) for e in entries]
    trailer = {
        "type": "trailer",
        "entries": len(lines),
        "sha256": hashlib.sha256(b"".join(lines)).hexdigest(),
        "header_sha256": hashlib.sha256(head).hexdigest(),
    }
    p.write_bytes(head + b"".join(lines) + manifest_mod._encode(manifest_mod.compact_json(trailer)))


def _bad_entries() -> list[dict[str, Any]]:
    entries = [json.loads(m.to_json()) for m in MOVES[:10]]
    entries[6]["size"] = "10"  # not an int
    return entries


def test_a_forged_manifest_is_refused_in_a_first_run_before_any_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "plan.jsonl"
    _forged(p, _bad_entries())

    def no_client(*a: Any, **k: Any) -> Any:
        raise AssertionError("an S3 client was made")

    monkeypatch.setattr(commands, "make_client", no_client)
    with pytest.raises(ManifestError, match="malformed entry") as err:
        commands.apply(str(p))
    assert err.value.line == 8
    assert not (tmp_path / "plan.jsonl.journal").exists()


def test_a_forged_manifest_with_a_forged_journal_is_refused_before_the_bad_entry_runs(tmp_path: Path) -> None:
    p = tmp_path / "plan.jsonl"
    _forged(p, _bad_entries())
    jpath = str(p) + ".journal"
    Journal(
        jpath, manifest_sha256=manifest_mod.content_sha256(str(p)), manifest_name="p", entries=10, buckets=PAIRS
    ).close()
    m = Manifest(str(p))
    verify_for_run(m, jpath)  # light: passes (the digests are consistent)
    got = []
    with pytest.raises(ManifestError, match="malformed entry") as err:
        for x in m.moves(skip=bytes(11)):
            got.append(x.id)
    assert got == [1, 2, 3, 4, 5, 6] and err.value.line == 8


def test_a_journal_listing_fewer_bucket_pairs_cannot_widen_the_run(path: Path) -> None:
    jpath = _journal(path, buckets={("src0", "dst")})
    m = Manifest(str(path))
    assert verify_for_run(m, jpath).buckets == {("src0", "dst")}
    with pytest.raises(ManifestError, match="bucket pair the journal's header does not list") as err:
        list(m.moves())
    assert err.value.line == 2  # entry 1 moves src1 -> dst


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 60),
    chunk=st.sampled_from([1, 7, 64, 333, 1 << 20]),
    seed=st.integers(0, 1000),
    gz=st.booleans(),
    density=st.sampled_from([0.0, 0.5, 0.9, 1.0]),
)
def test_block_skip_equals_the_per_line_filter(
    tmp_path_factory: pytest.TempPathFactory, n: int, chunk: int, seed: int, gz: bool, density: float
) -> None:
    moves = [move(i, src_key=f"k/{'x' * (i * 7 % 50)}{i}") for i in range(1, n + 1)]
    p = tmp_path_factory.mktemp("m") / ("plan.jsonl.gz" if gz else "plan.jsonl")
    write(p, moves)
    rng = random.Random(seed)
    skip = bytes([0] + [rng.random() < density for _ in range(n)])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(manifest_mod, "_CHUNK", chunk)
        m = Manifest(str(p))
        assert list(m.moves(skip=skip)) == [x for x in moves if not skip[x.id]]
        assert list(m.moves()) == moves


def test_a_short_skip_mask_is_refused(path: Path) -> None:
    with pytest.raises(ValueError, match="skip mask"):
        list(Manifest(str(path)).moves(skip=bytes(len(MOVES))))


def test_a_manifest_edited_after_its_journal_gets_the_full_verify_and_its_usual_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "plan.jsonl"
    write(p, MOVES)
    jpath = _journal(p)
    p.write_bytes(p.read_bytes().replace(b'"size":30,', b'"size":31,', 1))  # entry 3, trailer unchanged
    calls = _count_parses(monkeypatch)
    with pytest.raises(ManifestError, match="the manifest was edited"):
        verify_for_run(Manifest(str(p)), jpath)
    assert len(calls) > len(MOVES)  # the bound digest differed: the full verify ran


def test_verify_bound_gives_what_the_full_verify_gives(path: Path) -> None:
    full = Manifest(str(path)).verify()
    bound = Manifest(str(path)).verify_bound(full.sha256, PAIRS)
    assert bound is not None
    assert (bound.header, bound.entries, bound.sha256, bound.buckets) == (
        full.header,
        full.entries,
        full.sha256,
        full.buckets,
    )
    assert Manifest(str(path)).verify_bound("0" * 64, PAIRS) is None


# -- run: the apply after a plan in the same process verifies against what the plan wrote --------------------------
def test_run_verifies_the_manifest_it_just_wrote_lightly(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    planned = commands.Planned(manifest_mod.content_sha256(str(path)), PAIRS)
    calls = _count_parses(monkeypatch)
    info = verify_for_run(Manifest(str(path)), str(path) + ".journal", planned)
    assert calls == [1, len(MOVES) + 2] and info.buckets == PAIRS and info.entries == len(MOVES)


def test_run_falls_back_to_the_full_verify_when_the_file_is_not_what_was_planned(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planned = commands.Planned("0" * 64, frozenset({("src0", "dst")}))  # e.g. replaced between plan and apply
    calls = _count_parses(monkeypatch)
    info = verify_for_run(Manifest(str(path)), str(path) + ".journal", planned)
    assert len(calls) == len(MOVES) + 2
    assert info.buckets == PAIRS  # the pairs the entries really have, not the plan's claim


def test_run_refuses_a_forged_manifest_in_place_of_the_planned_one(tmp_path: Path) -> None:
    p = tmp_path / "plan.jsonl"
    planned = commands.Planned("0" * 64, PAIRS)
    _forged(p, _bad_entries())
    with pytest.raises(ManifestError, match="malformed entry"):
        verify_for_run(Manifest(str(p)), str(p) + ".journal", planned)


def test_an_existing_journal_binding_wins_over_the_plans(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jpath = _journal(path)
    planned = commands.Planned(manifest_mod.content_sha256(str(path)), frozenset({("other", "dst")}))
    assert verify_for_run(Manifest(str(path)), jpath, planned).buckets == PAIRS
