"""The benchmarks' CPU figure counts every process of a run, including one that outlives its parent."""

from __future__ import annotations

import sys
import textwrap

import pytest

from s3seg_lab.bench import procmon

# The parent exits at once; its child (reparented, as s3seg's fork server is) burns ~0.4 s of CPU afterwards.
_ORPHAN = textwrap.dedent(
    """
    import os, time
    if os.fork() == 0:
        time.sleep(0.3)  # until the parent is surely gone: this process is an orphan from here on
        end = time.process_time() + 0.4
        while time.process_time() < end:
            pass
        os._exit(0)
    time.sleep(0.2)  # long enough for the monitor to see the child
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="child subreaper is a Linux prctl")
def test_cpu_of_an_orphaned_descendant_is_counted(tmp_path: object) -> None:
    m = procmon.measure([sys.executable, "-c", _ORPHAN], {}, str(tmp_path))
    assert m.rc == 0
    assert m.cpu_s >= 0.35, f"only {m.cpu_s:.2f} s counted: the orphan's CPU escaped the measurement"
