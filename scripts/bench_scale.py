"""Entry point: the scale benchmark: plan, apply, kill -9 + resume, rollback at 1M (``s3seg_lab/bench/scale.py``).

``python scripts/bench_scale.py ARGS`` is ``python -m s3seg_lab.bench.scale ARGS`` run from the repo root.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, which `python -m` from it has

from s3seg_lab.bench.scale import main

if __name__ == "__main__":
    main()
