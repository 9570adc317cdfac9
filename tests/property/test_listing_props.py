"""Parallel listing (``s3seg.listing``) returns exactly the serial listing: same objects, same order.

The store is an in-memory fake with ListObjectsV2 semantics: keys in UTF-8 byte order (as S3 lists them),
``Prefix``, ``StartAfter``, ``Delimiter`` (common prefixes count against ``MaxKeys`` and are dropped, as
``Storage.list_pages`` drops them) and continuation. Key sets mix ASCII, keys sharing long prefixes, and
unicode from every UTF-8 length, including both sides of the surrogate gap (U+D7FF, U+E000, U+FFFD) and
astral characters, where UTF-16 order (Java, JavaScript) would differ from S3's order.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3seg.listing import list_pages, split_points, utf8
from s3seg.objects import Listed


class FakeStore:
    """ListObjectsV2 over a fixed key set, in S3's order (UTF-8 bytes); ``latency`` seconds per request."""

    def __init__(self, keys: set[str], *, latency: float = 0.0, fail_after: str | None = None) -> None:
        self.keys = sorted(keys, key=utf8)
        self.encoded = [utf8(k) for k in self.keys]
        self.latency = latency
        self.fail_after = fail_after  # a request starting after this key fails (a range that errors)
        self.requests = 0
        self.in_flight = self.peak = 0  # requests being answered at once, and the most seen
        self._lock = threading.Lock()

    def list_pages(
        self, bucket: str, prefix: str, *, delimiter: str = "", page_size: int = 1000, start_after: str = ""
    ) -> Iterator[list[Listed]]:
        marker = max(utf8(start_after), utf8(prefix))
        start = bisect.bisect_right(self.encoded, marker) if start_after else bisect.bisect_left(self.encoded, marker)
        while True:
            with self._lock:
                self.requests += 1
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
            if self.latency:
                time.sleep(self.latency)
            with self._lock:
                self.in_flight -= 1
            if self.fail_after is not None and self.encoded[max(0, start - 1)] > utf8(self.fail_after):
                raise RuntimeError(f"listing after {start_after!r} failed")
            page: list[Listed] = []
            entries = 0
            truncated = False
            last_common = None
            i = start
            while i < len(self.keys) and self.keys[i].startswith(prefix):
                key = self.keys[i]
                rest = key[len(prefix) :]
                if delimiter and delimiter in rest:
                    common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
                    if common != last_common:
                        if entries == page_size:
                            truncated = True
                            break
                        last_common = common
                        entries += 1
                    i += 1
                    continue
                if entries == page_size:
                    truncated = True
                    break
                size = len(self.encoded[i])
                page.append(Listed(key=key, size=size, etag=f'"{size}"', storage_class="STANDARD", last_modified=""))
                entries += 1
                i += 1
            yield page
            if not truncated:
                return
            start = i  # continuation: resume after the last entry returned (a common prefix: after all of it)


def flat(pages: Iterator[list[Listed]] | list[list[Listed]]) -> list[str]:
    return [o.key for page in pages for o in page]


# Characters of every UTF-8 length, on both sides of the surrogate gap, and the delimiter.
ALPHABET = st.sampled_from(
    [*"abcAB019-_./ ~", "é", "ß", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\uffef", "\ufffd",
     "\U00010000", "\U0001f600", "\U0010ffff"]
)  # fmt: skip
SUFFIX = st.text(ALPHABET, min_size=0, max_size=6)
STEMS = st.lists(st.text(ALPHABET, min_size=0, max_size=10), min_size=1, max_size=6)


@st.composite
def key_sets(draw: st.DrawFn) -> set[str]:
    """Keys under 'p/' that share stems (long common prefixes) plus stray keys, and a few outside 'p/'."""
    stems = draw(STEMS)
    keys = {"p/" + draw(st.sampled_from(stems)) + draw(SUFFIX) for _ in range(draw(st.integers(0, 120)))}
    keys |= {"p/" + k for k in draw(st.lists(st.text(ALPHABET, min_size=1, max_size=12), max_size=30))}
    keys |= {"o/" + k for k in draw(st.lists(SUFFIX, max_size=5))}
    keys |= {"p0", "p"}  # sort right next to the prefix but outside it
    return keys


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=key_sets(),
    workers=st.integers(2, 6),
    request_keys=st.integers(1, 7),
    page_size=st.integers(1, 9),
    max_buffered=st.integers(1, 40),
    delimiter=st.sampled_from(["", "/"]),
)
def test_parallel_listing_equals_the_serial_listing(
    keys: set[str], workers: int, request_keys: int, page_size: int, max_buffered: int, delimiter: str
) -> None:
    store = FakeStore(keys)
    serial = flat(store.list_pages("b", "p/", delimiter=delimiter, page_size=page_size))
    expected = sorted(
        (k for k in keys if k.startswith("p/") and not (delimiter and delimiter in k[2:])), key=lambda k: k.encode()
    )
    assert serial == expected  # the fake itself agrees with S3's rules
    pages = list(
        list_pages(
            store, "b", "p/", delimiter=delimiter, page_size=page_size, workers=workers,
            max_buffered=max_buffered, request_keys=request_keys,
        )
    )  # fmt: skip
    assert flat(pages) == serial
    assert all(len(p) == page_size for p in pages[:-1]) and all(pages)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=8), max_size=20))
def test_python_string_order_is_utf8_byte_order_for_every_valid_key(keys: list[str]) -> None:
    """Why comparing ``str`` is safe: code point order is UTF-8 byte order (UTF-16 order is what differs)."""
    assert sorted(keys) == sorted(keys, key=lambda k: k.encode("utf-8"))


@settings(max_examples=200, deadline=None)
@given(
    page=st.lists(st.text(ALPHABET, min_size=0, max_size=8), min_size=1, max_size=30),
    upto=st.none() | st.text(ALPHABET, max_size=10),
    k=st.integers(0, 8),
    target=st.integers(1, 50),
)
def test_split_points_lie_strictly_between_the_page_and_the_range_end_ascending(
    page: list[str], upto: str | None, k: int, target: int
) -> None:
    keys = sorted({"p/" + s for s in page}, key=utf8)
    end = None if upto is None else "p/" + upto
    if end is not None and utf8(end) <= utf8(keys[-1]):
        end = None
    points = split_points(keys, end, "p/", k, target)
    assert len(points) <= k
    encoded = [utf8(p) for p in points]
    assert encoded == sorted(set(encoded))
    assert all(e > utf8(keys[-1]) for e in encoded)
    assert end is None or all(e < utf8(end) for e in encoded)
    assert all(p.startswith("p/") for p in points)


def test_flat_prefix_of_numbered_files_is_listed_in_many_ranges_at_once() -> None:
    keys = {f"in/CDR_{n:05d}-20221231-10.ccn" for n in range(3000)}
    serial_store = FakeStore(keys, latency=0.01)
    serial = flat(list_pages(serial_store, "b", "in/", page_size=100))
    store = FakeStore(keys, latency=0.01)
    parallel = flat(list_pages(store, "b", "in/", page_size=100, workers=6, request_keys=100))
    assert parallel == serial == sorted(keys)
    assert serial_store.requests == 30 and serial_store.peak == 1
    # Ranges really are listed at once (counted at the store, not timed: a loaded machine stretches any timing),
    # and splitting costs few extra requests.
    assert store.peak >= 4, (store.peak, store.requests)
    assert store.requests <= 30 * 2


def test_a_failing_range_raises_after_the_pages_before_it() -> None:
    keys = {f"p/{n:04d}" for n in range(400)}
    store = FakeStore(keys, fail_after="p/0150")
    got: list[str] = []
    with pytest.raises(RuntimeError, match="failed"):
        for page in list_pages(store, "b", "p/", page_size=10, workers=4, request_keys=20):
            got.extend(o.key for o in page)
    assert got == sorted(keys)[: len(got)]  # everything yielded is the exact serial prefix


def test_stopping_early_stops_every_thread() -> None:
    keys = {f"p/{n:05d}" for n in range(5000)}
    store = FakeStore(keys)
    before = threading.active_count()
    it = list_pages(store, "b", "p/", page_size=10, workers=5, request_keys=50, max_buffered=100)
    first = [next(it) for _ in range(3)]
    it.close()
    assert flat(first) == sorted(keys)[:30]
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
