"""Measuring a process tree: wall time, user+system CPU (``wait4``), memory sampled from /proc (the summed RSS
of every descendant, each one's VmHWM), and the CPU the S3 server spent meanwhile.

``wait4`` counts a child and the descendants it reaped. A descendant that outlives its parent (s3seg's fork
server, whose children are the worker processes, exits only once s3seg has) would escape it: the measuring
process makes itself the Linux "child subreaper" of its tree, so such orphans become its children, and reaps
them after the command, adding their CPU (theirs and that of the workers they reaped).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field


def _proc_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _mem_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB, or (0, 0) for a zombie or a gone process."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


class TreeMonitor(threading.Thread):
    """Samples the memory of a process and all its descendants every ``interval`` seconds."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.hwm: dict[int, int] = {}
        self.peak_total_rss = 0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        children = _proc_children()
        todo, total = [self.root], 0
        while todo:
            pid = todo.pop()
            rss, hwm = _mem_kb(pid)
            total += rss
            if hwm:
                self.hwm[pid] = max(self.hwm.get(pid, 0), hwm)
            todo.extend(children.get(pid, ()))
        self.peak_total_rss = max(self.peak_total_rss, total)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class Measured:
    cmd: str
    wall_s: float
    rc: int
    user_s: float
    sys_s: float
    wait4_maxrss_mib: float  # the largest single process of the tree (Linux ru_maxrss semantics)
    peak_total_rss_mib: float  # peak of the summed RSS of all processes, sampled
    parent_hwm_mib: float
    max_child_hwm_mib: float
    sum_hwm_mib: float  # sum of every process's own peak: an upper bound on the simultaneous total
    processes: int
    server_cpu_s: float = 0.0  # CPU the S3 server spent during the run (it shares the machine)
    stdout: str = field(repr=False, default="")
    stderr: str = field(repr=False, default="")

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux ``prctl``); False where it cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(pids: set[int], timeout: float = 10.0) -> tuple[float, float]:
    """Wait for the descendants in ``pids`` that became this process's children; their (user, sys) CPU.

    A pid that is not our child is either still owned by its own parent (it will be reaped there, its CPU
    reaching us through that parent) or gone: it is waited for until it is gone or reparented to us.
    """
    user = system = 0.0
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for pid in sorted(pending):
            try:
                got, _, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                if not _alive(pid):
                    pending.discard(pid)
                continue
            if got:
                user, system = user + usage.ru_utime, system + usage.ru_stime
                pending.discard(pid)
        if pending:
            time.sleep(0.02)
    return user, system


SERVER_PIDS: list[int] = []  # the S3 server's processes: their CPU is read around every measured run
_TICKS = os.sysconf("SC_CLK_TCK")


def server_cpu_s() -> float:
    """User+system CPU seconds the S3 server has used so far (all its threads)."""
    total = 0
    for pid in SERVER_PIDS:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICKS


def measure(cmd: list[str], env: dict[str, str], cwd: str, timeout: float = 3600) -> Measured:
    """Run ``cmd`` to completion; wall time, CPU of the whole tree (wait4), sampled memory, server CPU."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server0 = server_cpu_s()
        subreaper = _become_subreaper()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        monitor = TreeMonitor(proc.pid)
        monitor.start()
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        killer.cancel()
        monitor.stop()
        orphans = reap_orphans(set(monitor.hwm) - {proc.pid} - set(SERVER_PIDS)) if subreaper else (0.0, 0.0)
        server = server_cpu_s() - server0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    parent = monitor.hwm.get(proc.pid, 0)
    others = [v for pid, v in monitor.hwm.items() if pid != proc.pid]
    return Measured(
        cmd=shlex.join(cmd),
        wall_s=wall,
        rc=proc.returncode,
        user_s=usage.ru_utime + orphans[0],
        sys_s=usage.ru_stime + orphans[1],
        wait4_maxrss_mib=usage.ru_maxrss / 1024,
        peak_total_rss_mib=monitor.peak_total_rss / 1024,
        parent_hwm_mib=parent / 1024,
        max_child_hwm_mib=max(others, default=0) / 1024,
        sum_hwm_mib=(parent + sum(others)) / 1024,
        processes=len(monitor.hwm),
        server_cpu_s=server,
        stdout=stdout,
        stderr=stderr,
    )
