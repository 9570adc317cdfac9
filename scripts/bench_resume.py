"""Entry point: the resume skip benchmark, time to a resume's first new request (``s3seg_lab/bench/resume.py``).

``python scripts/bench_resume.py ARGS`` is ``python -m s3seg_lab.bench.resume ARGS`` run from the repo root.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, which `python -m` from it has

from s3seg_lab.bench.resume import main

if __name__ == "__main__":
    main()
