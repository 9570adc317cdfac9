"""verify, in process (in-process moto): the journal's copy ETags, the prefixes listed, journals refused, and
proof that verify lists instead of sending a HEAD per object and never writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from applykit import MIB, cli_run, count_api_calls, dst_of, make_plan, opts, put, seed
from helpers import cdr_key, snapshot

from s3seg import commands, verify
from s3seg.manifest import Manifest, ManifestWriter, Move
from s3seg.objects import Listed


def counts(report: verify.VerifyReport) -> dict[str, int]:
    return {c: n for c, n in report.counts.items() if n}


def test_multipart_copies_are_accounted_for_through_the_etags_the_journal_recorded(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    big = cdr_key(1)
    put(s3, bucket, big, bytes(range(256)) * (11 * MIB // 256))
    seed(s3, bucket, 3, start=2)
    manifest = make_plan(s3, tmp_path, bucket, multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    commands.apply(manifest, opts())
    new_etag = s3.head_object(Bucket=bucket, Key=dst_of(big))["ETag"]
    assert new_etag.endswith('-3"')  # the multipart path ran: the destination's ETag is not the planned one

    assert counts(commands.verify(manifest)) == {"at-destination": 4}

    # Without the journal the listing alone cannot tell a multipart copy from another object: say so.
    os.rename(manifest + ".journal", str(tmp_path / "elsewhere.journal"))
    alone = commands.verify(manifest)
    assert counts(alone) == {"at-destination": 3, "destination-differs": 1}
    assert alone.items[0]["at_destination"] == {"size": 11 * MIB, "etag": new_etag}
    assert counts(commands.verify(manifest, journal=str(tmp_path / "elsewhere.journal"))) == {"at-destination": 4}
    os.rename(str(tmp_path / "elsewhere.journal"), manifest + ".journal")

    commands.rollback(manifest, opts())  # copies back in parts too: the source gets yet another ETag
    assert counts(commands.verify(manifest)) == {"at-source": 4}


def test_verify_lists_each_location_once_and_sends_no_head_and_no_write(
    s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(s3, bucket, 30)
    put(s3, bucket, "incoming/README.txt", b"to error")
    manifest = make_plan(s3, tmp_path, bucket, n_keys=10)
    before = snapshot(s3, bucket)
    calls = count_api_calls(monkeypatch)

    report = commands.verify(manifest)

    assert counts(report) == {"at-source": 31}
    assert set(calls) == {"ListObjectsV2"}
    assert len(calls) == 3  # incoming/, segregated/, error/: one page each (verify lists 1,000 keys a page)
    assert snapshot(s3, bucket) == before


def test_verify_exit_codes_through_the_cli_entry_point(s3: Any, bucket: str, tmp_path: Path) -> None:
    objects = seed(s3, bucket, 4)
    manifest = make_plan(s3, tmp_path, bucket)
    assert cli_run("verify", manifest)[0] == 0
    s3.delete_object(Bucket=bucket, Key=next(iter(objects)))
    code, out = cli_run("verify", manifest, "--json")
    assert code == 1
    assert json.loads(out)["counts"]["neither"] == 1

    assert cli_run("verify", manifest, "--journal", str(tmp_path / "nope"))[0] == 2
    assert cli_run("verify", manifest, "--samples", "-1")[0] == 2


def test_a_journal_of_another_manifest_is_refused_with_exit_3(s3: Any, bucket: str, tmp_path: Path) -> None:
    seed(s3, bucket, 2)
    manifest = make_plan(s3, tmp_path, bucket)
    Path(manifest + ".journal").write_text(
        json.dumps({"type": "header", "format": 1, "manifest_sha256": "0" * 64, "manifest": "x"}) + "\n"
    )
    code, _ = cli_run("verify", manifest)
    assert code == 3


# -- without S3: the index and the prefixes ------------------------------------------------------------------
class FakeStore:
    """A listing-only store: bucket -> {key: (size, etag)}; records every listing asked for."""

    def __init__(self, objects: dict[str, dict[str, tuple[int, str]]]) -> None:
        self.objects = objects
        self.listed: list[tuple[str, str]] = []

    def list_pages(
        self, bucket: str, prefix: str, *, delimiter: str = "", page_size: int = 1000, start_after: str = ""
    ) -> Any:
        self.listed.append((bucket, prefix))
        keys = sorted(k for k in self.objects.get(bucket, {}) if k.startswith(prefix) and k > start_after)
        for i in range(0, len(keys), page_size):
            yield [
                Listed(
                    key=k,
                    size=self.objects[bucket][k][0],
                    etag=self.objects[bucket][k][1],
                    storage_class="STANDARD",
                    last_modified="",
                )
                for k in keys[i : i + page_size]
            ]


def write_manifest(path: Path, moves: list[tuple[str, str, str, str]], config: dict[str, Any]) -> Manifest:
    w = ManifestWriter(str(path), {"tool": "s3seg", "endpoint": None, "config": config})
    for i, (sb, sk, db, dk) in enumerate(moves, start=1):
        w.add(Move(id=i, src_bucket=sb, src_key=sk, dst_bucket=db, dst_key=dk, size=1, etag=f'"{i}"'))
    w.close()
    m = Manifest(str(path))
    m.verify()
    return m


def test_destination_in_another_bucket_and_a_template_without_static_prefix(tmp_path: Path) -> None:
    config = {
        "source": {"bucket": "src", "prefix": "in/"},
        "segregated": {"bucket": "dst", "prefix": "%Y/%m/"},
        "error": {"bucket": "src", "prefix": "in/error/"},
    }
    m = write_manifest(
        tmp_path / "p.jsonl",
        [
            ("src", "in/a", "dst", "2022/12/a"),
            ("src", "in/b", "src", "in/error/b"),
            ("src", "in/c", "dst", "2022/12/c"),
        ],
        config,
    )
    store = FakeStore({"src": {"in/error/b": (1, '"2"'), "in/c": (1, '"3"')}, "dst": {"2022/12/a": (1, '"1"')}})

    report = verify.audit(store, m)

    assert sorted(store.listed) == [("dst", ""), ("src", "in/")]  # in/error/ is inside in/: listed once
    assert counts(report) == {"at-destination": 2, "at-source": 1}


def test_a_key_outside_the_recorded_locations_widens_the_listing_to_its_bucket(tmp_path: Path) -> None:
    config = {"source": {"bucket": "b", "prefix": "in/"}, "segregated": {"bucket": "b", "prefix": "seg/%Y/"}}
    m = write_manifest(tmp_path / "p.jsonl", [("b", "in/a", "b", "elsewhere/a")], config)
    store = FakeStore({"b": {"elsewhere/a": (1, '"1"')}})

    report = verify.audit(store, m)

    assert store.listed == [("b", "")]
    assert counts(report) == {"at-destination": 1}


def test_one_key_that_is_two_places_is_seen_at_both(tmp_path: Path) -> None:
    """Move 1's destination is move 2's source: one listed object answers for both rows."""
    config = {"source": {"bucket": "b", "prefix": ""}}
    m = write_manifest(tmp_path / "p.jsonl", [("b", "x", "b", "y"), ("b", "y", "b", "z")], config)
    store = FakeStore({"b": {"y": (1, '"1"')}})

    report = verify.audit(store, m)

    assert [i["category"] for i in report.items] == ["source-differs"]  # move 2: '"1"' is not its ETag
    assert counts(report) == {"at-destination": 1, "source-differs": 1}


class LazyStore:
    """Every planned object at its destination, generated page by page (the store itself holds nothing)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def list_pages(
        self, bucket: str, prefix: str, *, delimiter: str = "", page_size: int = 1000, start_after: str = ""
    ) -> Any:
        if prefix != "seg/":
            return
        for start in range(1, self.n + 1, page_size):
            yield [
                Listed(key=f"seg/{i:09d}", size=1, etag=f'"{i}"', storage_class="STANDARD", last_modified="")
                for i in range(start, min(start + page_size, self.n + 1))
            ]


def test_verify_memory_does_not_grow_with_the_manifest(tmp_path: Path) -> None:
    import tracemalloc

    config = {"source": {"bucket": "b", "prefix": "in/"}, "segregated": {"bucket": "b", "prefix": "seg/"}}
    peaks = []
    for n in (5_000, 40_000):
        m = write_manifest(
            tmp_path / f"p{n}.jsonl", [("b", f"in/{i:09d}", "b", f"seg/{i:09d}") for i in range(1, n + 1)], config
        )
        tracemalloc.start()
        report = verify.audit(LazyStore(n), m)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert counts(report) == {"at-destination": n}
    # Python-side memory is bounded by a listing page and an insert batch, not by the entries (SQLite's own
    # page cache is bounded separately, to 64 MB): 8x the moves, not 8x the memory.
    assert peaks[1] < 1.5 * peaks[0] + 1_000_000, peaks
