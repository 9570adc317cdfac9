"""Deterministic crash points for the crash-safety tests; inert unless ``S3SEG_CRASH_AT`` is set.

``S3SEG_CRASH_AT=<point>[:<n>]`` makes the process that reaches ``<point>`` for the n-th time (default 1st)
kill itself with SIGKILL, exactly like ``kill -9``: no cleanup, no flush, no finally blocks. Points are named
where the code calls ``crash_point()`` (``grep -rn crash_point s3seg``) and listed, with what each leaves
behind, in docs/development.md ("Crash points"). ``torn`` is run just before the kill,
to leave a half-done side effect behind (half a journal record written), as a crash in the middle of it would.

``S3SEG_CRASH_SIGNAL=INT|TERM|HUP`` sends that signal instead (once, at the n-th hit; the process goes on and
handles it), and ``S3SEG_CRASH_GROUP=1`` sends it to the whole process group, as systemd, Kubernetes and
``timeout`` do: the interrupt tests use these to stop a run at an exact protocol step. With
``S3SEG_CRASH_ONCE=<path>`` only the first process to get there acts (it creates ``<path>``): every worker
process reaches a worker's crash point, and the tests want one signal, not one per worker.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable

_SPEC = os.environ.get("S3SEG_CRASH_AT", "")
_SIGNAL = os.environ.get("S3SEG_CRASH_SIGNAL", "KILL")
_GROUP = os.environ.get("S3SEG_CRASH_GROUP", "") == "1"
_hits: Counter[str] = Counter()


def crash_point(name: str, torn: Callable[[], object] | None = None) -> None:
    if not _SPEC:
        return
    point, _, nth = _SPEC.partition(":")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] != int(nth or 1):
        return
    once = os.environ.get("S3SEG_CRASH_ONCE")
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    if torn is not None and _SIGNAL == "KILL":
        torn()
    sig = signal.Signals[f"SIG{_SIGNAL}"]
    if _GROUP:
        os.killpg(os.getpgid(0), sig)
    else:
        os.kill(os.getpid(), sig)
