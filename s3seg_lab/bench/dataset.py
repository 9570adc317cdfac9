"""The benchmark's data set: N CDR-like names over 30 days x 24 hours (1% that do not match the pattern, 1% with
an impossible date), each with the destination s3seg must give it, and 1 KiB of seeded bytes per object."""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta

from s3seg_lab.cdr import ERROR_PREFIX, cdr_name

BASE_DATE = datetime(2022, 12, 1)
OBJECT_SIZE = 1024


def object_names(n: int) -> list[tuple[str, str]]:
    """(file name, expected destination key relative to the bucket) for n objects, deterministic."""
    out = []
    hours = 30 * 24
    for i in range(n):
        date = BASE_DATE + timedelta(hours=(i * 7919) % hours)
        if i % 100 == 7:  # does not match the pattern
            name = f"OTHERCDR_{i:07d}.dat"
            out.append((name, ERROR_PREFIX + name))
        elif i % 100 == 57:  # matches, but month 13 is no date
            name = cdr_name(i, f"{date:%Y}13{date:%d}", date.hour, width=7)
            out.append((name, ERROR_PREFIX + name))
        else:
            name = cdr_name(i, f"{date:%Y%m%d}", date.hour, width=7)
            out.append((name, f"segregated/{date:%Y/%m/%d/%H}/{name}"))
    return out


def write_seed_files(names: list[tuple[str, str]], directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    rng = random.Random(1)
    for name, _ in names:
        with open(os.path.join(directory, name), "wb") as f:
            f.write(rng.randbytes(OBJECT_SIZE))
