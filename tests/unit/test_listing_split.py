"""Where parallel listing cuts the key space: ranges of about the target size on numbered keys."""

from __future__ import annotations

import bisect

import pytest

from s3seg.listing import split_points
from s3seg_lab.cdr import cdr_key


@pytest.mark.parametrize(("n", "width"), [(20_000, 7), (200_000, 7), (50_000, 5)])
def test_numbered_keys_are_cut_into_ranges_of_about_the_target(n: int, width: int) -> None:
    """Keys numbered 0000000.. with a date after the number (the shape s3seg plans): the first page spans two
    neighbouring digits, and the step one digit further left is ten times the page. Each range the first
    split makes holds at most twice the target (it was 8,000 and 10,000 of 20,000 keys for a 4,000 target)."""
    keys = sorted(f"incoming/{cdr_key(i, f'202212{1 + i % 28:02d}', i % 24, width=width)}" for i in range(n))
    target = 4_000
    points = split_points(keys[:1000], None, "incoming/", 7, target)
    assert points == sorted(points) and all(p > keys[999] for p in points)
    cuts = [bisect.bisect_right(keys, p) for p in points]  # keys <= each point: its range's end
    sizes = [b - a for a, b in zip([1000, *cuts], cuts, strict=False)]
    assert all(size <= 2 * target for size in sizes), sizes
    assert sum(sizes) >= min(n - 1000, 7 * target // 2)  # the points reach well into the key space


def test_points_never_reach_the_upper_bound() -> None:
    keys = [f"p/{i:07d}" for i in range(1000)]
    points = split_points(keys, "p/0005", "p/", 50, 100)
    assert points and all(keys[-1] < p < "p/0005" for p in points)
