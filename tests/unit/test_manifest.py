"""s3seg.manifest: Move records and the JSONL manifest (header, entries, trailer); every damage is detected."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from manifestkit import (
    HEADER,
    move,
    refused,
    write,
)

from s3seg.manifest import FORMAT, Manifest, ManifestWriter, Move


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


@pytest.fixture
def three(tmp_path: Path) -> Path:
    path = tmp_path / "plan.jsonl"
    write(path, [move(1), move(2, reason="no-match"), move(3, reason="bad-date", detail="'2022133210' bad")])
    return path


# --- writing -----------------------------------------------------------------------------------------------


def test_header_comes_first_with_type_and_format(three: Path) -> None:
    header = json.loads(lines(three)[0])
    assert header == {"type": "header", "format": FORMAT, **HEADER}


def test_one_line_per_move_with_every_field(three: Path) -> None:
    entries = [json.loads(raw) for raw in lines(three)[1:-1]]
    assert entries[0] == {
        "id": 1,
        "src_bucket": "src",
        "src_key": "incoming/f1.ccn",
        "dst_bucket": "dst",
        "dst_key": "seg/2022/f1.ccn",
        "size": 10,
        "etag": '"00000000000000000000000000000001"',
        "storage_class": "STANDARD",
        "last_modified": "2022-12-31T10:00:00+00:00",
        "reason": "matched",
    }
    assert [e["reason"] for e in entries] == ["matched", "no-match", "bad-date"]
    assert "detail" not in entries[0]  # only written when there is one
    assert entries[2]["detail"] == "'2022133210' bad"


def test_trailer_has_the_count_and_the_sha256_of_the_entry_lines(three: Path) -> None:
    raw = lines(three)
    trailer = json.loads(raw[-1])
    assert trailer == {
        "type": "trailer",
        "entries": 3,
        "sha256": hashlib.sha256(b"".join(raw[1:-1])).hexdigest(),
        "header_sha256": hashlib.sha256(raw[0]).hexdigest(),
    }


def test_close_returns_the_sha256_of_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    sha = write(path, [move(1)])
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_appears_only_when_complete(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    writer = ManifestWriter(str(path), HEADER)
    writer.add(move(1))
    writer.flush()
    assert not path.exists()
    partial = Path(writer.partial_path)
    assert partial.parent == tmp_path and partial.name.startswith(".m.jsonl.") and partial.suffix == ".tmp"
    assert partial.stat().st_mode & 0o077 == 0  # private to this process's user
    assert len(Path(writer.partial_path).read_bytes().splitlines()) == 2
    writer.close()
    assert path.exists()
    assert not Path(writer.partial_path).exists()


def test_abort_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    writer = ManifestWriter(str(path), HEADER)
    writer.add(move(1))
    writer.abort()
    assert os.listdir(tmp_path) == []


def test_ids_must_run_1_to_n(tmp_path: Path) -> None:
    writer = ManifestWriter(str(tmp_path / "m.jsonl"), HEADER)
    writer.add(move(1))
    with pytest.raises(ValueError, match="consecutive"):
        writer.add(move(3))
    writer.abort()


def test_unicode_is_written_raw_and_control_characters_escaped(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    key = "incoming/日本 é\x01\n\r\t\u2028\x7f.ccn"
    write(path, [move(1, src_key=key)])
    data = path.read_bytes()
    assert "日本 é".encode() in data
    assert data.count(b"\n") == 3  # header, entry, trailer: the newline in the key is escaped
    assert b"\x01" not in data and b"\r" not in data
    assert next(Manifest(str(path)).moves()).src_key == key


# --- reading -----------------------------------------------------------------------------------------------


def test_verify_then_moves_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    written = [move(i, storage_class="GLACIER" if i == 2 else "STANDARD") for i in range(1, 6)]
    sha = write(path, written)
    manifest = Manifest(str(path))
    info = manifest.verify()
    assert info.entries == 5
    assert info.sha256 == sha
    assert info.header == {"type": "header", "format": FORMAT, **HEADER}
    assert list(manifest.moves()) == written


def test_info_verifies_once(three: Path) -> None:
    manifest = Manifest(str(three))
    assert manifest.info is manifest.info
    assert manifest.info.entries == 3


def test_empty_plan_is_a_valid_manifest(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    write(path, [])
    manifest = Manifest(str(path))
    assert manifest.verify().entries == 0
    assert list(manifest.moves()) == []


def test_move_from_dict_checks_types() -> None:
    data = json.loads(move(1).to_json())
    assert Move.from_dict(data) == move(1)
    for name, bad in (("size", "10"), ("size", True), ("id", 1.0), ("etag", None), ("src_key", 5)):
        with pytest.raises(ValueError, match=name):
            Move.from_dict({**data, name: bad})
    with pytest.raises(ValueError, match="reason"):
        Move.from_dict({k: v for k, v in data.items() if k != "reason"})
    with pytest.raises(ValueError, match="detail"):
        Move.from_dict({**data, "detail": 1})


# --- damage is detected, with the line ---------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    refused(tmp_path / "absent.jsonl", None, "cannot read")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"")
    refused(path, None, "empty")


@pytest.mark.parametrize("keep", [1, 2, 3, 4])
def test_truncation_at_a_line_boundary_is_detected(three: Path, keep: int) -> None:
    three.write_bytes(b"".join(lines(three)[:keep]))
    refused(three, None, "no trailer")


@pytest.mark.parametrize("cut", [1, 10, 50])
def test_truncation_inside_a_line_is_detected(three: Path, cut: int) -> None:
    data = three.read_bytes()
    three.write_bytes(data[: len(data) - cut])
    refused(three, 5, "incomplete")


def test_missing_final_newline_is_detected(three: Path) -> None:
    three.write_bytes(three.read_bytes()[:-1])
    refused(three, 5, "truncated")


def test_edited_entry_is_detected(three: Path) -> None:
    three.write_bytes(three.read_bytes().replace(b"seg/2022/f2.ccn", b"seg/2023/f2.ccn"))
    refused(three, None, "edited")


def test_edited_size_is_detected(three: Path) -> None:
    three.write_bytes(three.read_bytes().replace(b'"size":20', b'"size":21'))
    refused(three, None, "edited")


def test_edited_header_is_detected(three: Path) -> None:
    three.write_bytes(three.read_bytes().replace(b'"n":1', b'"n":2'))
    refused(three, 1, "header")


def test_deleted_entry_is_detected(three: Path) -> None:
    raw = lines(three)
    three.write_bytes(b"".join(raw[:2] + raw[3:]))
    refused(three, 3, "out of sequence")


def test_duplicated_entry_is_detected(three: Path) -> None:
    raw = lines(three)
    three.write_bytes(b"".join([*raw[:3], raw[2], *raw[3:]]))
    refused(three, 4, "out of sequence")


def test_reordered_entries_are_detected(three: Path) -> None:
    raw = lines(three)
    three.write_bytes(b"".join([raw[0], raw[2], raw[1], *raw[3:]]))
    refused(three, 2, "out of sequence")


def test_renumbered_entries_are_detected(three: Path) -> None:
    # Entry 2 dropped and entry 3 renumbered 2, with the trailer count fixed: only the digest can tell.
    raw = lines(three)
    renumbered = raw[3].replace(b'"id":3', b'"id":2')
    trailer = raw[4].replace(b'"entries":3', b'"entries":2')
    three.write_bytes(b"".join([raw[0], raw[1], renumbered, trailer]))
    refused(three, None, "edited")


def test_data_after_the_trailer_is_detected(three: Path) -> None:
    raw = lines(three)
    three.write_bytes(b"".join([*raw, raw[1]]))
    refused(three, 6, "after the trailer")


def test_two_manifests_concatenated_are_detected(three: Path) -> None:
    three.write_bytes(three.read_bytes() * 2)
    refused(three, 6, "after the trailer")


def test_first_line_must_be_a_header(three: Path) -> None:
    three.write_bytes(b"".join(lines(three)[1:]))
    refused(three, 1, "not an s3seg manifest")


def test_unknown_format_is_refused(three: Path) -> None:
    three.write_bytes(three.read_bytes().replace(b'"format":1', b'"format":2', 1))
    refused(three, 1, "format 2")


def test_line_that_is_not_json_is_refused_with_its_line(three: Path) -> None:
    raw = lines(three)
    raw[2] = b"{not json\n"
    three.write_bytes(b"".join(raw))
    refused(three, 3, "not valid JSON")


def test_line_that_is_not_an_object_is_refused_with_its_line(three: Path) -> None:
    raw = lines(three)
    raw[3] = b"[1, 2]\n"
    three.write_bytes(b"".join(raw))
    refused(three, 4, "not a JSON object")


def test_malformed_entry_is_refused_with_its_line(three: Path) -> None:
    raw = lines(three)
    raw[2] = raw[2].replace(b'"size":20', b'"size":"20"')
    three.write_bytes(b"".join(raw))
    refused(three, 3, "malformed entry")


def test_invalid_utf8_is_refused(three: Path) -> None:
    three.write_bytes(three.read_bytes().replace(b"f2.ccn", b"f\xff.ccn", 1))
    refused(three, 3, "not valid JSON")
