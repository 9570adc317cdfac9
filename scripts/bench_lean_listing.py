"""Entry point: the client CPU of listing, lean vs botocore (``s3seg_lab/bench/lean_listing.py``).

``python scripts/bench_lean_listing.py ARGS`` is ``python -m s3seg_lab.bench.lean_listing ARGS`` run from the repo root.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, which `python -m` from it has

from s3seg_lab.bench.lean_listing import main

if __name__ == "__main__":
    main()
