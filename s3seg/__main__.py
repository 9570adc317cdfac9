"""``python -m s3seg`` is the same as the ``s3seg`` console script."""

from __future__ import annotations

from s3seg.cli import main

if __name__ == "__main__":
    main()
