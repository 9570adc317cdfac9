"""s3seg: move S3 objects into date-named prefixes, reviewably and without ever losing one.

The public API is the verbs in :mod:`s3seg.commands`; the CLI (:mod:`s3seg.cli`) is a thin layer over them.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
