"""Entry point: s3seg vs s5cmd on a latency-bound fake S3 (``s3seg_lab/bench/latency.py``).

``python scripts/bench_latency.py ARGS`` is ``python -m s3seg_lab.bench.latency ARGS`` run from the repo root.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, which `python -m` from it has

from s3seg_lab.bench.latency import main

if __name__ == "__main__":
    main()
