"""The capability probe against the in-memory store, for every combination of enforced conditions: it finds
exactly what the store enforces, and leaves nothing behind (its requests run in concurrent rounds)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from memstore import MemStore

from s3seg.objects import Listed
from s3seg.probe import PROBE_PREFIX, Capabilities, probe

COMBINATIONS = [
    Capabilities(copy_if_match=a, copy_if_none_match=b, delete_if_match=c, batch_delete_etag=d)
    for a, b, c, d in itertools.product([True, False], repeat=4)
]


class ListingMemStore(MemStore):
    """The probe's sweep lists its prefix: nothing stale here."""

    def list_pages(self, bucket: str, prefix: str, **_: object) -> Iterator[list[Listed]]:
        yield []


@pytest.mark.parametrize("caps", COMBINATIONS, ids=lambda c: c.describe())
def test_probe_finds_what_the_store_enforces_and_cleans_up(caps: Capabilities) -> None:
    store = ListingMemStore(caps)
    store.put("b", "kept", b"someone else's object")
    found = probe(store, "b")  # type: ignore[arg-type]
    assert found == caps
    assert {key for _, key in store.objects} == {"kept"}  # every scratch object deleted again
    assert all(key.startswith(PROBE_PREFIX) for _, _, key in store.calls if key != "kept")
