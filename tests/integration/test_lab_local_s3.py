"""``python -m s3seg_lab.local_s3``: the local S3 the demo documents serves until Ctrl-C or SIGTERM, then stops its
server and exits 0."""

from __future__ import annotations

import signal
import socket
import subprocess
from urllib.parse import urlsplit

import pytest

from s3seg_lab import lab_env, local_s3, module_command

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_local_s3_serves_until_a_stop_signal_then_exits_0_and_stops_its_server(stop: signal.Signals) -> None:
    proc = subprocess.Popen(
        module_command("s3seg_lab.local_s3", "moto"), stdout=subprocess.PIPE, text=True, env=lab_env()
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "moto: http://127.0.0.1:PORT ready in ...": printed once it accepts writes
        assert line.startswith("moto: http://127.0.0.1:"), line
        endpoint = line.split()[1]
        s3 = local_s3.client(endpoint)
        s3.create_bucket(Bucket="lab")
        s3.put_object(Bucket="lab", Key="k", Body=b"x")
        assert proc.poll() is None  # still serving
        proc.send_signal(stop)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    url = urlsplit(endpoint)
    with pytest.raises(OSError), socket.create_connection((url.hostname, url.port), timeout=2):
        pass  # the moto server went with it
