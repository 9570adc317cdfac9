"""Deterministic crash points for the crash-safety tests; inert unless ``S3SEG_CRASH_AT`` is set.

``S3SEG_CRASH_AT=<point>[:<n>]`` makes the process that reaches ``<point>`` for the n-th time (default 1st)
kill itself with SIGKILL, exactly like ``kill -9``: no cleanup, no flush, no finally blocks. Points are named
where the code calls ``crash_point()``; the README lists them. ``torn`` is run just before the kill, to leave
a half-done side effect behind (half a journal record written), as a crash in the middle of it would.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable

_SPEC = os.environ.get("S3SEG_CRASH_AT", "")
_hits: Counter[str] = Counter()


def crash_point(name: str, torn: Callable[[], object] | None = None) -> None:
    if not _SPEC:
        return
    point, _, nth = _SPEC.partition(":")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] >= int(nth or 1):
        if torn is not None:
            torn()
        os.kill(os.getpid(), signal.SIGKILL)
