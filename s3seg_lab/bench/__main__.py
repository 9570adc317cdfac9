"""``python -m s3seg_lab.bench``: the benchmark of ``cli``."""

from __future__ import annotations

from s3seg_lab.bench.cli import main

main()
