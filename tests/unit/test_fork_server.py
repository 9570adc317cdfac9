"""The fork server s3seg starts early, and multiprocessing's resource tracker, survive SIGINT, SIGTERM and SIGHUP.

A signal sent to the whole process group (systemd, Kubernetes, ``timeout``) must stop the run gracefully: the
workers ignore it and the parent drains. If the fork server could die of it, every worker's exit status would
be lost with it and the pool would break (seen: multiprocessing's resource tracker, started from the same thread,
unblocks SIGINT and SIGTERM there, bpo-33613). Linux only (``/proc``, the fork server).
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    "forkserver" not in multiprocessing.get_all_start_methods() or not sys.platform.startswith("linux"),
    reason="the fork server and /proc are Linux's",
)

PROBE = """
import signal, sys, time
import multiprocessing.forkserver as fs
from s3seg.executor import start_fork_server
start_fork_server()
deadline = time.monotonic() + 30
while fs._forkserver._forkserver_pid is None and time.monotonic() < deadline:
    time.sleep(0.01)
import multiprocessing.resource_tracker as rt

def exposed(pid):
    status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status").read().splitlines() if ":" in l)
    safe = int(status["SigBlk"], 16) | int(status["SigIgn"], 16)  # blocked, or ignored
    return [int(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) if not safe >> (s - 1) & 1]

print("server", *exposed(fs._forkserver._forkserver_pid))
print("tracker", *exposed(rt._resource_tracker._pid))
"""


def test_the_early_fork_server_blocks_the_stop_signals() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # Each line names a process and the stop signals it would die of: none.
    assert out.stdout.split("\n")[:2] == ["server", "tracker"], out.stdout
