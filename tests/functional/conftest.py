"""The functional tests' fixtures: ``s3`` (in-process moto, ``mock_aws``) for every file here, and ``enforce``
(AWS's copy conditions emulated in front of moto, ``applykit.Enforcer``).

``bucket`` is tests/conftest.py's (a fresh bucket per test, made with whichever ``s3`` is in scope: this one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from applykit import Enforcer, endpoint_of
from moto import mock_aws

import s3seg.storage
import s3seg.worker

_LOADER = botocore.loaders.create_loader()


@pytest.fixture
def s3(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A client of in-process moto, or of the moto server for a test parametrized with ``mode="server-send"``
    (overrides tests/conftest.py's server client, so ``bucket`` is created where the test runs)."""
    # Worker resources are cached per process by config; a client from another test (and its hooks) must
    # not leak into this one.
    monkeypatch.setattr(s3seg.worker, "_cache", {})
    # s3seg builds a boto3 session per client (once per worker process in production); here that would
    # re-parse botocore's JSON models for every apply. Share one loader: same models, parsed once.
    monkeypatch.setattr(botocore.session, "create_loader", lambda *_: _LOADER)
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("mode") == "server-send":
        endpoint = request.getfixturevalue("moto_endpoint")
        # This mode's enforcement lives in botocore hooks: every request must go through botocore.
        monkeypatch.setattr(s3seg.storage.LeanPath, "for_client", classmethod(lambda cls, client: None))
        yield boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        return
    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def enforce(s3: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Enforcer]:
    def install(mode: str) -> Enforcer:
        e = Enforcer(boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint_of(s3)))
        e.install(mode, monkeypatch)
        return e

    return install
