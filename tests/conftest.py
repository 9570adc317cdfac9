"""Shared fixtures: a moto S3 server on 127.0.0.1 (crosses process boundaries), buckets, configs, snapshots.

In-process ``mock_aws`` is only for single-process functional tests; anything with a process pool or a CLI
subprocess uses the ``moto_endpoint`` server, as S3-FACTS requires.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session", autouse=True)
def _shared_botocore_loader() -> Iterator[None]:
    """Every boto3 client built in this test process (plan, probe, in-process applies: several per test, one per
    ``s3seg.storage.make_client``) reuses one botocore data loader instead of parsing the S3 service model
    again: ~140-270 ms -> ~40 ms per client. Only test speed: the models are the same files, parsed once; s3seg
    itself builds one client per process, and subprocesses (CLI runs, pool workers) are not affected."""
    import botocore.session

    real = botocore.session.create_loader
    shared = real()
    botocore.session.create_loader = lambda *args, **kwargs: shared  # type: ignore[assignment]
    yield
    botocore.session.create_loader = real


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server for the session, on a free loopback port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh bucket per test (one bucket per test keeps tests independent on the shared server)."""
    name = f"t-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=name)
    return name
