"""Entry point: local S3 servers on 127.0.0.1 (moto, seaweedfs, rclone), serving until Ctrl-C or SIGTERM.

``python scripts/local_s3.py ARGS`` is ``python -m s3seg_lab.local_s3 ARGS`` run from the repo root.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, which `python -m` from it has

from s3seg_lab.local_s3 import serve

if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:] or ["moto"]))
