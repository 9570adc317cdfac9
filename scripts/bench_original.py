"""Entry point: the original tool's algorithm, and a bare listing loop (``s3seg_lab/bench/original.py``).

``python scripts/bench_original.py ARGS`` is ``python -m s3seg_lab.bench.original ARGS`` run from the repo root.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, which `python -m` from it has

from s3seg_lab.bench.original import main

if __name__ == "__main__":
    main()
