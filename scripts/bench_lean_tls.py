"""Entry point: the lean path's CPU over TLS vs botocore's (``s3seg_lab/bench/lean_tls.py``).

``python scripts/bench_lean_tls.py ARGS`` is ``python -m s3seg_lab.bench.lean_tls ARGS`` run from the repo root.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, which `python -m` from it has

from s3seg_lab.bench.lean_tls import main

if __name__ == "__main__":
    main()
