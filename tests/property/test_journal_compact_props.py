"""Property: compact journal records (``[first, last]`` runs, format 2) replay to exactly the state the plain
integer lists of format 1 give, for any ids in any order (duplicates included) and any sequence of records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from s3seg.journal import Journal, JournalState, Status, compact_ids, expand_ids, replay

ENTRIES = 60
SHA = "c" * 64

ids_lists = st.lists(st.integers(min_value=1, max_value=ENTRIES), min_size=1, max_size=80)
statuses = st.sampled_from([s for s in Status if s is not Status.PENDING])
events = st.one_of(
    st.tuples(st.just("intent"), st.sampled_from(["apply", "rollback"]), ids_lists, st.none(), st.none()),
    st.tuples(st.just("copied"), st.sampled_from(["apply", "rollback"]), ids_lists, ids_lists, st.none()),
    st.tuples(st.just("outcome"), st.sampled_from(["apply", "rollback"]), ids_lists, st.none(), statuses),
)


def snapshot(state: JournalState) -> tuple[Any, ...]:
    return (bytes(state.states), bytes(state.own), state.copy_etags, state.dedup, state.last_error)


def write(path: Path, history: list[tuple[Any, ...]], *, fmt: int) -> None:
    lines = [{"type": "header", "format": fmt, "manifest_sha256": SHA, "manifest": "p", "created": "x"}]
    for ev, direction, ids, extra, status in history:
        wire = compact_ids(ids) if fmt == 2 else ids
        record: dict[str, Any] = {"ev": ev, "dir": direction, "ids": wire}
        if ev == "copied":
            record["dedup"] = sorted(set(extra) & set(ids))
            record["etags"] = {str(ids[0]): '"e"'}
        if ev == "outcome":
            record["status"] = status.label
            if status in (Status.FAILED, Status.R_FAILED):
                record["code"], record["msg"] = "AccessDenied", "no"
        lines.append(record)
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))


@given(ids_lists)
def test_compact_expands_to_the_sorted_ids(ids: list[int]) -> None:
    compact = compact_ids(ids)
    assert expand_ids(compact, ENTRIES) == sorted(ids)
    # never longer on the wire than the plain list
    assert len(json.dumps(compact)) <= len(json.dumps(sorted(ids)))


@settings(max_examples=150, deadline=None)
@given(st.lists(events, min_size=1, max_size=12))
def test_compact_records_replay_to_the_same_state(tmp_path_factory: Any, history: list[tuple[Any, ...]]) -> None:
    base = tmp_path_factory.mktemp("j")
    plain, compact = base / "plain.journal", base / "compact.journal"
    write(plain, history, fmt=1)
    write(compact, history, fmt=2)
    a, _ = replay(str(plain), manifest_sha256=SHA, entries=ENTRIES)
    b, _ = replay(str(compact), manifest_sha256=SHA, entries=ENTRIES)
    assert snapshot(a) == snapshot(b)


@settings(max_examples=60, deadline=None)
@given(st.lists(events, min_size=1, max_size=8))
def test_the_writer_state_equals_the_replayed_state(tmp_path_factory: Any, history: list[tuple[Any, ...]]) -> None:
    path = tmp_path_factory.mktemp("w") / "plan.journal"
    with Journal(str(path), manifest_sha256=SHA, manifest_name="p", entries=ENTRIES) as j:
        for ev, direction, ids, extra, status in history:
            if ev == "intent":
                j.intent(direction, ids)
            elif ev == "copied":
                j.copied(direction, ids, {ids[0]: '"e"'}, sorted(set(extra) & set(ids)))
            else:
                j.outcome(direction, status, ids)
        live = snapshot(j.state)
    again, _ = replay(str(path), manifest_sha256=SHA, entries=ENTRIES)
    assert snapshot(again) == live
