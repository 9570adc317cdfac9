"""Entry point: client CPU per copy, copy loop vs threads (``s3seg_lab/bench/copyloop.py``).

``python scripts/bench_copyloop.py ARGS`` is ``python -m s3seg_lab.bench.copyloop ARGS`` run from the repo root.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, which `python -m` from it has

from s3seg_lab.bench.copyloop import main

if __name__ == "__main__":
    main()
