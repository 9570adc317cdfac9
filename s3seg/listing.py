"""Parallel listing of one prefix: the key space split into StartAfter ranges, listed concurrently, in order.

A ListObjectsV2 listing is a chain of requests, each waiting for the previous page: one prefix with millions
of keys takes one round trip per 1,000 keys however many machines wait for it. Here the key space after the
prefix is cut into ranges ``(after, upto]``, each listed by its own thread with ``StartAfter=after`` and cut off
at ``upto``; the ranges are yielded in key order, so the result is exactly the serial listing.

Where to cut is learnt on the way (no separate sampling pass): whenever a thread is idle, a range that has
just listed a full page splits what is left of it at boundaries derived from the keys of that page (the next
characters after the part the page's first and last keys share, as s3p does), spaced 1, 2, 4, 8, ... candidates
apart so both dense and sparse key spaces get useful ranges. A boundary that lands in an empty stretch costs one
request; the busy ranges split again as soon as threads free up. Correctness never depends on the boundaries:
the ranges always partition the key space exactly.

S3 lists keys in UTF-8 byte order. Python compares ``str`` by code point, which is the same order for every
string that has a UTF-8 form (the case where they differ, UTF-16 code-unit order as in Java or JavaScript, does
not arise here); bounds are nevertheless compared on the UTF-8 bytes, the order S3 itself uses.

Memory is bounded: ranges ahead of the one being consumed buffer at most ``max_buffered`` objects in total,
then wait; the range being consumed never waits.

Must not: write to S3, or know what the listing is for.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from s3seg.objects import Listed, paged

log = logging.getLogger(__name__)

REQUEST_KEYS = 1000  # keys per ListObjectsV2 request inside a range: S3's maximum
MAX_BUFFERED = 200_000  # objects buffered ahead of the consumer, across ranges (~60 MB)


class Lister(Protocol):
    """What parallel listing needs from storage (``s3seg.storage.Storage`` and test fakes)."""

    def list_pages(
        self, bucket: str, prefix: str, *, delimiter: str = "", page_size: int = 1000, start_after: str = ""
    ) -> Iterator[list[Listed]]: ...


def utf8(key: str) -> bytes:
    """The order S3 lists keys in (surrogates cannot occur in keys; ``surrogatepass`` only avoids a crash)."""
    return key.encode("utf-8", "surrogatepass")


def list_pages(
    storage: Lister,
    bucket: str,
    prefix: str,
    *,
    delimiter: str = "",
    page_size: int = 1000,
    workers: int = 1,
    max_buffered: int = MAX_BUFFERED,
    request_keys: int = REQUEST_KEYS,
) -> Iterator[list[Listed]]:
    """Pages of ``page_size`` objects under ``prefix`` in key order, listed with ``workers`` threads.

    ``workers <= 1`` is the plain serial listing. Common prefixes (with a delimiter) are dropped, as in
    ``Storage.list_pages``. ``request_keys`` is MaxKeys inside a range (tests make it small).
    """
    if workers <= 1:
        yield from storage.list_pages(bucket, prefix, delimiter=delimiter, page_size=page_size)
        return
    run = _ParallelListing(storage, bucket, prefix, delimiter, workers, max_buffered, request_keys)
    yield from paged(itertools.chain.from_iterable(run.pages()), page_size)


def split_points(keys: list[str], upto: str | None, prefix: str, k: int, target: int = 4 * REQUEST_KEYS) -> list[str]:
    """Up to ``k`` ascending boundaries strictly between ``keys[-1]`` and ``upto`` (None: no upper bound), aiming
    at about ``target`` keys between consecutive boundaries.

    ``keys`` is one listing page (ascending, all under ``prefix``). Candidates are ``last[:j] + c`` for each
    position ``j`` from where the page's first and last keys differ back to the end of the prefix, and each
    character ``c`` after ``last[j]`` among those seen at that position (widened: a digit seen means every
    digit, a lower-case letter every lower-case letter). Deeper positions give nearer boundaries, so candidates come out
    ascending. How many keys lie between two candidates is estimated from the page: it spans so many
    characters at the position where its first and last keys differ, and each position further left
    multiplies the span by the alphabet size of the position to its right (uniform keys: the estimate holds;
    numbered keys: it holds per digit). A wrong estimate only makes ranges uneven.
    """
    if k <= 0 or not keys:
        return []
    first, last = keys[0], keys[-1]
    sample = [*keys[:: max(1, len(keys) // 100)], last]
    shared = _shared_length(first, last)
    limit = utf8(upto) if upto is not None else None
    alphabets = {j: _alphabet({key[j] for key in sample if len(key) > j}) for j in range(len(prefix), shared + 1)}
    unit = _keys_per_step(keys, shared, alphabets[shared])  # estimated keys per character step at `shared`
    points: list[str] = []
    mass = 0.0
    for j in range(shared, len(prefix) - 1, -1):
        if j < shared:
            unit *= max(1, len(alphabets[j + 1]))
        current = last[j] if j < len(last) else ""
        # A step here too big for one range (numbered keys, one digit further left) is cut one position deeper.
        finer = alphabets[j + 1] if j < shared and unit > target else [""]
        step = unit / len(finer)
        for c in alphabets[j]:
            if c <= current:  # code point order == UTF-8 byte order for single characters
                continue
            for d in finer:
                point = last[:j] + c + d
                if limit is not None and utf8(point) >= limit:
                    return points
                mass += step
                if mass >= target:
                    points.append(point)
                    mass = 0.0
                    if len(points) == k:
                        return points
    return points


def _keys_per_step(keys: list[str], at: int, alphabet: list[str]) -> float:
    """How many keys one character step at position ``at`` holds, estimated from one page.

    The characters strictly between the first and last keys' are wholly in the page: their mean count. With
    none (the page spans two neighbours, the usual case for numbered keys: 0000000 .. 0001010), the larger of
    the two partly listed ones, a lower bound: the page's count over its span would be half of that, and
    ranges cut on it twice too long (measured: one range of 8,000 and one of 10,000 keys out of 20,000).
    """
    first, last = keys[0], keys[-1]
    if at >= len(first) or at >= len(last) or first[at] not in alphabet or last[at] not in alphabet:
        return float(len(keys))
    lo, hi = alphabet.index(first[at]), alphabet.index(last[at])
    counts: dict[str, int] = {}
    for key in keys:
        if len(key) > at:
            counts[key[at]] = counts.get(key[at], 0) + 1
    inner = alphabet[lo + 1 : hi]
    if inner:
        return max(1.0, sum(counts.get(c, 0) for c in inner) / len(inner))
    return float(max(counts.get(first[at], 0), counts.get(last[at], 0), 1))


_DIGITS = "0123456789"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _shared_length(a: str, b: str) -> int:
    """How many leading characters ``a`` and ``b`` have in common."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _alphabet(seen: set[str]) -> list[str]:
    """The characters seen, sorted, widened to their class: a digit seen means every digit, and so on."""
    out = set(seen)
    for cls in (_DIGITS, _LOWER, _UPPER):
        if out & set(cls):
            out.update(cls)
    return sorted(out)


@dataclass(eq=False)
class _Range:
    """Keys strictly after ``after`` ('' = from the start) up to and including ``upto`` (None = to the end)."""

    after: str
    upto: str | None
    resume: str = ""  # where its next request starts (StartAfter): ``after``, or the last key it buffered
    pages: deque[list[Listed]] = field(default_factory=deque)
    done: bool = False
    error: BaseException | None = None
    next: _Range | None = None  # the following range in key order

    def __post_init__(self) -> None:
        self.resume = self.after


class _ParallelListing:
    """Ranges in a work queue served by ``workers`` threads, consumed in key order.

    Waiting ranges are served lowest key first, so the range being consumed (the head) is always next in line.
    A range that has buffered its share pauses (its thread goes back to the queue, the range remembers where it
    stopped) unless it is the head, so no thread ever waits on the consumer and the head can always run. Ranges
    split while fewer than ``4 * workers`` are unfinished, so a thread that finishes one always finds another.
    One condition variable guards all shared state.
    """

    def __init__(
        self,
        storage: Lister,
        bucket: str,
        prefix: str,
        delimiter: str,
        workers: int,
        max_buffered: int,
        request_keys: int,
    ) -> None:
        # Every range lists the same request, from its own start key.
        self._list = partial(storage.list_pages, bucket, prefix, delimiter=delimiter, page_size=request_keys)
        self._prefix = prefix
        self._workers = workers
        self._max_buffered = max_buffered
        self._request_keys = request_keys
        self._target = 4 * workers  # unfinished ranges to aim for
        self._cond = threading.Condition()
        self._head = _Range("", None)  # the range being consumed
        self._waiting: list[tuple[bytes, int, _Range]] = []  # heap: (start key, seq, range)
        self._seq = itertools.count()
        self._unfinished = 0
        self._buffered = 0
        self._closed = False
        self._ranges = 0
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="s3seg-list")

    def pages(self) -> Iterator[list[Listed]]:
        with self._cond:
            self._queue(self._head)
        for _ in range(self._workers):
            self._pool.submit(self._serve)
        current = self._head
        try:
            while True:
                with self._cond:
                    while not current.pages and not current.done:
                        self._cond.wait()
                    if current.pages:
                        page = current.pages.popleft()
                        self._buffered -= len(page)
                        self._cond.notify_all()
                    elif current.error is not None:
                        raise current.error
                    elif current.next is None:
                        log.debug("parallel listing of %s used %d ranges", self._prefix, self._ranges)
                        return
                    else:
                        current = self._head = current.next
                        self._cond.notify_all()  # the new head may be paused, waiting to run
                        continue
                yield page
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _queue(self, r: _Range, *, new: bool = True) -> None:
        """Put ``r`` in line (with the lock held)."""
        if new:
            self._unfinished += 1
            self._ranges += 1
        heapq.heappush(self._waiting, (utf8(r.after), next(self._seq), r))
        self._cond.notify_all()

    def _serve(self) -> None:
        """One thread: run the first range in line that may run, until every range is done."""
        while True:
            with self._cond:
                while True:
                    if self._closed or self._unfinished == 0:
                        return
                    if self._waiting:
                        r = self._waiting[0][2]
                        if r is self._head or self._buffered < self._max_buffered:
                            heapq.heappop(self._waiting)
                            break
                    self._cond.wait()
            self._run(r)

    def _run(self, r: _Range) -> None:
        try:
            for page in self._list(start_after=r.resume):
                keep = page
                if r.upto is not None and page and utf8(page[-1].key) > utf8(r.upto):
                    limit = utf8(r.upto)  # only the thread running r changes r.upto
                    keep = [o for o in page if utf8(o.key) <= limit]
                with self._cond:
                    if self._closed:
                        return
                    if keep:
                        r.pages.append(keep)
                        r.resume = keep[-1].key
                        self._buffered += len(keep)
                        self._cond.notify_all()
                    if len(keep) < len(page):
                        break  # listed past the end of this range
                    if r is not self._head and self._buffered >= self._max_buffered:
                        self._queue(r, new=False)  # pause: resume from r.resume when there is room
                        return
                # A page at least half full probably has a successor (common prefixes also count against
                # MaxKeys); a wrong guess costs one empty request per new range.
                if len(page) >= max(1, self._request_keys // 2):
                    self._split(r, page)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it in order
            with self._cond:
                r.error = exc
        with self._cond:
            r.done = True
            self._unfinished -= 1
            self._cond.notify_all()

    def _split(self, r: _Range, page: list[Listed]) -> None:
        """Queue the rest of ``r`` beyond its newest page as new ranges; ``r`` keeps the nearest part."""
        room = self._target - self._unfinished  # a racy read is fine: re-checked under the lock
        if room <= 0:
            return
        points = split_points([o.key for o in page], r.upto, self._prefix, room, 4 * self._request_keys)
        if not points:
            return
        with self._cond:
            points = points[: self._target - self._unfinished]
            if not points or self._closed:
                return
            bounds: list[str | None] = [*points[1:], r.upto]
            new = [_Range(lo, hi) for lo, hi in zip(points, bounds, strict=True)]
            for a, b in itertools.pairwise(new):
                a.next = b
            new[-1].next = r.next
            r.next = new[0]
            r.upto = points[0]
            for n in new:
                self._queue(n)
