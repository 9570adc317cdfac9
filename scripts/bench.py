"""Entry point: s3seg vs s5cmd vs the original algorithm on a local S3 server (``s3seg_lab/bench/``).

``python scripts/bench.py ARGS`` is ``python -m s3seg_lab.bench ARGS`` run from the repo root.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, which `python -m` from it has

from s3seg_lab.bench.cli import main

if __name__ == "__main__":
    main()
